"""A NaN in the input reaches the output: every zoo module, in evaluation, in training with
gradients, and under ``torch.func.vmap``. A layer that turns a NaN into a number hides a
diverged step from the loss (the loop trains on silently on garbage)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _zoo import ZOO, build

NAMES = sorted(ZOO)

#: Upsamplers that place the input in one polyphase component (an index, or the zoo's one-hot
#: selection) and zeros in the others: an all-NaN input gives NaN in that component only (a
#: quarter of the output at stride 2, an eighth in 3-D). (PolyphaseUpsample3d blurs after.)
ZERO_FILLED = {"PolyphaseUpsample2d": 0.25, "LearnablePolyphaseUpsample2d[int]": 0.25,
               "LearnablePolyphaseUpsample2d": 0.25, "LearnablePolyphaseUpsample3d": 0.125}


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _run(m, x, rest, mode: str) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grid-exactness warnings of the zoo's sizes
        if mode == "eval":
            m.eval()
            with torch.no_grad():
                return _first(m(x, *rest))
        if mode == "train":
            m.train()
            return _first(m(x.clone().requires_grad_(True), *rest))
        m.eval()  # vmap: a train-mode batch norm refuses it, as torch's does
        return torch.func.vmap(lambda t, *r: _first(m(t[None], *(a[None] for a in r)))[0])(
            x, *rest)


@pytest.mark.parametrize("mode", ["eval", "train", "vmap"])
@pytest.mark.parametrize("name", NAMES)
def test_nan_reaches_the_output(name, mode):
    """One NaN in the input gives at least one NaN in the output; an all-NaN input gives an
    all-NaN output (its chosen component for the zero-filling upsamplers). NormPool on SO(3)
    fields (every mode) and on SO(2) fields under torch.func took ``sqrt`` behind
    ``where(sq > 0)``, which maps a NaN to a norm of 0."""
    m, args = build(name)
    x, rest = args[0], args[1:]
    if not x.is_floating_point():
        pytest.skip(f"{name} takes a {x.dtype} input")
    one = x.clone()
    one[tuple(s // 2 for s in x.shape)] = float("nan")
    assert torch.isnan(_run(m, one, rest, mode)).any(), "the NaN was lost"
    out = _run(m, torch.full_like(x, float("nan")), rest, mode)
    share = torch.isnan(out).float().mean().item()
    want = ZERO_FILLED.get(name, 1.0)
    assert share == want, f"{share:.2f} of the output is NaN, want {want}"
