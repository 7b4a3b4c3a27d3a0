"""Parameter-free modules whose buffers are all derived (blur filters, masks, slot indices):
pure functions of the constructor's arguments, non-persistent, filled by ``reset_parameters()``
(:class:`_FixedBuffers`); and the refill of a weighted module's derived buffers on its weight's
device (:class:`_WeightDerived`). The constructor's arguments that state is built from are
fixed at construction: assigned later, they raise (:class:`FixedArgs`).

Three places where ``torch.nn`` would leave such a buffer wrong are handled once, here:

- conversions (``.to()``, ``.double()``, ``to_empty()``): the buffers are refilled after the
  conversion, so ``.double()`` gets a filter computed in float64 (not a float32 one widened)
  and ``to_empty()`` gets the real values, not uninitialized memory; a buffer still on the
  meta device is built afresh on the device a conversion moves tensors to, not copied (torch
  raised "Cannot copy out of meta tensor" for ``.to(device)`` after an assign-load);
- ``load_state_dict``: the buffers (never in a state dict) are refilled, which also covers a
  model built on the meta device and materialized by ``to_empty()`` + ``load_state_dict()``;
- a module built on the meta device and never materialized (``load_state_dict(..., assign=
  True)`` has nothing of it to assign): its forward builds the buffers for the input's device
  on a throwaway copy, so the output is right and the module is not mutated.

A weighted module's derived buffers are built in its weight's dtype (:class:`_WeightDerived`):
``load_state_dict(sd, assign=True)`` keeps the state dict's dtype (torch's rule), so a float32
build loaded from a float64 checkpoint gets float64 bases, built in float64. Where a route
gives the weight another dtype without a rebuild (``p.data = p.data.double()``, a new
``Parameter`` assigned, ``torch.func.functional_call``), the expansion reads the buffers
built for it on a throwaway copy (:func:`in_weight_dtype`).

A forward that reads a parameter more than once is decorated with :func:`parametrized_once`:
a parametrized one (``spectral_norm``, ``weight_norm``, ...) is then evaluated once per call.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from ._tables import check_tables, integer_tables

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BasisRecorded", "FixedArgs", "_FixedBuffers", "_WeightDerived", "in_weight_dtype",
           "normal_tensors", "parametrized_once"]

_M = TypeVar("_M", bound=nn.Module)
_F = TypeVar("_F", bound=Callable[..., Any])


def normal_tensors(fill: Callable[..., None]) -> Callable[..., None]:
    """Decorator of a method that (re)builds derived buffers: it builds them as normal tensors
    also where its caller is under ``torch.inference_mode`` (a checkpoint restored or a model
    converted there). Inference tensors cannot be saved for backward: the next training step
    failed where a plain ``nn.Conv2d`` trains on."""
    @functools.wraps(fill)
    def build(self: Any, *args: Any, **kwargs: Any) -> None:
        with torch.inference_mode(False):
            fill(self, *args, **kwargs)
    return build


def parametrized_once(forward: _F) -> _F:
    """Decorator of a ``forward`` that reads its module's parameters (or a submodule's) more
    than once: where one of them is parametrized (``torch.nn.utils.parametrize``: the
    parametrizations' ``spectral_norm``, ``weight_norm``, ``orthogonal``, ...), the call runs
    under ``parametrize.cached()``, so each parametrized tensor is evaluated once per call, as
    ``nn.Conv2d`` evaluates it (a training ``spectral_norm`` runs one power iteration per
    evaluation: 3-4 per step here before). The same values and gradients; ``cached()`` nests,
    so a caller's own ``with parametrize.cached():`` keeps its meaning (one evaluation for
    the whole block). A module without parametrizations runs ``forward`` as it is."""
    @functools.wraps(forward)
    def once(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if not _has_parametrizations(self):
            return forward(self, *args, **kwargs)
        from torch.nn.utils import parametrize

        with parametrize.cached():
            return forward(self, *args, **kwargs)
    return once  # type: ignore[return-value]  # (the same signature: functools.wraps)


def _has_parametrizations(module: nn.Module) -> bool:
    # (register_parametrization adds the child ``parametrizations``; a dict lookup, where
    # parametrize.is_parametrized's getattr costs a microsecond through nn.Module.__getattr__)
    return "parametrizations" in module._modules or any(
        _has_parametrizations(m) for m in module._modules.values() if m is not None)


def in_weight_dtype(module: _M) -> _M:
    """``module``, or, where one of its floating derived (non-persistent) buffers is not in
    its weight's dtype, a shallow copy holding them built afresh by its ``_fill_derived`` in
    that dtype (what ``.to(dtype)`` would build; ``module`` is not changed). A route that
    changes the weight's dtype without ``Module._apply`` or ``load_state_dict`` (``p.data =
    p.data.double()``, a new ``Parameter`` assigned, ``torch.func.functional_call``) then
    computes what ``.to(dtype)`` does, not a deep dtype error or a float32 basis widened; it
    rebuilds them on every call (``.to(dtype)`` builds them once). Otherwise one dtype
    comparison per buffer."""
    weight = _raw_weight(module)
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        return module
    dtype, derived = weight.dtype, module._non_persistent_buffers_set
    for n, b in module._buffers.items():
        if b is not None and b.dtype != dtype and n in derived and b.is_floating_point():
            break
    else:
        return module
    tmp = copy.copy(module)
    tmp._buffers = dict(module._buffers)  # (the copy's own: _fill_derived assigns them)
    tmp._fill_derived(weight.device)  # type: ignore[operator]  # (every caller defines it)
    return tmp


def _raw_weight(module: nn.Module) -> object:
    """``module.weight``, or for a parametrized weight its original (same dtype and device
    for the parametrizations torch ships): read without running the parametrization once
    more per call (an orthogonal one computes a matrix exponential)."""
    weight = module._parameters.get("weight")
    if weight is None:
        param = getattr(module, "parametrizations", {})
        weight = getattr(param["weight"], "original", None) if "weight" in param else None
    return module.weight if weight is None else weight


class FixedArgs(nn.Module):
    """Mixin of a module whose derived state is built from some of its constructor's
    arguments, :attr:`_fixed_args`: its buffers and integer tables (a blur filter, a gather
    table, a steerable basis) and, for a weighted module, its parameters' shapes. They are set
    once, in ``__init__``; assigning another value later raises ``AttributeError`` naming the
    fix (a new module built with it). Accepted, such a value was shown by ``repr`` and ignored
    by the forward, until a ``.to()`` or ``load_state_dict`` rebuilt part of the state from it
    (a steerable conv's basis then changed while its state dict's basis record kept the old
    settings). A class attribute named there (the convs' ``lifting``, ``transposed``) is fixed
    alike. Assigning the value an argument already has is allowed (nothing to rebuild), and
    every other attribute stays assignable (``stride``, ``padding``, ``dilation``,
    ``padding_mode``, a new ``weight`` or ``bias``: read by every call). Pickling,
    ``copy.deepcopy`` and ``load_state_dict`` restore a module without ``__setattr__``."""

    #: The constructor arguments the derived state is built from.
    _fixed_args: ClassVar[tuple[str, ...]] = ()
    #: What is built from them (the refusal says it).
    _fixed_reason: ClassVar[str] = "the module's buffers are built from it"

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._fixed_args and self._spells_current(name, value):
            return  # the value it has, spelled otherwise: the stored form stays
        if name in type(self)._fixed_args and not self._may_set(name, value):
            # (the user's class, not torch's ParametrizedX that parametrize puts over it)
            cls = next(c for c in type(self).__mro__
                       if c.__module__ != "torch.nn.utils.parametrize").__name__
            raise AttributeError(f"{cls}.{name} is fixed at construction ({self._fixed_reason}"
                                 f"); build a new {cls} with {name}={value!r} instead")
        super().__setattr__(name, value)

    def _spells_current(self, name: str, value: Any) -> bool:
        if name not in self.__dict__:
            return False
        try:
            return _same_setting(value, self.__dict__[name])
        except (TypeError, ValueError, RuntimeError):
            return False

    def _may_set(self, name: str, value: Any) -> bool:
        """Whether the fixed argument ``name`` may take ``value``: while it is not set yet (in
        ``__init__``), or where ``value`` is the one it has (a subclass may add values that
        build the same state)."""
        if name not in self.__dict__ and not any(name in vars(c) for c in type(self).__mro__):
            return True
        current = getattr(self, name)
        try:
            # (the stored value spells the new one: a subclass set it before __init__)
            return value is current or _same_setting(current, value)
        except (TypeError, ValueError, RuntimeError):  # (an == without a truth value)
            return False


def _same_setting(value: Any, current: Any) -> bool:
    """Whether ``value`` spells the setting ``current`` holds (as ``__init__`` stores it): the
    same value, a group's name for the group (``"p4"`` for c4), one int for a tuple of it
    (``3`` for ``(3, 3)``), a numpy integer for the int; not ``True`` for 1 nor 1.0 for 1."""
    from ..groups import Group, get

    if isinstance(current, Group):
        return isinstance(value, (str, Group)) and get(value) == current
    if isinstance(current, tuple) and isinstance(value, (tuple, list)):
        return len(value) == len(current) and all(map(_same_setting, value, current))
    if isinstance(current, tuple) and current and len(set(current)) == 1:
        return _same_setting(value, current[0])
    if isinstance(current, int) and not isinstance(current, bool):
        return (not isinstance(value, (bool, float)) and hasattr(value, "__index__")
                and value.__index__() == current)
    return type(value) is type(current) and bool(value == current)


class _WeightDerived(FixedArgs):
    """Mixin for a module whose derived buffers live with its ``weight``: ``_fill_derived``
    (the subclass's) rebuilds them on the weight's device, in the weight's dtype, after every
    conversion (``.to()``, ``.double()``, ``to_empty()``) and ``load_state_dict`` (with
    ``assign=True`` the weight takes the state dict's dtype); not while the weight is on the
    meta device (a meta build fills them with their shapes in ``reset_parameters``)."""

    if TYPE_CHECKING:  # every subclass has them
        weight: torch.Tensor

        def _fill_derived(self, device: torch.device) -> None: ...

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._refill_derived()
        return out

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._refill_derived()

    def _refill_derived(self) -> None:
        if not self.weight.is_meta:
            self._fill_derived(self.weight.device)


class _FixedBuffers(FixedArgs):
    """Mixin; subclasses fill every buffer in ``reset_parameters()`` and read them in
    ``forward`` through :meth:`_buffers_for` (the blurs' binomial ``filter`` excepted: a copy
    to inspect, their functional twins build it); the arguments the buffers are built from
    are :attr:`~FixedArgs._fixed_args` (a Gaussian pool kept blurring with its first sigma)."""

    if TYPE_CHECKING:  # every subclass defines it
        def reset_parameters(self) -> None: ...

    def _derived(self) -> list[torch.Tensor]:
        """The buffers and the integer tables (plain attributes, :mod:`._tables`)."""
        return ([b for b in self._buffers.values() if b is not None]
                + list(integer_tables(self).values()))

    def _refill(self) -> None:
        if not any(b.is_meta for b in self._derived()):
            with torch.inference_mode(False):  # normal tensors, as in _WeightDerived
                self.reset_parameters()

    def _apply(self, fn, recurse=True):
        self._off_meta(fn)
        out = super()._apply(fn, recurse)
        with torch.inference_mode(False):
            for n, t in integer_tables(self).items():  # to the device ``fn`` moves tensors
                self.__dict__[n] = fn(t)                # to (refilled right values below)
        self._refill()
        return out

    def _off_meta(self, fn) -> None:
        """Where ``fn`` moves tensors off the meta device (``.to(device)``, ``.cpu()``,
        ``.cuda()``), the buffers and tables still on meta are replaced by empty ones on that
        device (``_apply`` then converts them and refills their values): copied, they raised
        torch's "Cannot copy out of meta tensor" (a parameter-free module built on meta and
        given a state dict by ``load_state_dict(sd, assign=True)`` keeps its buffers there),
        and torch's advice (``to_empty()``) wiped the model's loaded weights. Where ``fn``
        keeps meta tensors on meta (``.double()``, ``to_empty(device="meta")``), nothing
        changes."""
        d = self.__dict__
        metas = {n: b for n, b in self._buffers.items() if b is not None and b.is_meta}
        tables = {n: t for n, t in integer_tables(self).items() if t.is_meta}
        if not metas and not tables:
            return
        try:
            fn(torch.empty(0, device="meta"))
            return  # fn keeps meta tensors on meta (or makes them without copying)
        except NotImplementedError as e:  # fn copies to a real device: read it off fn
            if "meta" not in str(e):
                return  # (another failure: ``_apply`` raises it)
            device = fn(torch.empty(0, device="cpu")).device
        with torch.inference_mode(False):  # normal tensors, as the refill's
            for n, b in metas.items():
                self._buffers[n] = torch.empty(b.shape, dtype=b.dtype, device=device)
            for n, t in tables.items():
                d[n] = torch.empty(t.shape, dtype=t.dtype, device=device)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._refill()

    #: Whether the floating buffers' values are inexact below float64 (a Gaussian filter, a
    #: smooth mask; not a binomial filter or a 0/1 table): a float64 input then gets them built
    #: in float64 (on a throwaway copy, as the functional twin computes them), not the
    #: module's float32 values widened.
    _inexact_below_float64 = False

    def _buffers_for(self, x) -> Self:
        """``self``, or a shallow copy holding buffers built for ``x``: for its device when
        the buffers are still on the meta device and ``x`` is not, and in float64 for a float64
        ``x`` where the buffers are of a narrower dtype and inexact there
        (:attr:`_inexact_below_float64`). Raises where an integer table was overwritten
        (:func:`._tables.check_tables`)."""
        check_tables(self, self._built_buffers)
        if not isinstance(x, torch.Tensor) or x.is_meta:
            return self
        wider = (self._inexact_below_float64 and x.dtype == torch.float64
                 and any(b is not None and b.is_floating_point() and b.dtype != torch.float64
                         for b in self._buffers.values()))
        if not wider and not any(b.is_meta for b in self._derived()):
            return self
        tmp = copy.copy(self)
        tmp._buffers = {n: None if b is None else torch.empty_like(
            b, device=x.device, dtype=torch.float64 if wider and b.is_floating_point()
            else b.dtype) for n, b in self._buffers.items()}
        for n, t in integer_tables(self).items():
            tmp.__dict__[n] = torch.empty_like(t, device=x.device)
        tmp.reset_parameters()
        return tmp


    def _built_buffers(self) -> dict[str, torch.Tensor]:
        """The buffers built afresh on a shallow copy (``self`` is not changed)."""
        tmp = copy.copy(self)
        tmp._buffers = {n: None if b is None else torch.empty_like(b)
                        for n, b in self._buffers.items()}
        tmp.reset_parameters()
        return {**{n: b for n, b in tmp._buffers.items() if b is not None},
                **integer_tables(tmp)}


def _five_d_as_four_d(fn):
    """``fn`` for ``Module._apply``, retried on a 5-D tensor it rejects (channels_last exists
    only for 4-D ones) as the 4-D view that merges dims 1 and 2, then viewed back: how a group
    conv's 5-D weight is converted (its expansion reads it through any strides); a 4-D one
    rejected by channels_last_3d (a harmonic basis's coefficients ``(C_out, C_in, |G|, J)``)
    as a 5-D view with a unit last dim, alike."""
    def convert(t):
        try:
            return fn(t)
        except RuntimeError:
            if t.dim() == 4:
                return fn(t.unsqueeze(-1)).squeeze(-1)
            if t.dim() != 5:
                raise
            return fn(t.flatten(1, 2)).unflatten(1, t.shape[1:3])
    return convert


def _conv_options_repr(m, nd: int) -> str:
    """The ``extra_repr`` tail of a conv-like module: ``dilation``, ``groups``, ``bias``,
    ``padding_mode`` where they differ from ``nn.Conv{nd}d``'s defaults."""
    s = ""
    if m.dilation != (1,) * nd:
        s += f", dilation={m.dilation}"
    if m.groups != 1:
        s += f", groups={m.groups}"
    if m.bias is None:
        s += ", bias=False"
    if m.padding_mode != "zeros":
        s += f", padding_mode={m.padding_mode!r}"
    return s


def newer_checkpoint(module: nn.Module, prefix: str, local_metadata: dict,
                     error_msgs: list[str]) -> bool:
    """True (and an error for ``load_state_dict`` to raise) when the state dict's metadata says
    it was saved by a newer parametrization of ``module`` than this one reads: loaded as this
    version's, its weights would compute something else silently (a version-2 group conv read
    by version-1 code was off by 0.25-2.1)."""
    version = local_metadata.get("version")
    if isinstance(version, int) and version > type(module)._version:
        error_msgs.append(
            f"{prefix or 'the module'} ({type(module).__name__}) was saved by a newer equilayers: "
            f"its parameters are in version {version}'s form, and this equilayers reads up to "
            f"version {type(module)._version}; upgrade equilayers to load it")
        return True
    return False


class PickleStamped(nn.Module):
    """A whole-model pickle (``torch.save(model)``) records the parametrization it was saved
    in, and keeps it when saved again. One of another parametrization (or from before the
    stamp, 2026-12-07) warns when loaded: it is not converted; where its version is known,
    its ``state_dict()`` says that version, so that ``load_state_dict`` converts it."""

    def __getstate__(self) -> dict:
        return {**super().__getstate__(),
                "_pickled_version": self.__dict__.get("_pickled_version", type(self)._version)}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        stamp = state.get("_pickled_version")
        if stamp == type(self)._version:
            return
        self.__dict__["_pickled_version"] = stamp  # kept by a second save (None: unknown)
        if isinstance(stamp, int):
            self._version = stamp  # (an instance attribute: state_dict() writes it)
        import warnings

        when = ("by an equilayers older than 2026-12-07" if stamp is None else
                f"in parametrization version {stamp} (this equilayers: {type(self)._version})")
        warnings.warn(
            f"{type(self).__name__} was pickled whole {when}; whole-model pickles are not "
            "converted between versions: if its parametrization changed since (docs/training"
            ".md, 'Old checkpoints'), its outputs are wrong. Load it with the version that saved "
            "it and save its state_dict() there (or load its state_dict() into a new model, "
            "where its version is known)", stacklevel=2)


class BasisRecorded(nn.Module):
    """Mixin of a conv with a harmonic (steerable) basis: its basis settings (``rings``,
    ``sigma``, ``frequencies_cutoff``, resolved per ring) are recorded in the state dict's
    per-module metadata (``sd._metadata[prefix]["basis_settings"]``, beside torch's
    ``version``), and a load whose record differs from the module's settings is refused,
    naming both: the weights are coefficients of another filter basis, which no change of
    shape would show (another ``sigma`` loaded strictly and computed outputs 0.04-0.30 off,
    relative). A state dict without the record (saved before it, or its metadata dropped)
    loads as before. No state dict key is added (an ``_extra_state`` key would break strict
    loads of existing checkpoints). A pixel or voxel basis has no settings and no record (its
    weight has one axis per filter dim, a harmonic basis' one axis: a load between them fails
    on the shapes). A class whose bases share weight shapes (``SteerableConv3d``'s
    ``"shells"`` and ``"slices"``: kernel ``(1, k, k)``) sets ``_records_basis`` and records
    ``basis`` too; a record without it (saved by an earlier equilayers) is checked without it."""

    if TYPE_CHECKING:  # every subclass has them
        basis: str
        _basis_spec: tuple[tuple[float, float, int], ...] | None
    _records_basis = False  # True: the record names ``basis`` (bases of equal weight shapes)

    def _basis_record(self) -> dict[str, tuple | str] | None:
        if self.basis in ("pixel", "voxel"):
            return None
        from ..functional._basis_settings import default_spec

        k = self.__dict__["kernel_size"][-1]  # (an int tuple: 2-D, 3-D or (kd, k, k))
        spec = self._basis_spec or default_spec(k)
        record: dict[str, tuple | str] = {
            "rings": tuple(float(r) for r, _, _ in spec),
            "sigma": tuple(float(s) for _, s, _ in spec),
            "frequencies_cutoff": tuple(int(c) for _, _, c in spec)}
        if self._records_basis:
            record["basis"] = self.basis
        return record

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        meta = getattr(destination, "_metadata", None)
        record = self._basis_record()
        if record is not None and isinstance(meta, dict) and isinstance(
                meta.get(prefix[:-1]), dict):
            meta[prefix[:-1]]["basis_settings"] = record

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        saved, ours = local_metadata.get("basis_settings"), self._basis_record()
        if saved is not None and ours is not None and not _same_record(saved, ours):
            args = ", ".join(f"{k}={_arg(v, False)}" for k, v in saved.items())
            error_msgs.append(
                f"{prefix[:-1] or 'the module'} ({type(self).__name__}) was saved with basis "
                f"settings {_record_repr(saved)}, and this one is built with "
                f"{_record_repr(ours)}: its weights are coefficients of the saved basis and "
                f"would compute another filter here; build it with {args} (or load into a "
                "module with the saved settings)")
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


def _same_record(saved: object, ours: dict[str, tuple | str]) -> bool:
    """Whether a recorded basis (``saved``, as read back from a checkpoint) is ``ours``; a
    record without ``basis`` (saved before it was recorded) is compared without it."""
    import math

    if isinstance(saved, dict) and "basis" not in saved:
        ours = {k: v for k, v in ours.items() if k != "basis"}
    if not isinstance(saved, dict) or saved.keys() != ours.keys():
        return False
    try:
        return all(saved[k] == v if isinstance(v, str) else len(saved[k]) == len(v) and all(
            math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
            for a, b in zip(saved[k], v, strict=True)) for k, v in ours.items())
    except (TypeError, ValueError):
        return False


def _arg(value: Any, as_tuple: bool) -> str:
    """A recorded value as written: a name quoted, numbers as a tuple or a list."""
    if isinstance(value, str):
        return repr(value)
    return str(tuple(value) if as_tuple else list(value))


def _record_repr(record: object) -> str:
    if not isinstance(record, dict):
        return repr(record)
    return "(" + ", ".join(f"{k}={_arg(v, True)}" for k, v in record.items()) + ")"
