import pytest
import torch
from torch import nn

from equilayers import recalibrate_batch_norm
from equilayers.nn import GroupBatchNorm2d, HarmonicBatchNorm


def test_one_chunk_gives_the_exact_batch_statistics(gen):
    x = torch.randn(64, 3, 5, 5, generator=gen, dtype=torch.float64) * 3 + 1
    bn = nn.BatchNorm2d(3).double()
    out = recalibrate_batch_norm(nn.Sequential(bn), x, batch_size=64)
    assert not out.training and bn.momentum == 0.1
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var, x.var((0, 2, 3), unbiased=True))


def test_chunks_average_and_cover_group_and_harmonic_norms(gen):
    x5 = torch.randn(40, 2, 8, 4, 4, generator=gen, dtype=torch.float64)
    gbn = GroupBatchNorm2d(2).double()
    recalibrate_batch_norm(nn.Sequential(gbn), x5, batch_size=10)
    torch.testing.assert_close(gbn.running_mean, x5.mean((0, 2, 3, 4)), atol=0.05, rtol=0)
    hbn = HarmonicBatchNorm(2, max_order=1).double()
    before = hbn.running_var.clone()
    recalibrate_batch_norm(nn.Sequential(hbn), 5 * torch.randn(20, 2, 3, 4, 4, generator=gen,
                                                               dtype=torch.float64))
    assert not torch.equal(hbn.running_var, before) and (hbn.running_var > 5).all()


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty batch"):
        recalibrate_batch_norm(nn.BatchNorm2d(1), torch.zeros(0, 1, 2, 2))
    with pytest.raises(TypeError, match=r"x must be one tensor.*got list: join a list of "
                                        r"batches with torch.cat\(x\)"):
        recalibrate_batch_norm(nn.BatchNorm2d(1), [torch.zeros(2, 1, 2, 2)] * 3)
    with pytest.raises(ValueError, match="batch_size=0 must be an integer >= 1"):
        recalibrate_batch_norm(nn.BatchNorm2d(1), torch.zeros(2, 1, 2, 2), batch_size=0)


class _PerRepNorm(nn.Module):
    """escnn's norm layers' shape of state: a ``momentum`` and one buffer pair per
    representation, named ``<rep>_running_mean``/``<rep>_running_var`` (no ``running_mean``)."""

    def __init__(self) -> None:
        super().__init__()
        self.momentum = 0.1
        self.register_buffer("irrep_0_running_mean", torch.zeros(2))
        self.register_buffer("irrep_1_running_var", torch.ones(1))

    def forward(self, x):
        if self.training:
            m = self.momentum
            self.irrep_0_running_mean.mul_(1 - m).add_(m * x[:, :2].mean(0))
            self.irrep_1_running_var.mul_(1 - m).add_(m * x[:, 2:].pow(2).mean((0, 1)))
        return x


def test_norms_with_a_buffer_pair_per_representation_are_recalibrated(gen):
    """Each chunk's statistics, averaged (weighted by chunk size), in every ``*_running_*`` buffer
    (escnn's ``GNormBatchNorm`` keeps its state so; the peers venv checks escnn's own)."""
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64) + torch.tensor([1.0, -2.0, 0.0])
    norm = _PerRepNorm().double()
    recalibrate_batch_norm(norm, x, batch_size=10)
    assert norm.momentum == 0.1 and not norm.training
    chunks = x.split(10)
    torch.testing.assert_close(norm.irrep_0_running_mean,
                               torch.stack([c[:, :2].mean(0) for c in chunks]).mean(0))
    torch.testing.assert_close(norm.irrep_1_running_var,
                               torch.stack([c[:, 2:].pow(2).mean((0, 1)) for c in chunks]).mean(0,
                                                                                       True))


def test_a_smaller_last_batch_counts_for_its_samples(gen):
    """1010 samples in batches of 500: the last batch of 10 weighed as much as each 500 (a
    third of the running mean) when it holds 1% of the data. Here the first 1000 have mean 0
    and the last 10 mean 30: the data's mean is 0.3; equal weights gave 10. Each chunk's
    statistics are now weighted by its size, and float16 statistics are summed in float64
    (x 500 would overflow a float16 variance above 131)."""
    x = torch.randn(1010, 1, 4, 4, generator=gen, dtype=torch.float64)
    x[1000:] += 30
    bn = nn.BatchNorm2d(1).double()
    recalibrate_batch_norm(nn.Sequential(bn), x, batch_size=500, max_samples=None)
    assert abs(bn.running_mean.item() - x.mean().item()) < 1e-9, bn.running_mean
    # the control: equal batches give the plain average of the batch means, as before
    recalibrate_batch_norm(nn.Sequential(bn), x[:1000], batch_size=500)
    assert abs(bn.running_mean.item() - x[:1000].mean().item()) < 1e-9
    half = nn.BatchNorm2d(1).half()
    recalibrate_batch_norm(nn.Sequential(half), (20 * x[:1000]).half(), batch_size=500)
    assert torch.isfinite(half.running_var).all() and 300 < half.running_var.item() < 500


class _RunningMeanNoMomentum(nn.Module):
    """A running-statistics buffer without a momentum: not a norm layer recalibrate knows."""

    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.full((1,), 7.0, dtype=torch.float64))

    def forward(self, x):
        return x


def test_max_samples_no_grad_and_modules_without_momentum(gen):
    """Only the first ``max_samples`` samples count (default 2000), the forwards run without
    autograd (no graph is kept), and a module with running statistics but no momentum is left
    alone; control: every sample counts with ``max_samples=None``."""
    x = torch.randn(3000, 1, 2, 2, generator=gen, dtype=torch.float64)
    x[2000:] += 10
    grad_modes = []
    bn = nn.BatchNorm2d(1).double()
    bn.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    other = _RunningMeanNoMomentum()
    recalibrate_batch_norm(nn.Sequential(bn, other), x, batch_size=1000)
    torch.testing.assert_close(bn.running_mean, x[:2000].mean((0, 2, 3)))
    assert grad_modes == [False, False] and other.running_mean.item() == 7.0
    recalibrate_batch_norm(nn.Sequential(bn), x, batch_size=1000, max_samples=None)
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)))
