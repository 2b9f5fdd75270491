"""Normalisation and batch augmentations, pure torch and vectorised over the batch.

They run on whole ``(N, C, H, W)`` float batches (on CPU or GPU) instead of per-image PIL
transforms: no torchvision dependency, no DataLoader workers needed, and one optional
``torch.Generator`` makes every random choice reproducible. A CPU generator may drive a CUDA
batch: random numbers are drawn on the generator's device and moved.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "augment",
    "channel_stats",
    "normalize",
    "random_crop",
    "random_horizontal_flip",
    "random_rotation",
    "resize",
]


def _as_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become float in [0, 1]; float tensors are used as they are."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"expected uint8 or floating images, got {x.dtype}")
    return x


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std over all rows and positions, as float32 ``(C,)``.

    Call it on the TRAINING images only (never on validation/test: that would leak test data into
    the preprocessing). uint8 input is scaled to [0, 1] first, exactly as ``normalize`` does, so
    the two compose. Channel is dim 1: works for ``(N, C, H, W)`` and for ``(N, F)`` features.
    Accumulates in float64 chunk by chunk, so 50000 CIFAR images never get a float64 copy.
    """
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"channel_stats needs a non-empty (N, C, ...) tensor, got {tuple(x.shape)}"
        )
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64, device=x.device)
    total_sq = torch.zeros(c, dtype=torch.float64, device=x.device)
    count = 0
    for i in range(0, x.shape[0], chunk):
        part = _as_unit_float(x[i : i + chunk]).double().transpose(0, 1).reshape(c, -1)
        total += part.sum(dim=1)
        total_sq += (part * part).sum(dim=1)
        count += part.shape[1]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel (uint8 input; float input skips the /255).

    ``mean``/``std`` are ``(C,)`` as returned by ``channel_stats``. A zero std (a constant
    channel) is treated as 1 so that the output stays finite.
    """
    xf = _as_unit_float(x).float()
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = mean.to(device=xf.device, dtype=torch.float32).reshape(shape)
    s = std.to(device=xf.device, dtype=torch.float32)
    s = torch.where(s > 0, s, torch.ones_like(s)).reshape(shape)
    return (xf - m) / s


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def _randint(
    high: int, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


def _check_batch(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")


def random_horizontal_flip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (independently per image)."""
    _check_batch(x, "random_horizontal_flip")
    flip = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(
    x: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop a random ``size`` window per image.

    ``size`` defaults to the input size (the usual CIFAR "crop 32, padding 4"). All crops are
    gathered with one advanced-indexing call.
    """
    _check_batch(x, "random_crop")
    n, _, h, w = x.shape
    ch, cw = size if size is not None else (h, w)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding > 0 else x
    ph, pw = padded.shape[-2:]
    if ch > ph or cw > pw:
        raise ValueError(f"crop size {(ch, cw)} larger than padded image {(ph, pw)}")
    top = _randint(ph - ch + 1, n, generator, x.device)
    left = _randint(pw - cw + 1, n, generator, x.device)
    rows = (top[:, None] + torch.arange(ch, device=x.device))[:, :, None]  # (N, ch, 1)
    cols = (left[:, None] + torch.arange(cw, device=x.device))[:, None, :]  # (N, 1, cw)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice put their dims first: result is (N, ch, cw, C)
    out = padded[batch, :, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def random_rotation(
    x: torch.Tensor, degrees: float = 15.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each image by an angle drawn uniformly from [-degrees, degrees] about its centre.

    Bilinear sampling, zeros outside (as torchvision's RandomRotation with fill 0). The affine
    matrix is corrected for non-square images, so a rotation stays a rotation in pixel space.
    """
    _check_batch(x, "random_rotation")
    if not x.is_floating_point():
        raise TypeError("random_rotation needs a float batch (normalise uint8 images first)")
    n, _, h, w = x.shape
    angle = (_uniform(n, generator, x.device) * 2.0 - 1.0) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), zero], dim=1),
            torch.stack([sin * (w / h), cos, zero], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def resize(x: torch.Tensor, size: int | tuple[int, int] = 224) -> torch.Tensor:
    """Bilinear resize of a float batch (e.g. 32 -> 224 px for AlexNet), per batch on the fly.

    Done per batch rather than once for the dataset: 50000 CIFAR images at 224 px would take
    30 GB as float32.
    """
    _check_batch(x, "resize")
    if not x.is_floating_point():
        raise TypeError("resize needs a float batch (normalise uint8 images first)")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def augment(
    x: torch.Tensor,
    *,
    crop_padding: int = 0,
    hflip: bool = False,
    rotation_degrees: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the enabled augmentations in torchvision's usual order: crop, flip, rotation.

    E.g. the CIFAR-100 VGG recipe is ``augment(x, crop_padding=4, hflip=True,
    rotation_degrees=15, generator=g)``. With nothing enabled, ``x`` is returned unchanged.
    """
    if crop_padding > 0:
        x = random_crop(x, crop_padding, generator)
    if hflip:
        x = random_horizontal_flip(x, 0.5, generator)
    if rotation_degrees > 0:
        x = random_rotation(x, rotation_degrees, generator)
    return x
