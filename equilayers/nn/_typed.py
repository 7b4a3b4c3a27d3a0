"""``in_type`` / ``out_type``: how a module says what its input and output are.

Every module of :mod:`equilayers.nn` that maps field types declares them as
:class:`~equilayers.groups.FieldType` attributes (``None`` for the rank-agnostic blurs and
pools, which take any field type and return the same one). The harness, the metrics and
:func:`~equilayers.check_grid` read them instead of guessing from the tensor's rank.
``in_rep`` / ``out_rep``, the rep names of the first version, are read-only views of them.
"""

from __future__ import annotations

from ..groups import FieldType

__all__ = ["Typed"]


class Typed:
    """Mixin for ``nn.Module`` subclasses: ``in_type``/``out_type`` (class or instance
    attributes) and the derived ``in_rep``/``out_rep``."""

    in_type: FieldType | None = None
    out_type: FieldType | None = None

    def __prepare_scriptable__(self):
        """``torch.jit.script`` asks every module for its scriptable form first: ours have
        none (their forwards check shapes and types in Python), so it is refused here by
        name with the ways that work, not with TorchScript's error deep in a forward."""
        raise TypeError(f"torch.jit.script cannot compile {type(self).__name__} (equilayers' "
                        "modules are not TorchScript): use torch.jit.trace, torch.export or "
                        "torch.compile, or equilayers.export(model) for torch.nn layers where "
                        "it has them (docs/deployment.md)")

    @property
    def in_rep(self) -> str | None:
        """The input's rep name (``in_type.rep``), ``None`` for any."""
        return None if self.in_type is None else self.in_type.rep

    @property
    def out_rep(self) -> str | None:
        """The output's rep name (``out_type.rep``), ``None`` for the input's."""
        return None if self.out_type is None else self.out_type.rep
