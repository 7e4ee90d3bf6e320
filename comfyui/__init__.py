"""framecast for ComfyUI: a node that encodes a node's IMAGE batch with PIL,
as comfyui-deploy's node does, and sends it to a framecast producer, which
delivers it to websocket clients through the edge gateways; and, when
FRAMECAST_FORWARD_EVENTS is on, the forwarding of ComfyUI's execution
events to the same producer (see events.py). Install by copying or linking
this directory into ComfyUI/custom_nodes/framecast; see docs/comfyui.md.
"""

from . import events
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

# ComfyUI imports custom nodes after it created its PromptServer.
events.install_from_env()
