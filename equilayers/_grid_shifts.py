"""``check_grid``'s circular-shift findings, shared by the 2-D and 3-D checks (``_grid.py``,
``_grid3d.py``): a window's padding that does not move with the image, a window that crops
(no padding, or a circular pad module before it too narrow) and circular padding of another
width than the window consumes (the output is larger than the input, or a crop of it), read
layer after layer in call order (:class:`ShiftWindows`)."""

from __future__ import annotations

from torch import nn

from ._grid import Finding, _padding_text

__all__ = ["ShiftWindows"]


def _pairs(prm: dict, nd: int) -> list[tuple[int, int]]:
    """A window's padding per dim, ``(before, after)``: 2-D windows give ``(top, bottom, left,
    right)``, 3-D ones ``((lo, hi), ...)``."""
    sides = prm["sides"]
    if nd == 2:
        return [(sides[0], sides[1]), (sides[2], sides[3])]
    return [tuple(p) for p in sides]


def _read(n: int, k: int, s: int, lo: int, hi: int) -> tuple[int, int]:
    """The padding ``(lo, hi)`` of a dim of ``n`` pixels that windows of ``k`` at stride ``s``
    read: all of ``lo`` (the first window starts there), of ``hi`` what the last one reaches
    (``BlurPool2d(kernel_size=2)`` pads 1 after, which its windows never read on even sizes:
    then no content of the padding can break a shift)."""
    last = (n + lo + hi - k) // s * s - lo + k  # one past the last pixel the windows read
    return lo, min(hi, max(0, last - n))


def _per_dim(values) -> str:
    """``(4, 4)`` as ``4``, ``(4, 2)`` as ``(4, 2)``."""
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else str(values)


def circular_padding_fix(k: tuple[int, ...], s: tuple[int, ...]) -> str:
    """The padding that makes a circular window of effective size ``k`` at stride ``s``
    consume exactly what it pads (``k - s <= lo + hi <= k - 1`` per dim): ``(k - 1) // 2`` on
    both sides, which fits but for an even ``k`` at stride 1 (that needs ``k - 1``, odd)."""
    if any(a % 2 == 0 and b == 1 for a, b in zip(k, s, strict=True)):
        return ("an odd effective kernel (dilation * (kernel_size - 1) + 1) with padding="
                "(effective kernel - 1) // 2 and padding_mode='circular'")
    return f"padding={_per_dim((a - 1) // 2 for a in k)} (= (effective kernel - 1) // 2)"


class ShiftWindows:
    """Under circular shifts, one layer after another in call order (:meth:`step`, then
    :meth:`other` for a layer without a window and :meth:`end`). A circular window of
    effective size ``k`` at stride ``s`` is exact (for shifts by multiples of ``s``, on sizes
    ``s`` divides) iff its circular padding per dim, ``P = before + after``, is what its
    windows consume: ``k - s <= P <= k - 1`` (so the output is ``N / s`` windows of the
    circular correlation). Less and the output is a crop (a "valid" conv: measured 1.38 on a
    3x3 conv; ``padding=1`` on a 5x5 circular conv: 0.53), more and it is larger than the
    input, repeating pixels (``padding=2`` on a 3x3 circular conv: 0.59). The padding may come
    from a circular pad module before a window without padding of its own: its pixels last
    past pointwise layers and stride-1 windows (each consumes ``k - 1``), until a strided
    window, a padded one or a layer that resizes the map takes what is left, which must then
    be what it consumes (nothing, at a layer that does not slide a window). After a zero or
    reflect pad module the pad's own finding names the cause; a window's own padding other
    than circular is a ``"non-circular-padding"`` finding. A layer made of windows in turn
    (``MaxBlurPool2d``: a max at stride 1, padded with ``-inf``, then a blur) lists them as
    ``prm["parts"]``, each read so."""

    def __init__(self, nd: int) -> None:
        self.nd = nd
        self.mode: str | None = None  # the last pad module's mode, while its pixels last
        self.left: list[int] = []  # its pixels per dim not yet consumed
        self.pad: tuple[str, str, tuple[int, ...], list[int]] | None = None  # name, kind, size,
        # pixels per dim of the circular pad module whose pixels are counted

    def step(self, name: str, mod: nn.Module, prm: dict, size: tuple[int, ...]
             ) -> tuple[list[Finding], list[Finding]]:
        """The findings of the windowed layer ``mod`` at ``size``: those of its windows'
        reach (a crop, a padding of another width), and those of its padding's content."""
        reach: list[Finding] = []
        content: list[Finding] = []
        size = tuple(size)
        for part in prm.get("parts") or [prm]:
            reach += self._reach(name, mod, part, size)
            found = self._content(name, mod, part, size)
            content += [found] if found is not None else []
            if part is not prm:  # the next window reads this one's output
                size = tuple((n + lo + hi - a) // b + 1 for n, a, b, (lo, hi) in zip(
                    size, part["k"], part["s"], _pairs(part, self.nd), strict=True))
        return reach, content

    def other(self, size: tuple[int, ...], out: tuple[int, ...] | None) -> list[Finding]:
        """A layer without a window: one that resizes the map ends the pad's reach."""
        return self._close() if out is not None and tuple(out) != tuple(size) else []

    def end(self) -> list[Finding]:
        """After the last layer: a circular pad's pixels left unconsumed."""
        return self._close()

    def _close(self) -> list[Finding]:
        """The pad module's reach ends here: a finding where some of its pixels are left."""
        left, pad, mode = self.left, self.pad, self.mode
        self.mode, self.left, self.pad = None, [], None
        if mode != "circular" or pad is None or not any(left):
            return []
        name, kind, size, total = pad
        used = [a - b for a, b in zip(total, left, strict=True)]
        spec = _per_dim(u // 2 for u in used) if all(u % 2 == 0 for u in used) and len(
            set(used)) == 1 else "(" + ", ".join(
                f"{u // 2}, {u - u // 2}" for u in reversed(used)) + ")"
        return [Finding(
            name, kind, "circular-padding-size", "shifts", size,
            f"it pads {_per_dim(total)} pixels per dim in all where the windows after it "
            f"consume {_per_dim(used)}: the map stays {_per_dim(left)} pixels larger, repeating "
            "pixels, so a circular shift of the input is not a circular shift of the output",
            f"nn.CircularPad{self.nd}d({spec}) (what the windows after it consume)")]

    def _reach(self, name: str, mod: nn.Module, prm: dict, size: tuple[int, ...]
               ) -> list[Finding]:
        kind = type(mod).__name__
        sides = _pairs(prm, self.nd)
        if prm["padded_by"] == "module":
            out = self._close()
            self.mode, self.left = prm["mode"], [lo + hi for lo, hi in sides]
            self.pad = (name, kind, size, list(self.left)) if any(self.left) else None
            return out
        k, s = tuple(prm["k"]), tuple(prm["s"])
        stride1 = all(b == 1 for b in s)
        own = any(lo or hi for lo, hi in sides)
        if prm.get("transposed", False):
            return self._close()  # (its own border finding)
        if not own and all(a <= b for a, b in zip(k, s, strict=True)) and not (
                self.mode == "circular" and any(self.left)):
            # no window reaches across the border (1x1, windows that tile); after a circular
            # pad they consume k - 1 of its pixels, as any window (below)
            return [] if stride1 else self._close()
        if own:
            out = self._close()
            total = [lo + hi for lo, hi in sides]
            if prm["mode"] != "circular" or all(
                    a - b <= n <= a - 1 for n, a, b in zip(total, k, s, strict=True)):
                return out  # (a non-circular padding: its content finding)
            crop = any(n < a - b for n, a, b in zip(total, k, s, strict=True))
            window = "x".join(map(str, k))
            return out + [Finding(
                name, kind, "circular-padding-size", "shifts", size,
                f"its circular padding ({_per_dim(total)} pixels per dim in all) is not what "
                f"its {window} windows at stride {_per_dim(s)} consume ("
                + (f"{_per_dim(a - 1 for a in k)}" if stride1 else
                   f"{_per_dim(a - b for a, b in zip(k, s, strict=True))} to "
                   f"{_per_dim(a - 1 for a in k)}")
                + "): its output is " + ("a crop of" if crop else "larger than")
                + " the circular correlation, so a circular shift of the input is not a "
                "circular shift of the output",
                prm.get("size_fix") or circular_padding_fix(k, s))]
        mode, left = self.mode, self.left
        need = [a - b for a, b in zip(k, s, strict=True)]
        if mode is not None and mode != "circular":
            self.mode, self.left, self.pad = None, [], None
            return []  # the pad module's finding
        narrow = mode == "circular" and any(n < m for n, m in zip(left, need, strict=True))
        if mode == "circular" and not narrow:
            if stride1:  # the pad's pixels last: this window consumes k - 1 of them
                self.left = [n - (a - 1) for n, a in zip(left, k, strict=True)]
                return []
            wide = [n - (a - 1) for n, a in zip(left, k, strict=True)]
            self.left = [max(w, 0) for w in wide]
            return self._close()  # what this strided window leaves is left over
        self.mode, self.left, self.pad = None, [], None
        pad = f"nn.CircularPad{self.nd}d"
        what = f"its {prm['label']}'s" if prm.get("label") else "its"
        window = "x".join(map(str, k))
        why = (f"the circular pad before it leaves {tuple(left)} pixels per dim where {what} "
               f"{window} windows need {tuple(need)}" if narrow
               else f"{what} {window} windows stop at the border without padding")
        return [Finding(name, kind, "no-padding", "shifts", size,
                        f"{why} (the output is a crop), so circular shifts are not exact at the "
                        "borders (a forward that pads itself, F.pad(..., mode='circular'), is "
                        "not seen here: then check with shifts=False)",
                        prm.get("bare_fix") or prm.get("fix") or (
                            f"{pad} before it" if prm["mode"] == "pool" else
                            "padding=(kernel_size - 1) // 2 with padding_mode="
                            f"'circular' (or {pad} before it)"))]

    def _content(self, name: str, mod: nn.Module, prm: dict, size: tuple[int, ...]
                 ) -> Finding | None:
        """A padding that fills the border with content that does not move with the image."""
        pairs = _pairs(prm, self.nd)
        if prm["padded_by"] == "layer" and len(size) == len(pairs):  # what its windows read
            pairs = [_read(n, a, b, lo, hi) for n, a, b, (lo, hi) in zip(
                size, prm["k"], prm["s"], pairs, strict=True)]
        padded = any(lo or hi for lo, hi in pairs)
        mode = prm["mode"]
        if prm.get("transposed", False) or not padded or mode == "circular":
            return None
        pad = f"nn.CircularPad{self.nd}d"
        fix = ("padding_mode='circular'" if prm["padded_by"] == "layer" and mode != "pool"
               else f"{pad} before it and padding=0" if mode == "pool" else f"{pad} instead")
        what = f"its {prm['label']}'s " if prm.get("label") else ""
        return Finding(
            name, type(mod).__name__, "non-circular-padding", "shifts", size,
            f"{what}{_padding_text(mode)} fills the border with content that does not move "
            f"with the {'image' if self.nd == 2 else 'volume'}, so circular shifts are not "
            "exact at the borders", prm.get("fix") or fix)
