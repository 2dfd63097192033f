"""The benchmark scripts run (tiny sizes; the figures themselves are read from full runs, not tested)."""

import subprocess
import sys

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_models_benchmark_runs_and_prints_every_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "models.py"), "--sizes", "64", "--repeats", "1", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("64 ")]
    assert [row[1] for row in rows] == ["reference", "ours-fp32", "ours-bf16"]
    assert float(rows[1][5]) < 1e-3  # fp32 output matches the reference


@pytest.mark.slow
def test_ops_benchmark_runs():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "ops.py"), "--threads", "1", "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sum(line.startswith("jitter ") for line in done.stdout.splitlines()) == 4


@pytest.mark.slow
def test_deepdream_benchmark_runs_every_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "deepdream.py"), "--sizes", "64", "--rounds", "1",
                           "--memory-side", "256"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = next(line.split() for line in done.stdout.splitlines() if line.strip().startswith("64 "))
    assert row[3].endswith("x") and row[5].endswith("x")
    assert "peak RSS of a 256x256 dream" in done.stdout


@pytest.mark.slow
def test_analysis_benchmark_runs_every_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "analysis.py"), "--count", "3", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    modes = [line.split()[0] for line in done.stdout.splitlines()[2:]]
    assert modes == ["classify-reference", "classify-ours", "classify-ours-batched", "faces-reference", "faces-ours"]
    rows = done.stdout.splitlines()[2:]
    assert all(("overhead" in row) != row.split()[0].endswith("reference") for row in rows)
