"""Parameters of another shape put in place of a module's own (``torch.func.functional_call``,
a new ``nn.Parameter``): a module that reads its weight or bias through index tables or bases
built for its constructor's shapes raises a ``ValueError`` naming the parameter, the built
shape and the shape given (``equilayers/nn/_param_shapes.py``). They gathered the new tensor
through the old tables: a larger one ran and gave a meaningless output, a smaller one failed
deep in the gather. The check runs on every call, also under ``vmap``, ``grad`` and
``torch.compile``, and the right shape still computes what the module computes with those
values loaded.
"""

from __future__ import annotations

import pytest
import torch
from _zoo import ZOO, build
from torch import nn
from torch.func import functional_call, grad, vmap

from equilayers import nn as enn

#: Modules whose weight and bias are used as given, each with why (the rest of the zoo's
#: modules with a weight or bias must refuse every other shape with a ValueError).
AS_GIVEN = {
    "BlurConv2d": "its weight is F.conv2d's, as nn.Conv2d's: a kernel of another size is a "
                  "conv with that kernel (other channel counts raise ValueError)",
    "GroupBatchNorm2d": "torch's batch norm checks the sizes (RuntimeError, as nn.BatchNorm's)",
    "GroupBatchNorm3d": "torch's batch norm checks the sizes (RuntimeError, as nn.BatchNorm's)",
}

#: The zoo's modules with a parameter named weight or bias (models are built of them).
NAMES = [n for n in sorted(ZOO) if not n.startswith("UNet")]


def _shaped(m: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in m.named_parameters() if n.split(".")[-1] in ("weight", "bias")]


def _others(shape: torch.Size):
    """Every shape one larger and one smaller (never empty) than ``shape`` in one dim."""
    for dim in range(len(shape)):
        for step in (1, -1):
            s = list(shape)
            s[dim] += step
            if s[dim] > 0:
                yield tuple(s)


def test_as_given_names_are_in_the_zoo():
    assert set(AS_GIVEN) <= {n.split("[")[0] for n in ZOO}


@pytest.mark.parametrize("name", NAMES)
def test_another_shape_raises_naming_the_parameter(name):
    if name.split("[")[0] in AS_GIVEN:
        pytest.skip(AS_GIVEN[name.split("[")[0]])
    m, args = build(name)
    params = _shaped(m)
    if not params:
        pytest.skip(f"{name} has no weight or bias")
    for pname, p in params:
        leaf = pname.split(".")[-1]
        for shape in _others(p.shape):
            # (a head's or a learned pool's weight with another output count is named
            # through its bias: "bias must have shape (5,) ...; got shape (4,)")
            with pytest.raises(ValueError, match=r"\b(weight|bias)\b") as info:
                functional_call(m, {pname: torch.randn(shape)}, args)
            if f"{leaf} must have shape {tuple(p.shape)}, the shape" in str(info.value):
                assert f"got {leaf} of shape {shape}" in str(info.value), info.value


@pytest.mark.parametrize("name", NAMES)
def test_the_right_shape_computes_as_the_loaded_module(name):
    m, args = build(name)
    params = _shaped(m)
    if not params:
        pytest.skip(f"{name} has no weight or bias")
    new = {n: torch.randn_like(p) for n, p in params}
    out = functional_call(m, new, args)
    loaded, _ = build(name)
    with torch.no_grad():
        for n, p in loaded.named_parameters():
            if n in new:
                p.copy_(new[n])
    ref = loaded(*args)
    torch.testing.assert_close(out[0] if isinstance(out, tuple) else out,
                               ref[0] if isinstance(ref, tuple) else ref)


def test_assigned_parameter_is_checked_on_every_call():
    """The tester's case: a p4 conv built for 3 x 3 filters given a 5 x 5 weight ran."""
    m = enn.GroupConv2d(2, 3, 3, padding=1, group="p4")
    x = torch.randn(2, 2, 4, 9, 9)
    m(x)  # a first call: nothing is kept from it
    m.weight = nn.Parameter(torch.randn(3, 2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 2, 4, 3, 3\).*"
                                         r"\(3, 2, 4, 5, 5\).*Pass a weight of shape"):
        m(x)
    with pytest.raises(ValueError, match="weight must have shape"):
        m.expanded_filter()
    m.weight = nn.Parameter(torch.randn(3, 2, 4, 3, 3))
    m.bias = nn.Parameter(torch.randn(4))
    with torch.no_grad(), pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        m.eval()(x)


CONVS = {
    "p4": (lambda: enn.GroupConv2d(2, 3, 3, padding=1, group="p4"), (2, 2, 4, 7, 7)),
    "o": (lambda: enn.GroupConv3d(1, 2, 3, padding=1, group="o"), (2, 1, 24, 4, 4, 4)),
    "so3": (lambda: enn.SteerableConv3d(1, 2, 3, padding=1, max_order=1), (2, 1, 4, 4, 4)),
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_checked_under_vmap_and_grad(case):
    """torch.func's ensembling (vmap over stacked weights) and per-sample gradients: the
    right shapes run as before, another raises the ValueError."""
    make, shape = CONVS[case]
    m = make()
    x = torch.randn(shape)
    params = {n: p.detach() for n, p in m.named_parameters()}
    stacked = {n: torch.stack([p, 2 * p]) for n, p in params.items()}
    out = vmap(lambda p: functional_call(m, p, (x,)))(stacked)
    doubled = {n: 2 * p for n, p in params.items()}
    torch.testing.assert_close(out[1], functional_call(m, doubled, (x,)))
    wrong = dict(stacked, bias=torch.randn(2, params["bias"].shape[0] + 1))
    with pytest.raises(ValueError, match="bias must have shape"):
        vmap(lambda p: functional_call(m, p, (x,)))(wrong)

    def loss(p, xi):
        return functional_call(m, p, (xi[None],)).square().sum()

    g = vmap(grad(loss), in_dims=(None, 0))(params, x)
    assert g["weight"].shape == (x.shape[0], *params["weight"].shape)
    w = params["weight"]
    bigger = dict(params, weight=torch.randn(w.shape[0], w.shape[1], *w.shape[2:-1],
                                             w.shape[-1] + 1))
    with pytest.raises(ValueError, match="weight must have shape"):
        vmap(grad(loss), in_dims=(None, 0))(bigger, x)


def test_checked_under_torch_compile():
    """The check compiles without a graph break (fullgraph), and the compiled module guards on
    the shape: a weight of another shape assigned later raises, it does not reuse the graph."""
    m = enn.GroupConv2d(2, 3, 3, padding=1, group="p4")
    x = torch.randn(2, 2, 4, 7, 7)
    torch.testing.assert_close(torch.compile(m, backend="eager", fullgraph=True)(x), m(x))
    compiled = torch.compile(m, backend="eager")
    torch.testing.assert_close(compiled(x), m(x))
    m.weight = nn.Parameter(torch.randn(3, 2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 2, 4, 3, 3\)"):
        compiled(x)
