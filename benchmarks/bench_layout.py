"""Every fast path of the kernel ops, and their references, per memory layout and size: the
measurements behind the layout table (``equilayers/kernels/_layout_table.py``).

For each op of the table with fast paths on the device (``blur_pool2d`` at its default
arguments and with zero padding, as kornia's ``BlurPool2D``; ``max_blur_pool2d`` at its
defaults and as ``antialias()`` converts a ResNet stem's ``MaxPool2d(3, 2, 1)``;
``polyphase_pool2d`` at its defaults), each layout the table keys (contiguous and channels_last
``(B, 64, H, W)``; contiguous ``(B, 16, 4, H, W)`` group maps and the channels_last view of a
group conv's output) and each size from 28 to 224 px (the batch shrinking so every input holds
6.4M floats: b128 at 28, b32 at 56, b8 at 112, b2 at 224), one row per path: each fast path
called directly, and the reference (inside ``use_reference()``). Floor: the op's default
path, so ``x floor`` is the speed-up of choosing another; bandwidth floor (``x bw``):
``x[..., ::2, ::2].clone()`` on the same tensor.

``python -m benchmarks --family layout --device cpu --write-table`` times them and writes the
table: per (op, device, layout, size bucket, arguments) and per pass (forward;
forward+backward), the fastest path, keeping the default unless another is more than
:data:`MARGIN` faster (a tie in one run is noise, not a reason to switch).
"""

from __future__ import annotations

import ast
import datetime
import json
from pathlib import Path

import torch

from ._core import BenchCase, Subsample, seeded_input

FAMILY = "layout"
#: A path other than the default is chosen only when it is at least this much faster.
MARGIN = 0.05

#: (op, short name, keyword arguments) of the measured calls.
CALLS = [
    ("blur_pool2d", "k3 reflect", {}),
    ("blur_pool2d", "k3 zeros", {"padding_mode": "zeros"}),
    ("max_blur_pool2d", "2x2 k3 reflect", {}),
    ("max_blur_pool2d", "3x3 p1 k3 reflect", {"kernel_size": 3, "padding": 1}),
    ("max_blur_pool2d", "2x2 k3 zeros", {"padding_mode": "zeros"}),  # kornia's padding
    ("polyphase_pool2d", "l2", {}),
]
LAYOUTS = ("contiguous 4-D", "channels_last 4-D", "contiguous 5-D", "channels_last 5-D")
GROUP = 4  # the fiber of the 5-D group maps (C4), 64 channels = 16 fields x 4


def sizes(quick: bool) -> list[tuple[int, int, int]]:
    """(batch, channels, size): 6.4M floats per input (quick: a few thousand)."""
    if quick:
        return [(2, 8, 28), (1, 8, 56)]
    return [(128, 64, 28), (32, 64, 56), (8, 64, 112), (2, 64, 224)]


def make_input(layout: str, b: int, c: int, n: int, device=None) -> torch.Tensor:
    """The seeded ``(b, c, n, n)`` input in ``layout`` (5-D: ``(b, c / 4, 4, n, n)``)."""
    x = seeded_input(b, c, n, device)
    if layout.startswith("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    return x.view(b, c // GROUP, GROUP, n, n) if layout.endswith("5-D") else x


def _path_fn(op_name: str, path: str, kwargs: dict):
    from equilayers import kernels
    from equilayers.kernels import get_op

    op = get_op(op_name)
    assert op is not None
    if path == "reference":
        def reference(x):
            with kernels.use_reference():
                return op.reference(x, **kwargs)
        return reference
    fast = next(p for paths in op.fast.values() for p in paths if p.name == path)
    return lambda x: fast.fn(x, **kwargs)


def cases(quick: bool) -> list[BenchCase]:
    from equilayers.kernels import get_op
    from equilayers.kernels._layout import arguments_key, layout_of, size_bucket

    out, inputs = [], {}
    for b, c, n in sizes(quick):
        for layout in LAYOUTS:
            tag = f"{layout} b{b} c{c} {n}x{n}"

            def make(build, key=(layout, b, c, n)):
                def _make(device=None):
                    if (key, device) not in inputs:  # one input per layout and size
                        inputs[key, device] = make_input(*key, device)
                        assert layout_of(inputs[key, device]) == key[0]
                    return build(), inputs[key, device]
                return _make

            bw = f"copy x[..., ::2, ::2] {tag}"
            out.append(BenchCase(bw, FAMILY, make(Subsample), backward=False,
                                 params={"layout": layout, "size": n}))
            for op_name, short, kwargs in CALLS:
                op = get_op(op_name)
                if op is None or "cpu" not in op.fast:
                    continue
                names = [p.name for p in op.fast["cpu"]]
                default = f"{op_name} {short} {names[0]} {tag}"
                for path in [*names, "reference"]:
                    params = {"op": op_name, "path": path, "default": names[0],
                              "layout": layout, "bucket": size_bucket(n, n),
                              "arguments": arguments_key(op, kwargs), "batch": b,
                              "channels": c, "size": n}
                    name = f"{op_name} {short} {path} {tag}"
                    fn = _path_fn(op_name, path, kwargs)
                    out.append(BenchCase(
                        name, FAMILY, make(lambda f=fn: f),
                        floor=None if name == default else default, bandwidth=bw,
                        params=params))
    return out


def choices(rows: list[dict], margin: float = MARGIN) -> dict:
    """The table entries the rows measure: ``{key: (choice, {path: ms})}`` per pass, the
    default kept unless another path is more than ``margin`` faster."""
    grouped: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        p = r.get("params", {})
        if r.get("family") != FAMILY or "op" not in p or r.get("status") != "ok":
            continue
        key = (p["op"], r["device"], p["layout"], p["bucket"], p["arguments"])
        grouped.setdefault(key, {})[p["path"]] = r
    table = {}
    for key, paths in grouped.items():
        default = next(iter(paths.values()))["params"]["default"]
        for pass_, field in (("forward", "forward_ms"), ("forward+backward", "fwd_bwd_ms")):
            times = {path: round(r[field], 3) for path, r in paths.items() if r.get(field)}
            if not times:
                continue
            best = min(times, key=lambda path: times[path])
            if default in times and times[default] <= times[best] * (1 + margin):
                best = default
            table[(*key, pass_)] = (best, times)
    return table


def render(measured: dict, source: str, machine: str) -> str:
    """The text of ``_layout_table.py`` holding ``measured``."""
    lines = [
        '"""The measured layout table of the kernel ops\' fast paths (see :mod:`._layout`).',
        "",
        "Written by ``python -m benchmarks --family layout --device cpu --write-table`` (the",
        "``benchmarks/bench_layout.py`` family): do not edit by hand. An absent entry keeps each",
        "op's default path. One entry per line (the file is exempt from the line length).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "#: Where the measurements behind the entries are recorded.",
        f"SOURCE = {json.dumps(source)}",
        "#: The machine, versions and date of the measurement.",
        f"MACHINE = {json.dumps(machine)}",
        "#: (op, device type, layout, size bucket, arguments, pass) -> (choice, {path: median "
        "ms}).",
        "MEASURED: dict[tuple[str, str, str, int, str, str], tuple[str, dict[str, float]]] = {",
    ]
    for key in sorted(measured, key=lambda k: (k[0], k[1], k[2], k[3], k[4], k[5])):
        choice, times = measured[key]
        op, device, layout, bucket, args, pass_ = (json.dumps(k) if isinstance(k, str) else k
                                                   for k in key)
        times_text = ", ".join(f"{json.dumps(name)}: {ms!r}" for name, ms in sorted(times.items()))
        lines.append(f"    ({op}, {device}, {layout}, {bucket}, {args}, {pass_}): "
                     f"({json.dumps(choice)}, {{{times_text}}}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _measured_in(path: Path) -> dict | None:
    """The ``MEASURED`` dict a layout table file holds, read as a literal (never run: a
    ``--table`` path may name any file), or ``None`` for a file that is not such a table."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "MEASURED" and node.value is not None):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def write_table(rows: list[dict], meta: dict, path: Path | None, source: str) -> Path:
    """Write the table the rows measure to ``path`` (default: the package's
    ``_layout_table.py``), keeping the entries of devices this run did not measure."""
    from equilayers.kernels import _layout_table

    path = Path(path) if path is not None else Path(_layout_table.__file__)
    measured = choices(rows)
    devices = {key[1] for key in measured}
    # the other devices' entries as the file holds them now: a run over two devices writes it
    # once per device, and the table imported at start-up lost the first device's fresh ones
    before = _measured_in(path) if path.is_file() else None
    kept = {k: v for k, v in (_layout_table.MEASURED if before is None else before).items()
            if k[1] not in devices}
    date = meta["date"][:10] if meta.get("date") else datetime.date.today().isoformat()
    machine = (f"{meta.get('device_name', '?')}, {meta.get('torch_threads', '?')} threads, "
               f"torch {meta.get('torch', '?')}, {date}")
    path.write_text(render({**kept, **measured}, source, machine))
    return path
