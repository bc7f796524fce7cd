"""Old name of :mod:`compressai_psic.io.images` (``tools/train_demo_psic.py``
still imports it); new code imports :mod:`compressai_psic.io.images`."""

from .io.images import (
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    ImageLoadError,
    is_image_file,
    load_image,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "ImageLoadError",
    "is_image_file",
    "load_image",
    "pil_to_tensor",
    "save_image",
    "tensor_to_pil",
]
