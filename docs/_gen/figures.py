"""The pictures of docs/conventions.md, computed with equilayers itself.

Run by the docs build (``docs/_gen/hooks.py`` adds the SVGs to the site as ``figures/*.svg``),
or by hand: ``python docs/_gen/figures.py OUT_DIR`` writes them to ``OUT_DIR``. Every array
drawn comes from equilayers' own functions (``lifting_conv2d``, ``groups.act``,
``regular_permutation``, ``harmonic_matrix``), so a change of convention changes the pictures.
Needs matplotlib (in the ``docs`` extra).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "equilayers-docs",
                         "font.size": 9})
    return plt


def _svg(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    return buf.getvalue()


def _letter() -> torch.Tensor:
    """An 11x11 "F": no rotation or flip maps it onto itself."""
    img = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    img[0, 0, 2:9, 3] = 1.0     # the stem
    img[0, 0, 2, 3:8] = 1.0     # the top bar
    img[0, 0, 5, 3:7] = 1.0     # the middle bar
    return img


def _edge_filter() -> torch.Tensor:
    """A 3x3 filter that answers to horizontal edges (bright above, dark below)."""
    w = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]],
                     dtype=torch.float64)
    return w.view(1, 1, 3, 3)


def _lift(img: torch.Tensor, group: str) -> torch.Tensor:
    from equilayers.functional import lifting_conv2d

    return lifting_conv2d(img, _edge_filter(), padding=1, group=group)


def _slot_label(g) -> str:
    k, s = int(g.rotation), g.reflection
    return ("e" if k == 0 else "r" if k == 1 else f"r^{k}") + (" m" if s else "")


def regular_field() -> bytes:
    """A regular C4 field: the lifting correlation of an image with the 4 rotated filters."""
    from equilayers.groups import get

    plt = _plt()
    img = _letter()
    y = _lift(img, "c4")[0, 0]  # (4, H, W)
    els = get("c4").elements()
    fig, axes = plt.subplots(1, 5, figsize=(7.5, 1.9))
    axes[0].imshow(img[0, 0], cmap="gray_r")
    axes[0].set_title("input x (B, 1, H, W)")
    lim = float(y.abs().max())
    for k, ax in enumerate(axes[1:]):
        ax.imshow(y[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"slot {k}: {_slot_label(els[k])}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("lifting_conv2d(x, w, group='c4'): one field, F = |C4| = 4 slots; slot k "
                 "= correlation with w rotated by 90k degrees", y=1.06)
    return _svg(fig)


def rot90_fiber() -> bytes:
    """rot90 on a regular field: every slot turns and the slots shift one place."""
    from equilayers.groups import act, get

    plt = _plt()
    grp = get("c4")
    r = grp.elements()[1]
    img = _letter()
    y = _lift(img, "c4")[0, 0]
    y_rot = _lift(act(img, r), "c4")[0, 0]          # f(r . x)
    moved = act(_lift(img, "c4"), r, "regular")[0, 0]  # r . f(x)
    assert torch.allclose(y_rot, moved)              # equivariance, drawn below
    lim = float(y.abs().max())
    fig, axes = plt.subplots(2, 4, figsize=(6.4, 4.2))
    for k in range(4):
        axes[0, k].imshow(y[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, k].set_title(f"f(x), slot {k}")
        axes[1, k].imshow(y_rot[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        src = int(grp.regular_permutation(r)[k])
        axes[1, k].set_title(f"f(rot90 x), slot {k}\n= rot90(slot {src})")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("(r . f)[h] = r . f[r^-1 h]: rot90 turns every slot and moves slot h to "
                 "slot r h", y=1.02)
    fig.tight_layout()
    return _svg(fig)


def d4_permutations() -> bytes:
    """The slot permutations of r and m on a regular D4 fiber (group.regular_permutation)."""
    from equilayers.groups import get

    plt = _plt()
    grp = get("d4")
    els = grp.elements()
    names = [_slot_label(g) for g in els]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    for ax, g, title in ((axes[0], els[1], "r (rot90)"), (axes[1], els[4], "m (flip)")):
        perm = grp.regular_permutation(g)
        mat = torch.zeros(8, 8)
        mat[torch.arange(8), perm] = 1.0  # row: output slot i, column: input slot perm[i]
        ax.imshow(mat, cmap="Greys")
        ax.set_xticks(range(8), names, rotation=90)
        ax.set_yticks(range(8), names)
        ax.set_xlabel("input slot")
        ax.set_ylabel("output slot")
        ax.set_title(f"slots of {title}: f[g^-1 h] -> slot h")
    fig.tight_layout()
    return _svg(fig)


def harmonic_field() -> bytes:
    """A harmonic fiber [a0, c1, s1, c2, s2] before and after a rotation by 30 degrees."""
    from equilayers.groups import get, harmonic_matrix

    plt = _plt()
    t = 30.0
    g = get("so2").elements_at([t])[0]
    v = torch.tensor([0.8, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # [a0, c1, s1, c2, s2]
    w = harmonic_matrix(g, 2) @ v
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.8))
    axes[0].bar(["before", "after"], [float(v[0]), float(w[0])], color=["0.6", "C3"])
    axes[0].set_title("order 0: a0 unchanged")
    for m, ax in ((1, axes[1]), (2, axes[2])):
        for vec, color in ((v, "0.6"), (w, "C3")):
            c, s = float(vec[2 * m - 1]), float(vec[2 * m])
            ax.annotate("", xy=(c, s), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.5)
        ax.axvline(0, color="0.85", lw=0.5)
        ax.set_xlabel(f"c{m}")
        ax.set_ylabel(f"s{m}")
        ax.set_title(f"order {m}: (c{m}, s{m}) turns {m * t:g} deg")
    fig.suptitle("a harmonic fiber (max_order=2) at one pixel: grey before, red after a "
                 "rotation by 30 degrees", y=1.03)
    fig.tight_layout()
    return _svg(fig)


FIGURES: dict[str, Callable[[], bytes]] = {
    "regular_field.svg": regular_field,
    "rot90_fiber.svg": rot90_fiber,
    "d4_permutations.svg": d4_permutations,
    "harmonic_field.svg": harmonic_field,
}


def render_all() -> dict[str, bytes]:
    """Every figure, ``{file name: SVG bytes}``."""
    return {name: make() for name, make in FIGURES.items()}


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python docs/_gen/figures.py OUT_DIR")
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in render_all().items():
        (out / name).write_bytes(data)
        print(out / name, f"{len(data) / 1024:.0f} KiB")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1:])
