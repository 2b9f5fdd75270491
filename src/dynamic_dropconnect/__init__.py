"""Dynamic DropConnect (Yang & Chen, arXiv 2502.19948) for any PyTorch model.

Two lines::

    import dynamic_dropconnect as ddc
    model = ddc.apply(model, method="ddc")   # every Linear-like weight; include=/exclude=

then train as usual. ``include`` may name modules or single parameters (attention
projections, ``weight_hh_l0`` of an LSTM, GPT-2 ``Conv1D``); ``print(ddc.summary(model))``
shows what is regularized and what was left out. See :class:`DynamicDropConnect` for the
method and its options.
"""

from . import functional
from .inference import drop_probabilities, drop_stats, mc_predict
from .layers import (
    RegularizedConv1d,
    RegularizedConv2d,
    RegularizedConv3d,
    RegularizedLinear,
    is_regularized,
)
from .learned import LearnedDropConnect, learned_curves
from .parameters import WeightDrop
from .regularizers import DropConnect, DynamicDropConnect, WeightRegularizer
from .standout import Standout
from .surgery import (
    METHODS,
    WeightSummary,
    apply,
    plain_state_dict,
    regularized_layers,
    remove,
    summary,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
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
