"""The ComfyUI node: "Image Websocket Output (framecast)".

It takes the inputs of comfyui-deploy's "Image Websocket Output
(ComfyDeploy)" node and, instead of writing to ComfyUI's own websocket,
publishes the batch to a framecast producer, which encodes it and hands it
to the gateways' websocket clients.
"""

import logging

from . import publish

log = logging.getLogger(__name__)


class FramecastImageOutput:
    """Publish an IMAGE batch to a framecast producer.

    Inputs, defaults and validation messages are the seed node's. The node
    blocks until the producer has stored every frame, and fails with the
    producer's status, error code and message when it refuses, or with the
    URL and reason when it cannot be reached.
    """

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "output_id": ("STRING", {"multiline": False, "default": "output_id"}),
                "images": ("IMAGE",),
                "file_type": (list(publish.FILE_TYPES),),
                "quality": ("INT", {
                    "default": publish.DEFAULT_QUALITY,
                    "min": publish.MIN_QUALITY,
                    "max": publish.MAX_QUALITY,
                    "step": 1,
                }),
            },
            "optional": {
                "client_id": ("STRING", {"multiline": False, "default": ""}),
            },
        }

    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "output/framecast"
    DESCRIPTION = (
        "Sends each image of the batch, encoded as WEBP, PNG or JPEG, to the websocket "
        "clients of output_id (only client_id's sockets when it is set) through a "
        "framecast producer (FRAMECAST_PRODUCER_URL)."
    )

    @classmethod
    def VALIDATE_INPUTS(cls, output_id=None, *, images=None, file_type=None, quality=None, client_id=None):
        """Check the inputs before ComfyUI queues the prompt.

        Only output_id is a positional parameter, on purpose. ComfyUI from
        2023-12-28 on passes only the inputs named by
        inspect.getfullargspec(VALIDATE_INPUTS).args and repeats a failure
        under each of them, so naming one input shows its message once,
        under output_id; it checks file_type and quality against
        INPUT_TYPES itself, and run() checks client_id. A **kwargs
        parameter would make ComfyUI of 2024-08 on pass every input and
        repeat the message under each.

        ComfyUI of 2023-09-07 to 2023-12-28 passes every input as a keyword
        argument, linked ones such as images as None; the keyword-only
        parameters take them, and the ones given are checked too.
        """
        try:
            if output_id is not None:
                publish.validate_output_id(output_id)
            if file_type is not None:
                publish.validate_file_type(file_type)
            if quality is not None:
                publish.validate_quality(quality)
            if client_id is not None:
                publish.validate_client_id(client_id)
        except ValueError as err:
            return str(err)
        return True

    def run(self, output_id, images, file_type, quality, client_id=""):
        answer = publish.publish(images, output_id, client_id, file_type, quality)
        frames = [
            dict(frame, output_id=answer.get("output_id", output_id), client_id=answer.get("client_id", client_id))
            for frame in answer["frames"]
        ]
        log.info(
            "framecast: published %d image(s) to output %r client %r, seq %s",
            len(frames), output_id, client_id or "*", [f.get("seq") for f in frames],
        )
        return {"ui": {"framecast": frames}}


NODE_CLASS_MAPPINGS = {"FramecastImageOutput": FramecastImageOutput}
NODE_DISPLAY_NAME_MAPPINGS = {"FramecastImageOutput": "Image Websocket Output (framecast)"}
