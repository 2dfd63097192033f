"""Optical flow (OpenCV's DIS), warping along it, and Ruder et al.'s trust mask, on clips whose
motion is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")

from dreamkit.flow import Motion, optical_flow, reliable, warp  # noqa: E402
from dreamkit.io import load_image  # noqa: E402


@pytest.fixture(scope="module")
def scene(samples):
    """astronaut.png: a photo large enough to pan over."""
    return load_image(samples / "astronaut.png")


def view(scene, x, y, height=120, width=160):
    return scene[..., y:y + height, x:x + width]


def test_the_flow_of_a_pan_is_the_pan(scene):
    """The view moves 3 px left and 2 px down: the content moves (+3, -2)."""
    flow = optical_flow(view(scene, 80, 100), view(scene, 77, 102))
    inner = flow[10:-10, 10:-10]
    end_point_error = np.sqrt((inner[..., 0] - 3) ** 2 + (inner[..., 1] + 2) ** 2).mean()
    assert end_point_error < 0.25, end_point_error
    still = optical_flow(view(scene, 80, 100), view(scene, 80, 100))
    assert np.abs(still).max() < 0.05


def test_warping_along_the_backward_flow_moves_the_previous_frame_into_place(scene):
    before, after = view(scene, 80, 100), view(scene, 77, 102)
    motion = Motion.between(before, after)
    followed = motion.follow(before)
    trusted = motion.trusted.bool()
    assert trusted.float().mean() > 0.9
    error = (followed - after).abs().mean(1)[0][trusted].mean()
    assert error < 0.1 * (before - after).abs().mean()  # control: without the motion
    exact = torch.zeros(120, 160, 2)
    exact[..., 0], exact[..., 1] = -3, 2  # pixel p of `after` was at p + (-3, 2) in `before`
    torch.testing.assert_close(warp(before, exact)[..., :-2, 3:], after[..., :-2, 3:], atol=1e-5, rtol=0)


def test_what_a_moving_square_uncovers_is_not_trusted(scene):
    """A square moves 8 px right over a still photo: the strip it uncovers (where it was) was
    hidden in the previous frame, so the mask is 0 there and 1 on the still photo far from it."""
    background = view(scene, 200, 200, 96, 128).clone()

    def frame(x):
        picture = background.clone()
        picture[..., 30:62, x:x + 32] = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1)
        return picture

    motion = Motion.between(frame(30), frame(38))
    uncovered = motion.trusted[34:58, 31:37]  # left behind by the square's trailing edge
    assert uncovered.mean() < 0.5, motion.trusted[30:62, 26:74]
    # The still photo more than two DIS patches (16 px) from the square (DIS spreads the motion
    # a little beyond the object, and the boundary test distrusts that):
    assert motion.trusted[:14, :].mean() > 0.95 and motion.trusted[78:, :].mean() > 0.95


def test_reliable_flags_flows_that_do_not_cancel():
    backward = np.zeros((20, 20, 2), np.float32)
    forward = np.zeros((20, 20, 2), np.float32)
    assert reliable(backward, forward).min() == 1
    forward[5:10, 5:10, 0] = 4.0  # these moved forward but nothing came back: occluded
    mask = reliable(backward, forward)
    assert mask[5:10, 5:10].max() == 0 and mask[15:, 15:].min() == 1


def test_what_came_in_from_outside_the_frame_is_not_trusted():
    """A pan of 4 px: the strip it brings in has no past (warping would repeat the edge there)."""
    backward = np.zeros((20, 30, 2), np.float32)
    backward[..., 0] = 4.0  # pixel x of frame t was at x + 4 in frame t-1
    forward = -backward
    mask = reliable(backward, forward)
    assert mask[:, -4:].max() == 0 and mask[:, :-4].min() == 1
    backward[..., 0], backward[..., 1] = 0.0, -2.5  # a tilt: 2.5 px down, rows 0-2 came from above
    mask = reliable(backward, -backward)
    assert mask[:3].max() == 0 and mask[3:].min() == 1


def test_frames_too_small_for_dis_still_get_a_flow():
    """DIS needs a side of 12 px: smaller frames (thumbnails, tests) are enlarged for it and the
    flow brought back to their pixels; a 1 px frame works too."""
    generator = torch.Generator().manual_seed(0)
    wide = torch.rand(1, 3, 10, 40, generator=generator)
    shifted = torch.roll(wide, 2, dims=-1)  # content moves 2 px right
    flow = optical_flow(wide, shifted)
    assert flow.shape == (10, 40, 2) and abs(float(np.median(flow[3:7, 8:32, 0])) - 2) < 0.5
    for height, width in ((1, 1), (1, 2), (5, 6)):
        motion = Motion.between(torch.rand(1, 3, height, width), torch.rand(1, 3, height, width))
        assert motion.backward.shape == (height, width, 2) and motion.trusted.shape == (height, width)
