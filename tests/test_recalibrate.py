import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.optim.swa_utils import update_bn as torch_update_bn

from equilayers import recalibrate_batch_norm, update_bn
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


def _batches(gen, shape, n=4, pairs=False):
    """``n`` float64 batches of mean 1 and std 3 (as a DataLoader of ``(x, y)`` with ``pairs``)."""
    xs = [3 * torch.randn(*shape, generator=gen, dtype=torch.float64) + 1 for _ in range(n)]
    return [(x, torch.zeros(len(x))) for x in xs] if pairs else xs


def _cumulative(norm, batches):
    """What ``update_bn`` should give: a copy of ``norm`` reset and run in training mode with
    ``momentum=None`` (the cumulative average of the batches' statistics), as torch's does."""
    ref = copy.deepcopy(norm).train()
    ref.momentum = None
    ref.reset_running_stats()
    for x in batches:
        ref(x)
    return ref


@pytest.mark.parametrize("group", [None, "so3"])
def test_update_bn_sets_harmonic_batch_norm_where_torchs_leaves_it_stale(gen, group):
    """torch's SWA step skips our harmonic batch norm (not a torch ``_BatchNorm``): a weight
    average of a model without torch batch norms keeps the statistics of the model it was
    copied from (the control); ours sets them to the cumulative average, as torch's does for
    its own layers, and leaves the mode as it was."""
    shape = (8, 2, 3, 3, 3) if group is None else (4, 2, 4, 3, 3, 3)
    data = _batches(gen, shape)
    swa = AveragedModel(nn.Sequential(HarmonicBatchNorm(2, 1, group=group).double())).eval()
    ref = _cumulative(swa.module[0], data)
    torch_update_bn(data, swa)
    norm = swa.module[0]
    assert torch.equal(norm.running_mean, torch.zeros(2, dtype=torch.float64))  # stale
    update_bn(data, swa)
    assert not swa.training and not norm.training
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(norm, name), getattr(ref, name))
    assert norm.num_batches_tracked.item() == 4 and norm.momentum == 0.1


def test_update_bn_agrees_with_torchs_on_torch_and_group_batch_norms(gen):
    """On a model whose norms torch's ``update_bn`` sees (``nn.BatchNorm3d``,
    ``GroupBatchNorm2d``) ours gives the same statistics and counts, from a DataLoader-like
    list of ``(x, y)`` pairs moved to ``device``; a harmonic batch norm beside them (torch's
    runs it at its own momentum, 0.1, without a reset) differs from the cumulative average
    under torch's and matches it under ours."""
    model = nn.Sequential(HarmonicBatchNorm(2, 1), GroupBatchNorm2d(2), nn.BatchNorm3d(2))
    model = model.double().train()
    data = _batches(gen, (8, 2, 3, 4, 4), pairs=True)
    for x, _ in data[:3]:  # trained a little: counts and statistics to reset
        model(2 * x)
    ref = _cumulative(model[0], [x for x, _ in data])
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    update_bn(data, ours, device="cpu")
    torch_update_bn(data, theirs)
    assert ours.training
    for i in (1, 2):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(ours[i], name), getattr(theirs[i], name))
    torch.testing.assert_close(ours[0].running_var, ref.running_var)
    assert (theirs[0].running_var - ref.running_var).abs().max() > 1  # 0.9**4 of the old 1


def test_update_bn_bad_input_changes_nothing():
    model = nn.Sequential(HarmonicBatchNorm(2, 1))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 2, 3, 4, 4)
    with pytest.raises(TypeError, match=r"loader must be an iterable.*got Tensor: wrap one "
                                        r"batch in a list, \[x\]"):
        update_bn(x, model)
    with pytest.raises(TypeError, match="loader must be an iterable.*got int"):
        update_bn(3, model)
    with pytest.raises(TypeError, match=r"batch 0 of loader must be a tensor.*got dict"):
        update_bn([{"x": x}], model)
    with pytest.raises(ValueError, match="loader gave no batch.*model is unchanged"):
        update_bn([], model)
    with pytest.raises(TypeError, match="batch 2 of loader must be a tensor"):  # after 2 ran
        update_bn([x, x + 3, "x"], model)
    with pytest.raises(ValueError, match="expects a fiber of 3 slots"):  # the model's error
        update_bn([x, x[:, :, :2]], model)
    with pytest.raises(TypeError, match="expects an nn.Module as model"):
        update_bn([x], "model")
    assert model.training and model[0].momentum == 0.1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


class _TwoScale(nn.Module):
    """One encoder (a batch norm and a harmonic batch norm) called twice per forward, at two
    scales, as a shared encoder or a weight-tied block is."""

    def __init__(self):
        super().__init__()
        self.bn, self.hbn = nn.BatchNorm2d(3), HarmonicBatchNorm(3, 1)

    def forward(self, x):
        half = 2 * x[..., ::2, ::2] + 1
        return [(self.bn(v), self.hbn(v[:, :, None].expand(-1, -1, 3, -1, -1)))
                for v in (x, half)]


def test_a_layer_called_twice_per_forward_averages_both_calls(gen):
    """update_bn averages every call's statistics (torch's update_bn, momentum=None, does; it
    had kept the last call of each forward only: 2.73 for 1.41); recalibrate_batch_norm too.
    The control: the average of the two calls run alone."""
    loader = [torch.randn(8, 3, 8, 8, generator=gen) for _ in range(3)]
    ours, theirs = _TwoScale(), _TwoScale()
    update_bn(loader, ours)
    torch_update_bn(loader, theirs)
    torch.testing.assert_close(ours.bn.running_var, theirs.bn.running_var)
    torch.testing.assert_close(ours.bn.running_mean, theirs.bn.running_mean)
    # the harmonic one (which torch's skips): the mean of its six calls' statistics
    want = torch.zeros(3)
    for x in loader:
        for v in (x, 2 * x[..., ::2, ::2] + 1):
            want += v.mean((0, 2, 3)) / 6
    torch.testing.assert_close(ours.hbn.running_mean, want)
    last_only = torch.stack([2 * x[..., ::2, ::2].mean((0, 2, 3)) + 1 for x in loader]).mean(0)
    assert not torch.allclose(ours.hbn.running_mean, last_only, atol=1e-2)
    again = _TwoScale()
    recalibrate_batch_norm(again, torch.cat(loader), batch_size=8)
    torch.testing.assert_close(again.hbn.running_mean, want)


def test_recalibrate_leaves_modes_as_they_were_when_a_batch_fails(gen):
    """A batch that raised left every submodule in training mode (dropout on, batch
    statistics in eval): the buffers were put back, the modes were not. ``update_bn``
    already kept them."""

    class FailsOnSecond(nn.Module):
        calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("bad batch")
            return x

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(), FailsOnSecond())
    model.eval()
    model[2].train()  # MC dropout, kept in train mode on purpose
    modes = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="bad batch"):
        recalibrate_batch_norm(model, torch.randn(8, 1, 6, 6, generator=gen), batch_size=4)
    assert [m.training for m in model.modules()] == modes
    model[3].calls = 5  # it succeeds now: eval mode, as documented
    recalibrate_batch_norm(model, torch.randn(8, 1, 6, 6, generator=gen), batch_size=4)
    assert not any(m.training for m in model.modules())
