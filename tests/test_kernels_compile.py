"""Every Triton kernel compiles for a Hopper GPU (sm_90) on this machine, with no GPU: Triton's
compiler and the ``ptxas`` shipped in its wheel turn each kernel into a cubin here.

The kernel tests run the kernels in Triton's interpreter, which runs plain Python: code the
interpreter accepts can still fail to compile (a return inside a branch, mixed integer types,
a non-constexpr shape). A GPU is lent to this project rarely and briefly, so a kernel that
does not compile would cost that time; this test costs seconds.

Each kernel is compiled in both layouts (``CL``) and both index widths (``I64``), with the
constexpr values the library's calls use. Under ``TRITON_INTERPRET=1`` (``make test``) every
kernel is an interpreted function with nothing to compile: the last test then runs this file
again in a process without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="needs triton (pip install -e '.[triton]')")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from equilayers.kernels import _triton as T  # noqa: E402

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
compiles = pytest.mark.skipif(_INTERPRET, reason=(
    "TRITON_INTERPRET=1 makes every kernel an interpreted function; "
    "test_kernels_compile_without_the_interpreter runs this file again without it"))

_F, _I, _L, _D = "*fp32", "*i32", "*i64", "*fp64"
_SEP = {"src": _F, "out": _F, "taps": _I, "wts": _F}
_BWD = {"x": _F, "g": _F, "gx": _F, "taps": _I, "wts": _F}
_FLAT = {"I64": (False, True), "CL": (False, True)}

# kernel, its pointer arguments, constexprs (besides the launch's BLOCK, I64, CL)
KERNELS = [
    (T._sep_gather, _SEP, {"KA": 3, "KB": 3}),
    (T._sep_gather, _SEP, {"KA": 2, "KB": 2}),  # the backward's transposed taps
    (T._max_blur_fwd, _SEP, {"MK": 2, "PAD": 0, "KA": 3, "KB": 3}),
    (T._max_blur_fwd, _SEP, {"MK": 3, "PAD": 1, "KA": 3, "KB": 3}),  # a ResNet stem's pool
    (T._max_blur_bwd, _BWD, {"MK": 2, "PAD": 0, "MA": 2, "MB": 2}),
    (T._max_blur_bwd, _BWD, {"MK": 3, "PAD": 1, "MA": 2, "MB": 2}),
    (T._phase_gather, {"src": _F, "out": _F, "index": _L}, {"S": 2}),
    (T._phase_scatter, {"g": _F, "gx": _F, "index": _L}, {"S": 2}),
]


def _compile(fn, pointers: dict, constexprs: dict, warps: int = 4):
    names = fn.arg_names
    signature = {n: "constexpr" if n in constexprs else pointers.get(n, "i32") for n in names}
    try:
        src = ASTSource(fn=fn, signature=signature,
                        constexprs={(names.index(k),): v for k, v in constexprs.items()})
    except TypeError as exc:  # an older Triton's ASTSource takes other arguments
        pytest.skip(f"Triton {triton.__version__}'s ASTSource differs ({exc}); this test "
                    "follows Triton >= 3.3")
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": warps, "enable_fp_fusion": True})  # as _launch


def _cubin(kernel) -> bytes:
    return kernel.asm.get("cubin", b"")


@pytest.fixture(scope="module", autouse=True)
def _needs_the_cuda_backend():
    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip(f"this Triton ({triton.__version__}) has no NVIDIA backend to compile with")


@compiles
@pytest.mark.parametrize("i64", _FLAT["I64"])
@pytest.mark.parametrize("cl", _FLAT["CL"])
@pytest.mark.parametrize("kernel", range(len(KERNELS)))
def test_kernel_compiles_for_sm90(kernel, cl, i64):
    fn, pointers, constexprs = KERNELS[kernel]
    compiled = _compile(fn, pointers, {**constexprs, "CL": cl, "BLOCK": 256, "I64": i64})
    assert len(_cubin(compiled)) > 1000


@compiles
@pytest.mark.parametrize("order", [2, 1, 0])
def test_polyphase_norms_compile_for_sm90(order):
    compiled = _compile(T._phase_norms, {"src": _F, "part": _D},
                        {"S": 2, "ORD": order, "CL": False, "BLOCK": 256, "ITERS": 8})
    assert len(_cubin(compiled)) > 1000


@compiles
def test_every_launch_in_the_table_compiles():
    """The shipped launches (``LAUNCH``: BLOCK and warps per kernel and layout) compile; the
    int32 index makes smaller code than the int64 one (the point of ``I64``)."""
    for kind, pairs in T.LAUNCH.items():
        for block, warps in pairs:
            assert block & (block - 1) == 0 and warps in (1, 2, 4, 8, 16), (kind, block, warps)
    small = _compile(T._sep_gather, _SEP, {"KA": 3, "KB": 3, "CL": False, "BLOCK": 256,
                                           "I64": False})
    wide = _compile(T._sep_gather, _SEP, {"KA": 3, "KB": 3, "CL": False, "BLOCK": 256,
                                          "I64": True})
    assert len(_cubin(small)) < len(_cubin(wide))


@compiles
def test_a_kernel_that_does_not_compile_fails_here():
    """Negative control: a kernel the interpreter runs (a block size read from a run-time
    argument: plain numpy there) is refused by the compiler, so this file can fail."""
    import triton.language as tl

    @triton.jit
    def bad(out, n):
        idx = tl.arange(0, n)
        tl.store(out + idx, idx)

    with pytest.raises(Exception, match="constexpr"):
        _compile(bad, {"out": "*i32"}, {})


def test_kernels_compile_without_the_interpreter():
    """Under TRITON_INTERPRET=1 (make test) the tests above run in a fresh process without it
    (its failures are this test's); without the variable they have run in this one."""
    if not _INTERPRET:
        pytest.skip("no TRITON_INTERPRET here: the tests above compiled in this process")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:randomly", __file__], env=env, capture_output=True,
                         text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # every compile test ran there (only this one skips: the subprocess has no TRITON_INTERPRET)
    assert " passed, 1 skipped" in out.stdout.splitlines()[-1], out.stdout
