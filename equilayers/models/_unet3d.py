"""UNet3d: the encoder-decoder of :class:`~equilayers.models.UNet` on volumes, exactly
equivariant to the cube's symmetries on its grid."""

from __future__ import annotations

from ..groups import GroupLike
from ._unet import _UNetNd

__all__ = ["UNet3d"]


class UNet3d(_UNetNd):
    """A U-Net of 3-D group convolutions: per-voxel logits that rotate, flip and shift with the
    volume.

    The 3-D twin of :class:`~equilayers.models.UNet`: ``depth`` levels down and up, level ``l``
    at ``D / 2**l`` (and ``H``, ``W``) with ``width * 2**l`` regular fields of a cube group
    (``|G|`` slots each; plain channels with ``group=None``); each level is two ``3 x 3 x 3``
    convs with batch norm and ReLU (:class:`~equilayers.nn.LiftingConv3d` first, then
    :class:`~equilayers.nn.GroupConv3d`, :class:`~equilayers.nn.GroupBatchNorm3d`); the
    encoder halves the sizes with ``down``, the decoder doubles them with the matching
    upsampling and concatenates the encoder's map of that level (along ``C``); a ``1 x 1 x 1``
    group conv to ``out_channels`` fields and a :class:`~equilayers.nn.GroupPool` (max over the
    fiber) give ``out_channels`` logits per voxel (a ``1 x 1 x 1`` ``nn.Conv3d`` with
    ``group=None``).

    Steerable U-Net (``group="so3"`` / ``"o3"``, or ``"so2"`` / ``"o2"`` turning every depth
    slice): harmonic fields of orders ``0 .. max_order`` (``(L+1)^2`` slots for SO(3)/O(3),
    ``2L+1`` for the planar groups) from :class:`~equilayers.nn.SteerableConv3d`, each conv
    followed by :class:`~equilayers.nn.HarmonicBatchNorm` and
    :class:`~equilayers.nn.FourierNonlinearity` (ELU on an O_h-invariant set of sphere points,
    or on ``8 (L + 1)`` rotations), as :class:`UNet`'s with ``"so2"``; the logits a ``1 x 1 x
    1`` conv to invariant (order-0) fields; ``down="max"`` keeps the field of largest norm
    (:class:`~equilayers.nn.NormMaxPool`).

    Args:
        in_channels: channels of the input volume.
        out_channels: logits per voxel (classes).
        group: a cube group for regular fields: ``"o"`` (the 24 rotations, default), ``"oh"``
            (48, with reflections), ``"c4z"`` / ``"d4z"`` (quarter turns about the depth axis,
            and flips: for anisotropic scans, whose depth spacing differs), ``"t"`` (12), or
            ``"ico"`` (60, exact on its 12 grid elements, harmonic basis only); ``"so3"``,
            ``"o3"``, ``"so2"``, ``"o2"`` for harmonic fields (above); or ``None``
            for a plain U-Net of ``nn.Conv3d`` / ``nn.BatchNorm3d`` (the same shape, for
            comparison). Cost grows with ``|G|``: level 0 has ``width * |G|`` channels
            (``width * (L+1)^2`` for SO(3)/O(3)).
        depth: number of downsamplings, >= 1.
        width: fields (channels when ``group=None``) of level 0; level ``l`` has
            ``width * 2**l``. ``group=None`` with about ``0.6 * width * sqrt(|G|)`` channels has
            about the same parameter count as the default basis (0.95-1.11 of it for o, oh, c4z at
            two and four fields; ``width * sqrt(|G|)`` with ``basis="voxel"``). A field is one
            learned feature in ``|G|`` orientations. On the ``segmentation3d`` benchmark (300 steps,
            3 seeds, mIoU with the pieces turned) the default basis left a "background" plateau on
            every seed at two and four fields (94.7%, 99.5%; escnn's two-field U-Net 76.5%) and on
            none at one (11.6%; escnn's 13.2%); the plain U-Nets reach 18-25% turned (docs:
            Benchmarks).
        padding_mode: padding of the convs (``"circular"`` default, ``"zeros"``,
            ``"reflect"``, ``"replicate"``).
        down: ``"blur"`` (default): ``BlurPool3d(kernel_size=4)`` and its transpose
            ``BlurUpsample3d(2, 4, transposed=True)``; ``"polyphase"``: adaptive polyphase
            sampling, ``PolyphasePool3d(return_index=True)``, and
            :class:`~equilayers.nn.PolyphaseUpsample3d` with the encoder's index (both with a
            3-tap binomial blur); ``"max"``: ``2 x 2 x 2`` max pooling and nearest-neighbour
            upsampling; ``"learned"``: learnable polyphase sampling
            (:class:`~equilayers.nn.LearnablePolyphasePool3d` with ``return_index=True``, no
            blur: an O_h-isotropic scoring net picks the component) and
            :class:`~equilayers.nn.LearnablePolyphaseUpsample3d` with its selection (sampled
            with Gumbel noise in training, the argmax in evaluation).
        basis: the ``3 x 3 x 3`` group convs' filter basis: ``None`` (default) is
            ``"harmonic"``: Gaussian shells of spherical harmonics, escnn's basis, about 0.37x
            the parameters (10 numbers per filter instead of 27); ``"voxel"``: every voxel
            free within the group's constraint (the layers' default). Exact on the grid either
            way. The default because it trains: on the ``segmentation3d`` benchmark (300
            steps, 3 seeds, mIoU with the pieces turned) the harmonic U-Net left the
            "background" plateau on every seed at two and four fields (94.7% and 99.5%), the
            voxel one on 1 seed of 3 at two and four fields (42.9%, 42.5%). Must be ``None`` with
            ``group=None``.
        up: ``"matched"`` (default): the upsampling partner of ``down``; ``"transposed"``: a
            learned ``2 x 2 x 2`` stride-2 :class:`~equilayers.nn.GroupConvTranspose3d` (voxel
            basis; on harmonic fields :class:`~equilayers.nn.SteerableConvTranspose3d`, shells
            about the point between the eight middle voxels; ``nn.ConvTranspose3d`` with
            ``group=None``) halving the fields, as :class:`UNet`'s (``down="max"`` or
            ``"blur"`` only).
        max_order: the highest rotation order of a steerable U-Net's fields, 0 to 2 (a ``3 x
            3 x 3`` filter lifts a volume to orders 0 .. 2 only); default ``None``: 1 for
            ``"so3"`` / ``"o3"``, 2 for ``"so2"`` / ``"o2"``. Must be ``None`` for finite
            groups and ``group=None``.
        nonlinearity: after every batch norm, as :class:`UNet`'s: ``"relu"`` (default) or
            ``"elu"`` on plain channels and regular fields; ``"fourier"`` (default),
            ``"gated"`` or ``"norm"`` on harmonic fields. On SO(3) fields the Fourier one
            samples 74 sphere points per field (orders 0 .. 1) and dominates the training
            step; ``"gated"`` and ``"norm"`` cost a fraction of it.
        device, dtype: of the parameters.

    Shape:
        ``(B, in_channels, D, H, W) -> (B, out_channels, D, H, W)``; ``D``, ``H`` and ``W``
        divisible by ``2**depth``, and with ``padding_mode="reflect"`` at least
        ``2**(depth + 1)`` (else ``ValueError``). The sizes need not be equal: a rotation
        permutes them with the dims.

    Equivariance:
        On inputs whose sizes are divisible by ``2**depth`` (the sizes
        :func:`equilayers.check_grid` accepts), exactly equivariant, per voxel, to every
        element of ``group`` (axis permutations and flips of the voxel grid), with any ``down``
        and any ``padding_mode``: every sampling step tiles even sizes symmetrically, and the
        fiber pool makes the logits scalar fields. With ``padding_mode="circular"``, exactly
        equivariant to integer circular shifts: by every shift with ``down="polyphase"`` or
        ``"learned"`` (the chosen component moves with the volume and the decoder puts the
        samples back where they came from; assuming no exact tie between the components'
        norms or logits, as for :class:`UNet`), by multiples of ``2**depth`` only with
        ``"blur"`` and ``"max"``. ``"learned"`` is exact in evaluation mode; in training its
        sampled choice makes it equivariant in distribution only.
        Measured in ``tests/test_unet3d.py`` (float64): errors at rounding level (< 1e-12)
        over all 24 / 48 elements and every listed shift; ``group=None`` is shift-equivariant
        as above and not rotation-equivariant (the negative control). Steerable U-Nets: exact
        on the cube's 24 rotations (``"so3"``; ``"o3"``: 48, with the inversions) and the
        quarter turns (and flips) of the depth slices (``"so2"`` / ``"o2"``), the same
        shifts; measured in the case table's ``models3d/so3``, ``o3``, ``so2``, ``o2`` rows
        (float64 < 1e-12, float32 < 1e-5; controls: an SO(3) U-Net under inversions, one
        with an ELU of the coefficients). Other rotations: approximate, as the layers
        (:class:`~equilayers.nn.SteerableConv3d`) and the stride-2 sampling allow.

    Example:
        >>> import torch
        >>> net = UNet3d(1, 3, group="o", depth=1, width=1)
        >>> net(torch.randn(2, 1, 8, 8, 8)).shape
        torch.Size([2, 3, 8, 8, 8])
    """

    _nd = 3
    _inputs = "volumes"
    _groups = "a cube group ('o', 'oh', 'c4z', 'd4z', 't') or 'ico'"
    _steerable = ("'so3', 'o3' (harmonic fields, with max_order), or 'so2', 'o2' (turning "
                  "every depth slice)")
    _steerable_dims = (2, 3)
    _default_basis = "harmonic"

    def __init__(self, in_channels: int, out_channels: int, *, group: GroupLike | None = "o",
                 depth: int = 2, width: int = 4, padding_mode: str = "circular",
                 down: str = "blur", basis: str | None = None, up: str = "matched",
                 max_order: int | None = None, nonlinearity: str | None = None, device=None,
                 dtype=None) -> None:
        super().__init__(in_channels, out_channels, group=group, depth=depth, width=width,
                         padding_mode=padding_mode, down=down, basis=basis, up=up,
                         max_order=max_order, nonlinearity=nonlinearity, device=device,
                         dtype=dtype)
