"""``padding`` and ``_pad`` of the group and steerable convs: ``padding`` as given (an int, a
tuple, ``"same"``, ``"valid"``), ``_pad`` its per-side numbers, always those of the current
``padding``, ``kernel_size``, ``dilation`` and ``stride`` (``"same"`` depends on the dilation
and needs stride 1): setting ``padding``, ``dilation`` or ``stride`` after construction takes
effect at the next call, as on torch's convs (``_pad`` was resolved once: a later
``dilation`` silently shrank a ``"same"`` output, a later ``padding`` was ignored by the 3-D
convs); ``kernel_size`` is fixed at construction (the bases and tables are built from it:
:class:`~._derived.FixedArgs`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ResolvedPadding"]


class ResolvedPadding:
    """Mixin: the ``padding`` property and the derived ``_pad``; a subclass gives
    ``_resolve_padding(padding)``, which checks ``padding`` against the current attributes
    and returns the per-side numbers (a ``ValueError`` naming the fix)."""

    def _resolve_padding(self, padding: Any) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def padding(self) -> Any:
        """As ``nn.Conv2d.padding`` / ``nn.Conv3d.padding`` (as given). Setting it (or
        ``stride``/``dilation``) after construction takes effect at the next call."""
        return self.__dict__["_padding"]

    @padding.setter
    def padding(self, padding: Any) -> None:
        numbers = self._resolve_padding(padding)  # checked now, whatever the kind
        self.__dict__["_padding"] = padding
        # numbers do not depend on stride or dilation; a string ("same") is resolved per call
        self.__dict__["_pad_numbers"] = None if isinstance(padding, str) else numbers

    @property
    def _pad(self) -> Any:  # (a 4-tuple on images, a 6-tuple on volumes)
        numbers = self.__dict__.get("_pad_numbers")
        return numbers if numbers is not None else self._resolve_padding(self.padding)

    def __setstate__(self, state: dict) -> None:
        if "padding" in state:  # pickled before ``padding`` was a property
            state["_padding"] = state.pop("padding")
        state.pop("_pad", None)  # (resolved once, then)
        state.setdefault("_pad_numbers", None)
        super().__setstate__(state)  # type: ignore[misc]  # (a mixin: nn.Module is later in the MRO)
