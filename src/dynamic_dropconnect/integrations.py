"""Helpers for training frameworks (Lightning); see ``docs/integrations.md``.

Import-light: ``import dynamic_dropconnect`` never imports this module, and this module imports
no framework until a helper that needs one is first used. Lightning's callback class is built
on first access::

    from dynamic_dropconnect.integrations import LightningRNGState

    trainer = lightning.pytorch.Trainer(..., callbacks=[LightningRNGState(), checkpointing])
    trainer.fit(module, data, ckpt_path=path)  # masks continue exactly as if never stopped

Hugging Face models and PEFT adapters need no helper: save the weights without the
regularizer state with ``model.save_pretrained(path, state_dict=ddc.plain_state_dict(model))``,
or take DDC off at the end with ``ddc.remove(trainer.model)`` before ``trainer.save_model()``.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

# LightningRNGState is built on first access (module __getattr__) and is left out of __all__,
# so that `from dynamic_dropconnect.integrations import *` works without Lightning.
__all__ = ["get_rng_state", "set_rng_state"]


def _numpy_state() -> tuple[Any, ...]:
    # As plain types and a tensor: checkpoints load with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
            float(cached))  # fmt: skip


def get_rng_state() -> dict[str, Any]:
    """The random states a DDC run draws from: torch (CPU and every CUDA device), NumPy and
    Python's ``random``. Masks drawn without ``generator=`` come from the torch state."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (a CUDA state only where CUDA is in use)."""
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "python" in state:
        random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"the checkpoint holds the random state of {len(cuda)} CUDA device(s), this "
                f"process sees {torch.cuda.device_count()}: CUDA random state not restored, "
                "masks drawn on the GPU will differ from an uninterrupted run",
                stacklevel=2,
            )


def _lightning_callback_base() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError as err:
            raise ImportError(
                "LightningRNGState needs Lightning: pip install lightning "
                "(or dynamic-dropconnect[integrations])"
            ) from err
    return Callback


def _make_lightning_rng_state() -> type:
    base = _lightning_callback_base()

    class LightningRNGState(base):  # type: ignore[misc, valid-type]
        """Lightning callback: the checkpoint carries the random state, so a resumed ``fit``
        draws the same DDC masks (and dropout, augmentations) as an uninterrupted one.

        Lightning restores weights, optimizer, schedulers and loop counters, but not the
        global random state; DDC's masks (without ``generator=``) come from it. This callback
        stores :func:`get_rng_state` in every checkpoint and restores it when ``fit`` resumes
        (``ckpt_path=``). Exact resume also needs the data order to resume: checkpoint at
        epoch ends (``ModelCheckpoint(every_n_epochs=...)``, or ``every_n_train_steps=`` a
        multiple of the epoch length) unless the dataloader is stateful.

        Under DDP the checkpoint holds rank 0's state and every rank restores it.
        """

        def state_dict(self) -> dict[str, Any]:
            return {"rng": get_rng_state()}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            set_rng_state(state_dict["rng"])

    # Importable and picklable as dynamic_dropconnect.integrations.LightningRNGState; Lightning
    # keys the callback's checkpoint entry by __qualname__.
    LightningRNGState.__module__ = __name__
    LightningRNGState.__qualname__ = "LightningRNGState"
    return LightningRNGState


_LAZY: dict[str, Any] = {"LightningRNGState": _make_lightning_rng_state}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> type:
    # PEP 562: the Lightning callback class is created (and Lightning imported) on first use.
    if name in _LAZY:
        if name not in _BUILT:
            _BUILT[name] = _LAZY[name]()
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
