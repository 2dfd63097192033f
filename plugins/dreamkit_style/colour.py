"""Colour control, both methods of Gatys et al. 2017 ("Controlling Perceptual Factors in Neural
Style Transfer", section 5):

* **luminance-only transfer**: the style is transferred between luminance images only (the
  style's luminance first matched to the content's mean and spread), and the result's luminance is
  combined with the content's chroma (YCbCr, ITU-R BT.601, full range). The output keeps the
  content's colours exactly, up to rounding and clamping.
* **colour matching**: before the transfer, the style image's colours are mapped by the affine
  transform x ↦ A(x − μ_s) + μ_c with A = Σ_c^½ Σ_s^-½ (symmetric square roots), which makes their
  mean and covariance the content's; the transfer then runs as usual.
"""

from __future__ import annotations

import torch

# RGB → YCbCr (BT.601, full range, 0..1 with Cb/Cr centred on 0.5).
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]], dtype=torch.float64)
_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) RGB in 0..1 → Y, Cb, Cr (Cb and Cr centred on 0.5)."""
    matrix = _RGB_TO_YCBCR.to(image)
    return torch.einsum("ij,...jhw->...ihw", matrix, image) + _OFFSET.to(image).view(3, 1, 1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    inverse = torch.linalg.inv(_RGB_TO_YCBCR).to(image)
    return torch.einsum("ij,...jhw->...ihw", inverse, image - _OFFSET.to(image).view(3, 1, 1))


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel (…, 1, H, W) of an RGB image."""
    return rgb_to_ycbcr(image)[..., :1, :, :]


def as_luminance_image(image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """The luminance of ``image`` as a grey RGB image (what the network sees in luminance-only
    mode). With ``reference``, the luminance is first shifted and scaled to the reference's
    luminance mean and standard deviation (the paper's luminance matching of the style)."""
    y = luminance(image)
    if reference is not None:
        ref = luminance(reference)
        y = (y - y.mean()) * (ref.std() / y.std().clamp_min(1e-6)) + ref.mean()
    return y.clamp(0, 1).expand(*y.shape[:-3], 3, *y.shape[-2:]).contiguous()


def with_chroma(luma_image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luminance of ``luma_image`` (grey RGB or colour) with the chroma of ``content``."""
    ycbcr = rgb_to_ycbcr(content)
    ycbcr = torch.cat([luminance(luma_image), ycbcr[..., 1:, :, :]], dim=-3)
    return ycbcr_to_rgb(ycbcr).clamp(0, 1)


def match_colour(style: torch.Tensor, content: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """``style`` with its colours' mean and covariance made the content's (computed in float64).

    Unclamped, the match is exact; clamped to 0..1 (as an image must be) it is close wherever
    the transform keeps colours in range."""
    return match_to_stats(style, *colour_stats(content), clamp=clamp)


def match_to_stats(image: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor, *,
                   clamp: bool = True) -> torch.Tensor:
    """``image`` (one 3×H×W picture, any leading 1s) with its colours' mean and covariance made
    ``mean`` (3,) and ``covariance`` (3, 3) (:func:`colour_stats` of another image)."""
    s = image.reshape(3, -1).double()
    mu_s = s.mean(1, keepdim=True)
    transform = _sqrtm(covariance.double()) @ _inverse_sqrtm(_covariance(s - mu_s))
    matched = (transform @ (s - mu_s) + mean.double()[:, None]).reshape(image.shape).to(image.dtype)
    return matched.clamp(0, 1) if clamp else matched


def to_palette(images: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:
    """Each of ``images`` (N×3×H×W) recoloured into the styles' palettes, blended by ``weights``
    (S), from their colour statistics (``means`` S×3, ``covariances`` S×3×3): what
    :func:`in_style_palette` does with the style images themselves, for a network that keeps only
    their statistics."""
    total = float(weights.sum())
    return torch.stack([
        sum(float(w) * match_to_stats(image, m, c) for m, c, w in zip(means, covariances, weights)) / total
        for image in images])


#: A colour axis whose variance in the styles is below this share of the widest axis's is one the
#: styles do not use (a grey style's chroma: 0 up to rounding; a sepia photo's is ~1e-2).
FLAT_AXIS = 1e-3


def palette_axes(styles: list[torch.Tensor], weights: list[float]) -> torch.Tensor | None:
    """The 3×3 projection onto the colour axes the styles use (float32), or None when they use all
    three: the optimiser's steps go through it, so a colour the styles do not have at all is never
    introduced. The axes are the eigenvectors of the blend's colour covariance (each style's
    covariance plus the spread of their means, by ``weights``); an axis is unused when its variance
    is below ``FLAT_AXIS`` of the widest one's.

    Unconstrained, a grey style's stylisation came out with colour speckle (astronaut x gravel,
    512 px: chroma std 0.026); projected it is grey. Scaling the axes by their spread instead of
    projecting slowed the chroma a colourful style needs (chelsea x hubble, 64 px: style loss
    0.88 of the photo's after 20 iterations, 0.31 without)."""
    total = sum(weights)
    stats = [colour_stats(style) for style in styles]
    mean = sum(w * m for (m, _), w in zip(stats, weights)) / total
    covariance = sum(w * (c + torch.outer(m - mean, m - mean)) for (m, c), w in zip(stats, weights)) / total
    values, vectors = torch.linalg.eigh(covariance)
    used = values > FLAT_AXIS * values.max()
    if bool(used.all()) or not bool(used.any()):  # every axis, or one flat colour: nothing to hold
        return None
    kept = vectors[:, used]
    return (kept @ kept.T).float()


def along_axes(axes: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Every pixel of ``image`` (…, 3, H, W) mapped by the 3×3 ``axes``."""
    return torch.einsum("ij,...jhw->...ihw", axes.to(image), image)


def colour_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3,) and covariance (3, 3) of an RGB image's pixels, in float64."""
    x = image.reshape(3, -1).double()
    mean = x.mean(1, keepdim=True)
    return mean[:, 0], _covariance(x - mean)


def _covariance(centred: torch.Tensor) -> torch.Tensor:
    return centred @ centred.T / max(centred.shape[1] - 1, 1)


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def _inverse_sqrtm(matrix: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    # A flat colour channel (a grey style image) has a zero eigenvalue: floored, not divided by 0.
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(floor).rsqrt()) @ vectors.T


def in_style_palette(content: torch.Tensor, styles: list[torch.Tensor], weights: list[float],
                     masks: list[torch.Tensor | None]) -> torch.Tensor:
    """The content with its colours' mean and covariance made the styles' (:func:`match_colour`
    the other way round): where a stylisation with the style's colours starts. Unmasked styles
    blend by ``weights``; a masked style recolours its region (H × W, 0..1); pixels no mask covers
    keep the content's colours. The deep content layers barely see colour, so a start in the
    photo's colours kept them: the mean colour moved 0.04-0.29 of the way to the style's; from
    this start 0.92-0.98."""
    unmasked = [(match_colour(content, style), w) for style, w, m in zip(styles, weights, masks) if m is None]
    total = sum(w for _, w in unmasked)
    start = sum(r * w for r, w in unmasked) / total if unmasked and total > 0 else content
    for style, mask in zip(styles, masks):
        if mask is not None:
            start = torch.lerp(start, match_colour(content, style), mask.to(content.dtype))
    return start
