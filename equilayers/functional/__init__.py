"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

from ._blur import (
    binomial_filter,
    blur_pool1d,
    blur_pool2d,
    blur_pool3d,
    blur_upsample2d,
    blur_upsample3d,
    max_blur_pool2d,
)
from ._blur_conv import (
    blur_conv2d,
    blur_conv2d_path,
)
from ._dropout import (
    field_dropout,
)
from ._edge_aware import (
    edge_aware_blur_pool2d,
)
from ._expanded_conv import (
    expanded_group_conv2d,
)
from ._fibers import (
    on_fibers,
)
from ._fourier import (
    fourier_matrix,
    fourier_nonlinearity,
    harmonic_to_regular,
    regular_to_harmonic,
)
from ._gaussian import (
    disk_mask2d,
    gaussian_blur_pool2d,
)
from ._gaussian3d import ball_mask3d, gaussian_blur_pool3d
from ._gconv import (
    exactness_problems,
    expand_group_filter,
    expand_lifting_filter,
    group_conv2d,
    lifting_conv2d,
)
from ._gconv3d import (
    exactness_problems3d,
    group_conv3d,
    lifting_conv3d,
)
from ._gconv_transpose import (
    group_conv_transpose2d,
    lifting_conv_transpose2d,
)
from ._gconv_transpose3d import (
    group_conv_transpose3d,
    lifting_conv_transpose3d,
)
from ._group_norm import (
    group_batch_norm,
)
from ._group_pool import (
    group_avg_pool2d,
    group_max_pool2d,
    group_pool,
)
from ._harmonic import (
    gated_nonlinearity,
    norm_nonlinearity,
    norm_pool,
    steerable_conv2d,
)
from ._harmonic_bn import (
    harmonic_batch_norm,
)
from ._heads import (
    fiber_pool,
    fiber_pose,
    invariant_head,
    spatial_pool,
)
from ._lps import (
    learnable_polyphase_pool2d,
    learnable_polyphase_upsample2d,
    polyphase_logits,
)
from ._lps3d import (
    learnable_polyphase_pool3d,
    learnable_polyphase_upsample3d,
    polyphase_logits3d,
)
from ._norm_max_pool import (
    norm_max_pool2d,
    norm_max_pool3d,
)
from ._polyphase import (
    polyphase_pool2d,
    polyphase_upsample2d,
)
from ._pool3d import (
    group_avg_pool3d,
    group_max_pool3d,
    polyphase_pool3d,
    polyphase_upsample3d,
)
from ._restrict import (
    coset_pool,
    restrict,
)
from ._steerable import steerable_basis
from ._steerable3d import steerable_basis3d, steerable_conv3d
from ._steerable_expand import expand_steerable
from ._steerable_transpose3d import steerable_conv_transpose3d
from ._tensor_product import (
    tensor_product_basis,
    tensor_product_nonlinearity,
)
from ._upsample import (
    group_upsample2d,
    group_upsample3d,
)
from ._voxel_basis import harmonic_voxel_basis

__all__: list[str] = [
    "binomial_filter",
    "blur_conv2d",
    "blur_conv2d_path",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "blur_upsample2d",
    "blur_upsample3d",
    "max_blur_pool2d",
    "edge_aware_blur_pool2d",
    "group_upsample2d",
    "group_upsample3d",
    "field_dropout",
    "exactness_problems",
    "expand_group_filter",
    "expand_lifting_filter",
    "expanded_group_conv2d",
    "group_conv2d",
    "lifting_conv2d",
    "group_conv_transpose2d",
    "lifting_conv_transpose2d",
    "lifting_conv_transpose3d",
    "group_conv_transpose3d",
    "exactness_problems3d",
    "group_conv3d",
    "lifting_conv3d",
    "group_batch_norm",
    "group_avg_pool2d",
    "group_max_pool2d",
    "group_pool",
    "fourier_matrix",
    "fourier_nonlinearity",
    "gated_nonlinearity",
    "harmonic_batch_norm",
    "harmonic_to_regular",
    "norm_nonlinearity",
    "norm_max_pool2d",
    "norm_max_pool3d",
    "norm_pool",
    "on_fibers",
    "regular_to_harmonic",
    "steerable_conv2d",
    "tensor_product_basis",
    "tensor_product_nonlinearity",
    "polyphase_pool2d",
    "polyphase_upsample2d",
    "learnable_polyphase_pool2d",
    "learnable_polyphase_upsample2d",
    "polyphase_logits",
    "learnable_polyphase_pool3d",
    "learnable_polyphase_upsample3d",
    "polyphase_logits3d",
    "group_avg_pool3d",
    "group_max_pool3d",
    "polyphase_pool3d",
    "polyphase_upsample3d",
    "expand_steerable",
    "steerable_basis",
    "steerable_basis3d",
    "harmonic_voxel_basis",
    "steerable_conv3d",
    "steerable_conv_transpose3d",
    "fiber_pool",
    "fiber_pose",
    "invariant_head",
    "spatial_pool",
    "restrict",
    "coset_pool",
    "gaussian_blur_pool2d",
    "gaussian_blur_pool3d",
    "disk_mask2d",
    "ball_mask3d",
]
