"""Dynamic DropConnect (Yang & Chen, arXiv 2502.19948) for any PyTorch model.

Two lines::

    import dynamic_dropconnect as ddc
    model = ddc.apply(model, method="ddc")   # every nn.Linear; include=/exclude= globs

then train as usual. See :class:`DynamicDropConnect` for the method and its options.
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
from .regularizers import DropConnect, DynamicDropConnect, WeightDrop
from .standout import Standout
from .surgery import METHODS, apply, plain_state_dict, regularized_layers, remove

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "DropConnect",
    "DynamicDropConnect",
    "RegularizedConv1d",
    "RegularizedConv2d",
    "RegularizedConv3d",
    "RegularizedLinear",
    "Standout",
    "WeightDrop",
    "apply",
    "drop_probabilities",
    "drop_stats",
    "functional",
    "is_regularized",
    "mc_predict",
    "plain_state_dict",
    "regularized_layers",
    "remove",
]
