"""The zoo (``tests/_zoo.py``) under the tools of ``torch`` that users put around a training
loop and that ``tests/test_training_loop.py`` does not cover: model ensembling with
``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` (torch's "model ensembling"
tutorial), weight averaging (``torch.optim.swa_utils.AveragedModel``) and in-place edits of a
warm eval model's derived buffers. Each compares with a model built from the same state dict
or with the loop over the ensemble's members."""

from __future__ import annotations

import copy

import pytest
import torch
from _zoo import ZOO, build
from torch.func import functional_call, stack_module_state, vmap

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
    the first (the tutorial's recipe), each member's eval cache warm: the loop's outputs.
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

    with torch.no_grad():
        out = vmap(call, in_dims=(0, 0) + (None,) * len(args), randomness="same")(
            params, buffers, *args)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
