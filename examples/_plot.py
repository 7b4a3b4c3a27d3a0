"""What the examples' ``--plot PATH`` share: matplotlib imported only when a figure is asked
for (a one-line hint and exit code 1 where it is missing), bars that carry their values, and a
small PNG whose title says the run's settings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot(path: str | Path) -> Any:
    """``matplotlib.pyplot`` on the Agg backend; without matplotlib, the hint and exit 1; a
    ``path`` it cannot write (no image suffix, a folder, a folder it cannot make), the reason
    and exit 2.

    Called as soon as ``--plot`` is parsed, so a missing matplotlib or a bad path stops the
    script before it trains, not after (``fig.xyz`` failed after minutes of training)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install 'equilayers[plot]'", file=sys.stderr)
        raise SystemExit(1) from None
    from equilayers._audit import check_plot_path  # the rule `equilayers audit --out` keeps

    try:
        check_plot_path(Path(path), "--plot", "figure.png")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    plt.rcParams.update({"font.size": 8})
    return plt


def run_label(script: str, quick: bool) -> str:
    """The start of a figure's title: which script, and whether in its ``--quick`` mode."""
    return f"{script} --quick" if quick else f"{script} (full run)"


def grouped_bars(ax: Any, groups: Sequence[str], series: dict[str, Sequence[float]],
                 fmt: str = "%.1f", log: bool = False) -> None:
    """One cluster of bars per entry of ``groups``, one bar per series, each labelled with its
    value (``fmt``; on a log axis, values below 1e-17, exact zeros included, are drawn at
    1e-17 and labelled with their true value)."""
    width = 0.8 / max(len(series), 1)
    lo, hi = 1.0, 1e-17
    for i, (name, values) in enumerate(series.items()):
        drawn = [max(v, 1e-17) for v in values] if log else list(values)
        lo, hi = min(lo, *drawn), max(hi, *drawn)
        bars = ax.bar([j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))],
                      drawn, width, label=name)
        ax.bar_label(bars, labels=[fmt % v for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(lo / 10, hi * 100)  # room for the labels above the tallest bar
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def save(plt: Any, fig: Any, path: str | Path) -> None:
    """Write ``fig`` to ``path`` (PNG at 90 dpi unless the suffix says otherwise) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    meta = {".png": {"Software": None}, ".svg": {"Date": None}}.get(path.suffix.lower())
    # (Pillow's formats, jpg to webp, refuse any metadata=, even an empty one)
    fig.savefig(path, dpi=90, bbox_inches="tight", **({"metadata": meta} if meta else {}))
    plt.close(fig)
    print(f"plot saved to {path}")
