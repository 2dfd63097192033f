"""Safe image loading and saving."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from dreamkit.errors import DreamkitError, ImageLoadError, OutputError
from dreamkit.io import (load_image, parse_color, read_recipe, save_animation, save_image, tensor_to_pil)


def _png(tmp_path, image, name="img.png", **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_rgb_png_loads_exactly(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = load_image(_png(tmp_path, Image.fromarray(array)))
    assert out.shape == (1, 3, 5, 7) and out.dtype == torch.float32
    assert torch.equal((out[0] * 255).round().byte().permute(1, 2, 0), torch.from_numpy(array))


@pytest.mark.parametrize("background, expected", [("white", 255), ("black", 0), ("#808080", 128), ("10,20,30", (10, 20, 30))])
def test_rgba_is_composited_on_the_background_and_hidden_colours_do_not_leak(tmp_path, background, expected):
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[..., :3] = (255, 0, 0)  # red hidden under fully transparent pixels
    array[0, 0] = (0, 0, 255, 255)  # one opaque blue pixel
    out = load_image(_png(tmp_path, Image.fromarray(array, "RGBA")), background=background)
    pixels = (out[0] * 255).round().permute(1, 2, 0)
    assert pixels[0, 0].tolist() == [0, 0, 255]
    assert pixels[1, 1].tolist() == (list(expected) if isinstance(expected, tuple) else [expected] * 3)


def test_half_transparent_pixels_blend(tmp_path):
    image = Image.new("LA", (1, 1), (0, 128))
    out = load_image(_png(tmp_path, image), background="white")
    assert abs(float(out[0, 0, 0, 0]) * 255 - 127) <= 1


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    out = load_image(_png(tmp_path, image, transparency=0), background="black")
    assert (out[0, :, 0, 0] * 255).round().tolist() == [0, 0, 0]
    assert (out[0, :, 0, 1] * 255).round().tolist() == [0, 255, 0]


def test_cmyk_is_converted(tmp_path):
    path = _png(tmp_path, Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "cmyk.jpg", quality=100)
    out = load_image(path)
    red, green, blue = out[0, :, 2, 2].tolist()
    assert red > 0.9 and green < 0.1 and blue < 0.1


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    array = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    path = _png(tmp_path, Image.fromarray(array))
    assert Image.open(path).mode in ("I;16", "I")
    out = load_image(path)
    assert out.shape == (1, 3, 1, 4)
    expected = torch.tensor([0, 1000, 32768, 65535]) / 65535
    assert torch.allclose(out[0, 0, 0], expected.float(), atol=1e-6)
    assert torch.equal(out[0, 0], out[0, 2])


@pytest.mark.parametrize("mode, value, expected", [("1", 1, 1.0), ("L", 64, 64 / 255)])
def test_bilevel_and_greyscale(tmp_path, mode, value, expected):
    out = load_image(_png(tmp_path, Image.new(mode, (3, 2), value)))
    assert out.shape == (1, 3, 2, 3) and torch.allclose(out, torch.full_like(out, expected))


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates 90° clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape == (1, 3, 4, 2)  # upright: 2 wide, 4 tall
    assert float(out[0, 0, 0, 1]) > 0.8  # the stored top-left is now top-right


def test_animated_images_use_the_first_frame_and_say_so(tmp_path, caplog):
    frames = [Image.new("RGB", (3, 3), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.INFO, logger="dreamkit"):
        out = load_image(path)
    assert out[0, 0, 1, 1] > 0.9 and out[0, 1, 1, 1] < 0.1
    assert "animated image with 2 frames; using the first frame" in caplog.text


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    path = _png(tmp_path, Image.new("1", (10000, 9000)), "bomb.png")  # 90 Mpx, a few kB on disk
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageLoadError, match=r"bomb.png: 10000×9000 = 90,000,000 pixels is over the limit of 89,478,485.*--max-pixels"):
        load_image(path)


def test_pixel_limit_can_be_lowered_or_raised(tmp_path, monkeypatch):
    path = _png(tmp_path, Image.new("RGB", (20, 10)))
    with pytest.raises(ImageLoadError, match="200 pixels is over the limit of 199"):
        load_image(path, max_pixels=199)
    monkeypatch.setenv("DREAMKIT_MAX_PIXELS", "100")
    with pytest.raises(ImageLoadError, match="limit of 100"):
        load_image(path)
    assert load_image(path, max_pixels=200).shape == (1, 3, 10, 20)
    monkeypatch.setenv("DREAMKIT_MAX_PIXELS", "lots")
    with pytest.raises(DreamkitError, match="DREAMKIT_MAX_PIXELS='lots'"):
        load_image(path)


def test_truncated_files_name_the_file(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _png(tmp_path, Image.fromarray(array), "cut.png")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match="cut.png: cannot decode the image"):
        load_image(path)


def test_non_images_and_disallowed_formats_are_refused(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageLoadError, match=r"notes.png: not an image in an allowed format \(PNG, JPEG"):
        load_image(text)
    tga = _png(tmp_path, Image.new("RGB", (2, 2)), "image.tga")
    with pytest.raises(ImageLoadError, match="image.tga: not an image in an allowed format"):
        load_image(tga)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="not a file"):
        load_image(tmp_path)


def test_bad_background():
    with pytest.raises(DreamkitError, match="background 'blurple' is not allowed"):
        parse_color("blurple")
    with pytest.raises(DreamkitError, match="background"):
        parse_color("1,2,300")


# -- saving ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP")])
def test_save_by_extension(tmp_path, dreamkit_image, suffix, fmt):
    path = save_image(dreamkit_image, tmp_path / f"out{suffix}")
    with Image.open(path) as image:
        assert image.format == fmt and image.size == (64, 48)
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_png_round_trip_is_exact(tmp_path, dreamkit_image):
    path = save_image(dreamkit_image, tmp_path / "out.png")
    assert torch.equal(load_image(path), (dreamkit_image * 255).round() / 255)


def test_unknown_output_extension(tmp_path, dreamkit_image):
    with pytest.raises(OutputError, match=r"unknown output extension '.bmp'"):
        save_image(dreamkit_image, tmp_path / "out.bmp")
    assert not list(tmp_path.iterdir())


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, dreamkit_image):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists already; pass --overwrite"):
        save_image(dreamkit_image, path)
    assert path.read_bytes() == b"old"
    save_image(dreamkit_image, path, overwrite=True)
    assert Image.open(path).size == (64, 48)


def test_inputs_are_never_overwritten(tmp_path, dreamkit_image):
    source = save_image(dreamkit_image, tmp_path / "in.png")
    before = source.read_bytes()
    with pytest.raises(OutputError, match="refusing to overwrite an input"):
        save_image(torch.zeros_like(dreamkit_image), tmp_path / "." / "in.png", overwrite=True, inputs=[source])
    assert source.read_bytes() == before


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, dreamkit_image, monkeypatch):
    path = tmp_path / "out.png"
    path.write_bytes(b"precious")

    def explode(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        save_image(dreamkit_image, path, overwrite=True)
    assert path.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [path]


def test_recipe_is_embedded_in_pngs(tmp_path, dreamkit_image):
    recipe = {"pipeline": {"steps": [{"effect": "adjust", "params": {}}]}, "seed": 3}
    path = save_image(dreamkit_image, tmp_path / "out.png", recipe=recipe)
    assert read_recipe(path) == recipe
    with Image.open(path) as image:
        image.load()
        assert "dreamkit-recipe" in image.text


def test_reading_a_recipe_from_a_plain_image_is_a_clear_error(tmp_path, dreamkit_image):
    path = save_image(dreamkit_image, tmp_path / "plain.png")
    with pytest.raises(DreamkitError, match="plain.png: no dreamkit recipe"):
        read_recipe(path)


def test_animation(tmp_path, dreamkit_image):
    frames = [dreamkit_image * f for f in (1.0, 0.6, 0.3)]
    path = save_animation(frames, tmp_path / "anim.gif")
    with Image.open(path) as image:
        assert image.n_frames == 3
    with pytest.raises(OutputError, match="unknown animation extension .*use .gif, .webp"):
        save_animation(frames, tmp_path / "anim.png")


def test_tensor_to_pil_modes(dreamkit_image):
    assert tensor_to_pil(dreamkit_image).mode == "RGB"
    assert tensor_to_pil(dreamkit_image[:, :1]).mode == "L"
    assert tensor_to_pil(torch.cat([dreamkit_image, dreamkit_image[:, :1]], 1)).mode == "RGBA"
    with pytest.raises(ValueError, match="batch of 2"):
        tensor_to_pil(torch.zeros(2, 3, 4, 4))


def test_as_rgb_repeats_grey_and_refuses_other_channel_counts():
    from dreamkit.io import as_rgb

    grey = torch.rand(1, 1, 4, 5)
    rgb = as_rgb(grey, "effect 'x'")
    assert rgb.shape == (1, 3, 4, 5) and torch.equal(rgb[:, 2], grey[:, 0])
    colour = torch.rand(3, 4, 5)
    assert as_rgb(colour, "effect 'x'") is colour
    with pytest.raises(ValueError, match=r"effect 'x' needs an RGB or greyscale image \(1 or 3 channels\); got shape \(1, 4, 4, 5\)"):
        as_rgb(torch.rand(1, 4, 4, 5), "effect 'x'")
