"""The seed node's code path, for comparison: what comfyui-deploy's "Image
Websocket Output (ComfyDeploy)" does to each image of an IMAGE batch before
it hands the bytes to ComfyUI's websocket. The tests compare the node's
bytes with it; bench/node_publish.py times it."""

import io

import numpy as np
from PIL import Image


def encode(batch, file_type, quality):
    """255.0 * tensor, clip, uint8, fromarray, save(format, quality,
    compress_level=1), for each [H,W,C] float image of batch."""
    out = []
    for tensor in batch:
        array = 255.0 * tensor
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        image.save(buf, format=file_type, quality=quality, compress_level=1)
        out.append(buf.getvalue())
    return out
