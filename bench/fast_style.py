"""Real-time style: apply time against the `style` effect, quality on photos the network never saw,
and training speed on one process and on Ray Train.

    .venv/bin/python bench/fast_style.py [--parts apply quality train] [--sizes 512 1024]
        [--rounds 2] [--batch 8] [--style ihc.png] [--small-steps 1200] [--classic-steps 400]
        [--eval-every 100] [--ladder 4 6 8 10 15 20 40] [--quality-archs small classic] [--model ARCH=PATH ...]
        [--fit-one 0] [--train-steps 10] [--grid docs/images/fast-style.jpg]

apply    Each measurement in its own process, the kinds alternating (style, small, classic, style,
         ...): the `style` effect with its defaults (as `dreamkit run -e style:style=S` runs it)
         against `fast_style` with a `small` and a `classic` network, on astronaut.png resized to
         SIZE x SIZE, after each process's warm-up (models loaded, one pass). The style effect's
         time is one apply (100 L-BFGS iterations, the scales it picks); fast_style's the median
         of five. Ratios: style time / fast time. Then images/s with BATCH images of SIZE in one
         call (apply_batch). Process start and model loading are outside every figure.
quality  Trains a `small` and a `classic` network (256 px crops, batch 4, the defaults of
         `dreamkit style train`) on chelsea, coffee, rocket and the two motorcycles, and holds
         out astronaut and grace_hopper: at 512 px, the style effect's own loss (Style.evaluate:
         style and content parts) of the fast results against those of the effect's optimised
         results (its defaults). Every EVAL_EVERY steps each network is measured the same
         way (its learning curve); the training time at which the small one first comes within
         1.5x on both (averaged over the held-out photos) is the time to a usable model. The
         optimiser's ladder: the style effect stopped after each of LADDER iterations per scale
         (its default is 100), measured the same way and timed: each network's result is placed
         on it (as good as the optimiser stopped after how many iterations, and how much faster
         than that optimiser it is: the speed-up at equal quality). A network given with
         --model is measured instead of trained. Writes the grid (photo | optimised | classic |
         small, one row per held-out photo) to --grid. Each network's ratios are also given
         layer by layer (the loss's own terms), with each layer's share of the optimised
         results' style loss, and once more with the optimised results' tones in place of
         their own (a blur at QUALITY_SIDE/64 px swapped): whether the gap is tone or texture.
         With --fit-one STEPS, each architecture is also trained on the first held-out photo
         alone, on the whole photo (the measure's own loss) and on the random crops training
         makes of it, and scored on it and on the other; and the trained networks are scored
         on their own training photos: what the architecture can express for one fixed input,
         what one function of every crop keeps of it, and what more photos could give.
train    Steps/s of the same training (small, 256 px, global batch 4) in one process and on a
         local Ray cluster of 2 workers (DDP over gloo; the same machine, so the figure is the
         overhead of distribution, not a speed-up). The first step of each is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import statistics
import tempfile
import time

import workers

HERE = pathlib.Path(__file__).resolve().parent
TRAIN = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png")
HELD_OUT = ("astronaut.png", "grace_hopper.jpg")
BAR = 1.5


def sample(name: str) -> pathlib.Path:
    if name == "grace_hopper.jpg":
        import matplotlib

        return pathlib.Path(matplotlib.get_data_path()) / "sample_data" / name
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent / name


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def square(name: str, side: int):
    import torch.nn.functional as F

    from dreamkit import load_image

    image = load_image(sample(name))
    short = min(image.shape[-2:])
    top, left = (image.shape[-2] - short) // 2, (image.shape[-1] - short) // 2
    crop = image[..., top:top + short, left:left + short]
    return F.interpolate(crop, size=(side, side), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def resized(name: str, side: int):
    """The photo with its longer side ``side`` (its shape kept)."""
    import torch.nn.functional as F

    from dreamkit import load_image

    image = load_image(sample(name))
    scale = side / max(image.shape[-2:])
    size = (round(image.shape[-2] * scale) // 4 * 4, round(image.shape[-1] * scale) // 4 * 4)
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


# -- workers (each in its own process) -------------------------------------------------------
def worker(kind: str, side: int, model: str | None, style: str, batch: int, threads: int) -> dict:
    import torch

    from dreamkit.pipeline import Pipeline
    from dreamkit.plugins import get_host
    from dreamkit.runtime import configure

    configure(threads=threads)
    host = get_host()
    photo = square("astronaut.png", side)
    if kind == "style":
        effect = host.effect("style")(style=[str(sample(style))])
        Pipeline([effect]).run(square("astronaut.png", 64), device="cpu", host=host)  # loads the network
        started = time.perf_counter()
        result = Pipeline([effect]).run(photo, device="cpu", host=host)
        return {"seconds": time.perf_counter() - started, "style_loss": result.frames[0].results[0]["scales"][-1]["loss_end"]}
    effect = host.effect("fast_style")(model=model)

    class Context:  # what the effect uses of a run context (a single image: no previous frame)
        previous_input = previous_output = None

        def __init__(self):
            self.state = {}

        def add_result(self, record):
            pass

    effect.apply(photo, Context())  # warm-up: the file read and verified, one pass
    times = []
    for _ in range(5):
        started = time.perf_counter()
        effect.apply(photo, Context())
        times.append(time.perf_counter() - started)
    images = [square("astronaut.png", side) for _ in range(batch)]
    effect.apply_batch(images, [Context() for _ in images])
    started = time.perf_counter()
    effect.apply_batch(images, [Context() for _ in images])
    per_batch = time.perf_counter() - started
    return {"seconds": statistics.median(times), "images_per_second": batch / per_batch}


def run_worker(kind: str, side: int, model: str | None, args) -> dict:
    return workers.run_json(__file__, "--worker", kind, str(side), model or "-", "--style", args.style,
                            "--batch", str(args.batch), "--threads", str(args.threads))


def untrained_model(architecture: str, folder: pathlib.Path, style: str) -> str:
    """A model file of ``architecture`` as `dreamkit style train` makes it by default (with its
    noise source; the time does not depend on the weights)."""
    import torch

    from dreamkit_style.model import FastStyleModel, save_model
    from dreamkit_style.colour import colour_stats
    from dreamkit_style.training import TrainSettings
    from dreamkit_style.transformer import StyleNetwork
    from dreamkit import load_image

    mean, covariance = colour_stats(load_image(sample(style)))
    path = folder / f"{architecture}.dkstyle"
    save_model(path, FastStyleModel(StyleNetwork(architecture, TrainSettings(architecture).noise), False,
                                    {"mean": mean[None].float(), "covariance": covariance[None].float(),
                                     "weight": torch.ones(1)}, torch.zeros(3, 1, 1, dtype=torch.uint8)))
    return str(path)


def part_apply(args, folder: pathlib.Path) -> None:
    models = {arch: args.model.get(arch) or untrained_model(arch, folder, args.style) for arch in ("small", "classic")}
    print(f"apply: astronaut.png at SIZE x SIZE, {args.threads} threads; style = the `style` effect's defaults "
          f"(style={args.style}); each kind in its own process, alternating, {args.rounds} round(s)")
    for side in args.sizes:
        times: dict[str, list[float]] = {"style": [], "small": [], "classic": []}
        rates: dict[str, list[float]] = {"small": [], "classic": []}
        for _ in range(args.rounds):
            for kind in ("style", "small", "classic"):
                figures = run_worker(kind, side, models.get(kind), args)
                times[kind].append(figures["seconds"])
                if kind in rates:
                    rates[kind].append(figures["images_per_second"])
        style = statistics.median(times["style"])
        print(f"  {side:>5} px  style {style:8.2f} s")
        for arch in ("small", "classic"):
            fast = statistics.median(times[arch])
            print(f"  {side:>5} px  {arch:<7} {fast * 1000:8.1f} ms  {style / fast:7.1f}x faster than style  "
                  f"batch of {args.batch}: {statistics.median(rates[arch]):6.2f} images/s")


# -- quality ---------------------------------------------------------------------------------
def ratios(effect, host, photos, references, results) -> tuple[float, float]:
    """Mean over the held-out photos of the results' style and content loss over the optimised
    results' (the style effect's own loss)."""
    style_ratios, content_ratios = [], []
    for photo, reference, result in zip(photos, references, results):
        parts = effect.evaluate(result, photo, host)
        style_ratios.append(parts.style / reference.style)
        content_ratios.append(parts.content / reference.content)
    return statistics.mean(style_ratios), statistics.mean(content_ratios)


def evaluate(effect, host, photos, references, model) -> tuple[float, float]:
    """:func:`ratios` of ``model``'s results."""
    return ratios(effect, host, photos, references, [model.stylise(photo) for photo in photos])


def layer_terms(loss, photos, images) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Each image's style and content terms by layer (TrainingLoss.terms: the style effect's own
    loss, term for term)."""
    import torch

    terms = []
    with torch.no_grad():
        for photo, image in zip(photos, images):
            style, content, _ = loss.terms(image, loss.content_target(photo))
            terms.append(({k: float(v) for k, v in style.items()}, {k: float(v) for k, v in content.items()}))
    return terms


def layer_ratios(loss, photos, reference_terms, results) -> str:
    """Per layer, the mean over the held-out photos of the results' term over the optimised
    results': which layers a network falls short on."""
    terms = layer_terms(loss, photos, results)
    parts = []
    for which, name in ((0, "style"), (1, "content")):
        means = {layer: statistics.mean(t[which][layer] / r[which][layer] for t, r in zip(terms, reference_terms))
                 for layer in terms[0][which]}
        parts.append(f"{name} " + ", ".join(f"{layer} {ratio:.1f}x" for layer, ratio in means.items()))
    return "; ".join(parts)


def run_optimiser(effect, host, photo):
    """``effect`` (a `style` effect) run on ``photo`` on the CPU: its optimised result."""
    from dreamkit.pipeline import Pipeline

    return Pipeline([effect]).run(photo, device="cpu", host=host).frames[0].image


def optimiser_ladder(effect, host, photos, references, counts) -> list[tuple[int, float, float, float]]:
    """The style effect stopped after each of ``counts`` iterations per scale: (iterations, style
    ratio, content ratio to the converged optimised results, mean seconds per photo)."""
    from dreamkit_style.effect import Style

    ladder = []
    for count in counts:
        early = Style(**{**{k: v for k, v in effect.values.items() if v is not None}, "iterations": count})
        results, seconds = [], 0.0
        for photo in photos:
            started = time.perf_counter()
            results.append(run_optimiser(early, host, photo))
            seconds += time.perf_counter() - started
        style_ratio, content_ratio = ratios(effect, host, photos, references, results)
        ladder.append((count, style_ratio, content_ratio, seconds / len(photos)))
        print(f"  optimiser stopped at {count:3d} iterations/scale ({seconds / len(photos):5.1f} s a photo): style "
              f"{style_ratio:.2f}x, content {content_ratio:.2f}x of the converged", flush=True)
    return ladder


def with_tones_of(images, optimised, sigma: float):
    """``images`` with their low frequencies (a Gaussian blur at ``sigma`` px) replaced by those of
    the ``optimised`` results: the optimiser's tonal layout, the images' own texture. If the style
    loss does not drop, what keeps a network from the optimiser is its texture, not its tones."""
    from torchvision.transforms.functional import gaussian_blur

    kernel = 2 * math.ceil(3 * sigma) + 1

    def low(x):
        return gaussian_blur(x, [kernel, kernel], [sigma, sigma])

    return [(image - low(image) + low(reference)).clamp(0, 1) for image, reference in zip(images, optimised)]


def apply_seconds(model, photos, repeats: int = 3) -> float:
    """Seconds a photo for ``model`` (the median of ``repeats`` passes over the photos, after one)."""
    times = []
    for repeat in range(repeats + 1):
        started = time.perf_counter()
        for photo in photos:
            model.stylise(photo)
        times.append((time.perf_counter() - started) / len(photos))
    return statistics.median(times[1:])


def place_on_ladder(ladder, style_ratio: float, content_ratio: float, seconds: float) -> str:
    """Where a fast result's style loss falls on the optimiser's ladder: between the most
    iterations it beats (style loss no higher than the optimiser's there) and the fewest at which
    the optimiser is better, with the content losses, and the speed-up over the optimiser stopped
    at the rung it beats (at equal or better style, the conservative figure)."""
    beaten = [rung for rung in ladder if style_ratio <= rung[1]]
    ahead = [rung for rung in ladder if rung[1] < style_ratio and (not beaten or rung[0] > max(r[0] for r in beaten))]
    if not beaten:
        return (f"style worse than the optimiser stopped at {min(ladder)[0]} iterations/scale "
                f"({min(ladder)[1]:.2f}x), the ladder's lowest rung")
    count, _, rung_content, optimiser_seconds = max(beaten)
    above = f" and worse than it at {min(ahead)[0]}" if ahead else ""
    return (f"style at least as good as the optimiser stopped at {count} iterations/scale{above} (content "
            f"{content_ratio:.2f}x against its {rung_content:.2f}x at {count}); {optimiser_seconds / seconds:.0f}x "
            f"faster than it stopped at {count}")


def part_quality(args, folder: pathlib.Path) -> None:
    import torch

    from dreamkit.io import save_image
    from dreamkit.plugins import get_host
    from dreamkit.runtime import configure
    from dreamkit_style.model import load_model
    from dreamkit_style.training import TrainingLoss, TrainSettings, loss_effect, train

    configure(threads=args.threads)
    host = get_host()
    effect = loss_effect({"style": [str(sample(args.style))]})
    # the measure's loss term by term (and what --fit-one trains on); the photos' longest side on
    # both sides: the effect's style shrunk to the output
    measure = TrainingLoss(effect, host, torch.device("cpu"), args.quality_side, args.quality_side)
    photos = [resized(name, args.quality_side) for name in HELD_OUT]
    optimised, optimised_seconds = [], 0.0
    for photo in photos:
        started = time.perf_counter()
        optimised.append(run_optimiser(effect, host, photo))
        optimised_seconds += time.perf_counter() - started
        print(f"quality: optimised {tuple(photo.shape[-2:])} in {time.perf_counter() - started:.1f} s", flush=True)
    references = [effect.evaluate(image, photo, host) for image, photo in zip(optimised, photos)]
    photo_parts = [effect.evaluate(photo, photo, host) for photo in photos]
    for name, ref, own in zip(HELD_OUT, references, photo_parts):
        print(f"  {name}: optimised style {ref.style:.4g} content {ref.content:.4g} (the photo itself: style "
              f"{own.style:.4g})")
    reference_terms = layer_terms(measure, photos, optimised)
    shares = {layer: statistics.mean(t[0][layer] / sum(t[0].values()) for t in reference_terms)
              for layer in reference_terms[0][0]}
    print("  the optimised results' style loss by layer: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    converged = (effect.values["iterations"], 1.0, 1.0, optimised_seconds / len(photos))  # its default: the reference
    ladder = optimiser_ladder(effect, host, photos, references, args.ladder) + [converged]
    train_images = [sample(name) for name in TRAIN]
    results = {}  # each network's results on the held-out photos
    models = {}  # the networks trained here (on the five photos), for --fit-one
    for arch, steps in (("small", args.small_steps), ("classic", args.classic_steps)):
        if arch not in args.quality_archs:
            continue
        usable: list = []
        if arch in args.model:  # trained elsewhere: placed on the same measures, not trained again
            model, trained = load_model(args.model[arch]), args.model[arch]
        else:
            output = folder / f"{arch}-trained.dkstyle"

            def check(trainer, arch=arch, usable=usable):
                if trainer.step % args.eval_every:
                    return
                trainer.network.eval()
                style_ratio, content_ratio = evaluate(effect, host, photos, references, trainer.as_model())
                trainer.network.train()
                print(f"  {arch} step {trainer.step:5d} ({trainer.seconds:6.0f} s of training): style "
                      f"{style_ratio:.2f}x, content {content_ratio:.2f}x of the optimised", flush=True)
                if arch == "small" and not usable and style_ratio <= BAR and content_ratio <= BAR:
                    usable.append((trainer.step, trainer.seconds))

            settings = TrainSettings(architecture=arch, steps=steps, preview_every=0, checkpoint_every=100)
            result = train(effect, train_images, output, settings, host=host, device=torch.device("cpu"), on_step=check)
            model = models[arch] = load_model(output)
            trained = f"{steps} steps, {result.seconds:.0f} s of training ({steps / result.seconds:.2f} steps/s)"
        images = results[arch] = [model.stylise(photo) for photo in photos]
        style_ratio, content_ratio = ratios(effect, host, photos, references, images)
        print(f"quality {arch:<7} {trained}: style loss {style_ratio:.2f}x, content loss {content_ratio:.2f}x of the "
              f"optimised (bar {BAR}x)", flush=True)
        print(f"  {arch}: {place_on_ladder(ladder, style_ratio, content_ratio, apply_seconds(model, photos))}", flush=True)
        sigma = args.quality_side / 64
        toned = ratios(effect, host, photos, references, with_tones_of(images, optimised, sigma))
        print(f"  {arch} with the optimised results' tones (their blur at {sigma:g} px for its own): style "
              f"{toned[0]:.2f}x, content {toned[1]:.2f}x (its own: {style_ratio:.2f}x, {content_ratio:.2f}x)", flush=True)
        print(f"  {arch} by layer, against the optimised: {layer_ratios(measure, photos, reference_terms, images)}",
              flush=True)
        if arch == "small" and arch not in args.model:
            print(f"  time to a usable small model: " + (f"{usable[0][1] / 60:.1f} min ({usable[0][0]} steps)" if usable
                                                            else f"not within {BAR}x in {steps} steps"))
    if args.fit_one:
        fit_one(args, effect, host, measure, photos, references, models, folder)
    rows = []
    for index, (photo, image) in enumerate(zip(photos, optimised)):
        fast = [results[arch][index] for arch in ("classic", "small") if arch in results]
        rows.append(torch.cat([photo, image, *fast], -1))
    width = max(r.shape[-1] for r in rows)
    grid = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows], -2)
    if args.grid:
        save_image(grid, args.grid, overwrite=True)
        print(f"grid (photo | optimised | {' | '.join(a for a in ('classic', 'small') if a in results)}): {args.grid}")


def fit_one(args, effect, host, loss, photos, references, models, folder: pathlib.Path) -> None:
    """Where the gap between the networks and the optimiser comes from. Each architecture trained
    for FIT_ONE steps on the first held-out photo alone, two ways: on the whole photo (batch 1:
    exactly the measure's loss, as the optimiser gets it; the same input every step) and on the
    random crops `dreamkit style train` makes of it (its defaults); each scored on that photo and
    on the other, which it never saw. Then the networks trained on the five photos, scored on
    those photos (each against its own optimised result). Low on the whole-photo fit says the
    architecture can express a result that good for one fixed input; the crop fit, how much of
    it a network keeps when it must be one function of every crop, even of one photo; the
    training photos against the held-out ones, how much more photos could give."""
    import torch

    from dreamkit_style.model import load_model
    from dreamkit_style.training import Trainer, TrainSettings, train

    fitted, other = HELD_OUT[0], HELD_OUT[1]

    def scored(model) -> str:
        model.network.eval()
        scores = [evaluate(effect, host, [photo], [reference], model) for photo, reference in zip(photos, references)]
        return (f"{fitted} style {scores[0][0]:.2f}x, content {scores[0][1]:.2f}x; {other} (never seen) style "
                f"{scores[1][0]:.2f}x, content {scores[1][1]:.2f}x of the optimised")

    for arch in args.quality_archs:
        settings = TrainSettings(architecture=arch, steps=args.fit_one, size=args.quality_side, batch=1)
        trainer = Trainer.create(settings, loss, torch.device("cpu"))
        started = time.perf_counter()
        for _ in range(args.fit_one):
            trainer.run_step(photos[0])
        print(f"fit one: {arch:<7} trained on {fitted} alone ({args.fit_one} steps, "
              f"{time.perf_counter() - started:.0f} s): {scored(trainer.as_model())}", flush=True)
        settings = TrainSettings(architecture=arch, steps=args.fit_one, preview_every=0, checkpoint_every=args.fit_one)
        output = folder / f"{arch}-fit-crops.dkstyle"
        done = train(effect, [sample(fitted)], output, settings, host=host, device=torch.device("cpu"))
        print(f"fit one: {arch:<7} trained on crops of {fitted} alone ({args.fit_one} steps, {done.seconds:.0f} s): "
              f"{scored(load_model(output))}", flush=True)
    if not models:
        return
    trained = [resized(name, args.quality_side) for name in TRAIN]
    own = [effect.evaluate(run_optimiser(effect, host, photo), photo, host) for photo in trained]
    for arch, model in models.items():
        style_ratio, content_ratio = evaluate(effect, host, trained, own, model)
        print(f"fit one: {arch:<7} trained on the five photos, on those photos: style {style_ratio:.2f}x, content "
              f"{content_ratio:.2f}x of the optimised", flush=True)


# -- training speed --------------------------------------------------------------------------
def part_train(args, folder: pathlib.Path) -> None:
    import torch

    from dreamkit.plugins import get_host
    from dreamkit.runtime import configure
    from dreamkit_style.ray_training import train_on_ray
    from dreamkit_style.training import TrainSettings, loss_effect, train

    configure(threads=args.threads)
    effect = loss_effect({"style": [str(sample(args.style))]})
    images = [sample(name) for name in TRAIN]
    settings = TrainSettings(steps=args.train_steps, preview_every=0, checkpoint_every=args.train_steps)
    stamps = []
    started = time.perf_counter()
    alone = train(effect, images, folder / "speed-one.dkstyle", settings, host=get_host(), device=torch.device("cpu"),
                  on_step=lambda trainer: stamps.append(time.perf_counter()))
    wall_one = time.perf_counter() - started
    one = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    started = time.perf_counter()
    on_ray = train_on_ray(effect, images, folder / "speed-ray.dkstyle", settings, workers=2, quiet=True,
                          threads=max(1, args.threads // 2))
    wall_ray = time.perf_counter() - started
    ray_rate = args.train_steps / on_ray.seconds
    print(f"train: small, 256 px, global batch 4, {args.train_steps} steps")
    print(f"  one process ({args.threads} threads): {one:.2f} steps/s ({wall_one:.0f} s with start-up)")
    print(f"  Ray Train, 2 workers x {max(1, args.threads // 2)} thread(s): {ray_rate:.2f} steps/s "
          f"({ray_rate / one:.2f}x of one process; {wall_ray:.0f} s with starting Ray and the workers)")
    print(f"  same loss curve: last loss {alone.history[-1][1]:.6g} (one) vs {on_ray.history[-1][1]:.6g} (Ray)")
    precisions(args, effect, images, folder)


def precisions(args, effect, images, folder: pathlib.Path) -> None:
    """Steps/s of each architecture's training (one process, 256 px, batch 4) with the network in
    float32 and in bfloat16 (``--precision``), and what ``auto`` picks on this machine."""
    import torch

    from dreamkit.plugins import get_host
    from dreamkit.precision import bf16_kernels
    from dreamkit_style.training import TrainSettings, computes_in_bf16, train
    from dreamkit_style.transformer import StyleNetwork

    cpu = torch.device("cpu")
    kinds = ("fp32", "bf16") if bf16_kernels(cpu) else ("fp32",)
    print(f"train: the network in fp32 and bf16 (--precision), one process, {args.train_steps} steps")
    for arch in ("small", "classic"):
        rates = {}
        for precision in kinds:
            stamps = []
            settings = TrainSettings(architecture=arch, steps=args.train_steps, precision=precision, preview_every=0,
                                     checkpoint_every=args.train_steps)
            train(effect, images, folder / f"speed-{arch}-{precision}.dkstyle", settings, host=get_host(), device=cpu,
                  on_step=lambda trainer, stamps=stamps: stamps.append(time.perf_counter()))
            rates[precision] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        bf16 = (f"bf16 {rates['bf16']:.2f} steps/s ({rates['bf16'] / rates['fp32']:.2f}x)" if "bf16" in rates
                else "bf16: this CPU has no bf16 kernels")
        default = TrainSettings(architecture=arch)
        chosen, reason = computes_in_bf16(default, StyleNetwork(arch, default.noise), cpu)
        print(f"  {arch:<7} fp32 {rates['fp32']:.2f} steps/s, {bf16}; auto: {'bf16' if chosen else 'fp32'} ({reason})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["apply", "quality", "train"], choices=["apply", "quality", "train"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--style", default="ihc.png")
    parser.add_argument("--model", nargs="*", default=[], metavar="ARCH=PATH",
                        help="trained models: the apply part times them (default: untrained ones; the time does "
                             "not depend on the weights); the quality part measures them instead of training")
    parser.add_argument("--small-steps", type=int, default=1200)
    parser.add_argument("--classic-steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--quality-side", type=int, default=512)
    parser.add_argument("--quality-archs", nargs="+", default=["small", "classic"], choices=["small", "classic"],
                        help="the architectures the quality part measures")
    parser.add_argument("--ladder", nargs="+", type=int, default=[4, 6, 8, 10, 15, 20, 40],
                        help="iterations per scale the optimiser is stopped at, for the quality ladder")
    parser.add_argument("--fit-one", type=int, default=0, metavar="STEPS",
                        help="also train each architecture on one held-out photo alone for STEPS steps, whole and in crops, "
                             "and score the trained networks on their training photos (0: not)")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--grid", default=None, help="where to write the quality grid (.jpg/.png)")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SIZE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit_one < 0:
        parser.error(f"--fit-one {args.fit_one} is not allowed; expected an integer >= 0 (0: no fit)")
    if args.worker:
        kind, side, model = args.worker
        print(json.dumps(worker(kind, int(side), None if model == "-" else model, args.style, args.batch, args.threads)))
        return
    args.model = dict(item.split("=", 1) for item in args.model)
    import torch

    print(f"CPU: {cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}, "
          f"{args.threads} threads")
    with tempfile.TemporaryDirectory(prefix="dreamkit-bench-fast-") as tmp:
        folder = pathlib.Path(tmp)
        for part in args.parts:
            {"apply": part_apply, "quality": part_quality, "train": part_train}[part](args, folder)


if __name__ == "__main__":
    main()
