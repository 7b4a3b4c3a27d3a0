"""``equilayers.metrics.lie_derivative``: finite differences and hand-computed values, zero on
exactly invariant / equivariant maps, half-precision models, the warnings of torch's forward AD
(filtered) and of the model (kept), fibers without a continuous action."""

import math
import subprocess
import sys
import warnings

import pytest
import torch
from _metrics_common import ChannelMeans
from conftest import seeded_rng
from torch import nn

from equilayers import metrics
from equilayers.groups import fractional_shift
from equilayers.metrics._lie import _shear_rotate
from equilayers.testing import symmetrized_conv2d


def test_lie_derivative_matches_finite_difference(gen):
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, stride=2),
                        nn.Flatten(), nn.LazyLinear(5)).double()
    x = torch.randn(3, 2, 9, 9, generator=gen, dtype=torch.float64)
    net(x)
    eps = 1e-4
    fd_paths = {
        "translate_x": lambda t: fractional_shift(x, (0.0, t)),
        "translate_y": lambda t: fractional_shift(x, (t, 0.0)),
        "rotate": lambda t: _shear_rotate(x, torch.tensor(t, dtype=x.dtype)),
    }
    for name, path in fd_paths.items():
        with torch.no_grad():
            fd = (net(path(eps)) - net(path(-eps))) / (2 * eps)
        want = fd.pow(2).sum(dim=1)
        got = metrics.lie_derivative(net, x, name, reduction="none")
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
        assert metrics.lie_derivative(net, x, name) == pytest.approx(want.mean().item(),
                                                                     rel=1e-6)


def test_lie_derivative_known_and_zero(gen):
    # hand-computed: f(x) = <w, x> on x = cos(2 pi k col / W): d/dt f(x(col - t))
    # = <w, (2 pi k / W) sin(2 pi k col / W)>
    w_, k = 12, 2
    col = torch.arange(w_, dtype=torch.float64)
    x = torch.cos(2 * math.pi * k * col / w_).expand(1, 1, 8, w_).clone()
    weight = torch.randn(1, 1, 8, w_, generator=gen, dtype=torch.float64)
    deriv = (weight * (2 * math.pi * k / w_) * torch.sin(2 * math.pi * k * col / w_)).sum()
    got = metrics.lie_derivative(lambda t: (t * weight).sum(dim=(1, 2, 3))[:, None], x,
                                 "translate_x")
    assert got == pytest.approx(deriv.item() ** 2, rel=1e-9)
    # exactly invariant / equivariant maps have a zero Lie derivative
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    for gname in metrics.GENERATORS:
        assert metrics.lie_derivative(ChannelMeans(), x, gname) < 1e-20
    conv = nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular").double()
    assert metrics.lie_derivative(conv, x, "translate_x") < 1e-20       # equivariant output
    assert metrics.lie_derivative(conv, x, "translate_x", out_rep="invariant") > 1e-2
    sym = symmetrized_conv2d(3, 2, 3, "d4")
    sym.padding_mode = "circular"
    assert metrics.lie_derivative(sym, x, "rotate") < metrics.lie_derivative(conv, x, "rotate")
    # the output moves by t * W_out / W_in along x and t * H_out / H_in along y: a map that
    # doubles the rows (H_out = 2 H_in, W_out = W_in) is exactly equivariant to translate_x
    # with scale 1 (a scale read off the heights, 2, would move its output twice as far)
    def rows_twice(t):
        return t.repeat_interleave(2, dim=-2)

    assert metrics.lie_derivative(rows_twice, x, "translate_x") < 1e-20
    assert metrics.lie_derivative(rows_twice, x, "translate_x", out_rep="invariant") > 1e-2


@pytest.mark.parametrize("dtype,rel", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_lie_derivative_of_a_half_precision_model(dtype, rel, gen):
    """A float16/bfloat16 model and batch: the band-limited shifts run through float32 (torch's
    FFT takes neither dtype on CPU, which raised from inside the metric) and the derivative is
    that of the float32 model to the dtype's precision."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(4, 5, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 7, 8, generator=gen)
    for name in metrics.GENERATORS:
        want = metrics.lie_derivative(net, x, name)
        got = metrics.lie_derivative(net.to(dtype), x.to(dtype), name)
        net.float()
        assert got == pytest.approx(want, rel=rel)


def test_lie_derivative_keeps_torchs_forward_ad_import_quiet():
    """torch's forward-mode AD imports ``torch._decomp.decompositions_for_jvp`` the first time a
    process uses it, and that import calls ``torch.jit.script``: a DeprecationWarning in torch
    2.13, a FutureWarning (shown by default) from 2.15 on, printed to a user of the metric who
    never called TorchScript. A fresh process, since the import happens once; -W error turns
    any warning into a failure on either version."""
    code = ("import torch, equilayers\n"
            "net = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode='circular').double()\n"
            "x = torch.randn(2, 1, 7, 7, dtype=torch.float64)\n"
            "print(equilayers.metrics.lie_derivative(net, x, 'rotate') > 0)\n")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stdout + out.stderr


def test_lie_derivative_leaves_the_models_own_warnings_alone(gen):
    """Control for the filter above: it matches torch's module only, so the same message
    warned by the model (or any other warning) still reaches the caller."""
    message = "`torch.jit.script` is deprecated. Please switch to `torch.compile`."

    def noisy(t):
        warnings.warn(message, FutureWarning, stacklevel=1)
        warnings.warn("the model's own warning", UserWarning, stacklevel=1)
        return t.sum(dim=(1, 2, 3))[:, None]

    x = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    with pytest.warns(FutureWarning, match=r"`torch\.jit\.script` is deprecated"), \
            pytest.warns(UserWarning, match="the model's own warning"):
        metrics.lie_derivative(noisy, x, "translate_x", out_rep="invariant")


def test_lie_derivative_refuses_fibers_without_a_continuous_action(gen):
    """A rotation by t acts on a regular fiber only for t a multiple of the group's angle,
    and no translation or rotation moves a harmonic fiber here: both are refused by name;
    translations of a regular field's spatial dims are measured."""
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)

    def regular(t):
        return t.unsqueeze(2).expand(-1, -1, 4, -1, -1)

    with pytest.raises(ValueError, match=r"generator='rotate' has no continuous action on "
                                         r"out_rep='regular'"):
        metrics.lie_derivative(regular, x, "rotate", out_rep="regular")
    assert metrics.lie_derivative(regular, x, "translate_x", out_rep="regular") < 1e-20
    for gname in metrics.GENERATORS:
        with pytest.raises(ValueError, match="no continuous action on out_rep='harmonic'"):
            metrics.lie_derivative(regular, x, gname, out_rep="harmonic")


def test_a_3d_output_is_not_read_as_an_image(gen):
    """A (B, C, L) output (a row mean, tokens) read as 'trivial': translate_y shifted its
    channel axis (0.79 for a map exactly invariant to vertical shifts). It needs out_rep;
    the control: the same map measured as invariant is 0."""
    x = torch.randn(2, 3, 10, 12, generator=gen, dtype=torch.float64)
    row_mean = lambda t: t.mean(-2)  # noqa: E731
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 12\).*out_rep='invariant'"):
        metrics.lie_derivative(row_mean, x, "translate_y")
    assert metrics.lie_derivative(row_mean, x, "translate_y", out_rep="invariant") < 1e-20


def test_complex_outputs_count_their_modulus(gen):
    """A complex output's derivative lost its imaginary part (a real cast before squaring):
    ``|.|^2`` now, equal to the same model returning the real and imaginary parts."""
    x = torch.randn(4, 2, 8, 8, generator=gen, dtype=torch.float64)
    coef = lambda t: torch.fft.fft2(t)[:, :, 0, 1]  # noqa: E731
    parts = lambda t: torch.view_as_real(coef(t)).flatten(1)  # noqa: E731
    got = metrics.lie_derivative(coef, x, reduction="none")
    want = metrics.lie_derivative(parts, x, reduction="none")
    assert want.min() > 1.0
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_a_model_of_nans_scores_nan(gen):
    """Forward-mode AD through a NaN bias gives a finite tangent: a model whose every output
    is NaN scored the healthy model's value. The control: the healthy model is finite."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(3, 2)).double()
    x = torch.randn(2, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert math.isfinite(metrics.lie_derivative(net, x, "rotate", out_rep="invariant"))
    with torch.no_grad():
        net[3].bias[0] = float("nan")
    per = metrics.lie_derivative(net, x, "rotate", out_rep="invariant", reduction="none")
    assert per.isnan().all()
    assert math.isnan(metrics.lie_derivative(net, x, "translate_x"))
