"""The host's one model cache: shared by every plugin, within a memory budget, cleared on demand."""

from __future__ import annotations

import pytest
import torch

from dreamkit.errors import DreamkitError
from dreamkit.model_cache import ModelCache, model_bytes


def _module(floats: int) -> torch.nn.Module:
    return torch.nn.Linear(floats, 1, bias=False)  # floats x 4 bytes


def test_models_are_built_once_and_the_least_recently_used_go_first():
    cache = ModelCache(budget_mb=1)  # 1 MiB: two of the 400 KB models below fit, not three
    built = []

    def build(name):
        return lambda: built.append(name) or _module(100_000)

    a = cache.get("a", build("a"))
    assert cache.get("a", build("a")) is a and built == ["a"] and (cache.hits, cache.misses) == (1, 1)
    cache.get("b", build("b"))
    cache.get("a", build("a"))  # a is now the most recently used
    cache.get("c", build("c"))  # over budget: b goes
    assert "a" in cache and "c" in cache and "b" not in cache and cache.size == 800_000
    cache.clear()
    assert len(cache) == 0 and cache.size == 0


def test_a_model_over_the_budget_is_still_kept_alone():
    cache = ModelCache(budget_mb=1)
    big = cache.get("big", lambda: _module(400_000))  # 1.6 MB
    assert cache.get("big", lambda: pytest.fail("rebuilt")) is big and len(cache) == 1


def test_sizes_count_shared_tensors_once_and_objects_holding_modules():
    shared = _module(1000)
    holder = type("Holder", (), {})()
    holder.first, holder.second = shared, shared
    assert model_bytes(shared) == 4000 and model_bytes(holder) == 4000 and model_bytes(object()) == 0


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DREAMKIT_MODEL_CACHE_MB", "12")
    assert ModelCache().budget == 12 * 2**20
    monkeypatch.setenv("DREAMKIT_MODEL_CACHE_MB", "lots")
    with pytest.raises(DreamkitError, match="DREAMKIT_MODEL_CACHE_MB='lots' is not allowed"):
        ModelCache()


def test_every_plugin_keeps_its_models_in_the_hosts_cache(dreamkit_host, samples):
    """Feature extractors (deepdream, style), classifiers, detectors and describers: one cache."""
    from dreamkit import Pipeline, load_image

    image = load_image(samples / "coffee.png")[..., ::8, ::8]
    dreamkit_host.models.clear()
    Pipeline.from_specs(["deepdream:octaves=1,steps=1,weights=random", "classify:weights=random",
                         "detect"], host=dreamkit_host).run(image, device="cpu", host=dreamkit_host)
    kinds = sorted({key[0] for key in dreamkit_host.models._models})
    assert kinds == ["classifier", "detector", "feature-extractor"]
    dreamkit_host.models.clear()
    assert len(dreamkit_host.models) == 0
