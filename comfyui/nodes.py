"""The ComfyUI node: "Image Websocket Output (framecast)".

It takes the inputs of comfyui-deploy's "Image Websocket Output
(ComfyDeploy)" node, encodes the batch with PIL as that node does and,
instead of writing to ComfyUI's own websocket, publishes it to a framecast
producer, which hands it to the gateways' websocket clients.
"""

import logging

from . import publish, sender

log = logging.getLogger(__name__)


class FramecastImageOutput:
    """Publish an IMAGE batch to a framecast producer.

    Inputs, defaults and validation messages are the seed node's. By
    default the node encodes with PIL (FRAMECAST_ENCODE), blocks until the
    producer has stored every frame, and fails with the producer's status,
    error code and message when it refuses, or with the URL and reason
    when it cannot be reached. With FRAMECAST_ASYNC on it returns once the
    batch is queued for the background sender (sender.py).
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
                "previews": ("INT", {
                    "default": 0,
                    "min": 0,
                    "max": publish.MAX_PREVIEW,
                    "step": 1,
                    "tooltip": f"0: none; {publish.MIN_PREVIEW}..{publish.MAX_PREVIEW}: also publish a WEBP preview "
                               "of each image, this many pixels on its longest side, just before it",
                }),
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
    def VALIDATE_INPUTS(cls, output_id=None, *, images=None, file_type=None, quality=None, client_id=None,
                        previews=None):
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
            if previews is not None:
                publish.validate_previews(previews)
        except ValueError as err:
            return str(err)
        return True

    def run(self, output_id, images, file_type, quality, client_id="", previews=0):
        settings = publish.Settings.from_env()
        if settings.asynchronous:
            return {"ui": {"framecast": queue(images, output_id, client_id, file_type, quality, settings, previews)}}
        # Batches the background sender holds from earlier executions go
        # first, so frames keep the order the node ran in.
        background = sender.running()
        if background is not None and background.pending() and not background.flush(sender.FULL_WAIT):
            raise sender.QueueFull(
                f"framecast: batches queued by FRAMECAST_ASYNC were not published within {sender.FULL_WAIT:g} s "
                f"(last error: {background.stats()['last_error']}); this execution's images were not sent"
            )
        answer = publish.publish(images, output_id, client_id, file_type, quality, settings=settings, previews=previews)
        frames = [
            dict(frame, output_id=answer.get("output_id", output_id), client_id=answer.get("client_id", client_id))
            for frame in answer["frames"]
        ]
        log.info(
            "framecast: published %d image(s) to output %r client %r, seq %s",
            len(frames), output_id, client_id or "*", [f.get("seq") for f in frames],
        )
        return {"ui": {"framecast": frames}}


def queue(images, output_id, client_id, file_type, quality, settings, previews=0):
    """Validate and copy the batch, hand it to the background sender and
    return the UI entries of its images: batch_index, width, height,
    content_type, output_id, client_id, "queued": True and the batch's
    idempotency_key (no seq: nothing is stored yet)."""
    batch = publish.prepare(images, output_id, client_id, file_type, quality, settings.encode, snapshot=True,
                            previews=previews)
    if batch.total == 0:
        return []
    sender.default(settings.async_max_bytes).put(batch, settings)
    log.info("framecast: queued %d image(s) for output %r client %r (Idempotency-Key %s)",
             batch.total, batch.output_id, batch.client_id or "*", batch.key)
    return [
        {"batch_index": i, "width": batch.width, "height": batch.height, "content_type": batch.content_type,
         "output_id": batch.output_id, "client_id": batch.client_id, "queued": True, "idempotency_key": batch.key}
        for i in range(batch.total)
    ]


NODE_CLASS_MAPPINGS = {"FramecastImageOutput": FramecastImageOutput}
NODE_DISPLAY_NAME_MAPPINGS = {"FramecastImageOutput": "Image Websocket Output (framecast)"}
