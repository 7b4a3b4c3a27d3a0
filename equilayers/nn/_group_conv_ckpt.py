"""The 2-D group convs' checkpoints and whole-model pickles of earlier equilayers: the weight
of version 1 (equilayers 0.1.0: one slot per group element on the group axis, unit-norm
steerable elements) converted on load, the newer version refused, and the integer table a
pickle made before it existed rebuilt (a mixin of ``_GroupConvNd``, ahead of
:class:`~equilayers.nn._derived.BasisRecorded` in its MRO)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..functional import _gconv as G
from ..groups import Group
from ..groups._fourier_basis import weight_basis
from . import _derived as D

__all__ = ["OldCheckpoints2d"]


class OldCheckpoints2d(nn.Module):
    """Mixin: ``_version``, the load-time conversion of older weights and the pickle fix-up."""

    if TYPE_CHECKING:  # the group conv's (_GroupConvNd)
        group: Group
        basis: str
        weight: torch.Tensor

        @property
        def _fourier_axis(self) -> bool: ...

        def _irrep_scale(self) -> torch.Tensor: ...

        def _fill_derived(self, device: torch.device) -> None: ...

        def _index_tables(self, device) -> dict[str, torch.Tensor]: ...

    #: 2: the group axis of regular -> regular weights is in the group's Fourier basis and
    #: steerable elements have norm sqrt(d_out) (equilayers 0.1.0 stored one slot per element
    #: and unit-norm elements; such checkpoints are converted on load). Only a state dict whose
    #: metadata says version 1 is converted: one without metadata (a dict rebuilt from
    #: ``state_dict()``, e.g. to strip a ``module.`` prefix, or read by a loader that keeps no
    #: metadata) is taken as this version's, as it almost always is.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        if D.newer_checkpoint(self, prefix, local_metadata, error_msgs):
            return
        key = prefix + "weight"
        if ((self._fourier_axis or self.basis == "harmonic")
                and local_metadata.get("version", 2) < 2 and key in state_dict
                and isinstance(state_dict[key], torch.Tensor)):
            state_dict[key] = self._to_fourier(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if not self.weight.is_meta:
            self._fill_derived(self.weight.device)

    def _to_fourier(self, weight: torch.Tensor) -> torch.Tensor:
        """A weight in equilayers 0.1.0's parametrization (one slot per group element on the
        group axis; unit-norm steerable elements), e.g. escnn's expanded filters read back,
        in this version's (the group's Fourier basis; elements of norm ``sqrt(d_out)``)."""
        w = weight.double()
        if self._fourier_axis:
            fourier = weight_basis(self.group, dtype=torch.float64, device=w.device)
            if self.basis == "pixel":  # (C_out, C_in, |G|, k, k)
                w = G.from_fourier(w, fourier.t())
            else:  # (C_out, C_in, |G| J), element (h, j) at h J + j
                w = G.from_fourier(w.unflatten(-1, (int(self.group.order), -1)),
                                   fourier.t()).flatten(-2)
        if self.basis == "harmonic":
            w = w / self._irrep_scale().to(w.device)
        return w.to(weight.dtype)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if "bias_index" not in self.__dict__:  # pickled before the slot bias was a gather
            self.bias_index = self._index_tables(self.weight.device)["bias_index"]
