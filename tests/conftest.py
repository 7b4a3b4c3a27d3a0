import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch

from equilayers._rng import global_rng_from

ROOT = Path(__file__).parents[1]

# Under pytest-xdist (``make test`` runs ``-n auto``) each worker's torch gets its share of the
# cores: two workers of two intra-op threads each on two cores oversubscribe them.
if (_workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT")) is not None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, int(_workers))))


def seeded_rng(seed: int = 0) -> AbstractContextManager[torch.Generator]:
    """``with seeded_rng(seed):`` the block's global-RNG draws (``torch.nn``'s initialisers,
    ``torch.randn`` without ``generator=``) come from a generator seeded with ``seed``, and
    the global RNG is left as it was: how a test builds the same module twice."""
    return global_rng_from(torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _global_rng():
    """Every test starts from the global RNG state of seed 0 (drawn from a generator, see
    ``seeded_rng``) and leaves the global RNG as it found it: a test gives the same numbers
    alone or in any order, and no test seeds the global RNG itself."""
    with seeded_rng(0):
        yield


@pytest.fixture
def interpret(monkeypatch):
    """Let CPU tensors take the Triton kernel path (Triton's interpreter); no-op on CUDA."""
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)


@pytest.fixture
def unwritable_dir(tmp_path, monkeypatch):
    """A folder that ``os.access(..., os.W_OK)`` calls unwritable (a chmod does not restrict
    root, which runs CI here; the commands check writability through ``os.access``)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve() == folder.resolve():
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return folder


@pytest.fixture(autouse=True)
def _group_registry():
    """Group names a test registers (``register_group``) are unregistered after it."""
    from equilayers.groups import _registry

    saved = list(_registry._ENTRIES)
    yield
    if _registry._ENTRIES != saved:
        _registry._ENTRIES[:] = saved
        _registry._lookup.cache_clear()


#: The switches the dispatcher reads per call: a test that leaks one changes every later test
#: (one import of benchmarks.host_overhead ran the rest of the suite through Triton's
#: interpreter, the demo test for 13 minutes instead of one).
_SWITCHES = ("EQUILAYERS_TRITON_INTERPRET", "EQUILAYERS_DISABLE_TRITON", "TRITON_INTERPRET")


@pytest.fixture(autouse=True)
def _dispatch_switches():
    """Every test leaves the dispatcher's environment switches as it found them (set them with
    ``monkeypatch.setenv``, as the ``interpret`` fixture does, which puts them back)."""
    saved = {k: os.environ.get(k) for k in _SWITCHES}
    yield
    leaked = {k: os.environ.get(k) for k in _SWITCHES if os.environ.get(k) != saved[k]}
    for k, v in saved.items():  # put back first, so one leak fails one test only
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert not leaked, f"the test changed the dispatcher's environment switches: {leaked}"


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded generator: tests draw their randomness from it, never from global state."""
    return torch.Generator().manual_seed(1234)


def doc_code(path: str, section: str) -> str:
    """The first ```python block of the ``## section`` or ``### section`` of a Markdown file.

    ``path`` is relative to the repository root (``"docs/layers/antialias.md"``); the section
    ends at the next heading of the same or a higher level.
    """
    text = (ROOT / path).read_text()
    for level in ("##", "###"):
        head = f"\n{level} {section}\n"
        if head in text:
            body = text.split(head, 1)[1]
            for stop in ("\n## ", "\n### ")[: len(level) - 1]:
                body = body.split(stop, 1)[0]
            break
    else:
        raise ValueError(f"{path} has no ## or ### section titled {section!r}")
    if "```python\n" not in body:
        raise ValueError(f"section {section!r} of {path} has no ```python block")
    return body.split("```python\n", 1)[1].split("```", 1)[0]


def per_sample_grads_by_loop(loss, xb: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss`` at each sample of ``xb`` by autograd, one sample at a time
    (the reference for ``torch.func.vmap(torch.func.grad(loss))(xb)``)."""
    out = []
    for v in xb:
        leaf = v.clone().requires_grad_(True)
        out.append(torch.autograd.grad(loss(leaf), leaf)[0])
    return torch.stack(out)


def assert_case_result(case, result, where: str = "") -> None:
    """A shared-table case's verdict: a negative control must fail (its error above
    ``fail_above``), every other case pass (its error within its tolerance); ``where`` names
    the device or setting in the message."""
    at = f" {where}" if where else ""
    if case.expect == "fail":
        assert result.passed, (f"negative control {case.name} passed the harness{at}: error "
                               f"{result.error:.3g} <= {case.fail_above:g}")
    else:
        assert result.passed, (f"{case.name}{at}: error {result.error:.3g} at {result.worst} "
                               f"exceeds {case.tolerance():g} (floor {result.floor:.3g})")
