"""Every metric and the harness over one table (``_ON_HEAD`` / ``_ON_DENSE``): a train-mode
model's buffers and parameters are left as they were, a train-mode model that draws noise gets a
warning at the caller's line (quiet in eval mode and at p=0), a meta batch is refused by name.
The tables live here: the warning's line must be in this file."""

import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

import equilayers.testing as testing
from equilayers import metrics
from equilayers.groups import get


class _Counter(nn.Module):
    """Reassigns its buffer on every call (a new tensor object, not an in-place update)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls = self.calls + 1
        return x


def _train_mode_models():
    with seeded_rng(0):
        head = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), _Counter(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten()).double().train()
        dense = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                              nn.BatchNorm2d(4), _Counter()).double().train()
    return head, dense


def _state(model):
    buffers = {k: (v, v.clone()) for k, v in model.named_buffers()}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    return buffers, params


def _assert_same_state(model, state, what):
    buffers, params = state
    now = dict(model.named_buffers())
    assert now.keys() == buffers.keys(), what
    for k, (obj, value) in buffers.items():
        assert now[k] is obj, f"{what}: buffer {k} replaced"
        assert torch.equal(now[k], value), f"{what}: buffer {k} changed"
    for k, p in model.named_parameters():
        assert torch.equal(p, params[k]) and p.grad is None, f"{what}: parameter {k}"
    assert model.training, f"{what}: the mode changed"


_ON_HEAD = {
    "consistency": lambda m, x: metrics.consistency(m, x, "rot90", pairs=2),
    "consistency-all": lambda m, x: metrics.consistency(m, x, "flip", pairs="all"),
    "invariance_error": lambda m, x: metrics.invariance_error(m, x, "p4"),
    "equivariance_error": lambda m, x: metrics.equivariance_error(m, x, "p4m"),
    "equivariance_report-offgrid": lambda m, x: testing.equivariance_report(
        m, x, "so2", out_rep="invariant", elements=get("so2").elements_at([30.0])),
    "geed": lambda m, x: metrics.geed(m, x, "p4", "kl", True),
    "lie_derivative": lambda m, x: metrics.lie_derivative(m, x, "rotate"),
    "deformation_stability": lambda m, x: metrics.deformation_stability(m, x, samples=2),
    "layerwise_equivariance": lambda m, x: metrics.layerwise_equivariance(m, x, "p4"),
    "layerwise_shift_equivariance": lambda m, x: metrics.layerwise_shift_equivariance(m, x),
    "capture_outputs": lambda m, x: metrics.capture_outputs(m, x),
    "shift_equivariance_error": lambda m, x: testing.shift_equivariance_error(
        m, x, [(1, 2)], invariant=True),
}
_ON_DENSE = {
    "pixel_consistency": lambda m, x: metrics.pixel_consistency(m, x, shifts=2),
    "pixel_consistency-group": lambda m, x: metrics.pixel_consistency(m, x, "p4m"),
    "pixel_equivariance_error": lambda m, x: metrics.pixel_equivariance_error(m, x, "p4"),
    "lie_derivative-dense": lambda m, x: metrics.lie_derivative(m, x, "translate_y"),
}


def test_metrics_leave_a_train_mode_models_buffers_as_they_found_them(gen):
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    head, dense = _train_mode_models()
    # the control: running the model itself in train mode changes its buffers
    for model in (head, dense):
        state = _state(model)
        with torch.no_grad():
            model(x)
        with pytest.raises(AssertionError, match="changed"):
            _assert_same_state(model, state, "model(x)")
    head, dense = _train_mode_models()
    for table, model in ((_ON_HEAD, head), (_ON_DENSE, dense)):
        for name, metric in table.items():
            state = _state(model)
            metric(model, x)
            _assert_same_state(model, state, name)


NOISE = "training mode with layers that draw random noise .* call model.eval\\(\\) first"


@pytest.mark.parametrize("noise", [lambda: nn.Dropout(0.5), lambda: nn.AlphaDropout(0.2),
                                   lambda: nn.RReLU()])
def test_metrics_warn_on_a_train_mode_model_that_draws_noise(noise, gen):
    """A train-mode model with dropout draws new noise on every forward, so a metric measured
    that noise (invariance_error 0.40 on a p4 net with Dropout(0.5), 7e-8 in eval) in silence.
    Every metric and the harness now warn, at the caller's line; in eval mode, with p=0 and
    on a train-mode BatchNorm (deterministic per batch) they stay quiet."""
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    for table, make in ((_ON_HEAD, lambda: _train_mode_models()[0]),
                        (_ON_DENSE, lambda: _train_mode_models()[1])):
        for name, metric in table.items():
            model = nn.Sequential(make(), noise().double()).train()
            with pytest.warns(UserWarning, match=NOISE) as caught:
                metric(model, x)
            assert caught[0].filename == __file__, name
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                metric(model.eval(), x)  # the control: quiet in eval mode
                metric(nn.Sequential(make(), nn.Dropout(0.0)).train(), x)  # and at p=0


def test_metrics_warn_on_a_train_mode_field_dropout(gen):
    """equilayers' FieldDropout is a torch _DropoutNd: in train mode with p > 0 every metric
    and the harness warn, at the caller's line; in eval mode and at p=0 they stay quiet. It
    sits on the input (an image: its channels are trivial fields), the head's output is 2-D."""
    import equilayers.nn as enn
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    for table, make in ((_ON_HEAD, lambda: _train_mode_models()[0]),
                        (_ON_DENSE, lambda: _train_mode_models()[1])):
        for name, metric in table.items():
            model = nn.Sequential(enn.FieldDropout(0.5), make()).train()
            with pytest.warns(UserWarning, match=NOISE) as caught:
                metric(model, x)
            assert caught[0].filename == __file__, name
            assert "FieldDropout" in str(caught[0].message), name
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                metric(model.eval(), x)  # the control: quiet in eval mode
                metric(nn.Sequential(enn.FieldDropout(0.0), make()).train(), x)  # and at p=0


def test_the_learnable_polyphase_pool_draws_noise_only_with_gumbel_in_training(gen):
    import equilayers.nn as enn
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    pool = enn.LearnablePolyphasePool2d(3, dtype=torch.float64)
    assert pool.draws_noise and not pool.eval().draws_noise
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        testing.shift_equivariance_error(pool, x, [(2, 2)], stride=2)  # eval: quiet
    with pytest.warns(UserWarning, match=NOISE + ""):
        testing.shift_equivariance_error(pool.train(), x, [(2, 2)], stride=2)
    quiet = enn.LearnablePolyphasePool2d(3, gumbel=False, dtype=torch.float64)
    assert not quiet.draws_noise


def test_a_meta_batch_is_refused_by_name():
    """A meta tensor has a shape but no values: every metric and the harness name it (they
    failed in torch's .item(), 'cannot be called on meta tensors', or measured nothing)."""
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, device="meta")
    for table, model in ((_ON_HEAD, _train_mode_models()[0].eval()),
                         (_ON_DENSE, _train_mode_models()[1].eval())):
        for metric in table.values():
            with pytest.raises(ValueError, match="x is on the meta device.*no values"):
                metric(model, x)
