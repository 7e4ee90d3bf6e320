"""Encoding in the ComfyUI process with PIL, exactly as the seed node does.

comfyui-deploy's "Image Websocket Output" turns each image of the batch
into bytes with ``uint8(clip(255*x, 0, 255))``, ``PIL.Image.fromarray`` and
``save(buf, format=file_type, quality=quality, compress_level=1)``. This
module does the same, so the bytes the producer forwards are the seed's.
PIL (Pillow) ships with ComfyUI; it is imported on first use, so the
package still loads, and FRAMECAST_ENCODE=producer still works, without it.
PIL releases the GIL while it encodes, so a background thread encoding
runs beside ComfyUI's own work.
"""

import io

import numpy as np

# CONTENT_TYPES maps the node's file types to the media types of the bytes.
CONTENT_TYPES = {"WEBP": "image/webp", "PNG": "image/png", "JPEG": "image/jpeg"}


def to_uint8(arr):
    """The seed's conversion of a [B,H,W,C] batch: uint8(clip(255*x, 0, 255)),
    truncating; uint8 input is returned as it is. The result is a new array,
    so later changes to the caller's tensor cannot reach it."""
    if arr.dtype == np.uint8:
        return np.array(arr, copy=True)
    # As the seed: 255.0 * x in x's float type, clipped, cast; the same
    # values, with one temporary array instead of two. NaN casts as the
    # seed's does; numpy's warning about it is not ComfyUI's business.
    with np.errstate(invalid="ignore"):
        scaled = np.multiply(arr, 255.0, dtype=arr.dtype)
        np.clip(scaled, 0, 255, out=scaled)
        return scaled.astype(np.uint8)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError(
            "FRAMECAST_ENCODE=node needs PIL (Pillow), which ComfyUI ships; install it with "
            "`pip install pillow`, or set FRAMECAST_ENCODE=producer to let the producer encode"
        ) from None
    return Image


def image(pixels, file_type, quality):
    """Encode one [H,W,C] uint8 image (C 1, 3 or 4) as the seed does and
    return the bytes. JPEG has no alpha: a 4-channel image loses it, as it
    does in the producer's encoder."""
    pil = _pil()
    if pixels.shape[2] == 1:
        img = pil.fromarray(pixels[:, :, 0])
    else:
        img = pil.fromarray(pixels)
    if file_type == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    buf = io.BytesIO()
    try:
        img.save(buf, format=file_type, quality=quality, compress_level=1)
    except (OSError, KeyError, ValueError) as err:
        raise RuntimeError(
            f"PIL cannot encode a {pixels.shape[1]}x{pixels.shape[0]} {img.mode} image as {file_type} ({err}); "
            "set FRAMECAST_ENCODE=producer to let the producer encode"
        ) from None
    return buf.getvalue()


def batch(pixels, file_type, quality):
    """Encode every image of a [B,H,W,C] uint8 batch; a list of bytes in batch order."""
    return [image(p, file_type, quality) for p in pixels]
