"""The zoo (``tests/_zoo.py``) under the tools of ``torch`` that users put around a training
loop and that ``tests/test_training_loop*.py`` do not cover: model ensembling with
``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` (torch's "model ensembling"
tutorial), weight averaging (``torch.optim.swa_utils.AveragedModel``, and the SWA step
``equilayers.update_bn``), in-place edits of a
warm eval model's derived buffers, activation checkpointing (``torch.utils.checkpoint``, both
implementations) and pruning (``torch.nn.utils.prune``, whose weight is a plain attribute
recomputed from a mask by a forward pre-hook). Each compares with a model built from the same
state dict, with the plain forward, or with the loop over the ensemble's members."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from _zoo import ZOO, build
from conftest import seeded_rng
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils import prune
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.checkpoint import checkpoint

from equilayers.nn import CosetPool, Restrict

NAMES = sorted(ZOO)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _model(name: str, seed: int = 0):
    m, args = build(name, seed)
    return m.double(), tuple(a.double() if a.is_floating_point() else a for a in args)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_model_ensembling_with_stack_module_state(name, mode):
    """Three members stacked and run by ``vmap`` over ``functional_call`` on a meta copy of
    the first (the tutorial's recipe), each member's eval cache warm: the loop's outputs,
    with no op falling back to vmap's per-member loop.
    (A float64 UNet's steerable convs once shared one ``basis_scale`` tensor, which
    ``named_buffers`` lists once, so the meta copy kept the others' and the call failed with
    "Cannot copy out of meta tensor".)"""
    members = []
    for seed in range(3):
        m, args = _model(name, seed)
        members.append(m.train(mode == "train"))
    if not list(members[0].parameters()) + list(members[0].buffers()):
        pytest.skip(f"{name} has no parameters or buffers")
    with torch.no_grad():
        expected = torch.stack([_first(m(*args)) for m in members])  # (eval: warms the caches)
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")

    def call(p, b, *inputs):
        return _first(functional_call(base, (p, b), inputs))

    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = vmap(call, in_dims=(0, 0) + (None,) * len(args), randomness="same")(
            params, buffers, *args)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    # no op without a batching rule (vmap then loops over the members and warns; the harmonic
    # batch norm's running averages by lerp_ did, 2026-12-04)
    fallbacks = [str(w.message) for w in caught if "batching rule" in str(w.message)]
    assert not fallbacks, fallbacks


def _ema_run(name, multi_avg_fn):
    m, args = _model(name)
    ema = AveragedModel(m, multi_avg_fn=multi_avg_fn, use_buffers=True)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(3):
        m.train()
        opt.zero_grad()
        _first(m(*args)).square().mean().backward()
        opt.step()
        ema.update_parameters(m)
    return ema.eval(), args


@pytest.mark.parametrize("name", NAMES)
def test_ema_of_parameters_and_buffers_follows_the_model(name):
    """torch's EMA recipe, ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d),
    use_buffers=True)``, as is (decay 0.9: it truncates integer buffers, ``7 * 0.9 + 7 * 0.1``
    landing on 6): the averaged model's eval output is that of a model built from its state
    dict, and it moves with the updates. (The group convs' gather tables were integer buffers:
    torch's averaging corrupted them, and their forward raised.)"""
    if not any(p.requires_grad for p in ZOO[name].make().parameters()):
        pytest.skip(f"{name} has no trainable parameters")
    ema, args = _ema_run(name, get_ema_multi_avg_fn(0.9))
    fresh = ZOO[name].make().double()
    fresh.load_state_dict(ema.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_first(ema(*args)), _first(fresh.eval()(*args)),
                                   rtol=1e-10, atol=1e-10)


def _tables(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{t}": getattr(m, t) for n, m in model.named_modules()
            for t in getattr(type(m), "_table_names", ())}


@pytest.mark.parametrize("name", ["LiftingConv2d", "GroupConv2d[c8]", "GroupConvTranspose2d",
                                  "GroupConv3d", "UNet", "tables"])
def test_torch_ema_leaves_the_integer_tables_alone(name):
    """The gather tables (``expansion_index``, the 3-D convs' ``expansion_table`` and
    ``bias_index``, ``Restrict``'s and ``CosetPool``'s ``index``) are not buffers, so torch's
    EMA averages none of them: each equals the table of a model built afresh. The control:
    the same average of an integer tensor does change one."""
    if name == "tables":
        from equilayers.nn import GroupConv2d, LiftingConv2d
        m = torch.nn.Sequential(LiftingConv2d(2, 3, 3, group="d4"), Restrict("d4", "d1"),
                                GroupConv2d(12, 2, 3, group="d1"), CosetPool("d1", "c1"))
        m.double()
        ema = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
        for _ in range(3):
            ema.update_parameters(m)
        ref = copy.deepcopy(m)
    else:
        ema, _ = _ema_run(name, get_ema_multi_avg_fn(0.9))
        ref = ZOO[name].make()
    tables = _tables(ema.module)
    assert tables and tables.keys() == _tables(ref).keys()
    assert not any(t is b for t in tables.values() for b in ema.module.buffers())
    for key, t in tables.items():
        assert torch.equal(t, _tables(ref)[key]), key
    control = torch.arange(7, 100)
    avg = control.clone()
    get_ema_multi_avg_fn(0.9)([avg], [control], torch.tensor(1))
    assert not torch.equal(avg, control)


@pytest.mark.parametrize("make", [lambda: Restrict("d4", "d1"), lambda: CosetPool("d4", "d1")],
                         ids=["Restrict", "CosetPool"])
def test_parameter_free_integer_tables_written_in_place_raise(make):
    m = make()
    x = torch.randn(2, 3, 8, 5, 5)
    y = m(x)
    with torch.no_grad():
        m.index.copy_(m.index)  # the same values: fine
    torch.testing.assert_close(m(x), y, rtol=0, atol=0)
    with torch.no_grad():
        m.index.copy_(m.index.flip(0))
    with pytest.raises(RuntimeError, match="integer table 'index'"):
        m(x)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
@pytest.mark.parametrize("name", NAMES)
def test_activation_checkpointing_gives_the_plain_gradients(name, reentrant):
    """``torch.utils.checkpoint`` drops the module's activations and runs its forward again in
    the backward (torch's RNG state restored, so a sampled choice is drawn again alike): the
    output and every gradient equal the plain forward's. A forward that read or changed state
    between the two runs (a memo, a kept filter, a running statistic read in training) would
    give the recomputation other values; the non-reentrant implementation also checks that
    the recomputed tensors have the first run's shapes."""
    m, args = _model(name)
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    inputs = tuple(a.detach().requires_grad_(a.is_floating_point()) for a in args)
    leaves = params + [a for a in inputs if a.requires_grad]

    def grads(run):
        with seeded_rng(1):
            out = _first(run())
        for t in leaves:
            t.grad = None
        out.square().sum().backward()
        return out.detach(), [None if t.grad is None else t.grad.clone() for t in leaves]

    ref_out, ref_grads = grads(lambda: m(*inputs))
    out, got = grads(lambda: checkpoint(m, *inputs, use_reentrant=reentrant))
    _same_grads(out, got, ref_out, ref_grads)


def _same_grads(out, got, ref_out, ref_grads) -> None:
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    assert any(g is not None for g in ref_grads)
    for g, r in zip(got, ref_grads, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_activation_checkpointing_control(reentrant):
    """The control: a forward that changes its own state (a call counter scaling the output)
    recomputes other values in the backward, and the comparison above fails."""

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones((), dtype=torch.float64))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return (x * self.calls) * self.weight  # (x * calls) is saved for the backward

    x = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def grads(run):
        m = Counting()
        x.grad = None
        out = run(m)
        out.square().sum().backward()
        return out.detach(), [m.weight.grad, x.grad]

    ref = grads(lambda m: m(x))
    got = grads(lambda m: checkpoint(m, x, use_reentrant=reentrant))
    with pytest.raises(AssertionError):
        _same_grads(*got, *ref)


def _prunable(m: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The submodules with a trainable filter ``weight`` (at least 2-D), top level first."""
    return [(n, s) for n, s in m.named_modules()
            if isinstance(s._parameters.get("weight"), torch.nn.Parameter)
            and s.weight.requires_grad and s.weight.dim() > 1]


PRUNABLE = [n for n in NAMES if _prunable(ZOO[n].make())]


@pytest.mark.parametrize("name", PRUNABLE)
def test_pruned_weights_and_mask_edits_are_seen(name):
    """``prune.l1_unstructured`` (the pruning tutorial's first call) on the module's filter
    weight: the weight becomes ``weight_orig * weight_mask``, recomputed by a forward pre-hook
    into a plain attribute. A warm eval model follows the mask: after pruning, and after the
    mask is edited in place (iterative pruning rewrites it), its output is that of a copy with
    the pruned weight made permanent (``prune.remove``). The group convs' kept eval filter sees
    the change three ways (the weight the pre-hook computes, the mask buffer's version, its
    values); with all three comparisons removed from ``eval_filter`` this test fails for the
    18 entries that keep one."""
    m, args = _model(name)
    _, target = _prunable(m)[0]
    with torch.no_grad():
        before = _first(m(*args))
    prune.l1_unstructured(target, "weight", amount=0.5)

    def permanent() -> torch.Tensor:
        other = copy.deepcopy(m)
        for sub in other.modules():
            if hasattr(sub, "weight_orig"):
                prune.remove(sub, "weight")
        with torch.no_grad():
            return _first(other.eval()(*args))

    with torch.no_grad():
        pruned = _first(m(*args))
    torch.testing.assert_close(pruned, permanent(), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(pruned, before)
    with torch.no_grad():
        target.weight_mask.copy_(1 - target.weight_mask)  # the other half of the weights
        edited = _first(m(*args))
    torch.testing.assert_close(edited, permanent(), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(edited, pruned)
    # and training through the mask: gradients reach weight_orig only where the mask is 1
    m.train()
    _first(m(*args)).square().sum().backward()
    grad = target.weight_orig.grad
    assert grad is not None and torch.all(grad[target.weight_mask == 0] == 0)
    assert grad[target.weight_mask == 1].abs().sum() > 0


def _running(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b for n, b in m.named_buffers()
            if n.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("name", NAMES)
def test_swa_update_bn_gives_the_cumulative_statistics(name):
    """torch's SWA recipe ending with ``equilayers.update_bn`` (torch's own skips the harmonic
    batch norms, tests/test_recalibrate.py): every norm layer of the averaged copy holds the
    statistics of a copy reset and run in training mode with ``momentum=None`` over the same
    three batches (torch's meaning of ``update_bn``), the same random draws for both."""
    from equilayers import update_bn

    m, args = _model(name)
    if not _running(m) or len(args) != 1:
        pytest.skip(f"{name} has no running statistics, or takes more than one input")
    batches = [args[0] * (1 + i) + i for i in range(3)]
    ref = copy.deepcopy(m).train()
    for mod in ref.modules():
        if callable(getattr(mod, "reset_running_stats", None)):
            mod.momentum = None
            mod.reset_running_stats()
    with torch.no_grad(), seeded_rng(1):
        for x in batches:
            ref(x)
    swa = AveragedModel(m).eval()
    with seeded_rng(1):
        update_bn(batches, swa)
    got, want = _running(swa.module), _running(ref)
    assert got.keys() == want.keys() and not swa.training  # the mode it had
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)


@pytest.mark.parametrize("tool", ["check_grid", "update_bn"])
def test_a_tool_leaves_each_module_in_its_own_mode(tool, gen):
    """Fine-tuning with frozen batch norms (eval inside a training model) and MC dropout
    (train inside an eval model): ``check_grid`` (eval run) and ``update_bn`` (train run) set
    every submodule to the top level's mode afterwards (``model.train(was)``), so the frozen
    norms trained again. The control: the modes differ from the top level's before."""
    from equilayers import check_grid, update_bn
    from equilayers.nn import GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d

    net = torch.nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"),
                              GroupBatchNorm2d(2), torch.nn.Dropout(0.1),
                              GroupConv2d(2, 2, 3, padding=1, group="p4"),
                              GroupBatchNorm2d(2), GroupPool())
    x = torch.randn(2, 1, 9, 9, generator=gen)
    for top, odd in ((True, (1, 4)), (False, (2,))):
        net.train(top)
        for i in odd:
            net[i].train(not top)
        before = [m.training for m in net.modules()]
        assert len(set(before)) == 2  # the control: not all alike
        if tool == "check_grid":
            check_grid(net, (1, 1, 9, 9), group="p4")
        else:
            update_bn([x], net)
        assert [m.training for m in net.modules()] == before
