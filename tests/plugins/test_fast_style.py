"""Real-time style: the feed-forward networks, training (one process, resume, Ray Train), the
.dkstyle file and the ``fast_style`` effect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamkit.errors import ParameterError
from dreamkit.weights_file import WeightsFileError, load_weights_file, save_weights_file
from dreamkit_style.fast_effect import FastStyle
from dreamkit_style.model import FastStyleModel, load_model, save_model
from dreamkit_style.training import (NOISE_CHANNELS, CropSampler, TrainSettings, Trainer, TrainingError, TrainingLoss,
                                     bf16_kernels, computes_in_bf16, loss_effect, train)
from dreamkit_style.transformer import ARCHITECTURES, MAX_NOISE_CHANNELS, StyleNetwork, tiled_forward

TINY = dict(size=64, batch=2, preview_every=0, checkpoint_every=2)
#: How far two float32 computations of the same network output may differ when only the order of
#: their sums differs (another convolution algorithm or blocking, statistics summed per tile, a
#: batch of one or several): the longest sum is a 3x3 convolution over 128 channels, K = 1152
#: products of O(1) values, whose reordering moves it by at most about K * eps32 = 1152 * 1.19e-7
#: = 1.4e-4 (outputs are in 0..1; instance norm rescales each layer back to O(1)). classic's
#: 128-channel convolutions run as Winograd F(4x4, 3x3) in inference: at 64 channels and more its
#: error stays within the direct sum's bound (tests/ops/test_conv3x3.py), so the same tolerance
#: holds. Its instance norms run as dreamkit.ops.instance_norm in inference (statistics in float64,
#: tests/ops/test_instance_norm.py: well within this). A wrong tiling or rewrite is off by 1e-2
#: and more (the naive-tiles control below).
REORDERED = 1.4e-4


def _randomised(architecture: str, noise_channels: int = 0) -> StyleNetwork:
    """A network whose norms are not the identity (a fresh one's affine is 1, 0) and whose last
    convolution is not zero (a fresh network is the identity: every route would agree)."""
    torch.manual_seed(3)
    network = StyleNetwork(architecture, noise_channels).eval()
    network.output_conv().reset_parameters()
    with torch.no_grad():
        for norm in network.norms():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    return network


@pytest.fixture(scope="module")
def photos(samples) -> list[Path]:
    return [samples / "chelsea.png", samples / "coffee.png"]


@pytest.fixture(scope="module")
def style_image(samples) -> Path:
    return samples / "ihc.png"


def _model(architecture: str = "small", luminance: bool = False, noise_channels: int = 8) -> FastStyleModel:
    palette = {"mean": torch.tensor([[0.5, 0.4, 0.3]]), "covariance": torch.eye(3)[None] * 0.02,
               "weight": torch.ones(1)}
    return FastStyleModel(_randomised(architecture, noise_channels), luminance, palette, torch.zeros(3, 4, 4, dtype=torch.uint8),
                          {"summary": "test model"})


# -- networks --------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("size", [(67, 93), (128, 128)])
@pytest.mark.parametrize("noise_channels", [0, 8])
def test_tiled_forward_equals_untiled(architecture, size, noise_channels):
    network = _randomised(architecture, noise_channels)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = network(x)
        tiled = tiled_forward(network, x, 32)
    assert torch.allclose(tiled, whole, atol=REORDERED, rtol=0), (tiled - whole).abs().max()
    assert all(norm.fixed is None and norm.collect is None for norm in network.norms())
    assert noise_channels == 0 or network.noise_source().origin == (0, 0)


def test_the_inference_noise_is_defined_by_position(monkeypatch):
    """Any window of the field equals that window of the whole, across the tile's repeat too (the
    period shrunk to 8 activations, 32 px, so that small tiles cross it); tiles read from their
    place, and a network stylised in tiles across the repeat equals it untiled."""
    import dreamkit_style.transformer as transformer

    monkeypatch.setattr(transformer, "NOISE_PERIOD", 8)
    network = _randomised("small", 8)
    source = network.noise_source()
    whole = source.noise(1, 20, 30, torch.device("cpu"))
    assert torch.equal(whole[..., :8, :8], whole[..., 8:16, 8:16])  # the repeat
    assert 0.5 < float(whole[..., :8, :8].std()) < 1.5 and not torch.equal(whole[..., :4, :], whole[..., 4:8, :])
    source.origin = (12, 40)  # input pixels: activations (3, 10)
    assert torch.equal(source.noise(2, 9, 11, torch.device("cpu")), whole[..., 3:12, 10:21].expand(2, -1, -1, -1))
    source.origin = (0, 0)
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        untiled, tiled = network(x), tiled_forward(network, x, 24)
        shifted = network(x.roll(4, -1))[..., 4:]  # the noise stays put while the picture moves
    assert torch.allclose(tiled, untiled, atol=REORDERED, rtol=0), (tiled - untiled).abs().max()
    assert (shifted - untiled[..., :-4]).abs().max() > 1e-2  # the control: the noise is read at all


def test_noise_positions_say_where_the_field_is_read():
    """``noise_at`` (a video's carried positions): its own pixels read exactly the fixed field; a
    map shifted by k activations reads the field k further; tiled equals untiled with any map;
    a map of the wrong size is refused; nothing is left behind for the next call."""
    from dreamkit.flow import pixel_grid

    network = _randomised("classic", 8)
    source = network.noise_source()
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(8))
    own = pixel_grid(70, 90)[..., ::4, ::4]  # the padded 72 x 92 image's 18 x 23 activations
    with torch.no_grad():
        assert torch.equal(network(x, noise_at=own), network(x))
        whole = source.noise(1, 18, 40, torch.device("cpu"))
        with source.given(at=own + torch.tensor([0.0, 4 * 5]).view(1, 2, 1, 1) + 0.4):  # fractions round
            assert torch.equal(source.noise(1, 18, 23, torch.device("cpu")), whole[..., 5:28])
        scattered = own + torch.randint(-40, 40, own.shape, generator=torch.Generator().manual_seed(9)) * 4.0
        untiled, tiled = network(x, noise_at=scattered), tiled_forward(network, x, 24, scattered)
        assert torch.allclose(tiled, untiled, atol=REORDERED, rtol=0), (tiled - untiled).abs().max()
        assert (untiled - network(x)).abs().max() > 1e-2  # the control: the map is read at all
        with pytest.raises(ValueError, match="noise positions of shape"):
            network(x, noise_at=own[..., :-1])
    assert source.at is None and source.origin == (0, 0)


def test_training_noise_is_fresh_per_crop_and_splits_like_the_batch():
    """In training each image's noise comes from its own seed: a batch split in two (Ray workers)
    gives each image what the whole batch gives it, and other seeds give other noise."""
    network = _randomised("classic", 8)
    x = torch.rand(2, 3, 40, 44, generator=torch.Generator().manual_seed(7))
    both = network(x, noise_seeds=[11, 12])
    assert torch.allclose(both[1:], network(x[1:], noise_seeds=[12]), atol=REORDERED, rtol=0)
    assert (both[1:] - network(x[1:], noise_seeds=[13])).abs().max() > 1e-2
    assert (both[:1] - network(x[:1])).abs().max() > 1e-2  # not the inference field either
    assert network.noise_source().seeds is None  # nothing left behind for the next call
    with pytest.raises(ValueError, match="2 noise seeds for a batch of 1"):
        network(x[:1], noise_seeds=[1, 2])


def test_tiled_forward_tiles_and_a_broken_norm_would_show():
    network = _randomised("small")
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        whole = network(x)
        tiles = [network(x[..., :48, :]), network(x[..., 48:, :])]  # naive tiles: own statistics each
    naive = torch.cat(tiles, -2)
    assert (naive - whole).abs().max() > 1e-2  # the control: per-tile statistics differ


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("noise_channels", [0, 8])
def test_inference_runs_the_same_function_as_training(architecture, noise_channels):
    """classic's resize-convolutions and last convolution take cheaper exact routes without
    gradients (one 2x2 convolution to the four phases; 3x3 blocks of the 9x9 kernel): the same
    output up to rounding."""
    from dreamkit_style.transformer import _FewChannelsOut, _UpConv

    network = _randomised(architecture, noise_channels)
    x = torch.rand(2, 3, 68, 52, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        fast = network(x)
    with torch.enable_grad():
        direct = network(x).detach()
    assert torch.allclose(fast, direct, atol=REORDERED, rtol=0), (fast - direct).abs().max()
    if architecture == "classic":  # the routes exist there (and a wrong one would show above)
        assert any(isinstance(m, _UpConv) for m in network.modules())
        assert any(isinstance(m, _FewChannelsOut) for m in network.modules())
        for module in (_UpConv(5, 4), _FewChannelsOut(6, 3, 9)):
            y = torch.rand(1, module[-1].in_channels, 11, 14) if isinstance(module, _UpConv) else torch.rand(1, 6, 12, 14)
            with torch.no_grad():
                cheap = module(y)
            assert torch.allclose(cheap, super(type(module), module).forward(y), atol=REORDERED, rtol=0)


def test_network_keeps_any_size_and_batch():
    network = _randomised("small")
    for shape in [(1, 3, 33, 50), (3, 3, 64, 65)]:
        assert network(torch.rand(shape)).shape == shape
    out = network.stylise(torch.rand(1, 3, 40, 40))
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("noise_channels", [0, 8])
def test_a_fresh_network_is_the_identity(architecture, noise_channels):
    """Its last convolution starts at zero: training starts from the photo (in the style's colours,
    the network's input), where the style effect's optimiser starts, and learns what to add."""
    network = StyleNetwork(architecture, noise_channels)
    x = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(network(x, noise_seeds=[1, 2] if noise_channels else None), x)  # training's route
    with torch.no_grad():
        assert torch.equal(network(x), x)  # inference's routes (Winograd, 3x3 blocks, phases)
    out = network(x)
    out.sum().backward()  # and it learns: the last convolution gets a gradient
    assert network.output_conv().weight.grad.abs().sum() > 0


def test_bad_noise_channels_are_refused():
    for bad in (-1, MAX_NOISE_CHANNELS + 1):
        with pytest.raises(ValueError, match=f"noise_channels {bad} is not allowed; expected 0 to {MAX_NOISE_CHANNELS}"):
            StyleNetwork("small", bad)


def test_small_is_a_fraction_of_classic():
    small = sum(p.numel() for p in StyleNetwork("small").parameters())
    classic = sum(p.numel() for p in StyleNetwork("classic").parameters())
    assert small < classic / 20


# -- the model file --------------------------------------------------------------------------
def test_model_file_round_trip(tmp_path):
    model = _model("small", luminance=True)
    path = tmp_path / "m.dkstyle"
    digest = save_model(path, model)
    loaded = load_model(path)
    assert loaded.sha256 == digest and loaded.luminance and loaded.meta["architecture"] == "small"
    assert loaded.network.noise_channels == 8 == loaded.meta["noise_channels"]
    x = torch.rand(1, 3, 40, 52)
    assert torch.equal(loaded.stylise(x), model.stylise(x))


def test_model_files_without_noise_still_load(tmp_path):
    """Files written before networks had noise carry no noise_channels: they load as networks
    without it (their weights fit no other); a value this dreamkit cannot build is refused."""
    model = _model("classic", noise_channels=0)
    path = tmp_path / "old.dkstyle"
    save_model(path, model)
    loaded = load_weights_file(path, "fast_style")
    meta = {k: v for k, v in loaded.meta.items() if k != "noise_channels"}
    save_weights_file(path, "fast_style", loaded.tensors, meta)
    old = load_model(path)
    assert old.network.noise_source() is None and old.network.noise_channels == 0
    x = torch.rand(1, 3, 36, 40)
    assert torch.equal(old.stylise(x), model.stylise(x))
    save_weights_file(path, "fast_style", loaded.tensors, {**meta, "noise_channels": -3})
    with pytest.raises(WeightsFileError, match="noise_channels -3 is not one this dreamkit can build"):
        load_model(path)
    assert b"pickle" not in path.read_bytes()[:8] and path.read_bytes()[8:9] == b"{"  # a JSON header: safetensors


def test_tampered_model_file_is_refused(tmp_path, cli):
    path = tmp_path / "m.dkstyle"
    save_model(path, _model())
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="do not match the digest"):
        load_model(path)
    code, _, err = cli("run", tmp_path / "x.png", "-e", f"fast_style:model={path}", "-o", tmp_path / "out")
    assert code == 2 and "parameter 'model'" in err and "digest" in err


def test_files_of_another_kind_are_refused(tmp_path, samples):
    png = samples / "chelsea.png"
    with pytest.raises(WeightsFileError, match="not a dreamkit weights file"):
        load_model(png)
    pth = tmp_path / "net.pth"
    torch.save({"w": torch.ones(2)}, pth)
    with pytest.raises(WeightsFileError, match="not a dreamkit weights file"):
        load_model(pth)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, plain)
    with pytest.raises(WeightsFileError, match="without dreamkit's metadata"):
        load_model(plain)
    other = tmp_path / "other.dkstyle"
    save_weights_file(other, "something_else", {"w": torch.ones(2)}, {})
    with pytest.raises(WeightsFileError, match="'something_else' weights file, not a 'fast_style'"):
        load_model(other)
    with pytest.raises(ParameterError, match="effect 'fast_style': parameter 'model'.*not a dreamkit weights file"):
        FastStyle(model=str(png)).check()


def test_weights_file_checks_metadata_too(tmp_path):
    path = tmp_path / "m.dkstyle"
    save_weights_file(path, "fast_style", {"w": torch.ones(2)}, {"architecture": "small"})
    data = path.read_bytes().replace(b'\\"small\\"', b'\\"tiny!\\"')
    path.write_bytes(data)
    with pytest.raises(WeightsFileError, match="digest"):
        load_weights_file(path)


# -- the effect ------------------------------------------------------------------------------
class _Context:
    """What the effect uses of a run context, for calling it directly."""

    previous_input = previous_output = None

    def __init__(self):
        self.state = {}

    def add_result(self, record):
        self.record = record


def test_batch_apply_equals_one_by_one(tmp_path):
    path = tmp_path / "m.dkstyle"
    save_model(path, _model())
    effect = FastStyle(model=str(path), strength=0.7)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, 48, 64, generator=g), torch.rand(1, 3, 40, 40, generator=g),
              torch.rand(1, 3, 48, 64, generator=g)]

    contexts = [_Context() for _ in images]
    together = effect.apply_batch(images, contexts)
    for image, out in zip(images, together):
        alone = effect.apply(image, _Context())
        # one forward for a batch of two, or two of one: the same per-image arithmetic up to the
        # convolution's blocking
        assert out.shape == image.shape
        assert torch.allclose(out, alone, atol=REORDERED, rtol=0), (out - alone).abs().max()
    assert all(c.record["tile_size"] is None for c in contexts)


def test_tiled_apply_equals_untiled_through_the_effect(tmp_path):
    path = tmp_path / "m.dkstyle"
    save_model(path, _model("classic"))
    image = torch.rand(1, 3, 150, 110, generator=torch.Generator().manual_seed(2))

    whole, tiled = _Context(), _Context()
    a = FastStyle(model=str(path), tile_size=0).apply(image, whole)
    b = FastStyle(model=str(path), tile_size=48).apply(image, tiled)
    assert tiled.record["tile_size"] == 48 and whole.record["tile_size"] is None
    assert torch.allclose(a, b, atol=REORDERED, rtol=0), (a - b).abs().max()
    # the memory budget alone makes it tile, with the same result
    budget = _Context()
    save_model(tmp_path / "small.dkstyle", _model("small"))
    big = torch.nn.functional.interpolate(image, scale_factor=8)  # 1200x880 at ~72 B/px: over 64 MiB
    small = FastStyle(model=str(tmp_path / "small.dkstyle"))
    c = FastStyle(model=str(tmp_path / "small.dkstyle"), memory_mb=64).apply(big, budget)
    assert budget.record["tile_size"] is not None and c.shape[-2:] == (1200, 880)
    assert torch.allclose(c, small.apply(big, _Context()), atol=REORDERED, rtol=0)


def test_model_by_name_from_the_models_folder(tmp_path, monkeypatch, cli, samples):
    monkeypatch.setenv("DREAMKIT_HOME", str(tmp_path / "home"))
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    save_model(models / "ink.dkstyle", _model())
    (models / "broken.dkstyle").write_bytes(b"not a model")
    code, out, _ = cli("weights", "list")
    assert code == 0 and "ink.dkstyle" in out and "fast_style" in out and "test model" in out
    assert "broken.dkstyle" in out and "ERROR" in out
    code, out, _ = cli("weights", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out) if row.get("model")}
    assert rows["ink.dkstyle"]["kind"] == "fast_style" and "error" in rows["broken.dkstyle"]
    photo = tmp_path / "photo.png"
    from dreamkit.io import save_image

    save_image(torch.rand(1, 3, 32, 32), photo)
    code, out, err = cli("run", photo, "-e", "fast_style:model=ink.dkstyle", "-o", tmp_path / "out", "--json")
    assert code == 0, err
    from dreamkit.io import read_recipe

    resources = read_recipe(tmp_path / "out" / "photo.png")["resources"]
    assert resources[0]["param"] == "model" and resources[0]["sha256"] == load_model(models / "ink.dkstyle").sha256


# -- training --------------------------------------------------------------------------------
def test_crops_depend_only_on_seed_step_and_position(photos):
    a, b = CropSampler(photos, 64, seed=1), CropSampler(photos, 64, seed=1)
    assert torch.equal(a.batch(3, range(4))[2:], b.batch(3, range(2, 4)))  # a worker's share = the same crops
    assert not torch.equal(a.batch(3, range(2)), a.batch(4, range(2)))
    assert not torch.equal(a.batch(3, range(2)), CropSampler(photos, 64, seed=2).batch(3, range(2)))


def test_noise_by_default_where_the_architecture_uses_it():
    assert TrainSettings(architecture="classic").noise == NOISE_CHANNELS["classic"] > 0
    assert TrainSettings(architecture="small").noise == NOISE_CHANNELS["small"] == 0
    assert TrainSettings(architecture="small", noise=4).noise == 4


def test_training_noise_depends_only_on_seed_step_and_position(dreamkit_host, style_image):
    settings = TrainSettings(steps=4, noise=8, **TINY)
    loss = TrainingLoss(loss_effect({"style": [str(style_image)]}), dreamkit_host, torch.device("cpu"),
                        settings.size, settings.style_side)
    trainer = Trainer.create(settings, loss, torch.device("cpu"))
    seeds = trainer.noise_seeds(range(4))
    assert trainer.noise_seeds(range(2, 4)) == seeds[2:] and len(set(seeds)) == 4  # a worker's share
    trainer.step = 1
    assert not set(trainer.noise_seeds(range(4))) & set(seeds)
    other = Trainer.create(TrainSettings(steps=4, seed=5, noise=8, **TINY), loss, torch.device("cpu"))
    assert not set(other.noise_seeds(range(4))) & set(seeds)
    assert Trainer.create(TrainSettings(steps=4, noise=0, **TINY), loss, torch.device("cpu")).noise_seeds(range(4)) is None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_a_few_steps_lowers_the_loss(dreamkit_host, photos, style_image, precision):
    """In float32, and with the network computed in bfloat16 (where the CPU has its kernels)."""
    if precision == "bf16" and not bf16_kernels(torch.device("cpu")):
        pytest.skip("this CPU has no bfloat16 convolution kernels")
    torch.manual_seed(0)
    effect = loss_effect({"style": [str(style_image)]})
    # From the identity (a fresh network returns its input), Adam's first steps on the zero last
    # layer raise the loss for a few steps (35 -> 65 at step 5 here), then it falls (18.0 at 60).
    settings = TrainSettings(architecture="small", steps=60, lr=1e-3, precision=precision, **TINY)
    loss = TrainingLoss(effect, dreamkit_host, torch.device("cpu"), settings.size, settings.style_side)
    trainer = Trainer.create(settings, loss, torch.device("cpu"))
    assert trainer.bf16 == (precision == "bf16")
    sampler = CropSampler(photos, settings.size, seed=0)
    fixed = sampler.batch(1000, range(4))  # crops training never sees

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(loss(trainer.network(loss.network_input(fixed)), loss.content_target(fixed))[0])

    before = held_out_loss()
    for step in range(settings.steps):
        trainer.run_step(sampler.batch(step, range(settings.batch)))
    after = held_out_loss()
    assert after < 0.7 * before, after / before  # 0.515 here in fp32, 0.518 in bf16


def test_the_training_loss_is_the_style_effects_loss(dreamkit_host, samples, style_image):
    """Term for term: the network learns the measure the bench holds it to (effect.evaluate). A
    layer normalised another way (the effect floors mean(T²) at 1e-12, which MobileNetV2's smoothed
    features.14 reaches) made them differ 4.6x on an optimised image."""
    from dreamkit import load_image

    effect = loss_effect({"style": [str(style_image)]})
    photo = torch.nn.functional.interpolate(load_image(samples / "astronaut.png"), size=(128, 128), mode="area")
    # the style's Grams at the photo's size on both sides (the effect: a style shrunk to the output)
    loss = TrainingLoss(effect, dreamkit_host, torch.device("cpu"), 128, style_side=128)
    torch.manual_seed(0)
    for image in (photo, (photo + 0.2 * torch.randn_like(photo)).clamp(0, 1)):
        expected = effect.evaluate(image, photo, dreamkit_host)
        _, parts = loss(image, loss.content_target(photo))
        # float32 sums of at most 160 x 32² products, in another order: far inside rel 1e-3
        assert float(parts["style"]) == pytest.approx(expected.style, rel=1e-3)
        assert float(parts["content"]) == pytest.approx(expected.content, rel=1e-3, abs=1e-6)


def test_the_loss_terms_are_each_layers_share_of_it(dreamkit_host, samples, style_image):
    """TrainingLoss.terms: one weighted term per style and per content layer, adding up to the
    loss's parts; each style term is the effect's style loss with that layer alone (its weight
    kept): what bench/fast_style.py prints per layer is the measure's own breakdown."""
    from dreamkit import load_image

    effect = loss_effect({"style": [str(style_image)]})
    photo = torch.nn.functional.interpolate(load_image(samples / "astronaut.png"), size=(96, 96), mode="area")
    loss = TrainingLoss(effect, dreamkit_host, torch.device("cpu"), 96, style_side=96)
    torch.manual_seed(0)
    image = (photo + 0.2 * torch.randn_like(photo)).clamp(0, 1)
    style_terms, content_terms, tv = loss.terms(image, loss.content_target(photo))
    _, parts = loss(image, loss.content_target(photo))
    assert list(style_terms) == list(loss.loss.style_layers) and len(style_terms) > 1
    assert list(content_terms) == list(loss.loss.content_layers) and content_terms
    # the same float32 additions in the same order as the loss's own sum
    assert float(sum(style_terms.values())) == pytest.approx(float(parts["style"]), rel=1e-6)
    assert float(sum(content_terms.values())) == pytest.approx(float(parts["content"]), rel=1e-6)
    assert float(tv) == float(parts["tv"])
    for layer, weight in loss.loss.style_layers.items():
        alone = loss_effect({"style": [str(style_image)], "style_layers": [layer], "style_layer_weights": [weight]})
        # float32 sums in another order (see the test above): far inside rel 1e-3
        assert float(style_terms[layer]) == pytest.approx(alone.evaluate(image, photo, dreamkit_host).style, rel=1e-3)


def test_the_precision_is_as_asked_or_measured(dreamkit_host, style_image, monkeypatch):
    """fp32 and bf16 as asked (bf16 refused where the device has no bf16 kernels; float64 runs never
    in bf16); auto: what dreamkit.precision measures for this network at the training size."""
    with pytest.raises(TrainingError, match="--precision 'fp16' is not allowed; expected one of auto, fp32, bf16"):
        TrainSettings(precision="fp16")
    network = StyleNetwork("classic", 2)
    cpu = torch.device("cpu")
    assert computes_in_bf16(TrainSettings(precision="fp32", **TINY), network, cpu) == (False, "fp32 as asked")
    assert computes_in_bf16(TrainSettings(precision="bf16", dtype="float64", **TINY), network, cpu)[0] is False
    monkeypatch.setattr("dreamkit_style.training.bf16_kernels", lambda device: False)
    with pytest.raises(TrainingError, match="--precision bf16 is not allowed here: this cpu has no bfloat16 convolution"):
        computes_in_bf16(TrainSettings(precision="bf16", **TINY), network, cpu)
    asked = []

    def measured(device, key, time_pass):
        seconds = (time_pass(False), time_pass(True))  # each precision's pass runs
        asked.append(key)
        assert all(s > 0 for s in seconds)
        return True, "bf16 chosen: measured"

    monkeypatch.setattr("dreamkit.precision.bf16_pays", measured)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert computes_in_bf16(TrainSettings(architecture="classic", noise=2, **TINY), network, cpu) == \
        (True, "bf16 chosen: measured")
    assert asked == ["style-network-training|classic|noise=2|64px"]
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())  # measured on a copy
    assert network.body[0][0][1].weight.grad is None
    loss = TrainingLoss(loss_effect({"style": [str(style_image)]}), dreamkit_host, cpu, 64, 64)
    trainer = Trainer.create(TrainSettings(architecture="classic", noise=2, **TINY), loss, cpu)
    assert trainer.bf16 and trainer.precision_reason == "bf16 chosen: measured"


def test_bf16_asked_where_there_are_no_bf16_kernels_is_exit_2(cli, photos, style_image, tmp_path, monkeypatch):
    monkeypatch.setattr("dreamkit_style.training.bf16_kernels", lambda device: False)
    code, _, err = cli("style", "train", "--style", style_image, "--images", *photos, "-o", tmp_path / "m.dkstyle",
                       "--steps", 1, "--size", 64, "--batch", 2, "--precision", "bf16", "-q")
    assert code == 2 and "--precision bf16 is not allowed here" in err and "use auto or fp32" in err
    assert not any(tmp_path.iterdir())  # no model, no checkpoint folder


def test_a_resumed_run_keeps_the_precision_it_started_in(dreamkit_host, photos, style_image, tmp_path, monkeypatch):
    """auto may measure otherwise on a later run; the checkpoint's choice wins, and the model file
    says what the network was computed in."""
    effect = loss_effect({"style": [str(style_image)]})
    output = tmp_path / "ink.dkstyle"
    settings = TrainSettings(steps=3, **TINY)
    monkeypatch.setattr("dreamkit.precision.bf16_pays", lambda device, key, time_pass: (False, "measured: fp32"))

    def interrupt(trainer):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    first = train(effect, photos, output, settings, host=dreamkit_host, device=torch.device("cpu"), on_step=interrupt)
    assert not first.finished and first.precision == "measured: fp32"
    monkeypatch.setattr("dreamkit.precision.bf16_pays", lambda device, key, time_pass: (True, "measured: bf16"))
    second = train(effect, photos, output, settings, host=dreamkit_host, device=torch.device("cpu"))
    assert second.finished and second.resumed_from == 2 and second.precision == "measured: fp32"
    assert load_model(output).meta["training"]["computed_in"] == "fp32"


def test_training_writes_model_and_preview(dreamkit_host, photos, style_image, tmp_path):
    effect = loss_effect({"style": [str(style_image)], "tv_weight": 10.0})
    output = tmp_path / "ink.dkstyle"
    result = train(effect, photos, output, TrainSettings(steps=2, size=64, batch=2, preview_every=1),
                   host=dreamkit_host, device=torch.device("cpu"))
    assert result.finished and result.step == 2 and len(result.history) == 2
    model = load_model(output)
    assert model.meta["training"]["steps_done"] == 2 and model.meta["loss"]["tv_weight"] == 10.0
    assert model.meta["style"][0]["name"] == "ihc.png" and len(model.meta["style"][0]["sha256"]) == 64
    assert model.thumbnail.dtype == torch.uint8 and max(model.thumbnail.shape[-2:]) == 128
    assert (tmp_path / "ink.preview.jpg").is_file() and not (tmp_path / "ink.dkstyle.train").exists()


def _train_cli(args, cwd, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dreamkit", "style", "train", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_resume_after_a_kill_continues_from_the_checkpoint(photos, style_image, tmp_path):
    """A run killed (SIGKILL) after a checkpoint, run again, ends with exactly the weights and loss of
    a run never interrupted: the crops depend only on the step, the checkpoint holds the optimiser."""
    # (--precision fp32: two runs started at once would each measure auto's choice, and might differ)
    args = ["--style", style_image, "--images", *photos, "--steps", 40, "--size", 64, "--batch", 2,
            "--checkpoint-every", 2, "--preview-every", 0, "--json", "-q", "--precision", "fp32"]
    whole = _train_cli([*args, "-o", "whole.dkstyle"], tmp_path)
    killed = _train_cli([*args, "-o", "killed.dkstyle"], tmp_path)
    checkpoint = tmp_path / "killed.dkstyle.train" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed.dkstyle").exists()
    stopped_at = torch.load(checkpoint, weights_only=True)["step"]
    resumed = _train_cli([*args, "-o", "killed.dkstyle"], tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    record = json.loads(out)
    assert record["resumed_from"] == stopped_at and 0 < stopped_at < 40 and record["steps"] == 40
    assert record["precision"] == "fp32 as asked"
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err
    assert record["loss"] == json.loads(whole_out)["loss"]
    a, b = load_model(tmp_path / "whole.dkstyle"), load_model(tmp_path / "killed.dkstyle")
    assert all(torch.equal(x, y) for x, y in zip(a.network.state_dict().values(), b.network.state_dict().values()))


def test_the_learning_rate_anneals_to_zero_over_the_run(dreamkit_host, photos, style_image):
    settings = TrainSettings(steps=8, lr=4e-3, **TINY)
    rates = [settings.learning_rate(step) for step in range(settings.steps + 1)]
    assert rates[0] == 4e-3 and rates[4] == pytest.approx(2e-3) and rates[8] == 0
    assert all(a > b for a, b in zip(rates, rates[1:]))
    loss = TrainingLoss(loss_effect({"style": [str(style_image)]}), dreamkit_host, torch.device("cpu"),
                        settings.size, settings.style_side)
    trainer = Trainer.create(settings, loss, torch.device("cpu"))
    sampler = CropSampler(photos, settings.size, seed=0)
    for step in range(3):  # each step takes the rate of its own index
        trainer.run_step(sampler.batch(step, range(settings.batch)))
        assert trainer.optimizer.param_groups[0]["lr"] == rates[step]


def test_interrupt_writes_a_checkpoint_and_a_rerun_resumes(dreamkit_host, photos, style_image, tmp_path):
    effect = loss_effect({"style": [str(style_image)]})
    output = tmp_path / "ink.dkstyle"
    settings = TrainSettings(steps=5, **TINY)

    def interrupt(trainer):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the step finishes, a checkpoint is written

    first = train(effect, photos, output, settings, host=dreamkit_host, device=torch.device("cpu"), on_step=interrupt)
    assert not first.finished and first.step == 3 and not output.exists()
    second = train(effect, photos, output, settings, host=dreamkit_host, device=torch.device("cpu"))
    assert second.finished and second.resumed_from == 3 and second.step == 5
    assert [h[0] for h in second.history] == [1, 2, 3, 4, 5]  # the history goes on from the checkpoint


def test_a_checkpoint_of_other_settings_is_not_resumed(dreamkit_host, photos, style_image, tmp_path, cli):
    args = ["style", "train", "--style", style_image, "--images", *photos, "-o", tmp_path / "m.dkstyle", "--steps", 2,
            "--size", 64, "--batch", 2, "--preview-every", 0, "-q"]
    effect = loss_effect({"style": [str(style_image)]})
    train(effect, photos, tmp_path / "m.dkstyle", TrainSettings(steps=5, **TINY), host=dreamkit_host,
          device=torch.device("cpu"), on_step=lambda t: os.kill(os.getpid(), signal.SIGINT) if t.step == 2 else None)
    code, _, err = cli(*args[:-1], "--lr", "0.01", "-q")
    assert code == 2 and "other lr" in err and "--overwrite" in err
    code, _, err = cli(*args, "--noise", 3)  # the default of small, the architecture here: 0
    assert code == 2 and "other noise" in err
    code, _, err = cli(*args, "--precision", "fp32")  # the default: auto
    assert code == 2 and "other precision" in err
    code, _, err = cli(*args, "--overwrite")
    assert code == 0, err
    code, _, err = cli(*args)
    assert code == 2 and "exists" in err


@pytest.mark.parametrize("args, message", [
    (["--style", "missing.png"], "parameter 'style'"),
    (["--images", "empty"], "folder holds no images"),
    (["--images", "notes.txt"], "no readable training images"),
    (["--loss", "masks=[a.png]"], "masks cannot be set for training"),
    (["--loss", "color=match"], "color=match is not allowed"),
    (["--loss", "style_weight=-1"], "style_weight"),
    (["--architecture", "huge"], "invalid choice"),
    (["--size", "16"], "--size 16 is not allowed"),
    (["--noise", "-1"], "--noise -1 is not allowed; expected an integer from 0 to 64"),
    (["--noise", "65"], "--noise 65 is not allowed; expected an integer from 0 to 64"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--engine", "ray", "--workers", "3"], "does not split evenly over 3 workers"),
    (["-o", "model.pth"], "ends in .dkstyle"),
])
def test_bad_training_input_is_exit_2(args, message, cli, tmp_path, photos, style_image, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    base = {"--style": str(style_image), "--images": str(photos[0]), "-o": "m.dkstyle", "--batch": "2"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    code, _, err = cli("style", "train", *argv, "--steps", 1, "--size", given.get("--size", 64), "-q")
    assert code == 2, err
    assert message in err
    assert not (tmp_path / "m.dkstyle").exists() and not (tmp_path / "model.pth").exists()


@pytest.mark.slow
def test_ray_train_matches_one_process_and_survives_a_killed_worker(dreamkit_host, photos, style_image, tmp_path):
    """Two Ray Train workers (DDP, gloo) with half the global batch each follow the single process's
    loss curve; the last worker is killed (SIGKILL) at step 3, Ray restarts the group from the
    checkpoint of step 2, and the curve is still the same. In float64 the engines differ only in
    the order of float sums (DDP's all-reduce, per-worker batches): a few ulps per sum, ~1e-15
    relative here; 1e-10 leaves that room many times over while any real difference (another crop,
    a lost step, a gradient not averaged) moves the loss by percents."""
    pytest.importorskip("ray.train")
    import ray

    from dreamkit_style.ray_training import train_on_ray

    if ray.is_initialized():
        pytest.skip("a Ray session of another test is still connected")
    effect = loss_effect({"style": [str(style_image)]})
    settings = TrainSettings(steps=4, size=64, batch=2, preview_every=2, checkpoint_every=2, dtype="float64",
                             noise=8)  # each worker draws its crops' noise as one process does
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = train(effect, photos, tmp_path / "alone.dkstyle", settings, host=dreamkit_host, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    on_ray = train_on_ray(effect, photos, tmp_path / "ray.dkstyle", settings, workers=2, quiet=True, threads=1,
                          fail_at_step=3)
    assert on_ray.finished and on_ray.restarts == [2]  # the kill happened, and the run came back from step 2
    assert [h[0] for h in on_ray.history] == [1, 2, 3, 4]
    expected, got = torch.tensor(alone.history), torch.tensor(on_ray.history)
    assert torch.allclose(got, expected, rtol=1e-10, atol=0), (got - expected).abs().max()
    model = load_model(tmp_path / "ray.dkstyle")
    assert model.meta["training"]["steps_done"] == 4 and model.sha256 == on_ray.model_sha256
    assert (tmp_path / "ray.preview.jpg").is_file() and not (tmp_path / "ray.dkstyle.train").exists()


def test_noise_positions_are_carried_along_the_motion():
    """A pan of 4.5 px a frame: each pixel reads the field where its surface was first seen,
    fractions included (they add up: two frames move it 9 px, not 8 or 10); the strip that comes
    in reads fresh places every frame (not the same strip again: streaks); a still frame or a
    frame of another size starts again from its own pixels."""
    import numpy as np

    from dreamkit.flow import Motion, pixel_grid, reliable
    from dreamkit_style.fast_effect import FRESH_STEP, carried_noise_positions
    from dreamkit_style.transformer import NOISE_PERIOD

    image = torch.zeros(1, 3, 24, 40)
    backward = np.zeros((24, 40, 2), np.float32)
    backward[..., 0] = 4.5  # pixel x of frame t was at x + 4.5 in frame t-1
    pan = Motion(backward, reliable(backward, -backward))
    state: dict = {}
    own = pixel_grid(24, 40)
    assert torch.equal(carried_noise_positions(state, image, None, 4), own[..., ::4, ::4])
    carried_noise_positions(state, image, pan, 4)
    positions = carried_noise_positions(state, image, pan, 4)
    full = state["fast_style.noise_at"]
    # Columns 0-29: their surface was in the first frame (column 30 came from between a carried
    # column and frame 1's fresh strip).
    torch.testing.assert_close(full[..., :30], own[..., 9:39], atol=1e-3, rtol=0)
    assert torch.equal(positions, full[..., ::4, ::4])
    fresh = own[..., -4:] + torch.tensor([step * 2 % NOISE_PERIOD * 4.0 for step in FRESH_STEP]).view(1, 2, 1, 1)
    assert torch.equal(full[..., -4:], fresh)  # not frame 1's strip: that moved 4.5 px on
    assert carried_noise_positions({**state}, torch.zeros(1, 3, 24, 44), pan, 4).shape[-1] == 11
    distrusted = {**state}  # a motion boundary lasts: fresh noise there would flicker every frame
    carried_noise_positions(distrusted, image, Motion(backward, torch.zeros(24, 40)), 4)
    carried_noise_positions(state, image, pan, 4)
    assert torch.equal(distrusted["fast_style.noise_at"], state["fast_style.noise_at"])
    long_run = {**state, "fast_style.noise_frames": 10 ** 7}  # fresh places stay within a period
    carried_noise_positions(long_run, image, pan, 4)
    assert float(long_run["fast_style.noise_at"].max()) < NOISE_PERIOD * 4 + 40
    assert torch.equal(carried_noise_positions(state, image, None, 4), own[..., ::4, ::4])


def test_a_zoom_in_draws_the_noise_afresh_before_its_grain_doubles():
    """A zoom in of 1.1x a frame about the centre: the carried positions close up 1.1x a frame,
    and once closer than MIN_SPACING (frame 8: 1.1^-8 = 0.47) the frame reads fresh places."""
    import numpy as np

    from dreamkit.flow import Motion, pixel_grid, reliable
    from dreamkit_style.fast_effect import MIN_SPACING, _spacing, carried_noise_positions

    own = pixel_grid(41, 41)
    backward = ((own[0] - 20) / 1.1 + 20 - own[0]).permute(1, 2, 0).flip(-1).numpy().astype(np.float32)
    forward = ((own[0] - 20) * 1.1 + 20 - own[0]).permute(1, 2, 0).flip(-1).numpy().astype(np.float32)
    zoom = Motion(backward, reliable(backward, forward))
    image, state = torch.zeros(1, 3, 41, 41), {}
    carried_noise_positions(state, image, None, 4)
    spacings = []
    for _ in range(9):
        carried_noise_positions(state, image, zoom, 4)
        spacings.append(float(_spacing(state["fast_style.noise_at"])[0, 15:26, 15:26].median()))
    assert spacings[0] == pytest.approx(1 / 1.1, abs=1e-3) and spacings[6] == pytest.approx(1.1 ** -7, abs=1e-3)
    assert min(spacings) >= MIN_SPACING and spacings[7] == pytest.approx(1.0, abs=1e-3)  # drawn afresh


def test_in_a_video_the_noise_moves_with_the_picture(dreamkit_host, samples, tmp_path, monkeypatch):
    """A pan of 4 px a frame through a network with a noise source: the first frame is the
    single image's result, and the frames flicker far less than with the noise fixed to the frame
    (the grain standing still while the picture moves under it)."""
    pytest.importorskip("cv2")
    from dreamkit import load_image
    from dreamkit.pipeline import Pipeline
    from dreamkit_style import fast_effect

    path = tmp_path / "m.dkstyle"
    save_model(path, _model("classic"))
    photo = load_image(samples / "chelsea.png")[..., 50:146, 100:260]
    frames = [photo[..., :, 4 * t:4 * t + 128].contiguous() for t in range(5)]

    def run():
        result = Pipeline([FastStyle(model=str(path))]).run(frames, device="cpu", host=dreamkit_host)
        return [frame.image for frame in result.frames]

    carried = run()
    assert torch.equal(carried[0], FastStyle(model=str(path)).apply(frames[0], _Context()))
    monkeypatch.setattr(fast_effect, "carried_noise_positions", lambda *args: None)  # the fixed field
    fixed = run()
    assert _warping_error(frames, carried) < 0.5 * _warping_error(frames, fixed)  # 0.35 here


def _warping_error(frames_in, frames_out) -> float:
    """Mean |out_t - out_{t-1} moved along the motion| where the motion is trusted and the input
    did not change: the flicker a viewer sees."""
    from dreamkit.flow import Motion
    from dreamkit_style.effect import CHANGED

    total = count = 0.0
    for t in range(1, len(frames_in)):
        motion = Motion.between(frames_in[t - 1], frames_in[t])
        held = ((frames_in[t] - motion.follow(frames_in[t - 1])).abs().amax(1, keepdim=True) <= CHANGED).float()
        held = held * motion.trusted.float()[None, None]
        total += float(((frames_out[t] - motion.follow(frames_out[t - 1])).abs() * held).sum())
        count += float(held.sum()) * 3
    return total / count


def test_video_frames_follow_the_motion(dreamkit_host, samples, tmp_path):
    """A pan of 3 px a frame (not a multiple of the network's stride: its texture shifts): with
    ``temporal`` the frames flicker clearly less than stylised one by one (temporal=0, which is
    exactly each frame alone)."""
    pytest.importorskip("cv2")
    from dreamkit import load_image
    from dreamkit.pipeline import Pipeline

    path = tmp_path / "m.dkstyle"
    save_model(path, _model("small"))
    photo = load_image(samples / "chelsea.png")[..., 50:146, 100:260]
    frames = [photo[..., :, 3 * t:3 * t + 128].contiguous() for t in range(5)]

    def run(temporal):
        result = Pipeline([FastStyle(model=str(path), temporal=temporal)]).run(frames, device="cpu", host=dreamkit_host)
        return [frame.image for frame in result.frames]

    alone, followed = run(0.0), run(0.5)
    single = [FastStyle(model=str(path), temporal=0.0).apply_batch([f], [_Context()])[0] for f in frames]
    assert all(torch.equal(a, s) for a, s in zip(alone, single))
    assert not FastStyle(model=str(path), temporal=0.0).sequential and FastStyle(model=str(path)).sequential
    assert _warping_error(frames, followed) < 0.75 * _warping_error(frames, alone)  # 0.46 here


def test_the_web_page_offers_the_models_folder(dreamkit_host, tmp_path, monkeypatch, samples):
    pytest.importorskip("fastapi")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from dreamkit_web.app import ServerSettings, create_app

    monkeypatch.setenv("DREAMKIT_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    save_model(tmp_path / "home" / "models" / "ink.dkstyle", _model())
    settings = ServerSettings(allow_hosts=("testserver",), device="cpu")
    client = TestClient(create_app(settings, host=dreamkit_host))
    client.headers["X-Dreamkit-Token"] = settings.token
    listed = client.get("/api/models").json()
    assert listed == [{"name": "ink.dkstyle", "kind": "fast_style", "summary": "test model"}]
    assert "path" not in listed[0]  # names only: paths stay on the server
    photo = ("photo.png", (samples / "coffee.png").read_bytes(), "image/png")

    def submit(model):
        pipeline = {"steps": [{"effect": "fast_style", "params": {"model": model}}]}
        return client.post("/api/jobs", data={"pipeline": json.dumps(pipeline)}, files={"image": photo})

    assert submit("model:ink.dkstyle").status_code == 201
    refused = submit("model:nope.dkstyle")
    assert refused.status_code == 400 and "model:ink.dkstyle" in refused.text
    assert submit(str(tmp_path / "home" / "models" / "ink.dkstyle")).status_code == 400  # a server path: never


def test_a_missing_model_says_where_it_looked(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DREAMKIT_HOME", str(tmp_path / "home"))
    code, _, err = cli("run", tmp_path / "photo.png", "-e", "fast_style:model=nope.dkstyle", "-o", tmp_path / "out")
    assert code == 2 and "parameter 'model'" in err and "no such file" in err and str(tmp_path / "home" / "models") in err
    code, _, err = cli("run", tmp_path / "photo.png", "-e", "fast_style", "-o", tmp_path / "out")
    assert code == 2 and "give a trained style network" in err
    assert not (tmp_path / "out").exists()
