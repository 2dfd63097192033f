"""The benchmark scripts run (tiny sizes; the figures themselves are read from full runs, not tested)."""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]

#: Each script with the smallest settings that still run every mode. They run two at a time (one
#: script's waits, Ray start-up and its own subprocesses, overlap the other's compute; on 2 cores the
#: pair took about as long as one after the other: CPU-bound); the figures they print are noise here
#: and not tested, only that every mode ran and what must hold by construction.
RUNS = {
    "models": ["models.py", "--sizes", "64", "--repeats", "1", "--rounds", "1"],
    "ops": ["ops.py", "--threads", "1", "--repeats", "1", "--budget", "0"],
    "deepdream": ["deepdream.py", "--sizes", "64", "--rounds", "1", "--ladder-rounds", "1", "--memory-side", "256"],
    "analysis": ["analysis.py", "--count", "3", "--rounds", "1"],
    # MobileNetV2 only: VGG-19 runs the same code per rung (a backbone name) at 5x the load time per
    # process; the effect on VGG-19 has its own tests (test_style)
    "style": ["style.py", "--sizes", "64", "--rounds", "1", "--iterations", "1", "--backbones", "mobilenet_v2"],
    "batch": ["batch.py", "--count", "3", "--rounds", "1", "--workers", "1"],
    "retrieval": ["retrieval.py", "--count", "4", "--rounds", "1", "--sizes", "2000"],
    # 8 photos, 6 grids, 10 distractors of each kind: 108 images, enough for grids to chain photos
    # in the transitive grouping (the precision the test compares)
    "dupes": ["retrieval.py", "--skip-indexing", "--skip-search", "--dupes", "--real-size", "3000",
              "--real-per-picture", "1", "--collection", "8", "6", "10"],
    "fast_style": ["fast_style.py", "--sizes", "64", "--rounds", "1", "--batch", "2", "--small-steps", "4",
                   "--classic-steps", "2", "--eval-every", "2", "--quality-side", "64", "--ladder", "1", "3",
                   "--fit-one", "2", "--train-steps", "3"],
    "video": ["video.py", "--side", "48", "--frames", "3", "--iterations", "1", "--threads", "1", "--io-seconds", "0.5",
              "--io-height", "48"],
}
#: Longest first, so the two lanes end together.
ORDER = ["dupes", "deepdream", "fast_style", "models", "style", "batch", "video", "ops", "retrieval", "analysis"]


@pytest.fixture(scope="module")
def bench_runs():
    """Every script's finished process (stdout, stderr, return code), by name."""
    assert sorted(ORDER) == sorted(RUNS)

    # rung workers fork from a process that imported torch once (bench/workers.py): their figures are
    # not read here, and a cold start (~6 s each on 2 cores) was most of these runs' time
    environment = {**os.environ, "DREAMKIT_BENCH_WARM_WORKERS": "1"}

    def run(name):
        script, *options = RUNS[name]
        return subprocess.run([sys.executable, str(REPO / "bench" / script), *options], capture_output=True,
                              text=True, timeout=1200, env=environment)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(ORDER, pool.map(run, ORDER)))


@pytest.mark.slow
def test_models_benchmark_runs_and_prints_every_mode(bench_runs):
    done = bench_runs["models"]
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line.split() for line in done.stdout.splitlines() if line.strip().startswith("64 ")}
    import torch

    expected = ["unfrozen", "frozen", "truncated", "bn-folded", "allocator", "channels-last", "out-of-place", "ours"]
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        expected.append("ours-bf16")
    assert list(rows) == expected
    assert rows["frozen"][3] == "1.00x"  # the reference
    for mode in set(expected) - {"frozen", "ours-bf16"}:
        assert float(rows[mode][4]) < 1e-3 and float(rows[mode][5]) < 1e-3, mode  # fp32 output and gradient match


@pytest.mark.slow
def test_ops_benchmark_runs(bench_runs):
    done = bench_runs["ops"]
    assert done.returncode == 0, done.stderr
    assert sum(line.startswith("jitter ") for line in done.stdout.splitlines()) == 4
    assert sum(line.startswith("instance_norm ") for line in done.stdout.splitlines()) == 4


@pytest.mark.slow
def test_deepdream_benchmark_runs_every_mode(bench_runs):
    done = bench_runs["deepdream"]
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.split() and line.split()[0] in ("unfrozen", "frozen", "out-of-place", "ours", "ours-fast")}
    assert set(rows) == {"unfrozen", "frozen", "out-of-place", "ours", "ours-fast"}
    assert rows["frozen"][2] == "1.00x" and rows["ours"][2].endswith("x") and rows["ours"][4].endswith("x")
    assert "CPU: " in done.stdout and "whole process: plain script" in done.stdout
    assert "peak RSS of a 256x256 dream" in done.stdout


@pytest.mark.slow
def test_analysis_benchmark_runs_every_mode(bench_runs):
    done = bench_runs["analysis"]
    assert done.returncode == 0, done.stderr
    modes = [line.split()[0] for line in done.stdout.splitlines()[2:]]
    assert modes == ["classify-reference", "classify-ours", "classify-ours-batched", "faces-reference", "faces-ours"]
    rows = done.stdout.splitlines()[2:]
    assert all(("overhead" in row) != row.split()[0].endswith("reference") for row in rows)


@pytest.mark.slow
def test_style_benchmark_runs_every_rung_on_the_same_loss(bench_runs):
    done = bench_runs["style"]
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().startswith("64 ")]
    by_mode = {(row[1], row[2]): row for row in rows}
    assert [mode for backbone, mode in by_mode if backbone == "mobilenet_v2"] == [
        "reference", "allocator", "extractor", "ours", "ours-fast", "ours-smoothed", "effect-default", "effect-768"]
    for backbone in ("mobilenet_v2",):  # the effect as users run it: the same loss tiled or not
        assert float(by_mode[(backbone, "effect-768")][5]) == pytest.approx(float(by_mode[(backbone, "effect-default")][5]),
                                                                           rel=1e-3)
    for (backbone, mode), row in by_mode.items():
        if mode == "ours-smoothed" or mode.startswith("effect-"):
            continue  # the effect's own defaults (smoothing, style scale): other work, shown for its cost
        # the same first loss: the same layers, weights and targets on every rung
        assert float(row[5]) == pytest.approx(float(by_mode[(backbone, "reference")][5]), rel=1e-3), (backbone, mode)
    assert by_mode[("mobilenet_v2", "reference")][4] == "1.00x"


def test_batch_benchmark_runs_every_mode(bench_runs):
    done = bench_runs["batch"]
    assert done.returncode == 0, done.stderr
    for mode in ("reference ", "reference-batched", "local ", "ray-1 "):
        assert mode in done.stdout, done.stdout


@pytest.mark.slow
def test_retrieval_benchmark_runs_every_part(bench_runs):
    done = bench_runs["retrieval"]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("dreamkit index" in line and "overhead" in line for line in lines)
    ann = [line for line in lines if "usearch" in line]
    assert len(ann) == 4 and all("recall@10" in line and "x exact" in line for line in ann)  # f16, i8 x ef 64, 128


@pytest.mark.slow
def test_retrieval_benchmark_measures_dupes_and_real_recall(bench_runs):
    done = bench_runs["dupes"]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.split()[0]: line for line in lines if "pairwise precision" in line}
    assert set(rows) == {"transitive", "dreamkit"}
    precision = float(rows["dreamkit"].split("precision ")[1].split(",")[0])
    assert precision > float(rows["transitive"].split("precision ")[1].split(",")[0])  # the chaining is gone
    recall = [line for line in lines if "recall@10" in line and "held-out" in line]
    assert len(recall) == 6 and sum("estimate from stored vectors" in line for line in recall) == 2


def test_video_benchmark_measures_flicker_both_ways(bench_runs):
    done = bench_runs["video"]
    assert done.returncode == 0, done.stderr
    for clip in ("pan", "zoom"):
        for mode in ("independent", "in-place", "flow", "dream alone", "dream carry"):
            assert f"{clip:6} {mode:12}" in done.stdout, done.stdout
        assert f"{clip:6} flow: end-point error" in done.stdout
    assert "CPU: " in done.stdout and "I/O: 12 frames of 48p" in done.stdout


@pytest.mark.slow
def test_fast_style_benchmark_runs_every_part(bench_runs):
    done = bench_runs["fast_style"]
    assert done.returncode == 0, done.stderr
    for arch in ("small", "classic"):
        assert f"64 px  {arch:<7}" in done.stdout and f"quality {arch:<7}" in done.stdout, done.stdout
    assert "faster than style" in done.stdout and "images/s" in done.stdout
    assert "time to a usable small model" in done.stdout and "small step     2" in done.stdout
    assert "classic step     2" in done.stdout  # both learning curves
    # the amortisation-gap diagnostic: each network scored on the photo it was fitted to and on the other
    for arch in ("small", "classic"):
        fitted = (rf"fit one: {arch} +trained on astronaut.png alone \(2 steps, \d+ s\): astronaut.png style "
                  r"[\d.]+x, content [\d.]+x; grace_hopper.jpg \(never seen\) style [\d.]+x")
        assert re.search(fitted, done.stdout), done.stdout
        crops = (rf"fit one: {arch} +trained on crops of astronaut.png alone \(2 steps, \d+ s\): astronaut.png style "
                 r"[\d.]+x, content [\d.]+x; grace_hopper.jpg \(never seen\) style [\d.]+x")
        assert re.search(crops, done.stdout), done.stdout
        own = rf"fit one: {arch} +trained on the five photos, on those photos: style [\d.]+x, content [\d.]+x"
        assert re.search(own, done.stdout), done.stdout
    assert "optimiser stopped at   1 iterations/scale" in done.stdout and "optimiser stopped at   3" in done.stdout
    for arch in ("small", "classic"):  # each network placed on the ladder: as good as some rung, or worse than all
        placed = rf"  {arch}: style (at least as good as|worse than) the optimiser stopped at \d+ iterations/scale"
        assert re.search(placed, done.stdout), done.stdout
        # the ratios layer by layer: every style layer of the effect's MobileNetV2 default, then content
        assert re.search(rf"  {arch} by layer, against the optimised: style (features\.\d+ [\d.]+x, ){{4}}"
                         rf"features\.\d+ [\d.]+x; content features\.", done.stdout), done.stdout
        toned = (rf"  {arch} with the optimised results' tones \(their blur at 1 px for its own\): style [\d.]+x, "
                 r"content [\d.]+x \(its own: [\d.]+x, [\d.]+x\)")
        assert re.search(toned, done.stdout), done.stdout
    assert re.search(r"the optimised results' style loss by layer: (features\.\d+ \d+%, ){4}", done.stdout)
    assert "one process (2 threads)" in done.stdout and "Ray Train, 2 workers" in done.stdout
    for arch in ("small", "classic"):  # training in each precision, and what auto picks
        assert re.search(rf"  {arch:<7} fp32 [\d.]+ steps/s, (bf16 [\d.]+ steps/s \([\d.]+x\)|bf16: this CPU has no "
                         rf"bf16 kernels); auto: (bf16|fp32) \(", done.stdout), done.stdout
    assert "CPU: " in done.stdout


@pytest.mark.slow
def test_fast_style_quality_measures_a_given_model_instead_of_training(tmp_path, monkeypatch):
    """--model ARCH=PATH with --quality-archs: the network is scored and placed on the optimiser's
    ladder without a training run, and the grid has its column only."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import fast_style

    model = fast_style.untrained_model("small", tmp_path, "ihc.png")
    grid = tmp_path / "grid.png"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "fast_style.py"), "--parts", "quality", "--threads", "1",
                           "--quality-archs", "small", "--model", f"small={model}", "--quality-side", "32",
                           "--ladder", "1", "--grid", str(grid)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"quality small   {model}: style loss" in done.stdout and "quality classic" not in done.stdout
    assert "small step" not in done.stdout  # nothing trained
    assert re.search(r"  small: style (at least as good as|worse than) the optimiser stopped at", done.stdout)
    assert "  small by layer, against the optimised: style features." in done.stdout
    assert "  small with the optimised results' tones (their blur at 0.5 px for its own): style" in done.stdout
    assert "grid (photo | optimised | small)" in done.stdout
    from PIL import Image

    width, height = Image.open(grid).size
    assert width == 3 * 32  # astronaut.png, 32 x 32: photo, optimised, small


def test_fast_style_refuses_a_negative_fit_one_before_any_work():
    command = [sys.executable, str(REPO / "bench" / "fast_style.py"), "--parts", "quality", "--fit-one", "-3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--fit-one -3 is not allowed; expected an integer >= 0" in done.stderr and "quality:" not in done.stdout


@pytest.mark.parametrize("warm", [False, True])
def test_a_worker_runs_the_script_as_main_with_its_arguments_and_exit_code(warm, tmp_path, monkeypatch):
    """bench/workers.py: cold (a real ``python SCRIPT``, the figures' path) and warm (forked, the
    smoke runs' path) give the same output, stderr and exit code."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import workers

    monkeypatch.setenv(workers.WARM, "1" if warm else "0")
    script = tmp_path / "worker.py"
    script.write_text("import json, os, sys\n"
                      "if __name__ == '__main__':\n"
                      "    print(json.dumps({'argv': sys.argv[1:], 'pid': os.getpid()}))\n"
                      "    print('to stderr', file=sys.stderr)\n"
                      "    sys.exit(int(sys.argv[1]))\n")
    first, second = workers.run_json(script, "0", "b c"), workers.run_json(script, "0")
    assert first["argv"] == ["0", "b c"] and second["argv"] == ["0"]
    assert first["pid"] != second["pid"] != os.getpid()  # a new process each time
    failed = workers.run(script, "3")
    assert failed.returncode == 3 and failed.stderr == "to stderr\n" and json.loads(failed.stdout)["argv"] == ["3"]
    with pytest.raises(SystemExit, match=r"worker worker.py 3 failed \(exit 3\):\nto stderr"):
        workers.run_json(script, "3")


def test_the_tone_swap_keeps_the_texture_and_takes_the_references_tones(monkeypatch):
    """bench/fast_style.py's tone-or-texture diagnostic: an image given its own tones is unchanged;
    given a flat reference's, its detail stays and its mean becomes the reference's."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import torch
    from fast_style import with_tones_of

    generator = torch.Generator().manual_seed(0)
    image = 0.25 + 0.5 * torch.rand(1, 3, 48, 48, generator=generator)
    (same,) = with_tones_of([image], [image], 2.0)
    assert torch.allclose(same, image, atol=1e-6)
    flat = torch.full_like(image, 0.3)
    (toned,) = with_tones_of([image], [flat], 2.0)
    detail = image - image.mean((-2, -1), keepdim=True)
    # the low frequencies are the flat reference's (0.3): the mean moves there, the fine detail stays
    assert abs(float(toned.mean()) - 0.3) < 0.01 and abs(float(image.mean()) - 0.5) < 0.02
    assert float(((toned - toned.mean((-2, -1), keepdim=True)) - detail).abs().mean()) < float(detail.abs().mean()) / 3
