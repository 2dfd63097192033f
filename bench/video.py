"""Video: flicker of stylised clips with and without optical flow, the flow's accuracy and its cost.

    .venv/bin/python bench/video.py [--side 256] [--frames 6] [--iterations 30] [--threads 2]

Two synthetic clips whose motion is known exactly, made from chelsea.png: a slow **pan** (the
view moves 3 px a frame) and a slow **zoom** (2% a frame about the centre). Each is stylised with
the ``style`` effect's defaults (ihc.png, ``iterations`` per frame) three ways:

    independent   every frame on its own (temporal_weight=0): what neural-style users get
    in-place      the frame sequence with flow=false: the previous result held where the input
                  did not change (dreamkit before the flow)
    flow          the defaults: the previous result moved along OpenCV's DIS flow is the start,
                  held where the motion is trusted

The flicker is the warping error of Lai et al. 2018: the mean absolute difference between each
output frame and the previous output frame moved by the *true* motion, over the pixels visible in
both (so the measure does not depend on the flow being judged). Ratios are against independent
and against in-place, measured side by side in this run. Also printed: the flow's end-point error
against the true motion and its cost per frame pair (two DIS flows and the mask) beside the
effect's own time per frame; and the same clips through ``deepdream`` (its defaults) with every
frame dreamed in a run of its own ("dream alone", as separate images) against one sequence ("dream
carry": the previous dream carried along the flow, (1 - carry) x steps a frame), with the dream's
strength (mean change from the input) to show that the carry keeps the dream, not just removes it;
and frames/s of a cheap pipeline (resize + adjust) on a --io-seconds clip at --io-height, the whole
``dreamkit run`` process, against decoding, writing PNG frames and encoding them alone (the floor).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def sample(name: str) -> pathlib.Path:
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent / name


def pan_clip(photo: torch.Tensor, side: int, frames: int, step: int = 3):
    """Frames of a view panning right by ``step`` px, and the true backward flow of each frame
    after the first (pixel x of frame t was at x + step in frame t-1), with its valid region."""
    height = side * 2 // 3
    clip = [photo[..., 4:4 + height, 4 + i * step:4 + i * step + side] for i in range(frames)]
    backward = torch.zeros(height, side, 2)
    backward[..., 0] = step
    valid = torch.zeros(height, side, dtype=torch.bool)
    valid[:, :side - step - 1] = True
    return clip, [backward] * (frames - 1), [valid] * (frames - 1)


def zoom_clip(photo: torch.Tensor, side: int, frames: int, rate: float = 1.02):
    """Frames zooming in by ``rate`` a frame about the centre of ``photo`` (rendered by sampling
    the photo), and the true backward flows: pixel p of frame t was at c + (p - c) / rate in t-1."""
    import torch.nn.functional as F

    height = side * 2 // 3
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, side), indexing="ij")
    span_y, span_x = height / photo.shape[-2], side / photo.shape[-1]
    clip = []
    for i in range(frames):
        scale = rate ** -i
        grid = torch.stack([xs * span_x * scale, ys * span_y * scale], -1).unsqueeze(0)
        clip.append(F.grid_sample(photo, grid, mode="bilinear", align_corners=True).clamp(0, 1))
    py, px = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij")
    cy, cx = (height - 1) / 2, (side - 1) / 2
    backward = torch.stack([(px - cx) / rate + cx - px, (py - cy) / rate + cy - py], -1)
    valid = torch.ones(height, side, dtype=torch.bool)
    return clip, [backward] * (frames - 1), [valid] * (frames - 1)


def warping_error(outputs, flows, valids) -> float:
    from dreamkit.flow import warp

    errors = [float((b - warp(a, flow)).abs().mean(1)[0][valid].mean())
              for a, b, flow, valid in zip(outputs, outputs[1:], flows, valids)]
    return sum(errors) / len(errors)


def stylise(clip, mode: str, iterations: int):
    from dreamkit import Pipeline
    from dreamkit_style import Style

    params = {"style": [str(sample("ihc.png"))], "iterations": iterations}
    start = time.perf_counter()
    if mode == "independent":
        outputs = [Pipeline([Style(**params, temporal_weight=0)]).run(frame, device="cpu").image for frame in clip]
    else:
        effect = Style(**params, flow=mode == "flow")
        outputs = [frame.image for frame in Pipeline([effect]).run(clip, device="cpu").frames]
    return outputs, (time.perf_counter() - start) / len(clip)


def dream(clip, mode: str):
    """The clip through the ``deepdream`` effect's defaults: ``alone`` each frame in a run of its
    own (as a user dreams separate images), ``carry`` as one sequence (the default carry along the
    flow); returns the frames and the seconds per frame."""
    from dreamkit import Pipeline
    from dreamkit_deepdream import DeepDream

    start = time.perf_counter()
    if mode == "alone":
        outputs = [Pipeline([DeepDream()]).run(frame, device="cpu", seed=1).image for frame in clip]
    else:
        outputs = [frame.image for frame in Pipeline([DeepDream()]).run(clip, device="cpu", seed=1).frames]
    return outputs, (time.perf_counter() - start) / len(clip)


def dream_strength(clip, outputs) -> float:
    """Mean |output - input| (0..1): how much the dream changed the frames."""
    return sum(float((o - i).abs().mean()) for o, i in zip(outputs, clip)) / len(clip)


def flow_accuracy(clip, flows, valids) -> tuple[float, float]:
    """Mean end-point error of DIS's backward flow against the true one (px), and the cost of
    one frame pair's motion (two flows and the mask, ms; median)."""
    from dreamkit.flow import Motion, optical_flow

    errors, costs = [], []
    for before, after, true, valid in zip(clip, clip[1:], flows, valids):
        estimated = torch.as_tensor(optical_flow(after, before))
        errors.append(float((estimated - true).norm(dim=-1)[valid].mean()))
        start = time.perf_counter()
        Motion.between(before, after)
        costs.append((time.perf_counter() - start) * 1000)
    return sum(errors) / len(errors), sorted(costs)[len(costs) // 2]


def make_clip(path: pathlib.Path, seconds: float, height: int, rate: int = 24) -> int:
    """A synthetic H.264 clip (a photo panning) of ``seconds`` at ``height`` px (16:9): what the
    I/O measure decodes. Returns its frame count."""
    import av
    import numpy as np
    import torch.nn.functional as F
    from dreamkit.io import load_image

    width = height * 16 // 9 // 2 * 2
    count = round(seconds * rate)
    photo = load_image(sample("astronaut.png"))
    wide = F.interpolate(photo, size=(height, width + count), mode="bilinear", align_corners=False)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for i in range(count):
            frame = (wide[0, :, :, i:i + width].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return count


def io_floor(clip: pathlib.Path, folder: pathlib.Path) -> float:
    """Seconds to decode every frame of ``clip`` to RGB, write it as a PNG and encode the PNGs back
    into H.264 (what any tool must do for a video through per-frame images), in this process."""
    import av
    from PIL import Image

    from dreamkit.batch.encode import encode_video

    start = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            paths.append(folder / f"{index:06d}.png")
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(paths[-1])
    encode_video(paths, clip, folder.with_suffix(".mp4"), overwrite=True)
    return time.perf_counter() - start


def cheap_run(clip: pathlib.Path, out: pathlib.Path) -> float:
    """Seconds for the whole ``dreamkit run clip -e resize:scale=1 -e adjust:contrast=1.1`` process."""
    import subprocess

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dreamkit", "run", str(clip), "-e", "resize:scale=1", "-e",
                    "adjust:contrast=1.1", "-o", str(out), "-q"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def style_run(clip: pathlib.Path, out: pathlib.Path, seconds: float) -> tuple[float, list[float]]:
    """The whole ``dreamkit run clip -e style:style=ihc.png`` process (the effect's defaults) on the
    first ``seconds`` of ``clip``: its seconds, and each frame's own seconds from the report."""
    import json
    import subprocess

    report = out.with_suffix(".jsonl")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dreamkit", "run", str(clip), "-e", f"style:style={sample('ihc.png')}",
                    "-o", str(out), "-q", "--duration", str(seconds), "--report", str(report)], check=True,
                   stdout=subprocess.DEVNULL)
    whole = time.perf_counter() - start
    records = [json.loads(line) for line in report.read_text().splitlines()]
    return whole, [r["seconds"] for r in sorted(records, key=lambda r: r["video_frame"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=256, help="frame width in px (height 2/3 of it)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=30, help="style iterations per frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--io-seconds", type=float, default=5.0, help="length of the I/O measure's clip (0: skip it)")
    parser.add_argument("--io-height", type=int, default=480, help="its height in px (16:9)")
    parser.add_argument("--style-seconds", type=float, default=0.0,
                        help="also run `dreamkit run clip -e style` on this much of the --io-seconds clip and "
                             "extrapolate the whole clip's time from its frames (0: skip; the whole 5 s 480p clip "
                             "takes about half an hour on 2 CPU threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from dreamkit.io import load_image

    from ladder import describe_cpu

    photo = load_image(sample("chelsea.png"))
    print(f"Video flicker (warping error against the true motion), {args.frames} frames of {args.side} px, "
          f"style defaults with {args.iterations} iterations a frame")
    print(f"CPU: {describe_cpu()}")
    print(f"{'clip':6} {'mode':12} {'warp err':>9} {'vs indep':>9} {'vs in-place':>11} {'s/frame':>8}")
    for name, make in (("pan", pan_clip), ("zoom", zoom_clip)):
        clip, flows, valids = make(photo, args.side, args.frames)
        errors, times = {}, {}
        for mode in ("independent", "in-place", "flow"):
            outputs, times[mode] = stylise(clip, mode, args.iterations)
            errors[mode] = warping_error(outputs, flows, valids)
        for mode in errors:
            print(f"{name:6} {mode:12} {errors[mode]:9.4f} {errors[mode] / errors['independent']:8.2f}x "
                  f"{errors[mode] / errors['in-place']:10.2f}x {times[mode]:8.2f}")
        dreams = {mode: dream(clip, mode) for mode in ("alone", "carry")}
        independent = warping_error(dreams["alone"][0], flows, valids)
        for mode, (outputs, seconds) in dreams.items():
            error = warping_error(outputs, flows, valids)
            print(f"{name:6} {'dream ' + mode:12} {error:9.4f} {error / independent:8.2f}x {'':>11} {seconds:8.2f}"
                  f"  (dream strength {dream_strength(clip, outputs):.4f})")
        end_point, cost = flow_accuracy(clip, flows, valids)
        print(f"{name:6} flow: end-point error {end_point:.3f} px; motion (2 DIS flows + mask) {cost:.1f} ms "
              f"per frame pair = {cost / 1000 / times['flow']:.1%} of the effect's time per frame")
    if args.io_seconds > 0:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            clip = pathlib.Path(folder) / "clip.mp4"
            count = make_clip(clip, args.io_seconds, args.io_height)
            floor = io_floor(clip, pathlib.Path(folder) / "floor")
            whole = cheap_run(clip, pathlib.Path(folder) / "out")
            if args.style_seconds > 0:
                styled, frames = style_run(clip, pathlib.Path(folder) / "styled", args.style_seconds)
                later = sorted(frames[1:])[len(frames[1:]) // 2] if len(frames) > 1 else frames[0]
                estimate = styled - sum(frames) + frames[0] + later * (count - 1)
                print(f"style on {args.io_height}p (effect defaults): {len(frames)} frames in {styled:.0f} s (the whole "
                      f"process); first frame {frames[0]:.1f} s, later frames {later:.1f} s each (median): the "
                      f"{count}-frame clip about {estimate / 60:.0f} min")
        print(f"I/O: {count} frames of {args.io_height}p: decode + PNG + encode alone {count / floor:.1f} frames/s; "
              f"dreamkit run -e resize -e adjust (the whole process) {count / whole:.1f} frames/s = "
              f"{floor / whole:.2f}x the floor's rate")

if __name__ == "__main__":
    main()
