"""The bad values and inputs shared by the bad-input tables of ``equilayers.nn``
(``tests/_bad_input_nn.py``) and ``equilayers.functional`` (``tests/_bad_input_functional.py``);
see ``tests/_bad_input.py`` for what a case checks."""

from __future__ import annotations

import torch
from _bad_input import CHOICE, FLOAT, GROUP, INT, OK, PAIR, T

#: The steerable basis' ring radii (in taps of a 3x3 filter: at most sqrt(2)).
RINGS = {"None": None, "0": 0, "str": "1", "empty": [], "neg": [-1.0], "far": [9.0],
         "repeat": [1.0, 1.0], "True": [True], "nan": [float("nan")]}
#: The basis settings of the harmonic convs (keyword-only); ``None`` is the default basis.
#: A Gaussian's sigma: a 6e6-tap filter (144 TB) is refused by name, not by the allocator.
_SIGMA = {**FLOAT, "huge": 1e6}
_SETTINGS = {"sigma": FLOAT, "frequencies_cutoff": FLOAT, "rings": RINGS}
#: ``frequencies_cutoff=0`` keeps frequency 0 alone: a valid (isotropic) basis.
_SETTINGS_OK = {"sigma": {"None": OK}, "frequencies_cutoff": {"None": OK, "0": OK},
                "rings": {"None": OK}}


def _img(*shape, **kw) -> T:
    """An image batch: wrong ranks one below and one above, channels in dim 1."""
    kw.setdefault("ranks", (len(shape) - 1, len(shape) + 1))
    return T(shape, **kw)


def _index(gen: torch.Generator) -> torch.Tensor:
    return torch.tensor([0, 3])


_INDEX_EXTRA = {
    "index:float": lambda d: {**d, "index": d["index"].float()},
    "index:shape": lambda d: {**d, "index": torch.tensor([0, 1, 2])},
    "index:range": lambda d: {**d, "index": torch.tensor([0, 4])},
    "index:list": lambda d: {**d, "index": [0, 3]},
}
_INDEX3_EXTRA = {**_INDEX_EXTRA, "index:range": lambda d: {**d, "index": torch.tensor([0, 8])}}
_SELECTION_EXTRA = {
    **{k: v for k, v in _INDEX_EXTRA.items() if k != "index:float"},
    "index:selection-shape": lambda d: {**d, "index": torch.ones(2, 3)},
    "index:bool": lambda d: {**d, "index": torch.tensor([True, False])},
}


def _selection(gen: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([0, 3]), 4).float()


def _selection3(gen: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([0, 7]), 8).float()


#: The 3-D twins: volumes (4-, 5- or 6-D x), 4 orbit weights of an isotropic 3x3x3 filter.
_LPS3_X = _img(2, 3, 4, 4, 4, ranks=(3, 7), channel=1, small=(2, 3, 1, 1, 1))
_UP3_INPUTS = {"x": T((2, 3, 2, 2, 2), ranks=(3,)),
               "index": T((2, 8), dtypes=False, make=_selection3)}
_SELECTION3_EXTRA = {**_SELECTION_EXTRA, "index:range": lambda d: {**d, "index": torch.tensor(
    [0, 8])}, "index:selection-shape": lambda d: {**d, "index": torch.ones(2, 4)}}
_GPOOL = {"kernel_size": 2, "stride": 2, "padding": 0}
_GPOOL_ARGS = {"kernel_size": PAIR, "stride": PAIR, "padding": PAIR}
_GPOOL_OK = {"stride": {"None": 2}, "padding": {"0": OK}}
_G5 = dict(ranks=(4, 6))
#: An int or three ints, the 3-D convs' sizes.
TRIPLE = {**INT, "pair": (1, 1), "triple-float": (1.5, 1, 1)}
#: ...and the groups they reject: a planar one.
GROUP3 = {**GROUP, "planar": "p4"}
#: Steerable 3-D filters take SO(3)/O(3) and the planar groups (about the depth axis).
GROUP_STEERABLE3 = {**GROUP, "cube": "o"}
_GPOOL3_ARGS = {"kernel_size": TRIPLE, "stride": TRIPLE, "padding": TRIPLE}
_APS_ARGS = {"stride": INT, "criterion": CHOICE, "blur_size": INT, "padding_mode": CHOICE}
#: The expanded conv's groups: finite and planar (a continuous or a cube group is refused).
_GROUP_EXPANDED = {**GROUP, "continuous": "so2", "cube": "o"}
