"""framecast for ComfyUI: a node that sends a node's IMAGE batch to a
framecast producer, which delivers it to websocket clients through the edge
gateways. Install by copying or linking this directory into
ComfyUI/custom_nodes/framecast; see docs/comfyui.md.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
