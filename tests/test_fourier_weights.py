"""The group axis of regular -> regular group-conv weights lives in the group's Fourier basis
(``equilayers.groups.group_fourier_basis``): the basis is orthonormal and adapted to the irreps,
the layers equal the per-element definition through it, and equilayers 0.1.0 checkpoints (one
slot per element) are converted on load."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from equilayers.functional import expand_group_filter
from equilayers.functional._gconv import from_fourier
from equilayers.groups import act, get, group_fourier_basis, harmonic_matrix
from equilayers.nn import GroupConv2d

GROUPS = ["c1", "c2", "c3", "c4", "c5", "c8", "d1", "d2", "d3", "d4", "d5", "d8"]


@pytest.mark.parametrize("group", GROUPS)
def test_orthonormal_and_adapted_to_the_irreps(group):
    """Orthonormal rows, each a matrix coefficient of one irrep: under a rotation r the span
    of each irrep's rows is invariant (translating a row by r stays in its block)."""
    grp = get(group)
    f = group_fourier_basis(grp)
    n = int(grp.order)
    torch.testing.assert_close(f @ f.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(f[0], torch.full((n,), n ** -0.5, dtype=torch.float64))
    # the left translation by any element u permutes the columns; the rows of one irrep
    # span an invariant subspace, so the translated basis is block-diagonal in this basis
    for u in grp.elements():
        perm = torch.tensor([(u.inverse() * h).index for h in grp.elements()])
        m = f[:, perm] @ f.T
        blocks = _irrep_blocks(grp)
        mask = torch.zeros(n, n, dtype=torch.bool)
        for lo, hi in blocks:
            mask[lo:hi, lo:hi] = True
        assert m[~mask].abs().max() < 1e-12 if (~mask).any() else True


def _irrep_blocks(grp) -> list[tuple[int, int]]:
    """Row ranges of one irrep's matrix coefficients, in group_fourier_basis order."""
    out, i = [(0, 1)], 1
    if grp.reflections:
        out.append((1, 2))
        i = 2
    per = 4 if grp.reflections else 2
    for _ in range(1, (grp.n - 1) // 2 + 1):
        out.append((i, i + per))
        i += per
    if grp.n % 2 == 0:
        out += [(i, i + 1)] + ([(i + 1, i + 2)] if grp.reflections else [])
    return out


def test_continuous_group_has_no_fourier_basis():
    with pytest.raises(ValueError, match="continuous"):
        group_fourier_basis("so2")


def test_harmonic_matrix_agrees_with_the_2d_irreps():
    """For D_N the order-m rows are rho_m(g)'s entries (the harmonic action of our fibers)."""
    grp = get("d8")
    f = group_fourier_basis(grp)
    rho = torch.stack([harmonic_matrix(g, 1)[1:, 1:].reshape(-1) for g in grp.elements()]).T
    q = torch.linalg.qr(rho.T)[0]  # the span of the order-1 matrix coefficients
    torch.testing.assert_close(f[2:6] @ q @ q.T, f[2:6], rtol=0, atol=1e-14)


@pytest.mark.parametrize("group", ["c4", "d4", "c8"])
def test_layer_equals_per_element_definition(group, gen):
    """GroupConv2d's filter is g . w[o, c] per output slot, with w the per-element weight
    ``F^T weight``: the per-element definition of a group conv."""
    kw = {} if group in ("c4", "d4") else {"basis": "harmonic"}
    m = GroupConv2d(2, 3, 3, group=group, **kw).double()
    grp = get(group)
    if m.basis == "pixel":
        per_element = from_fourier(m.weight, group_fourier_basis(grp))
        e = m.expanded_filter().reshape(3, grp.order, 2, grp.order, 3, 3)
        for i, g in enumerate(grp.elements()):
            torch.testing.assert_close(e[:, i], act(per_element, g, "regular"), rtol=0,
                                       atol=1e-15)
        torch.testing.assert_close(expand_group_filter(m.weight, grp), m.expanded_filter())
    else:  # the public dense basis holds the same parametrization
        from equilayers.functional import expand_steerable, steerable_basis
        dense = steerable_basis(group, "regular", "regular", 3, dtype=torch.float64)
        torch.testing.assert_close(expand_steerable(m.weight, dense), m.expanded_filter(),
                                   rtol=0, atol=1e-13)


@pytest.mark.parametrize("kw", [{"group": "p4"}, {"group": "d4"},
                                {"group": "c8"}, {"group": "c4", "basis": "harmonic"}])
def test_version1_checkpoint_is_converted_on_load(kw, gen):
    """A state dict saved by equilayers 0.1.0 (metadata version 1, one slot per element,
    unit-norm steerable elements) loads into the same filter; a version-2 state dict loads
    unchanged. Harmonic-field convs (no group axis) get the element norms only."""
    new = GroupConv2d(2, 3, 3, padding=1, **kw).double()
    sd = new.state_dict()
    old = OrderedDict((k, v.clone()) for k, v in sd.items())
    old._metadata = {"": {"version": 1}}  # what 0.1.0 wrote
    if new.basis == "pixel":  # 0.1.0's layout: one slot per element
        old["weight"] = from_fourier(sd["weight"], group_fourier_basis(kw["group"]).double())
    else:  # 0.1.0: unit-norm elements, one slot per element
        g = int(get(kw["group"]).order)
        w = (sd["weight"] * new._irrep_scale()).unflatten(-1, (g, -1))
        old["weight"] = from_fourier(w, group_fourier_basis(kw["group"]).double()).flatten(-2)
    other = GroupConv2d(2, 3, 3, padding=1, **kw).double()
    other.load_state_dict(old)
    torch.testing.assert_close(other.weight, new.weight, rtol=0, atol=1e-14)
    again = GroupConv2d(2, 3, 3, padding=1, **kw).double()
    again.load_state_dict(sd)  # version 2: no conversion
    assert torch.equal(again.weight, new.weight)
    assert sd._metadata[""]["version"] == 2
    torch.testing.assert_close(other.expanded_filter(), new.expanded_filter(), rtol=0,
                               atol=1e-13)


def test_version1_harmonic_checkpoint_is_converted_on_load():
    new = GroupConv2d(2, 3, 5, padding=2, group="so2", max_order=2).double()
    sd = new.state_dict()
    old = OrderedDict((k, v.clone()) for k, v in sd.items())
    old._metadata = {"": {"version": 1}}
    old["weight"] = sd["weight"] * new._irrep_scale()  # 0.1.0: unit-norm elements
    other = GroupConv2d(2, 3, 5, padding=2, group="so2", max_order=2).double()
    other.load_state_dict(old)
    torch.testing.assert_close(other.expanded_filter(), new.expanded_filter(), rtol=0,
                               atol=1e-13)


def test_fourier_basis_of_a_registered_group_is_a_named_error():
    """A group registered by the user has no Fourier basis here (its irreps are not written):
    a ValueError that names the group and says which groups have one (not an AttributeError
    from the planar internals); its weights keep one slot per element. The cube's groups
    have one (tests/test_fourier_weights3d.py)."""
    from test_group_interface import FlipY

    from equilayers.groups import register_group
    from equilayers.groups._fourier_basis import weight_basis

    with register_group(r"flip(y|x)", lambda axis: FlipY() if axis == "y" else None,
                        form="'flipy'"):
        with pytest.raises(ValueError, match="group='flipy' has no Fourier basis"):
            group_fourier_basis("flipy")
        assert torch.equal(weight_basis("flipy"), torch.eye(2, dtype=torch.float64))
    assert group_fourier_basis("c4").shape == (4, 4)  # control: these have one
    assert group_fourier_basis("o").shape == (24, 24)


@pytest.mark.parametrize("kw", [{"group": "p4"}, {"group": "d4"}, {"group": "c8"},
                                {"group": "c4", "basis": "harmonic"},
                                {"group": "so2", "max_order": 2}])
def test_state_dict_without_metadata_loads_unchanged(kw):
    """A dict rebuilt from ``state_dict()`` (stripping DDP's ``module.`` prefix, say) has no
    ``_metadata``; it is this version's and loads unchanged. The control: the same dict with
    metadata version 1 is converted (so the test can tell the two apart)."""
    a = GroupConv2d(2, 3, 5, padding=2, **kw).double()
    plain = {k.removeprefix("module."): v for k, v in a.state_dict().items()}
    assert not hasattr(plain, "_metadata")
    b = GroupConv2d(2, 3, 5, padding=2, **kw).double()
    b.load_state_dict(plain)
    assert torch.equal(b.weight, a.weight)
    old = OrderedDict(plain)
    old._metadata = {"": {"version": 1}}
    c = GroupConv2d(2, 3, 5, padding=2, **kw).double()
    c.load_state_dict(old)
    assert not torch.equal(c.weight, a.weight)


@pytest.mark.parametrize("group", ["c4", "d4", "c5"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_fourier_is_the_einsum_over_the_group_axis(group, dtype, gen):
    """``from_fourier`` (one broadcast ``bmm`` on a view, for less host work per call) equals
    the contraction it replaced, ``einsum("abkde,kz->abzde")``, to float rounding, on a pixel
    weight (5-D, any dim), on a non-contiguous (channels_last-converted) weight and on the
    steerable ``(C_out, C_in, |G|, J)`` view; its output is contiguous (the gather that follows
    reads it through a view). The control: contracting ``F`` the other way (``F`` for ``F^T``,
    a different map for every group but c1/c2/d1) is far from it."""
    grp = get(group)
    n = int(grp.order)
    f = group_fourier_basis(grp).to(dtype)
    w = torch.randn(3, 2, n, 3, 3, generator=gen, dtype=dtype)
    want = torch.einsum("abkde,kz->abzde", w, f)
    got = from_fourier(w, f)
    tol = {"rtol": 0, "atol": 1e-5 if dtype == torch.float32 else 1e-12}
    torch.testing.assert_close(got, want, **tol)
    assert got.is_contiguous() and got.shape == w.shape
    # a weight through other strides (model.to(memory_format=torch.channels_last))
    strided = w.reshape(3, 2 * n, 3, 3).to(memory_format=torch.channels_last).view(w.shape)
    assert not strided.is_contiguous()
    torch.testing.assert_close(from_fourier(strided, f), want, **tol)
    # another dim, and a float64 basis for a float32 weight (cast to the weight's dtype)
    w4 = torch.randn(2, 3, n, 5, generator=gen, dtype=dtype)
    torch.testing.assert_close(from_fourier(w4, f.double()),
                               torch.einsum("abkj,kz->abzj", w4, f), **tol)
    w_first = torch.randn(n, 4, generator=gen, dtype=dtype)
    torch.testing.assert_close(from_fourier(w_first, f, dim=0), f.t() @ w_first, **tol)
    # the control: the transpose of the basis gives other filters
    assert (torch.einsum("abkde,zk->abzde", w, f) - want).abs().max() > 0.1


def test_a_checkpoint_of_a_newer_version_is_refused_by_name():
    """A state dict whose metadata names a newer parametrization loaded as this version's and
    computed something else silently (what a version-2 checkpoint did in version-1 code, 0.25-2.1
    off); it is refused, naming the module and both versions. Its own version (the control),
    and the metadata kept by torch's prefix helper, load."""
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    from equilayers.nn import GroupConv3d, HarmonicBatchNorm

    for make, version in ((lambda: GroupConv2d(2, 3, 3, group="p4"), 3),
                          (lambda: GroupConv3d(1, 1, 3, group="c4z"), 4),
                          (lambda: HarmonicBatchNorm(2, 1), 3)):
        sd = make().state_dict()
        newer = OrderedDict(sd)
        newer._metadata = {"": {"version": version}}
        with pytest.raises(RuntimeError, match=f"saved by a newer equilayers: .* version "
                                               f"{version}'s form.* up to version {version - 1}"):
            make().load_state_dict(newer)
        make().load_state_dict(sd)
        wrapped = OrderedDict((f"module.{k}", v) for k, v in sd.items())
        wrapped._metadata = {f"module.{k}" if k else "module": v
                             for k, v in sd._metadata.items()}
        consume_prefix_in_state_dict_if_present(wrapped, "module.")
        assert wrapped._metadata[""]["version"] == version - 1


def test_a_whole_model_pickled_before_the_stamp_warns():
    """An older whole-model pickle is not converted, and its ``state_dict()`` was stamped with
    this version over its older weights (1.7 off when loaded elsewhere): unpickling one from
    before the stamp warns; today's pickles, deep copies and torch.save round trips do not."""
    import copy
    import io
    import warnings

    from equilayers.nn import GroupConv3d

    for m in (GroupConv2d(2, 2, 3, group="p4"), GroupConv3d(1, 1, 3, group="o")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            buf = io.BytesIO()
            torch.save(m, buf)
            buf.seek(0)
            torch.load(buf, weights_only=False)
            copy.deepcopy(m)
        state = m.__getstate__()
        del state["_pickled_version"]  # what a pickle from before the stamp holds
        old = type(m).__new__(type(m))
        with pytest.warns(UserWarning, match="pickled whole by an equilayers older"):
            old.__setstate__(state)
        with pytest.warns(UserWarning, match="older than"):  # saved again: still unknown
            copy.deepcopy(old)
        state["_pickled_version"] = type(m)._version - 1  # another parametrization's
        older = type(m).__new__(type(m))
        with pytest.warns(UserWarning, match=f"in parametrization version {type(m)._version - 1}"):
            older.__setstate__(state)
        # its state dict says so, and load_state_dict converts it (a control: today's says 2/3)
        assert older.state_dict()._metadata[""]["version"] == type(m)._version - 1
        assert m.state_dict()._metadata[""]["version"] == type(m)._version
        with pytest.warns(UserWarning, match="in parametrization version"):
            copy.deepcopy(older)


@pytest.mark.parametrize("group", ["c1", "d1", "c3", "c4", "d4", "d6", "c8"])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_regular_element_norms_without_the_dense_basis(group, lifting):
    """The regular basis elements' scales were read off the dense ``|G|^3 J k^2`` basis (9 s and
    3.7 GB to build a d16 k11 layer of any width); they are computed from the compact table.
    The oracle: the energies of the dense basis's elements in each output Fourier row."""
    from equilayers.functional import _steerable as S
    from equilayers.functional._steerable import irrep_scale
    from equilayers.groups._fourier_basis import fourier_row_dims

    grp = get(group)
    table = S._cached(grp, "trivial", "regular", 5, 0, 0, None)
    dense = S._regular_basis(grp, table, lifting, torch.float64, "cpu")
    rows = group_fourier_basis(grp) @ dense.transpose(0, 1).reshape(dense.shape[1], -1)
    energy = rows.reshape(dense.shape[1], dense.shape[0], -1).square().sum(2).t()
    want = ((energy @ fourier_row_dims(grp).double()) / energy.sum(1)).sqrt()
    got = irrep_scale(group, "trivial" if lifting else "regular", "regular", 5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (want - 1).abs().max() > 0.1 or grp.order <= 2  # the scales are not all one


@pytest.mark.parametrize("group", ["c1", "c2", "c5", "c6", "d1", "d2", "d5", "d6", "o", "oh",
                                   "t", "th", "c4z", "d4z", "ico", "ih"])
def test_isotypic_row_blocks_are_the_irreps(group):
    """Each block of Fourier rows spans one real irrep's isotypic part: its projector
    ``Q = F_b^T F_b`` commutes with the left and right regular actions (a union of isotypic
    parts) and no finer split of a block does (minimal: the block's own irreducible part);
    control: a block cut in two is not invariant."""
    from equilayers.groups._fourier_basis import isotypic_row_blocks

    grp = get(group)
    n, table = int(grp.order), grp.cayley_table
    rows = group_fourier_basis(grp)

    def invariant(q: torch.Tensor) -> bool:
        return all(torch.allclose(q[table[h]][:, table[h]], q, atol=1e-12)
                   and torch.allclose(q[table[:, h]][:, table[:, h]], q, atol=1e-12)
                   for h in range(n))

    sizes = isotypic_row_blocks(grp)
    assert sum(sizes) == n
    for part in rows.split(sizes):
        q = part.T @ part
        assert invariant(q)
        # minimal: the centre of the block's algebra, the class functions in it, is spanned by
        # its own idempotent (a merged pair of irreps would hold two independent ones)
        c = q[:, 0]
        classes = {tuple(sorted({int(table[table[h, i], (table[h] == 0).nonzero()])
                                 for h in range(n)})) for i in range(n)}
        central = torch.stack([q @ torch.zeros(n, dtype=torch.float64).index_fill_(
            0, torch.tensor(cls), 1.0) for cls in classes])
        assert torch.linalg.matrix_rank(central) <= (2 if part.shape[0] == 2 else 1)
        assert torch.allclose(q @ c, c)
        if part.shape[0] > 1:
            half = part[: part.shape[0] // 2]
            assert not invariant(half.T @ half)
