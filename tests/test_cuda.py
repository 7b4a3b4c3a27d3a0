"""Every module of the library on CUDA: the zoo (``tests/_zoo.py``) against its CPU run, the
shared equivariance case table run on the device, and a bfloat16-autocast training loop.

Skipped, with the reason, where CUDA is not available. The target device comes from one place,
:func:`_device`: ``EQUILAYERS_TEST_DEVICE=cpu`` (any torch device string) makes this file target
that device instead, and the skip then does not apply. That is how the file itself is checked
on a machine without a GPU: the CPU-vs-"device" comparisons are then trivially equal, but every
path, tolerance and negative control runs. Default: ``"cuda"``.

(The Triton kernels themselves are compared with their references in ``tests/test_kernels*.py``,
which run on CUDA when present; here they run inside the modules that dispatch to them.)
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from _zoo import ZOO, build
from conftest import assert_case_result, seeded_rng
from torch import nn

from equilayers.nn import GroupBatchNorm2d, GroupConv2d, InvariantHead, LiftingConv2d
from equilayers.testing.cases import Case, CaseResult, all_cases, run_case


def _device() -> torch.device:
    """The device under test: ``EQUILAYERS_TEST_DEVICE`` (see the module docstring), else CUDA."""
    return torch.device(os.environ.get("EQUILAYERS_TEST_DEVICE", "cuda"))


DEVICE = _device()

pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA device (EQUILAYERS_TEST_DEVICE=cpu runs this file on the CPU)")

#: float32 comparison tolerance, relative to the largest magnitude of the reference tensor.
#: CPU and CUDA sum the same products in different orders (cuDNN/cuBLAS algorithms, Triton
#: tiles, atomics in backward), each order exact to float32 rounding: the error of a sum of K
#: terms is at most ~K * eps * sum|terms| (eps = 1.2e-7), typically ~sqrt(K) * eps. The zoo's
#: largest reductions are a few thousand terms (parameter gradients summed over batch, space
#: and fiber; BlurConv2d[blur_first]'s 32 channels x 9 taps), so 1e-4 covers the worst-case
#: bound of ~1e3 terms and the typical error of ~1e6, while a real bug (a wrong tap, a stale
#: buffer, a dropped fiber slot) is O(1) relative; the negative control below shows that a
#: weight perturbed by 1e-3 relative is caught.
RTOL = 1e-4

#: Zoo entries not compared on the device, each with the reason (none today: every entry is
#: deterministic in eval mode, the zoo's learned polyphase pools are built with gumbel=False and
#: build() returns eval mode, where a hard choice takes the plain argmax).
EXCLUDED: dict[str, str] = {}


@pytest.fixture
def no_tf32():
    """TF32 off (float32 matmuls/convolutions at full precision) for the test, restored after."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ----------------------------------------------------------------------------- zoo vs CPU


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [o for o in out if isinstance(o, torch.Tensor)]
    raise TypeError(f"unexpected module output {type(out).__name__}")


def _forward_backward(module: nn.Module, args: tuple, device: torch.device,
                      seed: int = 7) -> dict[str, torch.Tensor | None]:
    """Outputs, gradients of the floating inputs and of every parameter (moved to the CPU)
    after a backward of a fixed random upstream gradient (drawn on the CPU from ``seed``)."""
    leaves = tuple(a.detach().clone().to(device).requires_grad_(a.is_floating_point())
                   for a in args)
    outs = _tensors(module(*leaves))
    res: dict[str, torch.Tensor | None] = {f"output {i}": o.detach().cpu()
                                           for i, o in enumerate(outs)}
    diff = [o for o in outs if o.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device) for o in diff]
    if diff:
        torch.autograd.backward(diff, ups)
    for i, a in enumerate(leaves):
        if a.requires_grad:
            res[f"grad of input {i}"] = None if a.grad is None else a.grad.cpu()
    for n, p in module.named_parameters():
        res[f"grad of {n}"] = None if p.grad is None else p.grad.cpu()
    return res


def agreement_errors(ref: dict, got: dict, rtol: float = RTOL) -> list[str]:
    """What differs between two :func:`_forward_backward` results: names and relative errors
    (``max|got - ref| / max|ref|``) above ``rtol``; integer tensors must be equal."""
    bad = [f"{k}: missing on one side" for k in sorted(set(ref) ^ set(got))]
    for k in ref.keys() & got.keys():
        a, b = ref[k], got[k]
        if a is None or b is None:
            if (a is None) != (b is None):
                bad.append(f"{k}: None on one side only")
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            bad.append(f"{k}: {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}")
        elif not a.is_floating_point():
            if not torch.equal(a, b):
                bad.append(f"{k}: integer values differ")
        else:
            a64, b64 = a.double(), b.double()
            if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
                bad.append(f"{k}: not finite")
                continue
            scale = max(a64.abs().max().item() if a64.numel() else 0.0, 1e-30)
            err = (a64 - b64).abs().max().item() / scale if a64.numel() else 0.0
            if err > rtol:
                bad.append(f"{k}: relative error {err:.3g} > {rtol:g}")
    return bad


def _compare_zoo(name: str, perturb: bool = False) -> list[str]:
    cpu, args = build(name, 0)
    dev = copy.deepcopy(cpu).to(DEVICE)
    if perturb:  # the negative control: one weight off by 1e-3 of the largest weight
        p = max(dev.parameters(), key=lambda t: t.numel())
        with torch.no_grad():
            p.view(-1)[0] += 1e-3 * p.abs().max()
    return agreement_errors(_forward_backward(cpu, args, torch.device("cpu")),
                            _forward_backward(dev, args, DEVICE))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_cpu(name, no_tf32):
    if name in EXCLUDED:
        pytest.skip(f"excluded: {EXCLUDED[name]}")
    bad = _compare_zoo(name)
    assert not bad, f"{name} on {DEVICE} differs from CPU: " + "; ".join(bad)


def test_exclusions_name_zoo_entries():
    assert set(EXCLUDED) <= set(ZOO), sorted(set(EXCLUDED) - set(ZOO))


@pytest.mark.parametrize("name", ["GroupConv2d", "LiftingConv2d[so2]", "SteerableConv3d",
                                  "InvariantHead"])
def test_zoo_comparison_catches_a_perturbed_weight(name, no_tf32):
    """Negative control: one weight moved by 1e-3 (relative) must fail the comparison."""
    bad = _compare_zoo(name, perturb=True)
    assert bad and any("relative error" in b for b in bad), bad


# ------------------------------------------------------------------ equivariance on device


def _moved(f, device: torch.device):
    return f.to(device) if isinstance(f, nn.Module) else f


def on_device(case: Case, device: torch.device = DEVICE) -> Case:
    """``case`` with its module built as before (same seed, same parameters), then moved to
    ``device``, and its input drawn as before, then moved: :func:`run_case` measures and judges
    it unchanged (the harness runs on whatever device ``f`` and ``x`` are on)."""
    def inputs(gen: torch.Generator) -> torch.Tensor:
        x = (case.input_fn(gen) if case.input_fn is not None
             else torch.randn(case.input_shape, generator=gen, dtype=case.dtype))
        return x.to(device)
    return dataclasses.replace(case, build=lambda: _moved(case.build(), device),
                               input_fn=inputs)


def _run_on_device(case: Case) -> CaseResult:
    with warnings.catch_warnings():
        if case.expect == "fail" or case.kind == "shift":  # inexact sizes on purpose (as in
            warnings.filterwarnings(  # tests/test_equivariance_cases.py)
                "ignore", message=".*is not exactly equivariant", category=UserWarning)
        return run_case(on_device(case))


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: c.name)
def test_case_on_device(case, no_tf32):
    """The whole shared table (every layer x group, all its elements; its negative controls
    must still fail) with module and input on the device. TF32 off: the table's float32
    tolerance (1e-5) is for IEEE float32, and cuDNN's TF32 may round inside a transformed
    (Winograd/FFT) domain, where a rotation does not commute with the rounding."""
    assert_case_result(case, _run_on_device(case), f"on {DEVICE}")


def test_on_device_moves_module_and_input():
    case = next(c for c in all_cases() if c.name.startswith("gconv/"))
    moved = on_device(case)
    f, x = moved.build(), moved.make_input(0)
    assert x.device.type == DEVICE.type and torch.equal(x.cpu(), case.make_input(0))
    assert all(p.device.type == DEVICE.type for p in f.parameters())


def test_device_harness_fails_a_plain_conv():
    """Negative control: a plain ``nn.Conv2d`` on the device fails the p4m case check."""
    plain = Case("control/plain-conv2d", lambda: nn.Conv2d(3, 4, 3, padding=1).double(),
                 (2, 3, 9, 9), "p4m", in_rep="trivial", out_rep="trivial")
    result = _run_on_device(plain)
    assert not result.passed and result.error > 1e-2, result


# ------------------------------------------------------------------------- training loop


def _p4m_model(classes: int = 4) -> nn.Module:
    return nn.Sequential(LiftingConv2d(3, 8, 3, padding=1, group="p4m"), GroupBatchNorm2d(8),
                         nn.ReLU(), GroupConv2d(8, 8, 3, padding=1, group="p4m"),
                         InvariantHead(8, classes, group="p4m"))


def test_training_loop_bf16_autocast_fused_adamw(no_tf32):
    """20 fused-AdamW steps under bfloat16 autocast on a fixed batch: finite, decreasing loss,
    float32 parameters, and a state dict that loads on the CPU and gives the same outputs."""
    with seeded_rng(0):
        model = _p4m_model().to(DEVICE)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 9, 9, generator=gen).to(DEVICE)
    y = torch.randint(0, 4, (16,), generator=gen).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    losses = []
    for _ in range(20):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < 0.7 * losses[0] and sum(losses[-5:]) < sum(losses[:5]), losses
    assert all(p.dtype == torch.float32 and p.device.type == DEVICE.type
               for p in model.parameters())
    buf = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buf)
    buf.seek(0)
    with seeded_rng(1):  # other initial weights: the load must overwrite them all
        cpu = _p4m_model()
    cpu.load_state_dict(torch.load(buf, weights_only=True))
    model.eval(), cpu.eval()
    with torch.no_grad():
        ref, got = cpu(x.cpu()), model(x).cpu()
    assert got.dtype == torch.float32
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    assert err <= RTOL, f"state dict loaded on the CPU gives other outputs: {err:.3g}"
