"""The built-in classify effect, with the real offline MobileNetV2 weights on sample photos."""

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision

from dreamkit import ParameterError, Pipeline, load_image
from dreamkit.models import classification_preprocess
from dreamkit_classify import Classify

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def classify(image, **params):
    result = Pipeline([Classify(**params)]).run(image, device="cpu")
    (record,) = result.frames[0].results
    return record, result.image


@pytest.fixture(scope="module")
def chelsea(samples):
    return load_image(samples / "chelsea.png")


@pytest.fixture(scope="module")
def coffee(samples):
    return load_image(samples / "coffee.png")


def test_sample_photos_get_their_classes(chelsea, coffee):
    record, _ = classify(chelsea)
    assert record["predictions"][0]["label"] in CATS and record["predictions"][0]["probability"] > 0.5
    record, _ = classify(coffee)
    assert record["predictions"][0]["label"] == "espresso" and record["predictions"][0]["probability"] > 0.9


def test_record_format(chelsea):
    record, image = classify(chelsea, top_k=7)
    assert record["effect"] == "classify" and record["backbone"] == "mobilenet_v2"
    assert record["weights"] == "mobilenet_v2.IMAGENET1K_V1"
    predictions = record["predictions"]
    assert len(predictions) == 7
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-6
    categories = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    assert all(categories[p["index"]] == p["label"] for p in predictions)
    assert len({p["index"] for p in predictions}) == 7
    json.dumps(record)
    assert torch.equal(image, chelsea)  # without draw, the image passes through untouched


def test_matches_plain_torchvision_with_its_own_transforms(coffee):
    """Same numbers as torchvision's model + its weights' transforms, called by hand."""
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    model = torchvision.models.mobilenet_v2()
    from dreamkit.plugins import get_host

    model.load_state_dict(get_host().weights.load_state_dict("mobilenet_v2.IMAGENET1K_V1"))
    with torch.no_grad():
        expected = model.eval()(weights.transforms()(coffee[0])[None]).softmax(1)[0]
    record, _ = classify(coffee, top_k=3)
    for prediction in record["predictions"]:
        assert prediction["probability"] == pytest.approx(float(expected[prediction["index"]]), abs=1e-4)
    assert [p["index"] for p in record["predictions"]] == expected.topk(3).indices.tolist()


@pytest.mark.parametrize("backbone, crop", [("mobilenet_v2", 224), ("inception_v3", 299), ("efficientnet_b3", 300)])
def test_each_backbone_uses_its_own_preprocessing(backbone, crop):
    preprocess = classification_preprocess(backbone, "random")
    out = preprocess(torch.rand(3, 333, 517))
    assert out.shape == (3, crop, crop)


def test_any_backbone_with_random_weights(chelsea):
    small = F.interpolate(chelsea, size=(120, 180), mode="bilinear", antialias=True)
    record, _ = classify(small, backbone="resnet18", weights="random", top_k=3)
    assert record["weights"] == "random"
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert [p["label"] for p in record["predictions"]] == [categories[p["index"]] for p in record["predictions"]]
    again, _ = classify(small, backbone="resnet18", weights="random", top_k=3)
    assert again["predictions"] == record["predictions"]  # random weights are the same in every run


def test_predict_batches_give_the_same_answers(chelsea, coffee, samples):
    astronaut = load_image(samples / "astronaut.png")
    images = [chelsea, coffee, astronaut, chelsea[:, :, 10:200, 30:300]]
    effect = Classify(top_k=3)
    batched = effect.predict(images, batch_size=3)
    one_by_one = [effect.predict([image])[0] for image in images]
    assert len(batched) == 4
    for mine, single in zip(batched, one_by_one):
        assert [p.index for p in mine] == [p.index for p in single]
        assert [p.probability for p in mine] == pytest.approx([p.probability for p in single], abs=1e-5)
    assert effect.predict([]) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        effect.predict(images, batch_size=0)


def test_draw_writes_the_labels_in_a_corner(chelsea):
    record, drawn = classify(chelsea, draw=True, top_k=5)
    changed = (drawn - chelsea).abs().amax(dim=1)[0] > 1e-6
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert len(rows) > 500
    height, width = chelsea.shape[-2:]
    assert rows.max() == height - 1 and rows.min() > height / 2 and cols.max() < width * 0.75  # bottom-left
    region = (..., slice(int(rows.min()), None), slice(0, int(cols.max())))
    assert drawn[region].mean() < chelsea[region].mean()  # a dark panel under light text
    _, three = classify(chelsea, draw=True, top_k=3)
    assert torch.equal(three, drawn)  # the panel shows the top three whatever top_k is
    _, one = classify(chelsea, draw=True, top_k=1)
    assert not torch.equal(one, drawn)


@pytest.mark.parametrize("params, match", [
    ({"top_k": 0}, r"effect 'classify': parameter 'top_k' = 0 is not allowed; expected an integer >= 1"),
    ({"backbone": "mobilenetv2"}, r"parameter 'backbone' = 'mobilenetv2' is not allowed.*did you mean mobilenet_v2"),
    ({"draw": "yes please"}, r"parameter 'draw'"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ParameterError, match=match):
        Classify(**params)


def test_missing_weights_are_a_clear_error(weights_home, chelsea):
    with pytest.raises(ParameterError, match=r"effect 'classify': weights 'vgg16.IMAGENET1K_V1' are not available"):
        classify(chelsea[:, :, :64, :64], backbone="vgg16")


def test_cli_json_one_object_per_image(cli, samples, tmp_path):
    code, out, err = cli("run", samples / "chelsea.png", samples / "coffee.png", "-e", "classify:top_k=2",
                         "-o", tmp_path / "out", "--json", "-q")
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["input"].rsplit("/", 1)[1] for o in objects] == ["chelsea.png", "coffee.png"]
    assert objects[1]["results"][0]["predictions"][0]["label"] == "espresso"
    assert (tmp_path / "out" / "coffee.png").exists()


def test_cli_bad_parameter_exits_2_and_writes_nothing(cli, samples, tmp_path):
    code, out, err = cli("run", samples / "chelsea.png", "-e", "classify:top_k=-3", "-o", tmp_path / "out")
    assert code == 2 and "effect 'classify': parameter 'top_k' = -3 is not allowed; expected an integer >= 1" in err
    assert not (tmp_path / "out").exists()


def test_tiny_and_single_channel_images(coffee):
    record, _ = classify(torch.rand(1, 3, 3, 2), top_k=2)
    assert len(record["predictions"]) == 2
    grey = coffee.mean(dim=1, keepdim=True)
    record, image = classify(grey, top_k=1)
    assert record["predictions"][0]["label"] in {"espresso", "cup", "coffee mug"} and image.shape == grey.shape
    with pytest.raises(ValueError, match=r"effect 'classify' needs an RGB or greyscale image"):
        classify(torch.rand(1, 4, 8, 8))
