"""3-D Tetris: an octahedral CNN on voxels, trained in one orientation, tested rotated.

The eight shapes of Thomas et al. (2018), four cubes each (two of them mirror images), rendered
on an 11^3 grid (the data of the tetris benchmark, ``benchmarks/bench_tetris.py``; procedural,
nothing downloaded). An octahedral model (``LiftingConv3d`` / ``GroupConv3d`` with
``group="o"``: regular fields of the cube's 24 rotations, voxel filters), the same with
band-limited filters (``basis="harmonic"``) and a plain 3-D CNN of about the same parameter
count train on the eight upright shapes. The octahedral models are exactly invariant to the
cube's 24 rotations (checked in float64 with ``equilayers.testing.invariance_error``, before
and after training), so they classify the shapes turned by them as well as upright ones;
under uniformly random 3-D rotations all are approximate, and the benchmark's table
(``benchmarks/results/cpu-tetris.md``) has the accuracies over 3 seeds, with SO(3) steerable
and escnn models beside them.

    python examples/tetris3d.py          # about a minute on one CPU thread
    python examples/tetris3d.py --quick  # seconds (CI)
    python examples/tetris3d.py --plot tetris.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from equilayers import check_grid
from equilayers.testing import invariance_error

# The data and models are the benchmark's; `python examples/NAME.py` puts examples/ on sys.path,
# not the repository root that holds benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _plot import grouped_bars, pyplot, run_label, save  # noqa: E402

from benchmarks.bench_tetris import (  # noqa: E402
    accuracy,
    dataset,
    matched_width,
    n_params,
    octahedral_cnn,
    octahedral_harmonic_cnn,
    plain_cnn,
    train_and_test,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (CI)")
    parser.add_argument("--plot", metavar="PATH", help="also write a bar chart of the results "
                        "(needs matplotlib)")
    args = parser.parse_args()
    plt = pyplot(args.plot) if args.plot else None
    torch.set_num_threads(1)
    steps, rotations = (5, 4) if args.quick else (150, 32)
    data = dataset("tetris", copies=1, test_rotations=rotations)
    x, _ = data["upright"]
    size = x.shape[-1]

    torch.manual_seed(0)
    octa = octahedral_cnn(2, 8)
    plain = plain_cnn(matched_width("plain 3-D CNN", n_params(octa), 8), 8)
    smooth = octahedral_harmonic_cnn(
        matched_width("octahedral (O), harmonic basis", n_params(octa), 8), 8)
    print(f"octahedral model: {n_params(octa):,} parameters; with band-limited filters: "
          f"{n_params(smooth):,}; plain 3-D CNN: {n_params(plain):,}")
    # zero padding: circular shifts are not exact at the borders (the shapes sit inside)
    findings = [f for f in check_grid(octa, (1, 1, size, size, size), "o")
                if f.breaks != "shifts"]
    print(f"check_grid at {size}^3: {'no finding' if not findings else findings} for the "
          "rotations")

    def exactness(model):
        return invariance_error(copy.deepcopy(model).double().eval(), x.double(), "o")

    print(f"untrained: invariance error {exactness(octa):.1e} over the 24 rotations "
          "(float64)")
    results = {}
    models = (("plain 3-D CNN", plain), ("octahedral", octa), ("octahedral, harmonic", smooth))
    for name, net in models:
        t = time.perf_counter()
        r = results[name] = train_and_test(net, data, steps=steps, seed=0, batch=8)
        print(f"{name:>20}: accuracy upright {100 * r['upright']:.1f}%, under the cube's 24 "
              f"rotations {100 * r['cube']:.1f}%, under random rotations "
              f"{100 * r['random']:.1f}% ({time.perf_counter() - t:.0f} s)")
    print(f"trained:   invariance error {max(exactness(octa), exactness(smooth)):.1e} over the "
          "24 rotations (float64)")
    for net in (octa, smooth):
        assert accuracy(net, *data["cube"]) == accuracy(net, *data["upright"])
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7.0, 3.0))
        grouped_bars(ax, ["upright", "the cube's 24 rotations",
                          f"random 3-D rotations\n({rotations} per shape)"],
                     {f"{name} ({n_params(net):,} parameters)":
                      [100 * results[name][k] for k in ("upright", "cube", "random")]
                      for name, net in models})
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 112)
        ax.set_title(f"{run_label('tetris3d.py', args.quick)}: the 8 shapes on "
                     f"{size}^3 voxels, trained upright, {steps} steps (batch 8), seed 0",
                     fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
