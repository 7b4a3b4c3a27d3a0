"""Why :func:`equilayers.antialias` leaves a strided layer alone, for the layers it does not
rewrite by design: the anti-aliased layers it finds (asked for another mode or blur size), and
the strided layers it has no rewrite for (group convs and pools on group maps, ``LPPool``).
Each reason names the fix; ``antialias`` warns with it."""

from __future__ import annotations

from torch import nn

from .nn import BlurConv2d, BlurPool2d, MaxBlurPool2d, PolyphasePool2d
from .nn._group_conv import _GroupConvNd
from .nn._group_conv3d import _GroupConv3dBase
from .nn._group_pool import GroupAvgPool2d, GroupMaxPool2d
from .nn._norm_max_pool import NormMaxPool
from .nn._pool3d import GroupAvgPool3d, GroupMaxPool3d
from .nn._steerable_conv3d import SteerableConv3d

__all__ = ["ANTIALIASED", "already_antialiased", "other_strided", "strided"]

#: The layers ``antialias`` writes (and a user may have built): never rewritten again.
ANTIALIASED = (BlurConv2d, MaxBlurPool2d, BlurPool2d, PolyphasePool2d)

#: Strided layers on group maps ``(B, C, F, H, W)`` / volumes: no automatic rewrite.
_GROUP_LAYERS = (_GroupConvNd, _GroupConv3dBase, SteerableConv3d, GroupMaxPool2d,
                 GroupAvgPool2d, GroupMaxPool3d, GroupAvgPool3d, NormMaxPool)


def already_antialiased(m: nn.Module, mode: str, blur_size: int) -> str | None:
    """``None`` where ``m`` is what ``antialias(mode=mode, blur_size=blur_size)`` would have
    written, or where it does not downsample (a stride-1 blur smooths); else the reason it is
    kept as built (a second ``antialias`` in another mode or blur size did nothing, silently)."""
    if not strided(m):
        return None
    size = m.kernel_size if isinstance(m, BlurPool2d) else getattr(m, "blur_size", None)
    made_by: tuple[str, ...]
    if isinstance(m, PolyphasePool2d):
        made_by = ("polyphase",)
    elif isinstance(m, BlurConv2d):
        made_by = ("folded",) if m.fold is True else ("blur",)
    else:
        made_by = ("blur", "folded")
    if mode in made_by and size == blur_size:
        return None
    return (f"an anti-aliased {type(m).__name__} (blur_size={size}), kept as built: "
            f"antialias() does not convert an anti-aliased layer to another mode or blur "
            f"size (mode={mode!r}, blur_size={blur_size} asked); convert the plain layer for "
            "those")


def strided(m: nn.Module) -> bool:
    """Whether ``m`` has a stride other than 1 (torch's pools: ``stride=None`` is the
    kernel size)."""
    stride = getattr(m, "stride", 1)
    if stride is None:  # torch's pools: stride None is kernel_size
        stride = getattr(m, "kernel_size", 1)
    return any(s != 1 for s in ((stride,) if isinstance(stride, int) else stride))


def other_strided(m: nn.Module) -> str | None:
    """The reason a strided layer ``antialias`` has no rewrite for is left alone (these were
    skipped silently, the report empty), or ``None`` (not strided, or not such a layer)."""
    if getattr(m, "transposed", False) or not strided(m):
        return None  # a transposed conv's stride upsamples
    name = type(m).__name__
    if isinstance(m, _GROUP_LAYERS):
        three = (isinstance(m, (_GroupConv3dBase, SteerableConv3d, GroupMaxPool3d,
                                GroupAvgPool3d))
                 or getattr(m.in_type, "spatial_dims", 2) == 3)  # a NormMaxPool on volumes
        fix = (f"give it stride=1 and put a BlurPool{3 if three else 2}d after it"
               if not isinstance(m, GroupMaxPool2d) else
               "use MaxBlurPool2d(kernel_size, stride) instead")
        return (f"a strided {name} on group or harmonic maps: antialias() rewrites torch's 2-D "
                f"layers; {fix} by hand (they take such maps; check_grid then says at which "
                "sizes the model is exact)")
    if isinstance(m, (nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)):
        return (f"a strided {name}: antialias() has no blurred LPPool; put a BlurPool after a "
                "stride-1 copy of it by hand")
    return None
