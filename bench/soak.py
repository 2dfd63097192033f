"""Soak: a large batch with hostile files, stopped by SIGTERM at random moments, resumed until done.

    .venv/bin/python bench/soak.py [--count 10000] [--hostile 0.01] [--seed 0] [--effect resize:scale=2]
                                   [--stop-after 6,20]

Makes ``--count`` tiny PNG files (24×18 random pixels) in a temporary folder, a fraction
``--hostile`` of them replaced by files an operator meets (corrupt bytes, a truncated PNG, an empty
file, text named .png, a symbolic link loop, a dangling link, a decompression bomb). Then runs
``dreamkit run FOLDER -e EFFECT -o OUT --report R`` as a child process, sends it SIGTERM after a
random time between the two ``--stop-after`` seconds (a run spends its first ~5 s starting up and
planning: the default lets most stops land in the work), and runs the same command again, until a
run ends by itself. Each run has its own report.

Prints: runs, SIGTERMs that landed, images per second over the whole soak (good images / wall
time, restarts included), and the checks (each must be 0):

* lost outputs: good inputs without a complete output (opens, carries its recipe, made from it);
* done twice: good inputs with a ``done`` record in more than one run's report (work redone);
* hostile inputs with an output, or whose last record is not ``failed``;
* files left over: hidden temporaries, the lock, anything in OUT that is not an expected output;
* report lines that are not whole JSON objects.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

HOSTILE_KINDS = ("corrupt", "truncated", "empty", "text", "loop", "dangling", "bomb")


def make_inputs(folder: Path, count: int, hostile: float, rng: random.Random) -> tuple[list[Path], list[Path]]:
    """``count`` files in ``folder``; returns (good, hostile) paths."""
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(rng.randrange(2**32))
    bad_indices = set(rng.sample(range(count), max(1, round(count * hostile))))
    good, bad = [], []
    whole = None
    for index in range(count):
        path = folder / f"img_{index:05d}.png"
        if index not in bad_indices:
            Image.fromarray(pixels.integers(0, 256, (18, 24, 3), dtype=np.uint8)).save(path)
            good.append(path)
            whole = whole or path.read_bytes()
            continue
        kind = HOSTILE_KINDS[len(bad) % len(HOSTILE_KINDS)]
        if kind == "corrupt":
            path.write_bytes(os.urandom(200))
        elif kind == "truncated":
            path.write_bytes(whole[: len(whole) // 2] if whole else b"\x89PNG\r\n\x1a\n")
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_text("not an image\n")
        elif kind == "loop":
            os.symlink(path.name, path)
        elif kind == "dangling":
            os.symlink("nowhere.png", path)
        else:  # a 20,000 × 20,000 PNG header: 400 Mpx, over the bomb guard
            Image.new("1", (20_000, 20_000)).save(path)
        bad.append(path)
    return good, bad


def soak(count: int, hostile: float, seed: int, effect: str, stop_after: tuple[float, float]) -> dict:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="dreamkit-soak-"))
    good, bad = make_inputs(root / "in", count, hostile, rng)
    out = root / "out"
    runs, terms, codes = 0, 0, []
    start = time.perf_counter()
    while True:
        report = root / f"report-{runs:03d}.jsonl"
        command = [sys.executable, "-m", "dreamkit", "run", str(root / "in"), "-e", effect, "-o", str(out),
                   "--report", str(report), "-q", "--threads", "1"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        runs += 1
        try:
            _, stderr = process.communicate(timeout=rng.uniform(*stop_after))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            terms += 1
            _, stderr = process.communicate(timeout=300)
            codes.append(process.returncode)
            continue
        codes.append(process.returncode)
        if process.returncode in (0, 1):
            break
        raise SystemExit(f"run {runs} ended with {process.returncode}:\n{stderr}")
    seconds = time.perf_counter() - start
    return {"root": root, "good": good, "bad": bad, "out": out, "runs": runs, "terms": terms, "codes": codes,
            "seconds": seconds, "reports": sorted(root.glob("report-*.jsonl"))}


def check(result: dict) -> dict:
    from dreamkit.io import read_recipe

    out = result["out"]
    done_runs: Counter = Counter()
    last: dict[str, str] = {}
    broken_lines = 0
    for report in result["reports"]:
        for line in report.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                broken_lines += 1
                continue
            last[Path(record["input"]).name] = record["status"]
            if record["status"] == "done":
                done_runs[Path(record["input"]).name] += 1
    lost = 0
    for path in result["good"]:
        target = out / (path.stem + ".png")
        try:
            lost += read_recipe(target)["input"]["name"] != path.name
        except Exception:  # noqa: BLE001 (missing or damaged: lost)
            lost += 1
    expected = {path.stem + ".png" for path in result["good"]}
    leftovers = [p.name for p in out.iterdir() if p.name not in expected] if out.exists() else []
    hostile_wrong = sum((out / (p.stem + ".png")).exists() or last.get(p.name) != "failed" for p in result["bad"])
    return {"lost outputs": lost, "done twice": sum(1 for n in done_runs.values() if n > 1),
            "good never done": sum(1 for p in result["good"] if done_runs[p.name] == 0),
            "hostile with an output or not failed": hostile_wrong, "files left over": len(leftovers),
            "broken report lines": broken_lines, "leftover names": leftovers[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--hostile", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--effect", default="resize:scale=2")
    parser.add_argument("--stop-after", default="6,20", help="SIGTERM each run after MIN,MAX seconds (random)")
    args = parser.parse_args()
    low, high = (float(v) for v in args.stop_after.split(","))
    result = soak(args.count, args.hostile, args.seed, args.effect, (low, high))
    checks = check(result)
    print(f"{args.count} inputs ({len(result['good'])} good, {len(result['bad'])} hostile), effect {args.effect}")
    print(f"{result['runs']} runs, {result['terms']} stopped by SIGTERM (exit codes {Counter(result['codes'])})")
    print(f"{len(result['good']) / result['seconds']:.1f} good images/s over {result['seconds']:.1f} s, restarts included")
    for name, value in checks.items():
        print(f"  {name}: {value}")
    failures = {k: v for k, v in checks.items() if k != "leftover names" and v}
    print("PASS" if not failures else f"FAIL: {failures}")
    print(f"(files in {result['root']})")


if __name__ == "__main__":
    main()
