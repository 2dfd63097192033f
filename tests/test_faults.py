"""Faults operators meet, each reproduced for real: links that lead nowhere, names that clash with
folders, damaged outputs on resume, kills, full disks, unwritable reports, two runs at once."""

import json
import os

import pytest

from tests.test_batch import files_in, report_lines, tiny


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
