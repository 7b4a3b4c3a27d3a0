"""EdgeAwareBlurPool2d / edge_aware_blur_pool2d (kornia's EdgeAwareBlurPool2D): kornia's outputs
(in the peers venv, where kornia is installed), what is kept and what is blurred, scale
invariance of the edges, gradients, half precision, layouts, a hypothesis property over sizes
and options (every pixel kept or blurred; rot90 commutes); the rot90/flip cases and their
negative control are in the shared case table (``equilayers.testing._cases_edge_aware``), the bad
arguments in the bad-input matrix, compile/export/pickle in the zoo."""

import pytest
import torch
from _peers import KORNIA_MISSING
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers
from equilayers.functional import blur_pool2d, edge_aware_blur_pool2d
from equilayers.nn import EdgeAwareBlurPool2d
from equilayers.testing import _cases_edge_aware as cases
from equilayers.testing.cases import all_cases


def _step(gen, h: int = 12, w: int = 16, dtype=torch.float64) -> torch.Tensor:
    """A positive image with a vertical step between columns 7 and 8 (1 -> 4) and 1% noise."""
    x = torch.ones(2, 3, h, w, dtype=dtype)
    x[..., 8:] = 4.0
    return x + 0.01 * torch.rand(x.shape, generator=gen, dtype=dtype)


# (kernel_size, edge_threshold, edge_dilation_kernel_size)
_CONFIGS = [(3, 1.25, 3), (5, 1.5, 1), (7, 2.0, 5), (1, 1.25, 3), ((3, 3), 1.05, 3)]


@pytest.mark.parametrize("k,t,d", _CONFIGS)
@pytest.mark.parametrize("image", ["blocky", "step", "normal"])
def test_matches_kornia(k, t, d, image, gen):
    kf = pytest.importorskip("kornia.filters", reason=KORNIA_MISSING)
    x = {"blocky": lambda: cases.blocky((2, 3, 20, 23))(gen), "step": lambda: _step(gen),
         "normal": lambda: torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)}[image]()
    want = kf.edge_aware_blur_pool2d(x, k, t, d)
    torch.testing.assert_close(edge_aware_blur_pool2d(x, k, t, d), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(EdgeAwareBlurPool2d(k, t, d)(x), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(edge_aware_blur_pool2d(x[0], k, t, d), want[0], rtol=0,
                               atol=1e-12)  # unbatched (kornia takes 4-D only)
    # epsilon: kornia's is an argument of forward, ours of the constructor
    eps_want = kf.EdgeAwareBlurPool2D(k, t, d)(x, epsilon=0.5)
    torch.testing.assert_close(EdgeAwareBlurPool2d(k, t, d, epsilon=0.5)(x), eps_want, rtol=0,
                               atol=1e-12)


def test_keeps_the_edge_and_blurs_the_flat_parts(gen):
    """Columns 6-9 differ across the step by more than 1.25x between pixels 4 apart (columns
    j-2 and j+2 straddle it), the 3-wide dilation adds 5 and 10: those keep the input; the
    rest equals the plain stride-1 blur (and differs from the input: the noise is smoothed)."""
    x = _step(gen)
    y = edge_aware_blur_pool2d(x, 3)
    kept = torch.zeros(x.shape[-1], dtype=torch.bool)
    kept[5:11] = True
    torch.testing.assert_close(y[..., kept], x[..., kept], rtol=0, atol=0)
    blurred = blur_pool2d(x, 3, stride=1)
    torch.testing.assert_close(y[..., ~kept], blurred[..., ~kept], rtol=0, atol=0)
    assert (y[..., ~kept] != x[..., ~kept]).float().mean() > 0.9
    # no dilation: only the four columns whose test straddles the step
    kept1 = (edge_aware_blur_pool2d(x, 3, edge_dilation_kernel_size=1) == x).all(0).all(0).all(0)
    assert kept1.nonzero().flatten().tolist() == [6, 7, 8, 9]


def test_threshold_and_kernel_extremes(gen):
    x = _step(gen)
    # no pixel is an edge: the plain blur; kernel_size 1: the input itself
    torch.testing.assert_close(edge_aware_blur_pool2d(x, 5, edge_threshold=1e6),
                               blur_pool2d(x, 5, stride=1), rtol=0, atol=0)
    torch.testing.assert_close(edge_aware_blur_pool2d(x, 1), x, rtol=0, atol=0)


def test_edges_do_not_move_when_the_image_is_scaled(gen):
    """The test compares log intensities: 10x the image gives 10x the output (epsilon 0)."""
    x = cases.blocky((2, 3, 20, 23))(gen)
    torch.testing.assert_close(edge_aware_blur_pool2d(10 * x, 5, epsilon=0.0),
                               10 * edge_aware_blur_pool2d(x, 5, epsilon=0.0))


def test_negative_values_are_never_edges(gen):
    """Where ``x + epsilon < 0`` the logarithm is NaN (no edge): a negative image is blurred
    everywhere, finite."""
    x = -_step(gen)
    y = edge_aware_blur_pool2d(x, 3)
    torch.testing.assert_close(y, blur_pool2d(x, 3, stride=1), rtol=0, atol=0)


@pytest.mark.parametrize("case", [c for c in all_cases() if c.name.startswith("edge-aware/")
                                  and c.expect == "exact"], ids=lambda c: c.name)
def test_the_equivariance_cases_keep_some_pixels_and_blur_others(case):
    """The table's inputs reach both branches (else the rot90 test would test only a blur)."""
    x = case.input_fn(torch.Generator().manual_seed(0))
    y = case.build()(x)
    kept = (y == x).double().mean().item()
    assert 0.1 < kept < 0.9, kept


def test_gradient(gen):
    """The gradient reaches the kept pixels directly and the others through the blur (the
    edge map, a comparison, is constant under the small perturbations of gradcheck)."""
    x = cases.blocky((1, 2, 13, 14))(gen).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: edge_aware_blur_pool2d(t, 3), (x,))
    g, = torch.autograd.grad(edge_aware_blur_pool2d(x, 3).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype, gen):
    x = _step(gen, dtype=torch.float32)
    y = edge_aware_blur_pool2d(x.to(dtype), 3)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y.float(), edge_aware_blur_pool2d(x, 3), rtol=0.02, atol=0.02)


def test_module_equals_functional_on_any_layout(gen):
    """The same values however ``x`` is laid out: contiguous, channels_last, a transposed
    view, a strided slice."""
    x = cases.blocky((2, 3, 20, 24))(gen)
    want = edge_aware_blur_pool2d(x, 5, 1.3, 1)
    m = EdgeAwareBlurPool2d(5, 1.3, 1)
    torch.testing.assert_close(m(x), want, rtol=0, atol=0)
    views = [x.contiguous(memory_format=torch.channels_last),
             x.transpose(-1, -2).contiguous().transpose(-1, -2)]
    for v in views:
        assert not v.is_contiguous()
        torch.testing.assert_close(m(v), want, rtol=0, atol=1e-14)
    wide = cases.blocky((2, 3, 20, 48))(gen)
    torch.testing.assert_close(m(wide[..., ::2]), m(wide[..., ::2].contiguous()), rtol=0,
                               atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 19), w=st.integers(3, 19), k=st.sampled_from([1, 3, 5, 7]),
       d=st.sampled_from([1, 3, 5]), threshold=st.floats(1.01, 3.0), seed=st.integers(0, 99))
def test_property_each_pixel_is_kept_or_blurred_and_rot90_commutes(h, w, k, d, threshold,
                                                                  seed):
    x = cases.blocky((1, 2, h, w))(torch.Generator().manual_seed(seed))
    y = edge_aware_blur_pool2d(x, k, threshold, d)
    assert y.shape == x.shape and torch.isfinite(y).all()
    blurred = blur_pool2d(x, k, stride=1)
    assert ((y == x) | (y == blurred)).all()
    rot = edge_aware_blur_pool2d(torch.rot90(x, 1, (-2, -1)), k, threshold, d)
    torch.testing.assert_close(rot, torch.rot90(y, 1, (-2, -1)), rtol=0, atol=1e-14)


def test_module():
    m = EdgeAwareBlurPool2d((5, 5), 1.5, epsilon=1e-3)
    assert (m.kernel_size, m.edge_threshold, m.edge_dilation_kernel_size, m.epsilon) == (
        5, 1.5, 3, 1e-3)
    assert repr(m) == "EdgeAwareBlurPool2d(kernel_size=5, edge_threshold=1.5, epsilon=0.001)"
    assert list(m.state_dict()) == [] and list(m.parameters()) == []
    assert m.in_type is not None and m.in_type.rep == "trivial"


@pytest.mark.parametrize("kwargs,needle", [
    (dict(kernel_size=4), "must be an odd integer"), (dict(kernel_size=(3, 5)), "(3, 5)"),
    (dict(kernel_size=9), "1..7"), (dict(edge_threshold=1.0), "> 1"),
    (dict(edge_dilation_kernel_size=2), "use 1 or 3")])
def test_refusals_name_the_argument_and_the_fix(kwargs, needle):
    with pytest.raises(ValueError, match="EdgeAwareBlurPool2d") as err:
        EdgeAwareBlurPool2d(**kwargs)
    assert needle in str(err.value) and next(iter(kwargs)) in str(err.value)
    EdgeAwareBlurPool2d(3, 1.01, 1)  # the control: the nearest valid values build


def test_refuses_group_maps_and_tiny_images():
    with pytest.raises(ValueError, match="use blur_pool2d"):
        edge_aware_blur_pool2d(torch.rand(2, 3, 4, 9, 9), 3)
    with pytest.raises(ValueError, match="H and W must be >= 3"):
        edge_aware_blur_pool2d(torch.rand(2, 3, 2, 9), 3)
    assert edge_aware_blur_pool2d(torch.rand(2, 3, 3, 9), 3).shape == (2, 3, 3, 9)


def test_check_grid_reports_the_reflected_border_under_shifts_only():
    model = nn.Sequential(EdgeAwareBlurPool2d(5),
                          nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"))
    found = equilayers.check_grid(model, (1, 3, 16, 16))
    assert [(f.layer, f.breaks) for f in found] == [("0", "shifts")]
    assert equilayers.check_grid(model, (1, 3, 16, 16), shifts=False) == []
    assert equilayers.check_grid(model, (1, 3, 15, 16), group="p4m", shifts=False) == []
    # the control: a zero-padded conv after it is a finding for rot90 too at an even size
    model[1] = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    assert equilayers.check_grid(model, (1, 3, 16, 16), shifts=False)
