"""Make the video pictures in the README (docs/images/video-*.jpg): strips of frames of a
synthetic panning clip (bench/video.py's), stylised and dreamed with and without the optical flow.

    .venv/bin/python docs/make_video_figures.py [--side 256] [--frames 4]

Each row is the same 4 frames; the flicker figures are bench/video.py's.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))

from make_style_figures import OUT, SAMPLES, grid  # noqa: E402
from video import pan_clip, warping_error  # noqa: E402

from dreamkit import Pipeline, load_image  # noqa: E402
from dreamkit.io import tensor_to_pil  # noqa: E402
from dreamkit.plugins import get_host  # noqa: E402
from dreamkit.runtime import configure  # noqa: E402


def run(clip, **params):
    name = params.pop("effect")
    return [frame.image for frame in Pipeline([get_host().effect(name)(**params)]).run(clip, seed=1).frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    configure()
    clip, flows, valids = pan_clip(load_image(SAMPLES / "chelsea.png"), args.side, args.frames, step=6)
    style = str(SAMPLES / "ihc.png")
    rows = [("input: a pan, 6 px a frame", clip)]
    independent = [run([frame], effect="style", style=[style])[0] for frame in clip]
    rows.append(("style, frames alone", independent))
    rows.append(("style, flow=false", run(clip, effect="style", style=[style], flow=False)))
    rows.append(("style (default: flow)", run(clip, effect="style", style=[style])))
    rows.append(("deepdream, frames alone", [run([frame], effect="deepdream")[0] for frame in clip]))
    rows.append(("deepdream (default: carry=0.8)", run(clip, effect="deepdream")))
    for label, frames in rows[1:]:
        print(f"{label}: warping error {warping_error(frames, flows, valids):.4f}")
    grid([[(f"{label}: frame {i + 1}" if i == 0 else f"frame {i + 1}", tensor_to_pil(frame))
           for i, frame in enumerate(frames)] for label, frames in rows], OUT / "video-strips.jpg")


if __name__ == "__main__":
    main()
