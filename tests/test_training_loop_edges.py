"""The training-loop matrix (see ``tests/test_training_loop.py``), edge cases: empty batches,
inputs with 0 channels, ``channels_last`` conversion and checkpoints, and derived buffers that
share no memory with the process-wide tables."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from _training_loop_common import NAMES, _eval_out, _first, _model, _same
from _zoo import ZOO


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    """A batch of 0 samples gives an empty output of the right shape (as ``nn.Conv2d``) and
    leaves running statistics untouched."""
    m, args = _model(name)
    ref_out = _first(_eval_out(m, args))
    empty = (args[0][:0], *args[1:])
    if name.startswith(("PolyphaseUpsample", "LearnablePolyphaseUpsample")):
        empty = (args[0][:0], args[1][:0])
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    for mode in (False, True):
        m.train(mode)
        out = _first(m(*empty))
        assert out.shape == (0, *ref_out.shape[1:])
    for k, v in m.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(v, stats[k]), f"{k} changed on an empty batch"


@pytest.mark.parametrize("name", NAMES)
def test_zero_channels(name):
    """An input with 0 channels gives the empty output of the right shape (and an empty
    gradient) where the module takes any channel count, or a ValueError that quotes the input's
    shape where it was built for a channel count; never torch's own error. GroupMaxPool2d,
    GroupAvgPool2d/3d, GroupMaxPool3d, NormMaxPool and GaussianBlurPool2d raised torch's
    RuntimeError ("Expected 3D or 4D ... tensor", "cannot reshape tensor of 0 elements"):
    torch's pools refuse 0 channels where the other pools here return an empty map."""
    m, args = _model(name)
    ref = _first(_eval_out(m, args))
    x = args[0].narrow(1, 0, 0).clone().requires_grad_(True)
    for mode in (False, True):
        m.train(mode)
        try:
            out = _first(m(x, *args[1:]))
        except ValueError as e:
            assert str(tuple(x.shape)) in str(e), str(e)
            continue
        assert out.shape == (ref.shape[0], 0, *ref.shape[2:])
        out.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_model_to_channels_last_and_checkpoint(name):
    """``model.to(memory_format=torch.channels_last)`` works on every module (5-D weights
    included) and changes no output; a checkpoint saved with ``torch.save(state_dict)`` and
    loaded with ``weights_only=True`` restores the outputs."""
    m, args = _model(name)
    ref = _eval_out(m, args)
    cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    _same(_eval_out(cl, args), ref)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = ZOO[name].make().double()
    other.load_state_dict(torch.load(buf, weights_only=True))
    _same(_eval_out(other, args), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_buffers_share_no_memory_with_the_process_caches(name, dtype):
    """A module's derived buffers are its own copies of the process-wide tables: editing one
    in place leaves the next build of the same entry untouched. (The 3-D expansion table was
    once the cached tensor itself on the CPU, so one edited buffer broke every later cube conv
    of that group and size; a steerable regular conv's ``basis_scale`` was the cached float64
    tensor itself after ``.double()``, one object shared by every such conv.)"""
    def make():
        return ZOO[name].make().to(dtype)

    def state(mod):  # its buffers and integer tables (plain attributes, not buffers)
        from equilayers.nn._tables import integer_tables

        out = dict(mod.named_buffers())
        for mod_name, sub in mod.named_modules():
            out.update({f"{mod_name}.{n}#table": t for n, t in integer_tables(sub).items()})
        return out

    fresh = {n: b.clone() for n, b in state(make()).items()}  # tables: no RNG
    m = make()
    owners: dict[int, str] = {}
    for mod_name, mod in m.named_modules():  # no two modules hold the same buffer object
        for n, b in mod._buffers.items():
            if b is not None:
                where = f"{mod_name}.{n}"
                assert owners.setdefault(id(b), where) == where, (
                    f"{name}: {where} is the same tensor as {owners[id(b)]}")
    with torch.no_grad():
        for b in state(m).values():
            if b.is_floating_point():
                b.add_(1.0)
            elif b.dtype in (torch.int64, torch.int32):
                b.add_(1)
    again = state(make())  # (the ico convs' expansion table was the cached table itself)
    assert again.keys() == fresh.keys()
    for n, b in again.items():
        assert torch.equal(b, fresh[n]), f"{name}: buffer {n} changed with another module's edit"
