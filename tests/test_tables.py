"""The modules' integer tables (gather indices, slot indices) come from a process-wide cache
keyed by their arguments and device (``equilayers.nn._tables``, built on
``equilayers._cpu_cache.device_cache``), not from buffers: one tensor per table on the CPU, one
kept copy per other device, nothing stored from the meta device, fake tensors or inference
mode, and a stored table written in place is built again. The EMA, checkpoint and conversion
routes that overwrote the buffers are in test_training_tools.py and the zoo tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equilayers.nn as enn
from equilayers.groups import get
from equilayers.nn import _tables as T

CPU = torch.device("cpu")
P4M = get("p4m")


def _index(device=CPU):
    return T.gather_index(device, P4M, 3, 2, 3, False)


def test_one_cpu_tensor_per_table_and_no_buffer():
    """Two convs of the same arguments read one CPU table, the one the functional builds, and
    hold no integer buffer; the state dict has the keys it had when the tables were
    non-persistent buffers."""
    a = enn.GroupConv2d(2, 3, 3, padding=1, group="p4m")
    b = enn.GroupConv2d(2, 3, 3, group="p4m", bias=False)
    assert a._gather_index() is b._gather_index() is _index()
    from equilayers.functional._gconv import expansion_index
    assert torch.equal(_index(), expansion_index("p4m", 3, 2, 3, lifting=False))
    assert all(t.is_floating_point() for t in [*a.buffers(), *b.buffers()])
    assert list(a.state_dict()) == ["weight", "bias"] and list(b.state_dict()) == ["weight"]
    seq = nn.Sequential(enn.GroupConv3d(2, 2, 3, group="o"), enn.Restrict("o", "c4z"),
                        enn.CosetPool("o", "c4z"))
    assert list(seq.state_dict()) == ["0.weight", "0.bias"] and not list(seq.buffers())


def test_meta_fake_and_traced_tables_are_never_stored():
    """A meta table is made fresh on every call; a table first built under a fake mode is a
    fake tensor, returned and not stored: the next plain call builds a real one."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    _index()
    before = T.gather_index.cache_info().currsize
    meta = _index(torch.device("meta"))
    assert meta.is_meta and meta.shape == _index().shape
    assert T.gather_index.cache_info().currsize == before
    T.gather_index.cache_clear()
    with FakeTensorMode(allow_non_fake_inputs=True):  # (as torch.export)
        fake = _index()
    assert isinstance(fake, FakeTensor) and T.gather_index.cache_info().currsize == 0
    real = _index()
    assert type(real) is torch.Tensor and real is _index()  # stored now


def test_a_stored_table_written_in_place_is_built_again():
    """Callers never write to a table; if one did, its version counter moved and the next
    lookup builds the table again instead of handing out other indices."""
    right = _index().clone()
    with torch.no_grad():
        _index().add_(1)  # (a misuse)
    again = _index()
    assert torch.equal(again, right)
    conv = enn.GroupConv2d(2, 3, 3, padding=1, group="p4m").double()
    x = torch.randn(1, 2, 8, 5, 5, dtype=torch.float64)
    y = conv(x)
    with torch.no_grad():
        conv._gather_index().mul_(0)
    torch.testing.assert_close(conv(x), y, rtol=0, atol=0)


def test_a_table_first_built_in_inference_mode_trains():
    """A table first looked up under ``torch.inference_mode`` (an empty cache, or a model
    built under it) is built with inference mode off and stored: later inference calls read
    it, and a training step saves it for backward. (An inference tensor has no version
    counter and cannot be saved for backward: not storable, it was rebuilt on every call.)"""
    T.gather_table3d.cache_clear()
    T.slot_fields.cache_clear()
    x = torch.randn(1, 2, 4, 4, 4, 4)
    with torch.inference_mode():
        conv = enn.GroupConv3d(2, 2, 3, padding=1, group="c4z")
        conv(x)
        table = conv._gather_table()
        assert table is conv._gather_table() and not table.is_inference()
    assert table is conv._gather_table()
    conv = enn.GroupConv3d(2, 2, 3, padding=1, group="c4z")
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.bias.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tables_are_kept_per_device():
    """On a CUDA device the table is a copy of the CPU one, made once and kept: every forward
    reads the same device tensor (no host -> device copy per call)."""
    dev = torch.device("cuda", torch.cuda.current_device())
    conv = enn.GroupConv2d(2, 3, 3, padding=1, group="p4m", device=dev)
    first = conv._gather_index()
    assert first.device == dev and first is conv._gather_index() is _index(dev)
    assert torch.equal(first.cpu(), _index())
    x = torch.randn(1, 2, 8, 5, 5, device=dev)
    hits = T.gather_index.cache_info().hits
    conv(x).sum().backward()
    assert T.gather_index.cache_info().hits > hits
    ref = enn.GroupConv2d(2, 3, 3, padding=1, group="p4m")
    ref.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x).cpu(), ref(x.cpu()), rtol=1e-5, atol=1e-5)


def test_compile_and_export_with_tables_of_several_shapes_in_one_graph():
    """Tables of one cached function with different shapes in one graph (three pixel convs)
    are constants of the compiled and exported graphs, with static shapes. (Dynamo gives the
    constants of one function the same source: the second table looked like the first input
    with a changed shape, automatic dynamic shapes made its sizes symbolic, and building the
    guards failed with an IndexError; a 3-D conv's gather table and bias slots did too.)"""
    torch._dynamo.reset()
    model = nn.Sequential(enn.LiftingConv2d(1, 4, 3, padding=1, group="p4m"),
                          enn.GroupConv2d(4, 3, 3, padding=1, group="p4m"),
                          enn.GroupConv2d(3, 2, 3, padding=1, group="p4m")).double()
    x = torch.randn(2, 1, 7, 7, dtype=torch.float64)
    cube = enn.GroupConv3d(2, 3, 3, padding=1, group="d4z").double()
    v = torch.randn(1, 2, 8, 5, 5, 5, dtype=torch.float64)
    for m, inp in ((model, x), (cube, v)):
        compiled = torch.compile(m, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(inp), m(inp), rtol=0, atol=0)
        torch.testing.assert_close(torch.export.export(m, (inp,), strict=True).module()(inp),
                                   m(inp), rtol=0, atol=0)
