"""The integer tables of the modules (a group conv's gather indices, a subgroup's slot
indices), from a process-wide cache rather than module state.

Each table is a fixed function of a few constructor arguments, so it is looked up by those
arguments and the device of the tensors it indexes (:func:`~equilayers._cpu_cache.
device_cache`: the CPU table itself on the CPU, one kept copy per other device, fresh and
unstored on the meta device and under tracing modes). Nothing of it is on the module: no
buffer for ``AveragedModel(..., use_buffers=True)`` to average (torch's EMA truncates integer
buffers), for ``load_state_dict``, ``to_empty()`` or FSDP to overwrite, or for a ``.data`` edit
to corrupt, and ``state_dict`` never had it (the buffers were non-persistent). Callers index
with the result and never write to it; the modules' read-only attributes (``expansion_index``,
``expansion_table``, ``bias_index``, ``index``) return copies.

A table lives as long as its cache entry, not as its modules: up to ``maxsize`` tables per
function and device stay after the models that read them are gone (a sweep over many layer
sizes), and each function's ``cache_clear()`` frees them. Every model reads one tensor per
table on each device, where each module held its own copy before.
"""

from __future__ import annotations

import torch

from .._cpu_cache import device_cache
from ..functional import _gconv as G
from ..functional import _gconv3d as G3
from ..functional import _restrict as R
from ..functional import _steerable as S
from ..groups import Group
from ..groups._subgroups import restriction_index

__all__ = ["gather_index", "inverse_cayley", "gather_table3d", "slot_fields", "restriction",
           "sorted_cosets"]


@device_cache(maxsize=128)
def gather_index(group: Group, out_channels: int, in_per_group: int, kernel_size: int,
                 lifting: bool) -> torch.Tensor:
    """A pixel group conv's gather index (:func:`~equilayers.functional._gconv.
    expansion_index`), ``(C_out * |G|, C_in/groups * F_in, k, k)``."""
    return G.expansion_index(group, out_channels, in_per_group, kernel_size, lifting=lifting)


@device_cache(maxsize=16)
def inverse_cayley(group: Group) -> torch.Tensor:
    """The slot of ``a^-1 b`` at ``a * |G| + b`` (a steerable regular group conv's gather)."""
    return S.inverse_cayley_index(group, "cpu")


@device_cache(maxsize=128)
def gather_table3d(group: Group, kernel_size: int, lifting: bool,
                   in_per_group: int) -> torch.Tensor:
    """A cube group conv's gather table (:func:`~equilayers.functional._gconv3d.
    expansion_table`), ``(|G|, C_in/groups, F_in * k^3)``."""
    return G3.expansion_table(group, kernel_size, lifting=lifting, in_channels=in_per_group)


@device_cache(maxsize=128)
def slot_fields(out_channels: int, fiber: int) -> torch.Tensor:
    """The field of each output slot, ``arange(C_out).repeat_interleave(fiber)``: the bias
    per slot is one ``index_select``."""
    return torch.arange(out_channels).repeat_interleave(fiber)


@device_cache(maxsize=32)
def restriction(group: Group, subgroup: Group) -> torch.Tensor:
    """:func:`~equilayers.groups._subgroups.restriction_index` (``Restrict``)."""
    return restriction_index(group, subgroup)


@device_cache(maxsize=32)
def sorted_cosets(group: Group, subgroup: Group) -> torch.Tensor:
    """:func:`~equilayers.functional._restrict.sorted_coset_index` (``CosetPool``)."""
    return R.sorted_coset_index(group, subgroup)
