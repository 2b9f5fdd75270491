"""Dynamic DropConnect (Yang & Chen, arXiv 2502.19948) for any PyTorch model.

Two lines::

    import dynamic_dropconnect as ddc
    model = ddc.apply(model, method="ddc")   # every Linear-like weight; include=/exclude=

then train as usual. ``include`` may name modules or single parameters (attention
projections, ``weight_hh_l0`` of an LSTM, GPT-2 ``Conv1D``); ``print(ddc.summary(model))``
shows what is regularized and what was left out. See :class:`DynamicDropConnect` for the
method and its options; ``docs/architecture.md`` for how the modules stack.
"""

from typing import Any

from . import functional
from .checks import renamed_attribute
from .inference import drop_probabilities, drop_stats, learned_curves, mc_predict
from .layers import RegularizedConv1d, RegularizedConv2d, RegularizedConv3d, RegularizedLinear
from .learned import LearnedDropConnect
from .regularized import is_regularized, plain_state_dict, regularized_layers
from .regularizers import DropConnect, DynamicDropConnect, WeightRegularizer
from .reporting import WeightSummary, summary
from .standout import Standout
from .surgery import REGULARIZERS, apply, remove
from .weight_drop import AWDWeightDrop

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "REGULARIZERS",
    "AWDWeightDrop",
    "DropConnect",
    "DynamicDropConnect",
    "LearnedDropConnect",
    "RegularizedConv1d",
    "RegularizedConv2d",
    "RegularizedConv3d",
    "RegularizedLinear",
    "Standout",
    "WeightDrop",
    "WeightRegularizer",
    "WeightSummary",
    "apply",
    "drop_probabilities",
    "drop_stats",
    "functional",
    "is_regularized",
    "learned_curves",
    "mc_predict",
    "plain_state_dict",
    "regularized_layers",
    "remove",
    "summary",
]

# Old name -> new name; the old one still works, with a DeprecationWarning (both stay in
# __all__, so that a star import still binds them).
_RENAMED = {"METHODS": "REGULARIZERS", "WeightDrop": "AWDWeightDrop"}


def __getattr__(name: str) -> Any:
    return renamed_attribute(__name__, name, _RENAMED, globals())
