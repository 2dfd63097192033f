"""Faults operators meet, each reproduced for real: links that lead nowhere, names that clash with
folders, damaged outputs on resume, kills, full disks, unwritable reports, two runs at once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_batch import fifty, files_in, report_lines, tiny


@pytest.mark.parametrize("recursive", [True, False])
def test_links_that_lead_nowhere_are_named_failures_and_the_rest_runs(cli, tmp_path, recursive):
    folder, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.jsonl"
    tiny(folder / "good.png")
    os.symlink("loop.png", folder / "loop.png")  # a link to itself
    os.symlink("missing.png", folder / "broken.png")
    code, _, stderr = cli("run", folder, *(["-r"] if recursive else []), "-e", "resize:max_side=8", "-o", out,
                          "--report", report)
    assert code == 1 and "internal error" not in stderr
    assert "loop.png: symbolic link loop" in stderr and "broken.png: broken symbolic link" in stderr
    assert "1 done, 2 failed" in stderr and files_in(out) == ["good.png"]
    records = report_lines(report)
    assert sorted((r["input"].rsplit("/", 1)[-1], r["status"]) for r in records) == \
        [("broken.png", "failed"), ("good.png", "done"), ("loop.png", "failed")]
    code, _, stderr = cli("run", folder / "loop.png", "-e", "resize:max_side=8", "-o", out)  # named on its own
    assert code == 2 and "symbolic link loop" in stderr


def test_an_output_name_that_is_also_a_folder_gets_the_long_names(cli, tmp_path):
    """``x.jpg`` beside a folder ``x.png/``: out/x.png cannot be both a file and a folder."""
    folder, out = tmp_path / "in", tmp_path / "out"
    tiny(folder / "x.jpg")
    tiny(folder / "x.png" / "inner.jpg", seed=1)
    tiny(folder / "y.jpg", seed=2)
    code, _, stderr = cli("run", folder, "-r", "-e", "resize:max_side=8", "-o", out)
    assert code == 0, stderr
    assert files_in(out) == ["x.jpg.png", "x.png", "x.png/inner.jpg.png", "y.png"]
    code, _, stderr = cli("run", folder, "-r", "-e", "resize:max_side=8", "-o", out)  # and it resumes
    assert code == 0 and "0 done, 3 skipped" in stderr


@pytest.mark.parametrize("damage", ["truncated", "zero bytes", "not an image"])
def test_a_damaged_output_is_one_failed_record_and_overwrite_redoes_it(cli, tmp_path, damage):
    folder, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.jsonl"
    for index in range(3):
        tiny(folder / f"p{index}.png", index, size=(40, 30))
    assert cli("run", folder, "-e", "resize:scale=2", "-o", out)[0] == 0
    hurt = out / "p1.png"
    data = hurt.read_bytes()
    hurt.write_bytes({"truncated": data[: len(data) // 2], "zero bytes": b"", "not an image": b"hello"}[damage])
    (out / "p2.png").unlink()
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--report", report)
    assert code == 1 and "internal error" not in stderr and "Traceback" not in stderr
    assert f"its output {hurt} cannot be read back" in stderr and "pass --overwrite to redo it" in stderr
    assert "1 done, 1 skipped, 1 failed" in stderr  # p2 redone, p0 skipped, p1 named
    assert [r["status"] for r in sorted(report_lines(report), key=lambda r: r["input"])] == ["skipped", "failed", "done"]
    assert hurt.stat().st_size == len({"truncated": data[: len(data) // 2], "zero bytes": b"",
                                       "not an image": b"hello"}[damage])  # left as it was: nothing lost
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--overwrite")
    assert code == 0 and hurt.read_bytes() == data


def test_an_input_unreadable_since_its_output_was_made_fails_alone(cli, tmp_path, monkeypatch):
    import builtins

    folder, out = tmp_path / "in", tmp_path / "out"
    for index in range(2):
        tiny(folder / f"p{index}.png", index)
    assert cli("run", folder, "-e", "resize:scale=2", "-o", out)[0] == 0
    unreadable = folder / "p0.png"
    if os.geteuid() == 0:  # root reads any file whatever its mode: refuse it as the kernel would
        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(unreadable):
                raise PermissionError(13, "Permission denied", os.fspath(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
    unreadable.chmod(0)
    try:
        code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out)
    finally:
        unreadable.chmod(0o644)
        monkeypatch.undo()
    assert code == 1 and "p0.png" in stderr and "Permission denied" in stderr, stderr
    assert "0 done, 1 skipped, 1 failed" in stderr and "not made by this recipe" not in stderr
    assert (out / "p0.png").is_file()


# -- kills ---------------------------------------------------------------------------------------
def start_run(folder, out, report, *extra, preexec_fn=None):
    command = [sys.executable, "-m", "dreamkit", "run", str(folder), "-e", "deepdream:octaves=1,steps=6", "-o", str(out),
               "--report", str(report), "-q", "--threads", "1", *extra]
    return command, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)


def wait_for_outputs(out, count, process, seconds=240):
    deadline = time.monotonic() + seconds
    while len(list(out.glob("*.png"))) < count and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)


def test_sigterm_finishes_cleanly_with_summary_and_report_and_exit_143(tmp_path):
    folder, out, report = fifty(tmp_path), tmp_path / "out", tmp_path / "r.jsonl"
    command, process = start_run(folder, out, report)
    wait_for_outputs(out, 3, process)
    process.send_signal(signal.SIGTERM)  # what systemd, docker and Kubernetes send
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    done = sorted(p.name for p in out.iterdir())
    assert 3 <= len(done) < 50 and all(not name.startswith(".") for name in done)  # nothing hidden or partial
    assert "interrupted:" in stderr and f"{len(done)} done" in stderr and "Traceback" not in stderr
    records = report_lines(report)  # whole JSON lines, one per output on disk
    assert sorted(Path(r["frames"][0]["output"]).name for r in records if r["status"] == "done") == done


def test_temporaries_a_killed_run_left_are_swept_by_the_next_run(tmp_path):
    folder, out, report = fifty(tmp_path), tmp_path / "out", tmp_path / "r.jsonl"
    command, process = start_run(folder, out, report)
    wait_for_outputs(out, 2, process)
    process.kill()  # SIGKILL: no handler runs, an atomic write in flight leaves its temporary
    process.communicate(timeout=60)
    # what a write cut by SIGKILL leaves (the kill above may or may not land inside one): a
    # temporary beside the output and a frames staging folder
    (out / ".img_40.png.0badf00d.png.part").write_bytes(b"\x89PNG half")
    (out / ".img_41.3kq9x_ab").mkdir()
    code = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert code.returncode == 0, code.stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert len(list(out.glob("*.png"))) == 50


# -- full disks ------------------------------------------------------------------------------------
def file_size_limit(limit):
    """For a child: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored, as a service
    would), as on a full disk once the limit is reached."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_stops_the_run_at_once_with_one_clear_line_and_a_valid_report(tmp_path):
    folder, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.jsonl"
    for index in range(6):
        tiny(folder / f"small_{index}.png", index, size=(20, 15))  # outputs of ~1 KB: they fit
    for index in range(6):
        tiny(folder / f"zlarge_{index}.png", index, size=(150, 120))  # outputs of ~55 KB: they do not
    command = [sys.executable, "-m", "dreamkit", "run", str(folder), "-e", "resize:scale=1", "-o", str(out),
               "--report", str(report), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=file_size_limit(20_000))
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    stopped = [line for line in result.stderr.splitlines() if line.startswith("dreamkit: stopped:")]
    assert len(stopped) == 1 and "File too large" in stopped[0] and "run the same command again" in stopped[0]
    assert "6 done, 1 failed" in result.stderr and "5 not started" in result.stderr
    records = report_lines(report)  # valid JSON lines: the failed one last, nothing after it
    assert [r["status"] for r in records] == ["done"] * 6 + ["failed"] and records[-1]["fatal"] is True
    assert sorted(p.name for p in out.iterdir()) == [f"small_{i}.png" for i in range(6)]  # nothing partial or hidden
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)  # space again: it finishes
    assert rerun.returncode == 0 and "6 done, 6 skipped" in rerun.stderr


def test_a_report_that_fills_the_disk_is_cut_at_its_last_whole_line(tmp_path):
    folder, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.jsonl"
    for index in range(40):
        tiny(folder / f"p{index:02d}.png", index, size=(8, 6))
    command = [sys.executable, "-m", "dreamkit", "run", str(folder), "-e", "resize:scale=1", "-o", str(out),
               "--report", str(report), "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=file_size_limit(4_000))
    assert result.returncode == 1 and f"stopped: --report {report}: File too large" in result.stderr, result.stderr
    lines = report.read_text().splitlines()
    assert 0 < len(lines) < 40 and report.read_text().endswith("\n")
    assert all(json.loads(line)["status"] == "done" for line in lines)  # every line whole


def test_an_unwritable_report_is_a_usage_error_before_any_work(cli, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    tiny(folder / "a.png")
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--report", tmp_path / "plain.txt" / "r.jsonl")
    assert code == 2 and f"--report {tmp_path / 'plain.txt' / 'r.jsonl'}: cannot write it" in stderr
    assert "Traceback" not in stderr and not out.exists()  # no work done, no folder left


# -- two runs at once ------------------------------------------------------------------------------
HOLD = """
import sys, time
from dreamkit.batch.lock import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(out, seconds):
    """A real second process holding ``out``'s lock for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_on_a_busy_output_folder_is_refused_or_waits(cli, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for index in range(3):
        tiny(folder / f"p{index}.png", index)
    holder = hold_lock(out, 60)
    try:
        code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out)
        assert code == 2 and f"output folder {out} is busy" in stderr and f"pid {holder.pid}" in stderr
        assert "--wait" in stderr and not list(out.glob("*.png"))  # nothing written, nothing planned
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: the kernel released its lock, the file it left is no stale lock
    assert (out / ".dreamkit.lock").exists()
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out)
    assert code == 0 and "3 done" in stderr and not (out / ".dreamkit.lock").exists()
    holder = hold_lock(out, 2)
    started = time.monotonic()
    code, _, stderr = cli("run", folder, "-e", "resize:scale=2", "-o", out, "--wait")
    holder.wait()
    assert code == 0 and "is busy" in stderr and "waiting for it" in stderr and "3 skipped" in stderr
    assert time.monotonic() - started > 1  # it waited for the holder


def test_two_real_runs_on_one_folder_do_all_the_work_once(tmp_path):
    folder, out = fifty(tmp_path), tmp_path / "out"
    command = [sys.executable, "-m", "dreamkit", "run", str(folder), "-e", "deepdream:octaves=1,steps=2", "-o", str(out),
               "-q", "--threads", "1", "--wait", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    statuses = [json.loads(line)["status"] for stdout, _ in outputs for line in stdout.splitlines()]
    assert statuses.count("done") == 50 and statuses.count("skipped") == 50 and "failed" not in statuses


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_ray_run_reports_every_output_on_disk(tmp_path, stop):
    pytest.importorskip("ray")
    folder, out, report = fifty(tmp_path), tmp_path / "out", tmp_path / "r.jsonl"
    command, process = start_run(folder, out, report, "--engine", "ray", "--workers", "2",
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_outputs(out, 4, process, seconds=300)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == (143 if stop == signal.SIGTERM else 130), stderr
    assert "Traceback" not in stderr
    on_disk = sorted(p.name for p in out.iterdir())
    assert all(not name.startswith(".") for name in on_disk)  # the actors' temporaries were swept
    records = report_lines(report)
    assert sorted(Path(r["frames"][0]["output"]).name for r in records if r["status"] == "done") == on_disk
    assert f"{len(on_disk)} done" in stderr
