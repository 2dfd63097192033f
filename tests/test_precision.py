"""dreamkit.precision: bf16 only where it is measured to pay, decided once per machine."""

import pytest
import torch

from dreamkit import memo, precision


@pytest.fixture
def home(fresh_memo):
    memo.forget("precision")
    return fresh_memo


def timer(fp32: float, bf16: float, calls: list):
    def time_pass(use_bf16: bool) -> float:
        calls.append(use_bf16)
        return bf16 if use_bf16 else fp32
    return time_pass


def with_bf16_kernels(monkeypatch, available: bool):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: available)


def test_no_bf16_kernels_means_fp32_without_measuring(home, monkeypatch):
    with_bf16_kernels(monkeypatch, False)
    calls = []
    use, reason = precision.bf16_pays(torch.device("cpu"), "m", timer(1.0, 0.1, calls))
    assert use is False and calls == [] and "no bf16 convolution kernels on this CPU" in reason


@pytest.mark.parametrize("fp32, bf16, chosen", [(1.0, 0.5, True), (1.0, 0.95, False), (1.0, 40.0, False)])
def test_bf16_is_chosen_only_when_clearly_faster(home, monkeypatch, fp32, bf16, chosen):
    with_bf16_kernels(monkeypatch, True)
    calls = []
    use, reason = precision.bf16_pays(torch.device("cpu"), "m", timer(fp32, bf16, calls))
    assert use is chosen and calls.count(True) == calls.count(False) >= 2
    assert ("bf16 chosen" if chosen else "bf16 not chosen") in reason


def test_the_decision_is_measured_once_per_machine_and_model(home, monkeypatch):
    with_bf16_kernels(monkeypatch, True)
    calls = []
    precision.bf16_pays(torch.device("cpu"), "m", timer(1.0, 0.5, calls))
    measured = len(calls)
    use, _ = precision.bf16_pays(torch.device("cpu"), "m", timer(1.0, 9.0, calls))  # would now say no
    assert use is True and len(calls) == measured  # remembered, not re-timed
    precision.bf16_pays(torch.device("cpu"), "other model", timer(1.0, 9.0, calls))
    assert len(calls) > measured
    stored = memo.lookup("precision")
    assert sorted(key.rsplit("|", 1)[1] for key in stored) == ["m", "other model"]
    assert all(precision.machine_key() in key and torch.__version__ in key for key in stored)


def test_time_extractor_pass_runs_a_forward_and_backward():
    conv = torch.nn.Conv2d(3, 4, 3)
    made = []

    def make(bf16):
        made.append(bf16)
        return lambda x: {"a": conv(x)}

    time_pass = precision.time_extractor_pass(make, torch.device("cpu"), side=32)
    assert time_pass(False) > 0 and time_pass(False) > 0 and made == [False]


def test_memo_remembers_per_torch_version_and_survives_a_corrupt_table(fresh_memo):
    calls = []

    def compute():
        calls.append(1)
        return {"answer": 42}

    memo.forget("t")
    assert memo.remembered("t", "k", compute) == {"answer": 42}
    assert memo.remembered("t", "k", compute) == {"answer": 42} and len(calls) == 1
    assert list(memo.lookup("t")) == [f"torch={torch.__version__}|k"]
    memo.table_path("t").write_text("{not json")
    assert memo.remembered("t", "k", compute) == {"answer": 42} and len(calls) == 2
