"""Optical flow between video frames, and what follows from it: warping an image along the
motion, and which pixels the motion can be trusted for.

The flow is OpenCV's DIS (Kroeger et al. 2016), a well-kept CPU method that needs no network
weights (``opencv-python-headless``, a dependency: every frame sequence may use it, not only videos). The trust mask is Ruder,
Dosovitskiy and Brox's ("Artistic style transfer for videos", 2016): a pixel is occluded where the
backward flow and the forward flow at the place it points to do not cancel, and on a motion
boundary where the backward flow changes fast.

Conventions: images are 1×3×H×W in 0..1; a flow is an H×W×2 float32 array (or tensor) of (dx, dy)
in pixels; ``backward`` flow from frame t to t-1 says, for each pixel of t, where it was in t-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DreamkitError

#: Ruder et al.'s occlusion test: |w̃ + ŵ|² > OCCLUSION_SHARE (|w̃|² + |ŵ|²) + OCCLUSION_PIXELS.
OCCLUSION_SHARE, OCCLUSION_PIXELS = 0.01, 0.5
#: Their motion-boundary test: |∇ŵ|² > BOUNDARY_SHARE |ŵ|² + BOUNDARY_PIXELS.
BOUNDARY_SHARE, BOUNDARY_PIXELS = 0.01, 0.002
#: Frames with a shorter side are enlarged for the flow (DIS needs 12 px; its patches are 8).
MIN_FLOW_SIDE = 16


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DreamkitError("optical flow needs OpenCV, a dependency of dreamkit: pip install opencv-python-headless") from None
    return cv2


def optical_flow(source: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """The flow from ``source`` to ``target`` (1×3×H×W, 0..1): for each pixel of ``source``,
    where it moved to in ``target``, H×W×2 (dx, dy) float32. OpenCV's DIS flow on the luminance,
    at its "medium" preset (a few milliseconds per 480p pair on one core)."""
    cv2 = _cv2()
    grey = [(frame[0].float().mean(0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            for frame in (source, target)]
    height, width = grey[0].shape
    # DIS needs a side of 12 px or more: a smaller frame (a thumbnail, a test) is enlarged for it,
    # and the flow brought back to the frame's size and pixels.
    scale = -(-MIN_FLOW_SIDE // min(height, width)) if min(height, width) < MIN_FLOW_SIDE else 1
    if scale > 1:
        grey = [cv2.resize(g, (width * scale, height * scale), interpolation=cv2.INTER_LINEAR) for g in grey]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(grey[0], grey[1], None)
    if scale > 1:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / scale
    return flow


def pixel_grid(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """1×2×H×W float32: each pixel's own (y, x)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([ys, xs])[None]


def warp(image: torch.Tensor, flow: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``image`` (N×C×H×W) sampled at each pixel p from p + flow(p) (bilinear; outside the image:
    the nearest edge pixel). With the backward flow of frame t, this moves frame t-1's picture to
    where its content is in frame t."""
    flow = torch.as_tensor(flow, dtype=torch.float32, device=image.device)
    height, width = image.shape[-2:]
    ys, xs = pixel_grid(height, width, image.device)[0]
    # grid_sample's coordinates: -1 and 1 are the centres of the edge pixels (align_corners=True).
    x = (xs + flow[..., 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[..., 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([x, y], -1).unsqueeze(0).expand(image.shape[0], -1, -1, -1).to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def reliable(backward: np.ndarray | torch.Tensor, forward: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H×W float mask (1: trust the motion) of frame t, from its ``backward`` flow (t → t-1) and
    frame t-1's ``forward`` flow (t-1 → t): 0 where the pixel was hidden in t-1 (the two flows do
    not cancel), came in from outside its frame (a pan's new strip: :func:`warp` would repeat the
    edge there, streaks along the motion) or sits on a motion boundary."""
    back = torch.as_tensor(backward, dtype=torch.float32)
    fore = torch.as_tensor(forward, dtype=torch.float32)
    # The forward flow read where each pixel of t came from: w̃(x) = forward(x + ŵ(x)).
    fore_there = warp(fore.permute(2, 0, 1).unsqueeze(0), back)[0].permute(1, 2, 0)
    mismatch = (fore_there + back).square().sum(-1)
    occluded = mismatch > OCCLUSION_SHARE * (fore_there.square().sum(-1) + back.square().sum(-1)) + OCCLUSION_PIXELS
    dy, dx = torch.zeros_like(back), torch.zeros_like(back)  # forward differences (any size, 1 px too)
    dy[:-1] = back[1:] - back[:-1]
    dx[:, :-1] = back[:, 1:] - back[:, :-1]
    boundary = (dx.square() + dy.square()).sum(-1) > BOUNDARY_SHARE * back.square().sum(-1) + BOUNDARY_PIXELS
    return (~(occluded | boundary) & came_from_inside(back)).float()


def came_from_inside(backward: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H×W bool: the pixels of frame t whose ``backward`` flow (t → t-1) lands inside frame t-1."""
    back = torch.as_tensor(backward, dtype=torch.float32)
    height, width = back.shape[:2]
    came_from = pixel_grid(height, width, back.device)[0] + back.permute(2, 0, 1).flip(0)  # (y, x) in t-1
    return (came_from[0] >= 0) & (came_from[0] <= height - 1) & (came_from[1] >= 0) & (came_from[1] <= width - 1)


@dataclass
class Motion:
    """How frame t follows from frame t-1: the backward flow (t → t-1) and the mask of pixels it
    is trusted for (:func:`reliable`)."""

    backward: np.ndarray
    trusted: torch.Tensor

    @classmethod
    def between(cls, previous: torch.Tensor, current: torch.Tensor) -> "Motion":
        """The motion from ``previous`` to ``current`` (both 1×3×H×W): two flows, one mask."""
        backward = optical_flow(current, previous)
        return cls(backward, reliable(backward, optical_flow(previous, current)))

    def follow(self, image: torch.Tensor) -> torch.Tensor:
        """Frame t-1's ``image`` moved along the motion to frame t."""
        return warp(image, self.backward)
