"""The registry of the suite's methods: what a method is, and how one is put into a model.

Every method, the built-ins included (:mod:`.methods`), is registered with
:func:`register_method`: a *kind* (:class:`MethodKind`, a regularizer class and where it goes
in a model) and named settings of it (:class:`Method`). :func:`apply_method` dispatches on
the kind; nothing here lists the kinds by hand, so a plugin's method takes the same path as
``ddc``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from torch import nn

import dynamic_dropconnect as ddc

from ..checks import warn_deprecated
from .registration import check_free, check_name

__all__ = [
    "METHODS",
    "METHOD_KINDS",
    "SLOT_DEFAULTS",
    "Method",
    "MethodKind",
    "apply_method",
    "experiment_overrides",
    "register_method",
    "weight_slots",
]


@dataclass(frozen=True)
class Method:
    """A named regularizer setting. ``kind``: a key of :data:`METHOD_KINDS` (``none``,
    ``dropout``, ``standout``, a weight method, or one a plugin registered).

    ``base``: for a control, the method whose per-experiment options it takes too (see
    :func:`experiment_overrides`); its own ``options`` win over them.
    """

    name: str
    kind: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    base: str | None = None


#: Where each slot attribute points when a model does not set it (see ``SlotModel``).
SLOT_DEFAULTS: dict[str, tuple[str, ...]] = {
    "weight_slots": ("linear1",),
    "activation_slots": ("act1",),
    "dropout_slots": ("drop1",),
    "locked_slots": (),
}


@dataclass(frozen=True)
class MethodKind:
    """What a kind of method puts into a model, and where.

    ``module``: a :class:`~dynamic_dropconnect.WeightRegularizer` subclass (put on the weights
    the model's ``weight_slots`` names, default ``linear1``, through ``ddc.apply``), any
    other ``nn.Module`` class (built as ``module(**options)`` into each slot the model
    attribute ``slots`` names, e.g. ``activation_slots`` → ``act1``), or ``None`` (the model
    is left as it is: ``none``). ``first_slot_only``: only the first of those slots (Standout
    on ``act1`` alone, as in the paper).
    """

    name: str
    module: type[nn.Module] | None
    slots: str = "activation_slots"
    first_slot_only: bool = False

    @property
    def weight(self) -> bool:
        """Whether this kind regularizes weights (a ``WeightRegularizer``)."""
        return isinstance(self.module, type) and issubclass(self.module, ddc.WeightRegularizer)

    def apply(self, model: nn.Module, method: str, options: dict[str, Any]) -> None:
        """Put this kind, with ``options``, into ``model`` in place (``method``: for errors)."""
        if self.module is None:
            return
        if self.weight:
            layers = weight_slots(model)
            ddc.apply(model, _library_name(self.module, self.name), include=list(layers), **options)
            return
        slots = _needed(model, method, self.slots)
        _check_options(method, self.module, options)
        for slot in slots[:1] if self.first_slot_only else slots:
            setattr(model, slot, self.module(**options))


#: Kind name → what it does. ``none`` is the one kind that changes nothing; every other one,
#: the built-ins included, comes from :func:`register_method`.
METHOD_KINDS: dict[str, MethodKind] = {"none": MethodKind("none", None)}
#: Method name → setting. Filled by :func:`register_method`, the built-ins included.
METHODS: dict[str, Method] = {}

C = TypeVar("C", bound=type[nn.Module])


def _library_name(module: type[nn.Module], kind: str) -> str:
    """The name ``ddc.apply`` knows regularizer class ``module`` by; a class it does not know
    yet is added to its table under the kind's name (so ``ddc.apply(model, kind)`` works
    too)."""
    table = ddc.REGULARIZERS  # the name -> class table ddc.apply(model, method) reads
    for name, cls in table.items():
        if cls is module:
            return name
    what = "regularizer name of dynamic_dropconnect.apply"
    check_free(table, what, kind, module)
    table[kind] = module
    return kind


def _option_names(cls: type) -> list[str] | None:
    """The keyword options ``cls(...)`` takes, following ``**kwargs`` up the class chain;
    ``None`` when some ``__init__`` takes any keyword (nothing can be checked)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if klass in (nn.Module, object):
            return names
        parameters = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return list(dict.fromkeys(names))
    return None


def _check_options(method: str, module: type, options: Mapping[str, Any]) -> None:
    """``TypeError`` naming the options of ``method`` that ``module`` does not take."""
    valid = _option_names(module)
    unknown = [k for k in options if valid is not None and k not in valid]
    if unknown:
        raise TypeError(
            f"method {method!r} ({module.__name__}) has no option "
            f"{', '.join(map(repr, unknown))}; its options: {', '.join(valid or []) or 'none'}"
        )


@overload
def register_method(
    name: str,
    module: None = None,
    *,
    kind: None = None,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    base: str | None = None,
    slots: str = "activation_slots",
    first_slot_only: bool = False,
    replace: bool = False,
) -> Callable[[C], C]: ...


@overload
def register_method(
    name: str,
    module: type[nn.Module] | None = None,
    *,
    kind: str | None = None,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    base: str | None = None,
    slots: str = "activation_slots",
    first_slot_only: bool = False,
    replace: bool = False,
) -> Method: ...


def register_method(
    name: str,
    module: type[nn.Module] | None = None,
    *,
    kind: str | None = None,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    base: str | None = None,
    slots: str = "activation_slots",
    first_slot_only: bool = False,
    replace: bool = False,
) -> Any:
    """Register method ``name``: a regularizer class with its default ``options``, or another
    setting of a kind already registered.

    Three forms::

        @register_method("my-dropconnect", options={"p": 0.3})   # decorator: a new kind
        class MyDropConnect(ddc.WeightRegularizer): ...

        register_method("noisy-relu", NoisyReLU, options={"sigma": 0.1})  # the same, a call
        register_method("my-dropconnect-light", kind="my-dropconnect", options={"p": 0.1})

    With a class (``module``, or the decorated one) a kind of the same name is registered too
    (:class:`MethodKind`): a :class:`~dynamic_dropconnect.WeightRegularizer` subclass goes on
    the weights the model's ``weight_slots`` name (default ``linear1``; the class is
    added to ``ddc.apply``'s table under ``name`` as well); any other ``nn.Module`` class is
    built as ``module(**options)`` into the model's slots named by attribute ``slots``
    (``activation_slots``, default ``act1``; ``dropout_slots``, default ``drop1``;
    ``locked_slots``), only the first when ``first_slot_only``. The options are checked
    against the class's arguments here, and again with an experiment's ``method_options``
    when a model is built. ``base``: see :class:`Method`.

    Returns the :class:`Method` (decorator form: the class). A name already registered is an
    error unless ``replace``.
    """
    check_name("method", name)
    if module is not None and kind is not None:
        raise ValueError(
            f"register_method({name!r}): give a class (a new kind) or kind= (a setting of a "
            f"registered kind), not both (got {module!r} and kind={kind!r})"
        )
    if module is None and kind is None:

        def decorate(cls: C) -> C:
            register_method(
                name,
                cls,
                description=description,
                options=options,
                base=base,
                slots=slots,
                first_slot_only=first_slot_only,
                replace=replace,
            )
            return cls

        return decorate
    if base is not None and base not in METHODS:
        raise ValueError(
            f"register_method({name!r}): unknown base method {base!r}; valid: {', '.join(METHODS)}"
        )
    settings = dict(options or {})
    if module is not None:
        if not (isinstance(module, type) and issubclass(module, nn.Module)):
            raise TypeError(
                f"register_method({name!r}) takes an nn.Module class (a WeightRegularizer "
                f"subclass, or a module built into the model's slots), got {module!r}"
            )
        if not slots.isidentifier():
            raise ValueError(
                f"register_method({name!r}): slots must name a model attribute listing slots "
                f"({', '.join(SLOT_DEFAULTS)}, or your models' own), got {slots!r}"
            )
        new_kind: MethodKind | None = MethodKind(name, module, slots, first_slot_only)
        kind = name
    else:
        assert kind is not None
        new_kind = None
        if kind not in METHOD_KINDS:
            raise ValueError(
                f"register_method({name!r}): unknown kind {kind!r}; valid: "
                f"{', '.join(METHOD_KINDS)} (or pass a class to register a new kind)"
            )
    target = new_kind or METHOD_KINDS[kind]
    if target.module is not None:
        _check_options(name, target.module, settings)
    method = Method(name, kind, description or kind, settings, base)
    # Every check before anything is added: a refused registration leaves no trace.
    check_free(METHODS, "method", name, method, replace=replace)
    if new_kind is not None:
        check_free(METHOD_KINDS, "method kind", name, new_kind, replace=replace)
        if new_kind.weight:  # ddc.apply must know the class by a name; the last check
            _library_name(new_kind.module, name)  # type: ignore[arg-type]
        METHOD_KINDS[name] = new_kind
    METHODS[name] = method
    return method


def _slots(model: nn.Module, attribute: str) -> tuple[str, ...]:
    return tuple(getattr(model, attribute, SLOT_DEFAULTS.get(attribute, ())))


def weight_slots(model: nn.Module) -> tuple[str, ...]:
    """The model's ``weight_slots``; a plugin model's ``regularized_layers`` (the old name,
    with a warning) when it has no ``weight_slots``."""
    slots = getattr(model, "weight_slots", None)
    if slots is None:
        slots = getattr(model, "regularized_layers", None)
        if slots is not None:
            warn_deprecated(
                f"{type(model).__name__}.regularized_layers is deprecated: name the attribute "
                "weight_slots"
            )
    return tuple(SLOT_DEFAULTS["weight_slots"] if slots is None else slots)


def _needed(model: nn.Module, method: str, attribute: str) -> tuple[str, ...]:
    slots = _slots(model, attribute)
    if not slots or not all(hasattr(model, s) for s in slots):
        raise ValueError(
            f"method {method!r} needs the {attribute} of the model, which "
            f"{type(model).__name__} does not have ({list(slots)})"
        )
    return slots


def experiment_overrides(
    method_options: Mapping[str, Mapping[str, Any]], name: str
) -> dict[str, Any]:
    """The options an experiment's ``method_options`` give method ``name``.

    A control takes its base method's options first (so ``ddc-shuffled`` runs at the ``p``,
    ``pg`` the experiment gives ``ddc``), minus the options that define the control, then its
    own entry. Other methods: their own entry only, as before.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    method = METHODS[name]
    inherited: dict[str, Any] = {}
    if method.base is not None:
        fixed = set(METHODS[name].options) - set(METHODS[method.base].options)
        base = method_options.get(method.base, {})
        inherited = {k: v for k, v in base.items() if k not in fixed}
    return {**inherited, **method_options.get(name, {})}


def apply_method(model: nn.Module, name: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    """Regularize ``model`` in place with method ``name`` (``overrides`` replace options).

    Dispatches on the method's registered kind (:data:`METHOD_KINDS`); returns ``model``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    method = METHODS[name]
    METHOD_KINDS[method.kind].apply(model, name, {**method.options, **(overrides or {})})
    return model
