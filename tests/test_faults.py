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
