"""Models assembled from :mod:`equilayers.nn`: builders of whole networks.

:class:`UNet`, an encoder-decoder for per-pixel prediction (segmentation), exactly equivariant
to the group's grid elements and to circular shifts at the sizes :func:`equilayers.check_grid`
accepts.
"""

from ._unet import UNet

__all__: list[str] = ["UNet"]
