"""escnn models in our training loop (optional extra): ``recalibrate_batch_norm`` and
``update_bn`` on escnn's norm layers, and the tetris family's escnn rows (the same
architectures as ours, built with escnn's ``R3Conv``).

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_models.py``);
skipped where escnn is missing.
"""

import sys
from pathlib import Path

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as enn  # noqa: E402

from equilayers import recalibrate_batch_norm, update_bn  # noqa: E402
from equilayers.groups import act_spatial, get  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tetris():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris
    finally:
        sys.path.remove(str(ROOT))
    return bench_tetris


class _Wrapped(torch.nn.Module):
    def __init__(self, in_type, body):
        super().__init__()
        self.escnn_type, self.body = in_type, body

    def forward(self, x):
        return self.body(enn.GeometricTensor(x, self.escnn_type)).tensor


def test_recalibrate_sets_escnn_gnorm_statistics_to_the_batchs(gen):
    """One chunk: after recalibration the eval-mode output is the train-mode output on that
    chunk (escnn's running statistics are the batch's, in each of its per-irrep buffers);
    escnn's statistics as trained (a few steps of momentum 0.1) are not (the control)."""
    gs = gspaces.rot2dOnR2(-1, maximum_frequency=2)
    t = enn.FieldType(gs, 3 * [gs.irrep(0), gs.irrep(1), gs.irrep(2)])
    with seeded_rng(0):
        model = _Wrapped(t, enn.SequentialModule(enn.GNormBatchNorm(t)))
    x = 3 * torch.randn(16, t.size, 5, 5, generator=gen) + 1
    model.train()
    for _ in range(3):
        train_out = model(x)
    model.eval()
    assert (model(x) - train_out).abs().max() > 0.1
    recalibrate_batch_norm(model, x, batch_size=16)
    assert not model.training
    torch.testing.assert_close(model(x), train_out, atol=1e-4, rtol=1e-4)


def test_update_bn_sets_escnn_norm_statistics_where_torchs_does_not(gen):
    """The SWA step on an escnn model: torch's ``update_bn`` sees no torch batch norm and runs
    no batch (the eval output stays that of the copied statistics: the control); ours sets
    escnn's per-irrep statistics to the one batch's, so eval equals train on it."""
    from torch.optim.swa_utils import AveragedModel
    from torch.optim.swa_utils import update_bn as torch_update_bn

    gs = gspaces.rot2dOnR2(-1, maximum_frequency=2)
    t = enn.FieldType(gs, 3 * [gs.irrep(0), gs.irrep(1), gs.irrep(2)])
    with seeded_rng(0):
        swa = AveragedModel(_Wrapped(t, enn.SequentialModule(enn.GNormBatchNorm(t))))
    x = 3 * torch.randn(16, t.size, 5, 5, generator=gen) + 1
    train_out = swa.train()(x)  # also moves the statistics a tenth of the way
    torch_update_bn([x], swa)
    swa.eval()
    assert (swa(x) - train_out).abs().max() > 0.1
    update_bn([x], swa)
    assert not swa.training
    torch.testing.assert_close(swa(x), train_out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["octahedral (O), escnn", "SO(3) steerable, escnn"])
def test_tetris_escnn_rows_are_o_invariant_and_matched(name):
    """The tetris family's escnn models are exactly invariant to the cube's rotations on the
    grid, as ours (the plain CNN of the family is the control), and the family's rows
    include them at the octahedral model's parameter count."""
    tet = _tetris()
    x = torch.randn(2, 1, 7, 7, 7, generator=torch.Generator().manual_seed(0))
    with seeded_rng(0):
        models = {name: tet.PEER_BUILDERS[name](2, 3).eval(),
                  "plain": tet.plain_cnn(4, 3).eval()}
    for key, model in models.items():
        with torch.no_grad():
            y = model(x)
            err = max(float((model(act_spatial(x, g)) - y).abs().max())
                      for g in get("o").elements())
        assert (err < 1e-5) if key == name else (err > 1e-3), (key, err)
    rows = {r.model: r for r in tet.rows(["tetris"], peers=True)}
    target = tet.n_params(rows["octahedral (O)"].build())
    assert 1 / 1.35 < tet.n_params(rows[name].build()) / target < 1.35
    assert name not in {r.model for r in tet.rows(["tetris"], peers=False)}
