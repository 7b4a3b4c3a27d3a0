"""The Args, Shape and Equivariance sections shared by the docstrings of ``LiftingConv2d`` and
``GroupConv2d``."""

SHARED_DOC = """
    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as ``nn.Conv2d`` (``kernel_size`` square; ``padding`` an
            int, a pair, ``"same"`` or ``"valid"``; ``padding_mode`` ``"zeros"``,
            ``"reflect"``, ``"replicate"`` or ``"circular"``). Channels count *fields*.
        group: ``"cN"``/``"dN"`` for any N (``"p4"`` = c4, ``"p4m"`` = d4), ``"so2"``,
            ``"o2"`` or a :class:`~equilayers.groups.Group`.
        basis: ``"pixel"``: full ``k x k`` filters (the GrouPy function class; c1, c2, c4,
            d1, d2, d4 only, their default). ``"harmonic"``: filters in the closed-form
            steerable basis (:func:`~equilayers.functional.steerable_basis`: circular
            harmonics on Gaussian rings), weight ``(C_out, C_in // groups, num_basis)``; any
            group, the default and only option for the others, any ``kernel_size`` (an even
            one is sampled around the point between the four middle pixels, as escnn's). For
            c4/d4 it is band-limited and has fewer parameters than ``"pixel"``.
        max_order: ``M``: harmonic output fields ``[a_0, c_1, s_1, ..., c_M, s_M]`` (``2M+1``
            slots). Required for so2/o2; for cN/dN it selects harmonic instead of regular
            fields (needs ``basis="harmonic"``).
        in_max_order: (group conv only) the order of the harmonic input fields, default
            ``max_order``.
        sigma, frequencies_cutoff, rings: (keyword-only, ``basis="harmonic"``, which they
            select by default) the steerable basis settings of escnn's ``R2Conv``, same meaning
            (:func:`~equilayers.functional.steerable_basis`): ring widths, the largest angular
            frequency per ring (``c``: ``|f| <= c * radius``; a callable radius -> frequency,
            stored as its per-ring values; a list, one per ring) and the ring radii in filter
            taps. ``None``: the default (escnn's for ``k <= 7``). An empty basis raises.

    Bias: one value per output field, on every slot of a regular field and on the order-0
    slot of a harmonic field (a constant on the other orders would not rotate).

    Shape:
        ``H' = floor((H + pad_top + pad_bottom - dilation * (k - 1) - 1) / stride) + 1``,
        the same for ``W'`` (as ``nn.Conv2d``); the fiber ``F`` is ``|G|`` (``N`` for cN,
        ``2N`` for dN) for regular fields and ``2M+1`` for harmonic ones.

    Equivariance:
        Exact (float rounding: measured up to 5e-7 relative in float32, 3e-15 in float64, at
        16-128 channels and k 3-5) for every element of the group's grid subgroup (rotations
        by multiples of 90 degrees and flips it contains: all of c1..d4; c4 of c8/so2, d4 of
        d8/o2, c2 of c6, ...) whenever each flipped dim has symmetric padding and
        ``(n + 2*padding - dilation*(k-1) - 1) % stride == 0`` (for 90-degree rotations also
        the same options on both dims; the sizes may differ, a quarter turn maps ``H x W`` to
        ``W x H``); see
        :func:`equilayers.functional.exactness_problems`. Stride 2 on an even size, or
        ``"same"`` with an even kernel, breaks it: the first such forward warns, once per
        module. Other rotations (45 degrees for c8, any angle for so2) are approximate: the
        filters are exact rotations of continuous functions, but images are sampled on the
        grid (measured errors: docs/layers/steerable.md, "Measured"). Cost: one
        ``F.conv2d`` with the expanded filter, plus (steerable basis) per training forward one
        matmul of the weight with the basis (regular fields: a gather of the weight through
        the group's inverse Cayley table and one batched matmul with the ``|G|`` rotated
        copies of the basis functions, held compactly as ``(|G|, J, k, k)``).
"""
