"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._blur_pool import (
    BlurConv2d,
    BlurPool1d,
    BlurPool2d,
    BlurPool3d,
    BlurUpsample2d,
    BlurUpsample3d,
)
from ._dropout import (
    FieldDropout,
)
from ._edge_aware import (
    EdgeAwareBlurPool2d,
)
from ._expanded_conv import (
    ExpandedGroupConv2d,
)
from ._fourier import (
    FourierNonlinearity,
    HarmonicToRegular,
    RegularToHarmonic,
)
from ._gaussian import (
    BallMask,
    DiskMask,
    GaussianBlurPool2d,
    GaussianBlurPool3d,
)
from ._group_conv import (
    GroupConv2d,
    LiftingConv2d,
)
from ._group_conv3d import (
    GroupConv3d,
    LiftingConv3d,
)
from ._group_conv_transpose import (
    GroupConvTranspose2d,
    LiftingConvTranspose2d,
)
from ._group_conv_transpose3d import (
    GroupConvTranspose3d,
    LiftingConvTranspose3d,
)
from ._group_norm import (
    GroupBatchNorm2d,
    GroupBatchNorm3d,
)
from ._group_pool import (
    GroupAvgPool2d,
    GroupMaxPool2d,
    GroupPool,
)
from ._harmonic import (
    GatedNonlinearity,
    NormNonlinearity,
    NormPool,
)
from ._harmonic_batch_norm import (
    HarmonicBatchNorm,
)
from ._heads import (
    InvariantHead,
)
from ._linear import (
    GroupLinear,
    OnFibers,
)
from ._lps import (
    LearnablePolyphasePool2d,
    LearnablePolyphasePool3d,
    LearnablePolyphaseUpsample2d,
    LearnablePolyphaseUpsample3d,
)
from ._max_blur_pool import MaxBlurPool2d
from ._norm_max_pool import NormMaxPool
from ._polyphase import (
    PolyphasePool2d,
    PolyphaseUpsample2d,
)
from ._pool3d import (
    GroupAvgPool3d,
    GroupMaxPool3d,
    PolyphasePool3d,
    PolyphaseUpsample3d,
)
from ._restrict import (
    CosetPool,
    Restrict,
)
from ._steerable_conv3d import SteerableConv3d
from ._steerable_conv_transpose3d import SteerableConvTranspose3d
from ._tensor_product import TensorProductNonlinearity
from ._upsample import (
    GroupUpsample2d,
    GroupUpsample3d,
)

__all__: list[str] = [
    "BlurConv2d",
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "BlurUpsample2d",
    "BlurUpsample3d",
    "MaxBlurPool2d",
    "EdgeAwareBlurPool2d",
    "GroupUpsample2d",
    "GroupUpsample3d",
    "FieldDropout",
    "GroupConv2d",
    "LiftingConv2d",
    "GroupConvTranspose2d",
    "LiftingConvTranspose2d",
    "GroupConv3d",
    "LiftingConv3d",
    "GroupConvTranspose3d",
    "GroupLinear",
    "LiftingConvTranspose3d",
    "SteerableConv3d",
    "SteerableConvTranspose3d",
    "ExpandedGroupConv2d",
    "GroupBatchNorm2d",
    "GroupBatchNorm3d",
    "GroupAvgPool2d",
    "GroupMaxPool2d",
    "GroupPool",
    "FourierNonlinearity",
    "GatedNonlinearity",
    "HarmonicBatchNorm",
    "HarmonicToRegular",
    "NormMaxPool",
    "NormNonlinearity",
    "NormPool",
    "OnFibers",
    "RegularToHarmonic",
    "TensorProductNonlinearity",
    "PolyphasePool2d",
    "PolyphaseUpsample2d",
    "LearnablePolyphasePool2d",
    "LearnablePolyphaseUpsample2d",
    "LearnablePolyphasePool3d",
    "LearnablePolyphaseUpsample3d",
    "GroupAvgPool3d",
    "GroupMaxPool3d",
    "PolyphasePool3d",
    "PolyphaseUpsample3d",
    "InvariantHead",
    "Restrict",
    "CosetPool",
    "GaussianBlurPool2d",
    "GaussianBlurPool3d",
    "DiskMask",
    "BallMask",
]
