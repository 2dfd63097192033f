"""``dreamkit style train``: train a feed-forward style network (the style plugin's command)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dreamkit.commands import Command
from dreamkit.errors import DreamkitError, ParameterError

from .training import LOSS_PARAMS, NOISE_CHANNELS, PRECISIONS, TrainSettings, TrainingError, preview_path, training_folder

EXIT_OK, EXIT_INTERRUPTED = 0, 130


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="style_command", required=True, metavar="ACTION", parser_class=type(parser))
    train = sub.add_parser("train", help="train a network that applies one style in a single pass",
                           description="Train a feed-forward style network on your photos with the style "
                                       "effect's loss; use it with -e fast_style:model=OUTPUT. Run the same "
                                       "command again to resume an interrupted run.")
    train.add_argument("--style", action="append", required=True, metavar="IMAGE",
                       help="style image (repeat to blend several)")
    train.add_argument("--style-weights", metavar="W,W,...", help="blend weight of each style (default: equal)")
    train.add_argument("--images", nargs="+", action="extend", default=[], metavar="INPUT",
                       help="training photos: image files, folders, glob patterns (as `dreamkit run` takes)")
    train.add_argument("--list", action="append", dest="list_files", default=[], metavar="FILE",
                       help="a file of photo paths, one per line; repeatable")
    train.add_argument("-r", "--recursive", action="store_true", help="walk folders' subfolders")
    train.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.dkstyle", help="the model file")
    defaults = TrainSettings()
    train.add_argument("--architecture", default=defaults.architecture, choices=["small", "classic"],
                       help="small (default: real time on a CPU) or classic (Johnson et al.)")
    train.add_argument("--steps", type=int, default=defaults.steps, help=f"optimiser steps (default {defaults.steps})")
    train.add_argument("--size", type=int, default=defaults.size, help=f"training crop size, px (default {defaults.size})")
    train.add_argument("--batch", type=int, default=defaults.batch, help=f"crops per step (default {defaults.batch})")
    train.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam's learning rate at the start, annealed to 0 over --steps (default {defaults.lr})")
    train.add_argument("--seed", type=int, default=defaults.seed, help="random seed (crops and initial weights)")
    train.add_argument("--style-size", type=int, default=defaults.style_side, metavar="PX",
                       help=f"the style image's longest side in the loss: its patterns' size (default "
                            f"{defaults.style_side}; never enlarged)")
    train.add_argument("--noise", type=int, default=None, metavar="N",
                       help="noise channels the network draws texture from in flat areas (default: "
                            f"{', '.join(f'{n} for {a}' for a, n in NOISE_CHANNELS.items())}; 0: texture only from the photo)")
    train.add_argument("--precision", default=defaults.precision, choices=list(PRECISIONS),
                       help="the network's forward and backward: auto (default: bf16 where this machine runs it "
                            "clearly faster, measured once), fp32, or bf16 (weights, optimiser and loss stay fp32)")
    train.add_argument("--loss", action="append", default=[], metavar="KEY=VALUE",
                       help="a loss setting of the style effect, e.g. style_weight=200, backbone=vgg19, "
                            f"color=luminance ({', '.join(p for p in LOSS_PARAMS if p not in ('style', 'style_weights'))})")
    train.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="N",
                       help=f"steps between checkpoints (default {defaults.checkpoint_every})")
    train.add_argument("--preview-every", type=int, default=defaults.preview_every, metavar="N",
                       help=f"steps between previews written beside the model (default {defaults.preview_every}; 0: none)")
    train.add_argument("--engine", default="local", choices=["local", "ray"], help="this process, or Ray Train")
    train.add_argument("--workers", type=int, default=None, metavar="N", help="Ray Train workers (default 2)")
    train.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")
    train.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model or start the run again")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _loss_values(args: argparse.Namespace) -> dict[str, Any]:
    from .effect import Style

    values: dict[str, Any] = {"style": list(args.style)}
    texts: dict[str, str] = {}
    for item in args.loss:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParameterError(f"--loss {item!r}: expected KEY=VALUE, e.g. style_weight=200")
        texts[key.strip()] = value.strip()
    if args.style_weights:
        texts["style_weights"] = args.style_weights
    unknown = sorted(k for k in texts if k not in LOSS_PARAMS or k == "style")
    if unknown:
        raise ParameterError(f"--loss: {', '.join(unknown)} cannot be set for training; the loss takes "
                             f"{', '.join(p for p in LOSS_PARAMS if p != 'style')}")
    for key, text in texts.items():
        values[key] = Style.params[key].parse(text, "style")
    return values


def run(args: argparse.Namespace) -> int:
    """``dreamkit style train``: its one action."""
    from dreamkit.batch.inputs import list_inputs
    from dreamkit.plugins import get_host
    from dreamkit.progress import make_progress
    from dreamkit.resources import PathResolver, resolve_values
    from dreamkit.context import resolve_device

    from .effect import Style
    from .training import loss_effect, readable_images, train

    settings = TrainSettings(architecture=args.architecture, steps=args.steps, size=args.size, batch=args.batch,
                             lr=args.lr, seed=args.seed, style_side=args.style_size, noise=args.noise,
                             precision=args.precision,
                             checkpoint_every=args.checkpoint_every, preview_every=args.preview_every)
    host = get_host()
    values = resolve_values(Style, _loss_values(args), PathResolver(host=host))
    effect = loss_effect(values)
    if not args.images and not args.list_files:
        raise DreamkitError("--images: give the training photos (files, folders or glob patterns)")
    listing = list_inputs(args.images, recursive=args.recursive, list_files=args.list_files)
    for problem in listing.problems:
        raise DreamkitError(f"--images: {problem.reason}")
    paths = list(dict.fromkeys(item.path for item in listing.items if item.video_frame is None))
    images, unreadable = readable_images(paths)
    for line in unreadable:
        print(f"dreamkit: skipped (not a readable image): {line}", file=sys.stderr)
    if not images:
        raise DreamkitError(f"--images: no readable training images in {', '.join(map(str, args.images or args.list_files))}")
    output = args.output
    if output.suffix != ".dkstyle":
        raise DreamkitError(f"-o {output}: a style model's file name ends in .dkstyle")
    inputs = {Path(p).resolve() for p in [*images, *effect.style]}
    if output.resolve() in inputs:
        raise DreamkitError(f"-o {output}: that is one of the inputs; it is never overwritten")
    folder = training_folder(output)
    if args.overwrite:
        (folder / "checkpoint.pt").unlink(missing_ok=True)
    elif output.exists():
        raise DreamkitError(f"-o {output}: exists; pass --overwrite to train it again")
    device = resolve_device(args.device)
    if args.engine == "ray":
        from .ray_training import train_on_ray

        result = train_on_ray(effect, images, output, settings, workers=args.workers or 2, address=args.ray_address,
                              use_gpu=device.type == "cuda", quiet=args.quiet)
    else:
        if args.workers is not None or args.ray_address:
            raise DreamkitError("--workers and --ray-address need --engine ray")
        result = train(effect, images, output, settings, host=host, device=device,
                       progress=make_progress(None if not args.quiet else False))
    summary = {"model": str(output) if result.finished else None, "finished": result.finished, "steps": result.step,
               "resumed_from": result.resumed_from, "seconds": round(result.seconds, 1),
               "loss": dict(zip(("total", "style", "content", "tv"), result.history[-1][1:])) if result.history else None,
               "sha256": result.model_sha256, "preview": str(preview_path(output)) if settings.preview_every else None,
               "precision": result.precision}
    if args.json:
        print(json.dumps(summary))
    elif result.finished:
        print(f"wrote {output} ({result.step} steps{f', resumed from step {result.resumed_from}' if result.resumed_from else ''}, "
              f"{result.seconds:.0f} s of training; {result.precision}); use it with -e fast_style:model={output}")
    else:
        print(f"stopped at step {result.step} of {settings.steps}; the checkpoint is in {folder}/: run the same command "
              "to resume", file=sys.stderr)
    return EXIT_OK if result.finished else EXIT_INTERRUPTED


COMMAND = Command("style", "train feed-forward style networks (`dreamkit style train`)", configure, run)
