"""Backbones, layer names, the frozen feature extractor, and runtime tuning."""

import copy

import pytest
import torch
import torchvision
from PIL import Image

from dreamkit.errors import DreamkitError, WeightsError
from dreamkit.models import (FeatureExtractor, backbone_names, fold_batchnorm, layer_aliases, list_layers,
                             load_backbone, resolve_layer)
from dreamkit.runtime import configure, is_glibc_linux, keep_freed_memory

MOBILENET = "mobilenet_v2.IMAGENET1K_V1"
REAL_CACHE = __import__("dreamkit.weights", fromlist=["cache_dir"]).cache_dir()  # before any test hides it


@pytest.fixture(scope="module")
def reference_mobilenet():
    """The unmodified torchvision model with the same verified weights."""
    from dreamkit import PluginHost

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(PluginHost().weights.load_state_dict(MOBILENET, fetch=False))
    return model.eval()


def test_backbone_names_cover_the_usual_ones():
    assert {"mobilenet_v2", "vgg19", "vgg16", "googlenet", "inception_v3", "resnet50"} <= set(backbone_names())


def test_vgg_aliases_follow_the_usual_convention():
    aliases = layer_aliases("vgg19")
    assert aliases["conv1_1"] == "features.0" and aliases["relu1_1"] == "features.1"
    assert aliases["relu4_2"] == "features.22" and aliases["pool5"] == "features.36"
    assert layer_aliases("vgg16")["relu5_3"] == "features.29"
    layers = {info.path: info for info in list_layers("vgg19")}
    assert layers["features.22"].alias == "relu4_2" and layers["features.22"].kind == "ReLU"
    assert layer_aliases("mobilenet_v2") == {}


def test_layer_names_and_errors():
    assert resolve_layer("mobilenet_v2", "features.7") == "features.7"
    assert resolve_layer("vgg19", "relu3_1") == "features.11"
    with pytest.raises(DreamkitError, match=r"backbone 'mobilenet_v2' has no layer 'features.77'; close matches: features.7"):
        resolve_layer("mobilenet_v2", "features.77")
    with pytest.raises(DreamkitError, match=r"unknown backbone 'mobilenet_v9' \(did you mean mobilenet_v2"):
        list_layers("mobilenet_v9")


def test_extractor_matches_torchvision_activations_with_bn_folded(reference_mobilenet):
    extractor = FeatureExtractor("mobilenet_v2", ["features.4", "features.11"])
    assert extractor.folded > 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in extractor.modules())
    captured = {}
    hooks = [reference_mobilenet.features[i].register_forward_hook(
        lambda module, inputs, output, i=i: captured.__setitem__(f"features.{i}", output)) for i in (4, 11)]
    image = torch.rand(1, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        normalised = torchvision.transforms.functional.normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        reference_mobilenet(normalised)
        ours = extractor(image)
    for hook in hooks:
        hook.remove()
    for layer in ("features.4", "features.11"):
        assert ours[layer].shape == captured[layer].shape
        torch.testing.assert_close(ours[layer], captured[layer], rtol=1e-4, atol=1e-4)


def test_extractor_stops_after_the_deepest_requested_layer():
    extractor = FeatureExtractor("mobilenet_v2", ["features.2", "features.7"], weights="random")
    called = []
    for name, module in extractor.body.named_modules():
        if name and not list(module.children()):
            module.register_forward_hook(lambda module, inputs, output, name=name: called.append(name))
    extractor(torch.rand(1, 3, 64, 64))
    blocks = {int(name.split(".")[1]) for name in called if name.startswith("features.")}
    assert max(blocks) == 7 and blocks == set(range(8))
    assert not any(name.startswith("classifier") for name in called)


def test_replicated_edges_change_only_the_deep_convolutions():
    plain = FeatureExtractor("mobilenet_v2", ["features.4", "features.14"], weights="random")
    replicated = FeatureExtractor("mobilenet_v2", ["features.4", "features.14"], weights="random",
                                  replicate_from_stride=16)
    modes = [m.padding_mode for m in replicated.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert replicated.replicated == modes.count("replicate") > 0 and "zeros" in modes and plain.replicated == 0
    assert plain.signature != replicated.signature  # measurements kept between runs tell them apart
    image = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = plain(image), replicated(image)
    torch.testing.assert_close(b["features.4"], a["features.4"], rtol=0, atol=0)  # stride 8: untouched
    assert not torch.allclose(b["features.14"], a["features.14"])


def test_gradients_reach_the_input_only():
    extractor = FeatureExtractor("mobilenet_v2", ["features.7"], weights="random")
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    extractor(image)["features.7"].pow(2).mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in extractor.parameters())


def test_channels_last_and_bf16_modes(reference_mobilenet):
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    plain = FeatureExtractor("mobilenet_v2", ["features.7"], channels_last=False)(image)["features.7"]
    fast = FeatureExtractor("mobilenet_v2", ["features.7"])(image)["features.7"]  # channels_last by default
    assert fast.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    low = FeatureExtractor("mobilenet_v2", ["features.7"], channels_last=True, bf16=True)(image)["features.7"]
    assert low.dtype == torch.float32
    relative = (low - plain).norm() / plain.norm()
    assert relative < 0.1, f"bf16 relative error {relative:.3f}"


def test_activations_run_out_of_place_with_the_same_gradient():
    extractor = FeatureExtractor("mobilenet_v2", ["features.12"], weights="random")
    activations = [m for m in extractor.modules() if isinstance(m, torch.nn.ReLU6)]
    assert activations and not any(m.inplace for m in activations)
    image = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(2))
    x = image.clone().requires_grad_()
    (grad,) = torch.autograd.grad(extractor(x)["features.12"].square().mean(), x)
    for module in activations:
        module.inplace = True
    y = image.clone().requires_grad_()
    (grad_inplace,) = torch.autograd.grad(extractor(y)["features.12"].square().mean(), y)
    assert torch.equal(grad, grad_inplace)  # the same kernels on the same values: bit for bit


def test_trace_outputs_returns_the_modules_outputs_and_nothing_past_them(reference_mobilenet):
    from dreamkit.models import trace_outputs

    body = trace_outputs(copy.deepcopy(reference_mobilenet), ["features.3", "features.5"])
    assert not any(name.startswith(("classifier", "features.6")) for name, _ in body.named_modules())
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = body(image)
        expected = reference_mobilenet.features[:6](image)
    assert list(out) == ["features.3", "features.5"]
    torch.testing.assert_close(out["features.5"], expected, rtol=0, atol=0)
    with pytest.raises(DreamkitError, match="layer 'nowhere' is not a node of the traced MobileNetV2"):
        trace_outputs(copy.deepcopy(reference_mobilenet), ["nowhere"])


@pytest.mark.parametrize("backbone, layers", [
    ("vgg19", ["relu1_1", "relu2_1"]),
    ("resnet50", ["layer1"]),
    ("googlenet", ["inception3a"]),
    ("inception_v3", ["Mixed_5b"]),
])
def test_other_backbones_with_random_weights(backbone, layers):
    extractor = FeatureExtractor(backbone, layers, weights="random")
    size = 96 if backbone == "inception_v3" else 64
    out = extractor(torch.rand(1, 3, size, size))
    assert list(out) == layers and all(t.dim() == 4 and torch.isfinite(t).all() for t in out.values())


def test_missing_weights_are_a_clear_error(weights_home):
    with pytest.raises(WeightsError, match=r"weights 'vgg19.IMAGENET1K_V1' are not available.*download.pytorch.org.*weights=PATH"):
        load_backbone("vgg19")
    with pytest.raises(WeightsError, match="no weights are registered for backbone 'alexnet'"):
        load_backbone("alexnet")


def test_weights_from_a_named_file_are_verified(tmp_path, weights_home):
    from dreamkit import PluginHost

    cached = PluginHost().weights  # the real cache is hidden by weights_home; copy the real file in
    import shutil

    real = REAL_CACHE / "mobilenet_v2-b0353104.pth"
    if not real.exists():
        pytest.skip("the offline MobileNetV2 weights are fetched by `make test`")
    mine = tmp_path / "mine.pth"
    shutil.copy(real, mine)
    assert isinstance(load_backbone("mobilenet_v2", mine), torch.nn.Module)
    with open(mine, "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01")
    with pytest.raises(WeightsError, match="mine.pth does not match"):
        load_backbone("mobilenet_v2", mine)
    assert cached.entries  # the registry itself is unchanged


def _classify(model, categories, path):
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    with Image.open(path) as image:
        batch = weights.transforms()(image.convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probabilities = model(batch).softmax(1)[0]
    index = int(probabilities.argmax())
    return categories[index], float(probabilities[index])


def test_real_weights_classify_the_sample_photos(samples, dreamkit_host):
    model = load_backbone("mobilenet_v2")
    categories = dreamkit_host.weights.get(MOBILENET).categories
    label, probability = _classify(model, categories, samples / "chelsea.png")
    assert label in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"} and probability > 0.3
    label, probability = _classify(model, categories, samples / "coffee.png")
    assert label == "espresso" and probability > 0.5


def test_fold_batchnorm_leaves_unfoldable_graphs_alone():
    from torchvision.models.feature_extraction import create_feature_extractor

    model = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.BatchNorm2d(3)).eval()
    graph = create_feature_extractor(model, return_nodes=["1"]).eval()
    assert fold_batchnorm(graph) == 0


def test_runtime_configure(monkeypatch):
    before = torch.get_num_threads()
    try:
        settings = configure(1)
        assert settings.threads == 1 and torch.get_num_threads() == 1
        assert settings.keep_freed_memory == is_glibc_linux()
        monkeypatch.setenv("DREAMKIT_KEEP_FREED_MEMORY", "0")
        assert keep_freed_memory() == (False, "disabled by DREAMKIT_KEEP_FREED_MEMORY=0")
        with pytest.raises(ValueError, match="threads = 0"):
            configure(0)
    finally:
        torch.set_num_threads(before)


def test_layers_cli(cli):
    code, stdout, _ = cli("layers", "vgg19")
    assert code == 0 and "features.22  ReLU  (relu4_2)" in stdout
    code, stdout, _ = cli("layers", "mobilenet_v2", "--json")
    assert code == 0 and {"path": "features.7", "alias": None, "type": "InvertedResidual"} in __import__("json").loads(stdout)
    code, stdout, _ = cli("layers", "--list")
    assert code == 0 and "resnet50" in stdout.split()
    code, _, stderr = cli("layers", "vgg1")
    assert code == 2 and "unknown backbone 'vgg1'" in stderr
    code, _, stderr = cli("layers")
    assert code == 2 and "name a backbone" in stderr


def test_classification_preprocess_and_labels(dreamkit_host):
    from dreamkit.models import classification_preprocess, resolve_weights_key, weights_categories

    assert resolve_weights_key("mobilenet_v2") == "mobilenet_v2.IMAGENET1K_V1"
    assert resolve_weights_key("mobilenet_v2", "/some/file.pth") == "mobilenet_v2.IMAGENET1K_V1"  # checked against it
    assert resolve_weights_key("vgg19", "vgg19.IMAGENET1K_V1") == "vgg19.IMAGENET1K_V1"
    assert resolve_weights_key("resnet18", "random") is None

    assert classification_preprocess("mobilenet_v2")(torch.rand(3, 300, 400)).shape == (3, 224, 224)
    assert classification_preprocess("resnet18", "random")(torch.rand(2, 3, 300, 400)).shape == (2, 3, 224, 224)
    assert weights_categories("mobilenet_v2")[285] == "Egyptian cat"
    assert weights_categories("retinanet_resnet50_fpn", "random")[18] == "dog"
    assert weights_categories("resnet18", "random") is None  # no weights registered for it
    with pytest.raises(DreamkitError, match="unknown backbone 'mobilenetv2'"):
        classification_preprocess("mobilenetv2")


def test_detectors_load_with_random_weights_and_refuse_unknown_names(weights_home):
    from dreamkit.models import detector_names, load_detector

    model = load_detector("ssdlite320_mobilenet_v3_large", "random")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    with torch.no_grad():
        (out,) = model([torch.rand(3, 100, 120)])
    assert set(out) == {"boxes", "scores", "labels"}
    with pytest.raises(DreamkitError, match=r"unknown detector 'retinanet'; known detectors: .*retinanet_resnet50_fpn,"):
        load_detector("retinanet")
    with pytest.raises(WeightsError, match=r"weights 'ssd300_vgg16.COCO_V1' are not available.*ssd300_vgg16_coco-b556d3b4.pth"):
        load_detector("ssd300_vgg16")
    assert len(detector_names()) == 9  # torchvision's, registered by the detect plugin


def test_shared_extractor_takes_any_sequence_of_layers(dreamkit_host):
    from dreamkit.models import shared_extractor

    as_list = shared_extractor(dreamkit_host, "mobilenet_v2", "random", ["features.2"], False, "cpu")
    assert shared_extractor(dreamkit_host, "mobilenet_v2", "random", ("features.2",), False, "cpu") is as_list
    with pytest.raises(TypeError, match="a sequence of layer names, not the string 'features.2'"):
        shared_extractor(dreamkit_host, "mobilenet_v2", "random", "features.2", False, "cpu")
