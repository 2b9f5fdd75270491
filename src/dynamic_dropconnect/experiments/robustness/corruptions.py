"""MNIST-C-style corruptions of ``(N, C, H, W)`` images in pixel space [0, 1], 5 severities.

Every corruption is a pure function of the images, the severity (1-5) and a seed: the random
numbers come from a CPU ``torch.Generator`` seeded with ``seed`` and the corruption's name only,
so that **every severity reuses the same draws** (common random numbers: a stronger severity
scales the same noise, angle sign, line endpoints...). The same test images therefore get the
same corruption in every run of a run directory, which is what a paired comparison needs.

Definitions (MNIST-C: Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer Vision",
which fixes one severity per corruption; the 5-level scales follow ImageNet-C, Hendrycks &
Dietterich 2019, where it defines the corruption, and are ours for the affine ones). Spatial
sizes are given for 28-pixel images and scaled by ``min(H, W) / 28``, so every corruption runs at
any image size (digits are 8x8: its blurs and occlusions are correspondingly thin; there every
motion-blur severity is the smallest, 3-pixel kernel, and Gaussian blur at severity 1 changes
nothing):

- ``gaussian_noise``: ``clip(x + sigma * z)``, ``z ~ N(0, 1)``, sigma 0.08 0.12 0.18 0.26 0.38
  (ImageNet-C). torch.
- ``shot_noise``: ``clip(Poisson(lambda * x) / lambda)``, lambda 60 25 12 5 3 (ImageNet-C,
  MNIST-C). torch (``torch.poisson``). Poisson draws are integers: a bright pixel can land on
  its own value again, so the *number* of changed pixels is not monotone in severity; the mean
  absolute change is.
- ``impulse_noise``: salt-and-pepper, a fraction 0.03 0.06 0.09 0.17 0.27 of the pixels set to
  0 or 1 at random (ImageNet-C's amounts; MNIST-C's impulse noise). torch.
- ``gaussian_blur``: Gaussian kernel, sigma 0.5 0.75 1 1.5 2 pixels. ``kornia.filters.
  gaussian_blur2d`` (zero padding).
- ``motion_blur``: line kernel of 3 5 7 9 11 pixels at a random angle per image (MNIST-C's
  motion blur). ``kornia.filters.motion_blur`` (zero padding).
- ``rotate``: rotation about the centre by 10 20 30 45 60 degrees, random sign per image
  (MNIST-C ``rotate``). ``kornia.geometry.transform.rotate``.
- ``shear``: horizontal shear about the centre row by 0.1 0.2 0.3 0.45 0.6, random sign
  (MNIST-C ``shear``). ``kornia.geometry.transform.affine`` (version 3 of this part; versions
  1-2 used ``kornia.geometry.transform.shear``, which shears about the top-left corner and so
  also translates the digit).
- ``scale``: shrink about the centre by 0.9 0.8 0.7 0.6 0.5 (MNIST-C ``scale``).
  ``kornia.geometry.transform.scale``.
- ``translate``: shift by 0.05 0.1 0.15 0.2 0.25 of the image size along each axis, random signs
  (MNIST-C ``translate``). ``kornia.geometry.transform.translate``.
  The four affine ones sample bilinearly with zeros outside (the background of MNIST).
- ``brightness``: ``clip(x + c)``, c 0.1 0.2 0.3 0.4 0.5 (ImageNet-C's brightness on the value
  channel, which a grey image is). ``kornia.enhance.adjust_brightness``.
- ``contrast``: ``clip((x - m) * c + m)``, m the image's mean, c 0.4 0.3 0.2 0.1 0.05
  (ImageNet-C). torch: ``kornia.enhance.adjust_contrast`` multiplies by ``c`` without centring
  on the mean, which is another corruption.
- ``zigzag``: severity ``s`` draws ``s`` zigzag lines (3 segments from a random point, each
  turn a random step of up to 0.3 of the image size in x and y; width 1.2 pixels, intensity 1)
  over the image, ``max(x, line)``: occlusion in the style of MNIST-C's ``zigzag`` and
  ``dotted_line``, not its drawing code. torch: each pixel's distance to the segments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .seeds import named_generator

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "require_kornia"]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

_GAUSS_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
_SHOT_LAMBDA = (60.0, 25.0, 12.0, 5.0, 3.0)
_IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
_BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)
_MOTION_SIZE = (3, 5, 7, 9, 11)
_ROTATE_DEG = (10.0, 20.0, 30.0, 45.0, 60.0)
_SHEAR = (0.1, 0.2, 0.3, 0.45, 0.6)
_SCALE = (0.9, 0.8, 0.7, 0.6, 0.5)
_TRANSLATE = (0.05, 0.1, 0.15, 0.2, 0.25)
_BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_ZIGZAG_WIDTH = 1.2
_ZIGZAG_SEGMENTS = 3


def require_kornia() -> None:
    """Raise ImportError with how to install kornia (the image operations of the blurs and
    affine corruptions)."""
    try:
        import kornia  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "the corruptions need kornia: pip install 'dynamic-dropconnect[robustness]' "
            "(kornia 0.9.0 does not replace torch)"
        ) from err


def _sign(n: int, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1


def _px(x: Tensor, size28: float) -> float:
    """A length given in pixels of a 28-pixel image, scaled to this image."""
    return size28 * min(x.shape[-2:]) / 28


def _gaussian_noise(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    return (x + _GAUSS_SIGMA[i] * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def _shot_noise(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    lam = _SHOT_LAMBDA[i]
    return (torch.poisson(x * lam, generator=gen) / lam).clamp(0, 1)


def _impulse_noise(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    hit = torch.rand(x.shape, generator=gen) < _IMPULSE_AMOUNT[i]  # nested across severities
    salt = (torch.rand(x.shape, generator=gen) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def _gaussian_blur(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.filters import gaussian_blur2d

    sigma = max(_px(x, _BLUR_SIGMA[i]), 1e-3)
    half = min(int(3 * sigma + 0.999), (min(x.shape[-2:]) - 1) // 2)
    kernel = 2 * max(half, 1) + 1
    return gaussian_blur2d(x, kernel, (sigma, sigma), border_type="constant").clamp(0, 1)


def _motion_blur(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.filters import motion_blur

    angle = torch.rand(x.shape[0], generator=gen) * 180.0
    size = max(3, round(_px(x, _MOTION_SIZE[i])) | 1)  # odd, >= 3
    size = min(size, (min(x.shape[-2:]) - 1) | 1)
    direction = torch.zeros_like(angle)
    return motion_blur(x, size, angle, direction, border_type="constant").clamp(0, 1)


def _rotate(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.geometry.transform import rotate

    return rotate(x, _sign(len(x), gen) * _ROTATE_DEG[i])


def _shear(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.geometry.transform import affine

    # About the centre row, as MNIST-C's shear: kornia's `shear` shears about pixel (0, 0), so
    # it also shifts the digit sideways (8 pixels at severity 5 on 28 x 28).
    amount = _sign(len(x), gen) * _SHEAR[i]
    matrix = torch.zeros(len(x), 2, 3)
    matrix[:, 0, 0] = matrix[:, 1, 1] = 1.0
    matrix[:, 0, 1] = amount
    matrix[:, 0, 2] = -amount * (x.shape[-2] - 1) / 2
    return affine(x, matrix.to(x.dtype), align_corners=True)


def _scale(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.geometry.transform import scale

    return scale(x, torch.full((len(x), 2), _SCALE[i]))


def _translate(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.geometry.transform import translate

    h, w = x.shape[-2:]
    signs = torch.stack([_sign(len(x), gen), _sign(len(x), gen)], 1)
    return translate(x, signs * _TRANSLATE[i] * torch.tensor([float(w), float(h)]))


def _brightness(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    from kornia.enhance import adjust_brightness

    return adjust_brightness(x, _BRIGHTNESS[i])


def _contrast(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    return ((x - mean) * _CONTRAST[i] + mean).clamp(0, 1)


def _segment_distance(points: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of ``(P, 2)`` points to each of ``(N, 2)`` segments ``a-b``: ``(N, P)``."""
    ab = (b - a)[:, None]  # (N, 1, 2)
    ap = points[None] - a[:, None]  # (N, P, 2)
    t = ((ap * ab).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    return (ap - t[..., None] * ab).norm(dim=-1)


def _zigzag(x: Tensor, i: int, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    points = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)  # (P, 2) in pixels
    # All five lines drawn for every severity: severity s keeps the first s (nested). Each
    # starts anywhere and turns at points a random step of up to 0.3 of the image away.
    size = torch.tensor([float(w), float(h)])
    start = torch.rand(len(SEVERITIES), n, 1, 2, generator=gen) * size
    steps = (torch.rand(len(SEVERITIES), n, _ZIGZAG_SEGMENTS, 2, generator=gen) * 2 - 1) * 0.3
    vertices = torch.cat([start, start + steps.cumsum(2) * size], 2)
    vertices = torch.minimum(vertices.clamp_min(0), size)
    near = torch.full((n, h * w), float("inf"))
    for line in range(i + 1):
        for k in range(_ZIGZAG_SEGMENTS):
            dist = _segment_distance(points, vertices[line, :, k], vertices[line, :, k + 1])
            near = torch.minimum(near, dist)
    half = max(_px(x, _ZIGZAG_WIDTH), 0.6) / 2
    mask = (near <= half).to(x.dtype).reshape(n, 1, h, w)
    return torch.maximum(x, mask)


CORRUPTIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "gaussian_blur": _gaussian_blur,
    "motion_blur": _motion_blur,
    "rotate": _rotate,
    "shear": _shear,
    "scale": _scale,
    "translate": _translate,
    "brightness": _brightness,
    "contrast": _contrast,
    "zigzag": _zigzag,
}


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """``x`` (``(N, C, H, W)`` floats in [0, 1]) corrupted by ``name`` at ``severity`` 1-5.

    Deterministic given ``seed``: the same call returns the same images; the result is on the
    CPU, float32, in [0, 1]. Raises ValueError for an unknown name or severity, or a batch
    that is not ``(N, C, H, W)`` images in [0, 1].
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"corruptions need a float (N, C, H, W) image batch, got {x.dtype} {tuple(x.shape)}"
        )
    x = x.detach().float().cpu()
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("corruptions work in pixel space: images must be in [0, 1]")
    # Kornia's affine warps need non-empty batches; an empty one has nothing to corrupt.
    if len(x) == 0:
        return x.clone()
    out = CORRUPTIONS[name](x, severity - 1, named_generator(seed, name))
    return out.float().clamp(0, 1).contiguous()  # bilinear warps overshoot by rounding
