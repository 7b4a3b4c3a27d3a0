"""The constructor arguments a module's derived state is built from (its bases, integer tables,
buffers, and a weighted module's parameter shapes) are fixed at construction: assigned later,
they raise ``AttributeError`` naming the fix (:class:`equilayers.nn._derived.FixedArgs`).

Before, the weighted modules took them silently: a steerable conv's ``sigma`` was shown by
``repr`` and ignored by the forward until a ``.to()`` rebuilt the basis from it (while the
state dict's basis record kept the old settings), a new ``group`` kept the old group's gather
tables, ``FourierNonlinearity.samples`` was ignored in float32 and honoured in float64, and an
eval-mode filter kept from before hid a new ``kernel_size``. The ``torch.nn`` settings read by
every call (``stride``, ``padding``, ``dilation``, ...) stay assignable (the controls).
"""

from __future__ import annotations

import pytest
import torch
from _zoo import ZOO, build
from torch import nn

from equilayers import groups
from equilayers import nn as enn

_CONV2D = ("group", "basis", "max_order", "in_max_order", "sigma", "frequencies_cutoff", "rings",
           "kernel_size", "in_channels", "out_channels", "groups", "lifting", "transposed")
_CONV3D = ("group", "basis", "sigma", "frequencies_cutoff", "rings", "kernel_size",
           "in_channels", "out_channels", "groups", "lifting", "transposed")
_STEERABLE3D = ("group", "basis", "max_order", "in_max_order", "sigma", "frequencies_cutoff",
                "rings", "kernel_size", "in_channels", "out_channels", "groups", "transposed")

#: per class: the arguments its derived state (or a parameter's shape) is built from
FIXED: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("LiftingConv2d", "GroupConv2d", "LiftingConvTranspose2d",
                     "GroupConvTranspose2d"), _CONV2D),
    **dict.fromkeys(("LiftingConv3d", "GroupConv3d", "LiftingConvTranspose3d",
                     "GroupConvTranspose3d"), _CONV3D),
    **dict.fromkeys(("SteerableConv3d", "SteerableConvTranspose3d"), _STEERABLE3D),
    "ExpandedGroupConv2d": ("group", "lifting", "transposed"),
    "GroupLinear": ("group", "max_order", "in_max_order"),
    "TensorProductNonlinearity": ("group", "max_order", "out_max_order"),
    "FourierNonlinearity": ("group", "max_order", "samples"),
    "HarmonicBatchNorm": ("max_order", "statistics"),
    "NormNonlinearity": ("max_order",),
}

# the zoo entries holding such a module (the models hold convs; OnFibers a batch norm)
_ENTRIES = [n for n in ZOO if n.split("[")[0] in FIXED or n.startswith("UNet")
            or n == "OnFibers[so3-batch-norm]"]


def _other(value: object) -> object:
    """A value other than ``value``, of a kind the argument takes (the refusal comes first)."""
    if isinstance(value, groups.Group):
        return groups.get("c3" if value.name == "c2" else "c2")
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2
    if isinstance(value, str):
        return "field" if value in ("order", "order_centred") else value + "x"
    if isinstance(value, tuple):
        return tuple(_other(v) for v in value)
    return 0.5  # (None: a default setting)


def _out(y):
    return y[0] if isinstance(y, (tuple, list)) else y


@pytest.mark.parametrize("name", _ENTRIES)
def test_a_setting_the_derived_state_is_built_from_is_refused_after_construction(name):
    """Every such argument of every module of the zoo (the models' too): assigning another
    value raises, naming the class, the argument and the fix, and leaves the module as it was
    (the output is bit-identical). Reassigning the value it has is allowed (nothing changes)."""
    model, args = build(name)
    with torch.no_grad():
        before = _out(model(*args))
    tried = 0
    for module in model.modules():
        cls = type(module).__name__
        for attr in FIXED.get(cls, ()):
            value = getattr(module, attr)
            with pytest.raises(AttributeError, match=rf"{cls}\.{attr} is fixed at construction "
                                                     rf".* build a new {cls} with {attr}="):
                setattr(module, attr, _other(value))
            setattr(module, attr, value)  # the same value: accepted
            assert getattr(module, attr) is value or getattr(module, attr) == value
            tried += 1
    assert tried > 0
    with torch.no_grad():
        assert torch.equal(_out(model(*args)), before)


def test_every_module_with_derived_state_names_the_arguments_it_is_built_from():
    """Zoo-wide: a module class with derived buffers (non-persistent) or integer tables, or
    listed in ``FIXED``, declares ``_fixed_args`` covering them (a module added later with
    derived state but no declaration fails here)."""
    seen: dict[type, nn.Module] = {}
    for name in ZOO:
        model, _ = build(name)
        for m in model.modules():
            seen.setdefault(type(m), m)
    missing = []
    for cls, m in seen.items():
        derived = bool(m._non_persistent_buffers_set) or bool(getattr(cls, "_table_names", ()))
        declared = set(getattr(cls, "_fixed_args", ()))
        want = set(FIXED.get(cls.__name__, ()))
        if (derived and not declared) or not want <= declared:
            missing.append((cls.__name__, sorted(want - declared)))
    assert not missing, missing


def test_a_later_sigma_cannot_change_the_basis_or_the_record(gen):
    """The report's case: ``sigma`` set on a c8 conv was ignored, then a no-op ``.to(float64)``
    rebuilt the basis from it (the output jumped by 0.52) while ``state_dict()`` still
    recorded the first settings, so the checkpoint loaded silently into a default conv. Now
    the assignment is refused; ``.to()`` and the record keep the constructor's settings."""
    x = torch.randn(2, 3, 8, 9, 9, dtype=torch.float64, generator=gen)
    m = enn.GroupConv2d(3, 4, 5, padding=2, group="c8").double()
    with torch.no_grad():
        before = m(x)
        record = m.state_dict()._metadata[""]["basis_settings"]
        for attr, value in (("sigma", 0.5), ("rings", (0.0, 1.0, 2.0)),
                            ("frequencies_cutoff", 2)):
            with pytest.raises(AttributeError, match=f"GroupConv2d.{attr} is fixed"):
                setattr(m, attr, value)
        m.to(torch.float64)
        assert torch.equal(m(x), before)
        assert m.state_dict()._metadata[""]["basis_settings"] == record


@pytest.mark.parametrize("attr, value", [("kernel_size", (5, 5)), ("out_channels", 2)])
def test_a_kept_eval_filter_cannot_hide_a_new_kernel_size_or_out_channels(attr, value, gen):
    """A warm eval filter (eval + no_grad) answered with the old 3x3 / 4-field output after
    ``kernel_size`` or ``out_channels`` changed, while autograd raised on the weight's shape.
    Now the change is refused; the control: a weight of another shape still reaches the shape
    check past the kept filter."""
    x = torch.randn(2, 3, 4, 9, 9, generator=gen)
    m = enn.GroupConv2d(3, 4, 3, padding=1, group="p4").eval()
    with torch.no_grad():
        before = m(x)
        with pytest.raises(AttributeError, match=f"GroupConv2d.{attr} is fixed at construction"):
            setattr(m, attr, value)
        assert torch.equal(m(x), before)
        m.weight = nn.Parameter(torch.randn(2, 3, 4, 3, 3, generator=gen))
        with pytest.raises(ValueError, match=r"weight must have shape \(4, 3, 4, 3, 3\)"):
            m(x)


def test_the_torch_nn_settings_stay_assignable(gen):
    """Controls: ``padding``, ``dilation``, ``stride`` set after construction take effect, as a
    module built with them computes (2-D and 3-D steerable convs, and ExpandedGroupConv2d's
    int ``dilation``, which failed deep in the forward: "'int' object is not subscriptable")."""
    x2 = torch.randn(2, 3, 8, 11, 11, generator=gen)
    x3 = torch.randn(1, 2, 7, 7, 7, generator=gen)
    cases = [(enn.GroupConv2d, (3, 4, 3), {"padding": 1, "group": "c8"}, x2),
             (enn.SteerableConv3d, (2, 3, 3), {"padding": 1, "max_order": 1}, x3),
             (enn.ExpandedGroupConv2d, (3, 4, 3), {"padding": 1, "group": "c8"}, x2)]
    for cls, args, kwargs, x in cases:
        m = cls(*args, **kwargs)
        with torch.no_grad():
            m.weight.normal_(generator=gen)
        m.padding, m.dilation, m.stride = 2, 2, 2  # ints, as nn.Conv2d takes them
        fresh = cls(*args, **{**kwargs, "padding": 2, "dilation": 2, "stride": 2})
        fresh.load_state_dict(m.state_dict())
        for mode in (True, False):
            with torch.no_grad():
                torch.testing.assert_close(m.train(mode)(x), fresh.train(mode)(x),
                                           rtol=0, atol=0)


def test_harmonic_batch_norm_statistics_change_only_within_its_state(gen):
    """``statistics`` to or from ``"field"`` (one variance and weight per field, not per
    order) failed at every forward with an error about ``running_var``'s shape; now the
    assignment is refused, naming the fix. ``"order"`` <-> ``"order_centred"`` share their
    state and are applied: as a module built with the new value, train and eval."""
    x = torch.randn(4, 3, 5, 5, 5, generator=gen) + 1
    for start, new in (("order", "field"), ("field", "order"), ("order_centred", "field")):
        m = enn.HarmonicBatchNorm(3, 2, statistics=start)
        with pytest.raises(AttributeError, match=rf"HarmonicBatchNorm.statistics is fixed at "
                                                 rf".*statistics='{new}' instead"):
            m.statistics = new
    for start, new in (("order", "order_centred"), ("order_centred", "order")):
        m = enn.HarmonicBatchNorm(3, 2, statistics=start)
        with torch.no_grad():
            m(x)
        fresh = enn.HarmonicBatchNorm(3, 2, statistics=new)
        fresh.load_state_dict(m.state_dict())
        m.statistics = new
        for mode in (False, True):
            with torch.no_grad():
                assert torch.equal(m.train(mode)(x), fresh.train(mode)(x))
        assert torch.equal(m.running_var, fresh.running_var)


def test_the_value_it_has_is_accepted_however_it_is_spelled():
    """The guard compared the stored (normalised) value by type: ``kernel_size = 3`` on a conv
    built with 3 (stored (3, 3)), ``group = "p4"`` (stored c4), a numpy int, and a subclass
    that sets ``kernel_size`` before ``super().__init__`` were refused, naming the value the
    module was built with as the fix. Other values stay refused (the control)."""
    np = pytest.importorskip("numpy")
    m = enn.GroupConv2d(3, 4, 3, padding=1, group="p4")
    m.kernel_size = 3
    m.kernel_size = [3, 3]
    m.group = "p4"
    m.group = groups.get("c4")
    m.in_channels = np.int64(3)
    assert (m.kernel_size, m.group, type(m.in_channels)) == ((3, 3), groups.get("c4"), int)
    for name, value in [("kernel_size", 5), ("kernel_size", (3, 5)), ("kernel_size", 3.0),
                        ("group", "p4m"), ("in_channels", True), ("in_channels", 3.0)]:
        with pytest.raises(AttributeError, match=f"GroupConv2d.{name} is fixed"):
            setattr(m, name, value)

    class MyConv(enn.GroupConv2d):
        def __init__(self, k=3):
            self.kernel_size = k  # a plain attribute before Module.__init__: torch allows it
            super().__init__(3, 4, k, padding=k // 2, group="p4")

    assert MyConv().kernel_size == (3, 3)


def test_a_parametrized_module_is_refused_by_its_own_class_name():
    m = enn.GroupConv2d(3, 4, 3, group="p4")
    torch.nn.utils.parametrizations.weight_norm(m)
    assert type(m).__name__ == "ParametrizedGroupConv2d"  # torch's class over ours
    with pytest.raises(AttributeError, match=r"^GroupConv2d.kernel_size is fixed .* build a "
                                             r"new GroupConv2d with kernel_size=5 instead"):
        m.kernel_size = 5
