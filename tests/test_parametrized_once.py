"""A parametrized parameter (``torch.nn.utils.parametrize``: ``spectral_norm``, ``weight_norm``,
``orthogonal``, ...) is evaluated once per forward, as ``nn.Conv2d`` evaluates it: the group
convs evaluated theirs 3 times per call (SteerableConv3d 4), and a training ``spectral_norm``
ran that many power iterations per step. Every zoo module with parameters, train and eval,
autograd on and off, first call and later ones; the same values and gradients as before;
``spectral_norm`` steps as on ``nn.Conv2d``; ``torch.compile(fullgraph=True)`` still one graph
(:func:`equilayers.nn._derived.parametrized_once`)."""

from __future__ import annotations

import pytest
import torch
from _zoo import ZOO, build
from conftest import seeded_rng
from torch import nn
from torch.nn.utils import parametrizations as PZ
from torch.nn.utils import parametrize

from equilayers.nn import (
    GroupConv2d,
    GroupConv3d,
    GroupConvTranspose2d,
    HarmonicBatchNorm,
    LiftingConv2d,
    SteerableConv3d,
)


class _Count(nn.Module):
    """The identity, counting its evaluations."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.n += 1
        return w


def _with_params(name: str) -> bool:
    m, _ = build(name)
    return any(True for _ in m.parameters())


NAMES = [n for n in sorted(ZOO) if _with_params(n)]


def _counted(m: nn.Module) -> dict[str, _Count]:
    """A counter on every parameter of ``m`` and of its submodules, by qualified name."""
    targets = [(prefix, mod, k) for prefix, mod in m.named_modules()
               for k, p in mod._parameters.items() if p is not None]
    counts = {}
    for prefix, mod, k in targets:
        counts[f"{prefix}.{k}".lstrip(".")] = c = _Count()
        parametrize.register_parametrization(mod, k, c)
    return counts


def _calls(counts: dict[str, _Count], call) -> dict[str, int]:
    for c in counts.values():
        c.n = 0
    call()
    return {k: c.n for k, c in counts.items()}


@pytest.mark.parametrize("name", NAMES)
def test_each_parametrized_tensor_is_evaluated_once_per_forward(name):
    """One evaluation per parametrized tensor per call, its first (which runs the input
    checks) and a later one, in train and eval mode, with autograd on and off (eval without
    autograd compares the kept filter's values: once too); inside a caller's own
    ``parametrize.cached()`` block, once for the whole block (torch's meaning, kept)."""
    m, args = build(name)
    counts = _counted(m)
    for mode in (True, False):
        m.train(mode)
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                for call in ("first", "later"):
                    seen = _calls(counts, lambda: m(*args))
                    assert set(seen.values()) == {1}, (mode, grad, call, seen)
    with parametrize.cached():
        seen = _calls(counts, lambda: (m(*args), m(*args)))
    assert set(seen.values()) == {1}, seen


def test_the_control_the_undecorated_forward_evaluates_the_weight_again():
    """The control: the same counter sees the repeated reads of the forward without the
    decorator (``__wrapped__``): 3 evaluations of a group conv's weight per call."""
    m = GroupConv2d(2, 3, 3, padding=1, group="p4")
    x = torch.randn(1, 2, 4, 5, 5)
    counts = _counted(m)
    m(x)
    assert _calls(counts, lambda: type(m).forward.__wrapped__(m, x))["weight"] == 3
    assert _calls(counts, lambda: m(x))["weight"] == 1


_MODULES = {
    "GroupConv2d[p4]": (lambda: GroupConv2d(2, 3, 3, padding=1, group="p4"), (2, 2, 4, 5, 5)),
    "GroupConv2d[c8,harmonic]": (lambda: GroupConv2d(2, 3, 5, padding=2, group="c8",
                                                     basis="harmonic"), (2, 2, 8, 5, 5)),
    "GroupConvTranspose2d[p4]": (lambda: GroupConvTranspose2d(2, 3, 3, stride=2, group="p4"),
                                 (2, 2, 4, 4, 4)),
    "GroupConv3d[o]": (lambda: GroupConv3d(2, 3, 3, padding=1, group="o"), (1, 2, 24, 3, 3, 3)),
    "SteerableConv3d[so3]": (lambda: SteerableConv3d(2, 3, 3, padding=1, max_order=1),
                             (1, 2, 4, 4, 4)),
    "HarmonicBatchNorm": (lambda: HarmonicBatchNorm(2, 2), (3, 2, 5, 4, 4)),
}


@pytest.mark.parametrize("norm", ["weight_norm", "orthogonal"])
@pytest.mark.parametrize("name", sorted(_MODULES))
def test_values_and_gradients_are_those_of_the_repeated_reads(name, norm):
    """Evaluated once or per read (the undecorated forward), a deterministic parametrization
    gives the same output and the same gradients for its own parameters."""
    make, shape = _MODULES[name]
    with seeded_rng(0):
        m = make().train()
        x = torch.randn(shape)
    if norm == "orthogonal" and m.weight.dim() < 2:
        pytest.skip("orthogonal needs a matrix")
    getattr(PZ, norm)(m, "weight")
    outs, grads = [], []
    for forward in (m.forward, lambda t: type(m).forward.__wrapped__(m, t)):
        m.zero_grad()
        y = forward(x)
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _slow_power_iteration_weight(gen: torch.Generator) -> torch.Tensor:
    """A (3, 2, 3, 3) filter whose top two singular values are close (1 and 0.99): the power
    iteration converges slowly, so one more iteration moves its estimate visibly."""
    q1, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(18, 3, generator=gen, dtype=torch.float64))
    s = torch.tensor([1.0, 0.99, 0.5], dtype=torch.float64)
    return (q1 * s @ q2.t()).view(3, 2, 3, 3).float()


def test_spectral_norm_steps_as_on_nn_conv2d(gen):
    """A lifting conv's pixel weight ``(C_out, C_in, k, k)`` is ``nn.Conv2d``'s: with
    ``spectral_norm`` on both (the same start), three training steps leave the same power
    iteration state (one iteration per forward) and the lifting conv computes with the
    weight ``nn.Conv2d`` normalized. The control: the forward evaluating the weight per read
    (``__wrapped__``) ran three iterations a step and ends elsewhere."""
    w = _slow_power_iteration_weight(gen)
    x = torch.randn(2, 2, 6, 6, generator=gen)
    modules = []
    for make in (lambda: nn.Conv2d(2, 3, 3, padding=1), lambda: LiftingConv2d(
            2, 3, 3, padding=1, group="p4"), lambda: LiftingConv2d(2, 3, 3, padding=1,
                                                                   group="p4")):
        m = make().train()
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.fill_(0.1)
        with seeded_rng(3):  # the same random start of the power iteration
            PZ.spectral_norm(m)
        modules.append(m)
    conv, lift, per_read = modules
    for _ in range(3):
        conv(x)
        y = lift(x)
        type(per_read).forward.__wrapped__(per_read, x)
    state = [m.parametrizations.weight[0] for m in modules]
    torch.testing.assert_close(state[1]._u, state[0]._u, rtol=0, atol=1e-7)
    torch.testing.assert_close(state[1]._v, state[0]._v, rtol=0, atol=1e-7)
    assert (state[2]._u - state[0]._u).abs().max() > 1e-4  # the control: 9 iterations
    conv.eval()  # (eval: read without a further iteration)
    plain = LiftingConv2d(2, 3, 3, padding=1, group="p4")
    with torch.no_grad():
        plain.weight.copy_(conv.weight)
        plain.bias.copy_(conv.bias)
        torch.testing.assert_close(y, plain(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["GroupConv2d[p4]", "GroupConv3d[o]", "SteerableConv3d[so3]"])
def test_compile_fullgraph_of_a_parametrized_conv(name):
    """``parametrize.cached()`` in the forward keeps ``torch.compile(fullgraph=True)`` one
    graph; the compiled module matches eager, forward and backward."""
    torch._dynamo.reset()
    make, shape = _MODULES[name]
    m = make().train()
    PZ.weight_norm(m, "weight")
    x = torch.randn(shape)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x), rtol=1e-5, atol=1e-6)
    g = torch.autograd.grad(compiled(x).square().sum(), m.parametrizations.weight.original0)
    ref = torch.autograd.grad(m(x).square().sum(), m.parametrizations.weight.original0)
    torch.testing.assert_close(g[0], ref[0], rtol=1e-5, atol=1e-6)
