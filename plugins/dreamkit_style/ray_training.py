"""``dreamkit style train --engine ray``: the same training step on Ray Train (TorchTrainer, DDP).

Each of the N workers takes its share of every step's global batch (the crops are those a single
process would draw: :class:`~.training.CropSampler` depends only on seed, step and position), DDP
averages the gradients (gloo on CPUs, NCCL on GPUs), and the figures are averaged across workers,
so the loss curve is the single process's up to float rounding. Rank 0 writes checkpoints through
Ray's checkpointing (and a copy in ``OUTPUT.train/``, which a rerun of the command resumes from);
a worker that dies makes Ray restart the group from the last checkpoint (``FailureConfig``). The
driver shows progress from ``OUTPUT.train/progress.json``, which rank 0 rewrites every step.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from dreamkit.errors import DreamkitError
from dreamkit.io import atomic_write, atomic_write_bytes

from .effect import Style
from .training import (CropSampler, TrainResult, TrainSettings, Trainer, TrainingLoss, finished_model, loss_effect,
                       loss_values, preview_path, preview_photos, read_checkpoint, run_identity, style_thumbnail,
                       training_folder, write_preview)
from .model import save_model

FIGURES = ("loss", "style", "content", "tv")
#: Restarts of the worker group after a worker dies, before the run fails.
MAX_FAILURES = 3


def train_on_ray(effect: Style, images: list[Path], output: Path, settings: TrainSettings, *, workers: int = 2,
                 address: str | None = None, use_gpu: bool = False, quiet: bool = False,
                 threads: int | None = None, fail_at_step: int | None = None) -> TrainResult:
    """Train on ``workers`` Ray Train workers (a local Ray instance, or the cluster at ``address``).
    ``fail_at_step``: for tests, the last worker kills itself (SIGKILL) once when it reaches that
    step, to prove the run comes back from its checkpoint."""
    from dreamkit.batch.ray_engine import connect_ray, import_ray

    if workers < 1:
        raise DreamkitError(f"--workers {workers} is not allowed; expected a positive integer")
    if settings.batch % workers:
        raise DreamkitError(f"--batch {settings.batch} does not split evenly over {workers} workers; give a multiple "
                            f"of {workers}")
    ray = import_ray()
    try:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise DreamkitError("--engine ray needs Ray Train: pip install 'dreamkit[ray]'") from None
    folder = training_folder(output).resolve()
    identity = run_identity(settings, effect, images)
    earlier = read_checkpoint(folder / "checkpoint.pt", identity)  # another run's: said before Ray starts
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "progress.json").unlink(missing_ok=True)
    started = connect_ray(ray, address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    config = {"loss": loss_values(effect),
              "images": [str(p) for p in images], "settings": settings.to_dict(), "folder": str(folder),
              "output": str(output.resolve()), "identity": identity, "fail_at_step": fail_at_step,
              "run": uuid.uuid4().hex,
              "threads": threads or max(1, cpus // workers)}
    trainer = TorchTrainer(
        _worker_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": config["threads"]}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="train", storage_path=str(folder / "ray"),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=MAX_FAILURES)))
    try:
        result = _fit_with_progress(trainer, folder, settings, quiet)
    finally:
        if started:
            ray.shutdown()
    if result.error is not None:
        raise DreamkitError(f"Ray Train failed: {result.error}")
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / "checkpoint.pt", map_location="cpu", weights_only=True)
    finished = output.exists() and int(state["step"]) >= settings.steps
    if finished:
        shutil.rmtree(folder, ignore_errors=True)
    return TrainResult(finished, int(state["step"]), int(earlier["step"]) if earlier else 0,
                       [list(h) for h in state["history"]],
                       float(state["seconds"]), state.get("model_sha256"), list(state.get("restarts", [])),
                       str(state.get("precision", "")))


def _fit_with_progress(trainer: Any, folder: Path, settings: TrainSettings, quiet: bool) -> Any:
    """``trainer.fit()`` in a thread, with a progress bar from rank 0's ``progress.json``. Ray's
    log monitor prints worker deaths on stdout: stdout is kept for results (``--json``)."""
    from dreamkit.progress import make_progress

    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    with contextlib.redirect_stdout(sys.stderr), \
            make_progress(None if not quiet else False).bar(settings.steps, "train (ray)") as bar:
        thread = threading.Thread(target=fit, name="dreamkit-ray-train", daemon=True)
        thread.start()
        shown = 0
        while thread.is_alive():
            thread.join(0.5)
            try:
                progress = json.loads((folder / "progress.json").read_text())
            except (OSError, ValueError):
                continue
            bar.show(**{k: progress[k] for k in ("loss", "style", "content") if k in progress})
            step = int(progress.get("step", 0))
            if step > shown:
                bar.update(step - shown)
                shown = step
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its share of every step, DDP, checkpoints from rank 0."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from dreamkit.plugins import get_host

    torch.set_num_threads(int(config["threads"]))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    settings = TrainSettings.from_dict(config["settings"])
    folder, output = Path(config["folder"]), Path(config["output"])
    effect = loss_effect(config["loss"])
    device = ray.train.torch.get_device()
    loss = TrainingLoss(effect, get_host(), device, settings.size, settings.style_side, getattr(torch, settings.dtype))
    trainer = Trainer.create(settings, loss, device)
    # Ray's latest checkpoint, else the copy rank 0 wrote (a worker killed right after a report
    # can beat the report's registration, and a rerun of the command starts from it too).
    state = _ray_checkpoint_state() or read_checkpoint(folder / "checkpoint.pt", config["identity"])
    if state is not None:
        trainer.restore(state)
    started = folder / f".started-{config['run']}"
    if started.exists():  # this run's workers started before: Ray brought the group back
        trainer.restarts.append(trainer.step)
    dist.barrier()
    if rank == 0:
        started.touch()
    model = ray.train.torch.prepare_model(trainer.network, move_to_device=False)
    images = [Path(p) for p in config["images"]]
    sampler = CropSampler(images, settings.size, settings.seed)
    share = settings.batch // world
    positions = range(rank * share, (rank + 1) * share)
    marker = folder / f"failed-once-at-{config['fail_at_step']}"
    photos = preview_photos(sampler, settings.size) if settings.preview_every and rank == 0 else []
    while trainer.step < settings.steps:
        if config["fail_at_step"] == trainer.step and rank == world - 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        started = time.perf_counter()
        figures = trainer.run_step(sampler.batch(trainer.step, positions), model, positions)
        averaged = torch.tensor([figures[k] for k in FIGURES], dtype=torch.float64)
        dist.all_reduce(averaged)
        figures = dict(zip(FIGURES, (averaged / world).tolist()))
        trainer.seconds += time.perf_counter() - started
        trainer.record(figures)
        metrics = {"step": trainer.step, **figures}
        if rank == 0:
            atomic_write_bytes(folder / "progress.json", json.dumps(metrics).encode())
        if photos and (trainer.step % settings.preview_every == 0 or trainer.step == settings.steps):
            write_preview(trainer, photos, preview_path(output))
        if trainer.step % settings.checkpoint_every and trainer.step != settings.steps:
            continue
        with tempfile.TemporaryDirectory(prefix="dreamkit-train-") as directory:
            checkpoint = None
            if rank == 0:
                if trainer.step == settings.steps:  # the model first: a checkpoint at the end means it is written
                    digest = save_model(output, finished_model(trainer, effect, images, style_thumbnail(effect)))
                    state = {**trainer.state(config["identity"]), "model_sha256": digest}
                    torch.save(state, Path(directory) / "checkpoint.pt")
                else:
                    trainer.save_checkpoint(Path(directory) / "checkpoint.pt", config["identity"])
                atomic_write(folder / "checkpoint.pt", lambda tmp: shutil.copyfile(Path(directory) / "checkpoint.pt", tmp))
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)


def _ray_checkpoint_state() -> dict[str, Any] | None:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / "checkpoint.pt", map_location="cpu", weights_only=True)


__all__ = ["train_on_ray"]
