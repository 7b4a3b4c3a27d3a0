"""The specifications the kernel and fast-path tests compare against: the functional ops with
``equilayers.kernels.use_reference()`` forced (their pure-PyTorch references)."""

from equilayers import functional as EF
from equilayers import kernels


def ref_blur(x, kernel_size=3, stride=2, padding_mode="reflect"):
    with kernels.use_reference():
        return EF.blur_pool2d(x, kernel_size, stride, padding_mode)


def ref_max_blur(x, kernel_size=2, stride=2, blur_size=3, padding_mode="reflect", padding=0):
    with kernels.use_reference():
        return EF.max_blur_pool2d(x, kernel_size, stride, blur_size, padding_mode,
                                  padding=padding)


def ref_poly(x, stride=2, **kw):
    with kernels.use_reference():
        return EF.polyphase_pool2d(x, stride, **kw)
