"""Models assembled from :mod:`equilayers.nn`: builders of whole networks.

:class:`UNet`, an encoder-decoder for per-pixel prediction (segmentation), exactly equivariant
to the group's grid elements and to circular shifts at the sizes :func:`equilayers.check_grid`
accepts; :class:`UNet3d`, the same for per-voxel prediction on volumes and the cube's groups.
"""

from ._unet import UNet
from ._unet3d import UNet3d

__all__: list[str] = ["UNet", "UNet3d"]
