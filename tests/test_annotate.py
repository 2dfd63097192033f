"""dreamkit.annotate: boxes, points and panels drawn readably at any size, in stable colours."""

import pytest
import torch

from dreamkit.annotate import Box, draw_boxes, draw_panel, label_colour, scale_for


def test_label_colours_are_stable_and_distinct():
    assert label_colour("dog") == label_colour("dog")
    labels = ["person", "dog", "cat", "car", "face", "bicycle"]
    assert len({label_colour(label) for label in labels}) == len(labels)
    assert all(0 <= c <= 255 for label in labels for c in label_colour(label))


def test_boxes_change_only_their_outline_caption_and_points():
    image = torch.full((1, 3, 200, 300), 0.5)
    drawn = draw_boxes(image, [Box([100, 80, 200, 160], "dog", "dog 0.93", [(150, 120)])])
    changed = (drawn - image).abs().amax(dim=1)[0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert rows.min() >= 80 - 30 and rows.max() <= 161 and cols.min() >= 99 and cols.max() <= 201
    assert changed[120, 150]  # the point
    assert not changed[120, 130]  # inside the box, away from edges and the point
    colour = torch.tensor(label_colour("dog")) / 255
    assert torch.allclose(drawn[0, :, 120, 100], colour, atol=1 / 255)  # left edge in the label's colour
    assert torch.equal(drawn[..., :, :90], image[..., :, :90])  # untouched pixels keep full precision


def test_caption_moves_inside_when_the_box_touches_the_top():
    image = torch.zeros(1, 3, 100, 100)
    drawn = draw_boxes(image, [Box([10, 0, 60, 50], "cat")])
    assert (drawn != image).any(dim=1)[0, 55:].sum() == 0  # nothing drawn below the box
    assert (drawn != image).any(dim=1)[0, 2:10, 15:30].any()  # the tab sits inside the box


@pytest.mark.parametrize("side", [24, 4000])
def test_text_scales_with_the_image(side):
    image = torch.ones(1, 3, side, side)
    drawn = draw_panel(image, ["Egyptian cat 72%", "tabby 13%"])
    rows = torch.nonzero((drawn != image).any(dim=1)[0].any(dim=1)).flatten()
    assert rows.max() == side - 1  # bottom-left by default
    if side == 24:  # text never shrinks below 12 px: the panel fills a tiny image
        assert rows.min() == 0
    else:  # two lines of text of the base size (125 px here), in the bottom quarter
        assert side * 3 / 4 < rows.min() <= side - 2 * scale_for(side, side)


def test_panel_top_left_and_bad_corner():
    image = torch.ones(1, 3, 300, 300)
    rows = torch.nonzero((draw_panel(image, ["x"], corner="top-left") != image).any(dim=1)[0].any(dim=1)).flatten()
    assert rows.min() == 0 and rows.max() < 60
    with pytest.raises(ValueError, match="corner 'middle' is not allowed"):
        draw_panel(image, ["x"], corner="middle")


def test_draws_keep_the_device_and_dtype():
    image = torch.rand(1, 3, 40, 50, dtype=torch.float64)
    out = draw_boxes(image, [])
    assert out.dtype == torch.float64 and torch.equal(out, image)
