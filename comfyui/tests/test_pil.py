"""The node's default path: PIL in the ComfyUI process, the encoded images
sent as multipart and forwarded byte for byte (encode.py, publish.py).

Frames are read back by a websocket client of `framecast run` (producer
API and gateway in one process) and compared with what the seed node's own
code makes of the same tensor.
"""

import hashlib
import io
import json
import sys
import unittest
from unittest import mock

import numpy as np
from PIL import Image

import test_node as base
from seed import encode as seed_encode

nodes, publish = base.nodes, base.publish


def photo(batch, height, width, channels, seed=7):
    """A float32 batch with smooth gradients and noise, values a little
    outside 0..1 so clipping matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base_img = (np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None] + 1) / 2
    noise = rng.normal(0, 0.08, size=(batch, height, width, channels)).astype(np.float32)
    return (base_img[None] * np.linspace(0.6, 1.1, channels, dtype=np.float32) + noise).astype(np.float32)


def digests(images):
    """(size, sha256) of each image: what the tests compare, so a failure
    prints a short difference instead of diffing megabytes."""
    return [(len(b), hashlib.sha256(b).hexdigest()[:16]) for b in images]


def read_frames(ws, n):
    """n binary frames of a /v1/ws socket as (header, image bytes)."""
    frames = []
    while len(frames) < n:
        kind, data = ws.receive(timeout=20)
        if kind == 2:
            size = int.from_bytes(data[:4], "big")
            frames.append((json.loads(data[4:4 + size]), data[4 + size:]))
        elif json.loads(data)["type"] == "error":
            raise AssertionError(f"gateway error: {data!r}")
    return frames


class StackTest(base.EnvMixin, unittest.TestCase):
    """Shares one `framecast run` per class."""

    @classmethod
    def setUpClass(cls):
        cls.stack = base.DevStack()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def socket(self, output_id, query=""):
        ws = base.WebSocket(self.stack.port, f"/v1/ws?output_id={output_id}{query}")
        self.addCleanup(ws.close)
        kind, data = ws.receive()
        self.assertEqual((kind, json.loads(data)["type"]), (1, "hello"))
        return ws

    def metric(self, series):
        return self.stack.metric(series)

    def run_png(self, output_id, x, series):
        """Run the node on x as PNG; its UI frames, how much series grew,
        and the frames a client of output_id got."""
        ws = self.socket(output_id)
        before = self.metric(series)
        got = nodes.FramecastImageOutput().run(output_id, x, "PNG", 80, "")
        grew = self.metric(series) - before
        frames = read_frames(ws, len(x))
        self.assertEqual([f["seq"] for f in got["ui"]["framecast"]], [h["seq"] for h, _ in frames])
        return got["ui"]["framecast"], grew, frames


class PILTest(StackTest):
    def setUp(self):
        self.set_env(FRAMECAST_PRODUCER_URL=self.stack.url, FRAMECAST_TIMEOUT="20")

    def test_clients_get_the_seeds_bytes(self):
        cases = [
            ("WEBP q80", "WEBP", 80, 3, "image/webp"),
            ("WEBP q100, lossy as the seed", "WEBP", 100, 3, "image/webp"),
            ("PNG", "PNG", 80, 3, "image/png"),
            ("JPEG q80", "JPEG", 80, 3, "image/jpeg"),
            ("JPEG q5", "JPEG", 5, 3, "image/jpeg"),
            ("PNG with alpha", "PNG", 80, 4, "image/png"),
            ("WEBP with alpha", "WEBP", 60, 4, "image/webp"),
        ]
        for i, (name, file_type, quality, channels, content_type) in enumerate(cases):
            with self.subTest(name):
                output_id = f"pil-{i}"
                ws = self.socket(output_id)
                x = photo(2, 48, 64, channels, seed=i)
                requests = self.metric('framecast_producer_requests_total{code="200"}')
                encodes = self.metric("framecast_producer_encode_seconds_count")
                got = nodes.FramecastImageOutput().run(output_id, base.FakeTensor(x), file_type, quality, "")
                want = seed_encode(x, file_type, quality)
                frames = read_frames(ws, 2)
                self.assertEqual(digests(image for _, image in frames), digests(want))
                seen = [(h["batch_index"], h["batch_size"], h["content_type"], h["width"], h["height"])
                        for h, _ in frames]
                self.assertEqual(seen, [(0, 2, content_type, 64, 48), (1, 2, content_type, 64, 48)])
                ui = got["ui"]["framecast"]
                self.assertEqual([(f["seq"], f["bytes"], f["content_type"]) for f in ui],
                                 [(h["seq"], len(w), content_type) for (h, _), w in zip(frames, want)])
                # One multipart request, and the producer encoded nothing.
                self.assertEqual(self.metric('framecast_producer_requests_total{code="200"}') - requests, 1)
                self.assertEqual(self.metric("framecast_producer_encode_seconds_count"), encodes)

    def test_gray_and_uint8(self):
        # The seed's fromarray cannot take [H,W,1]; the node gives PIL the
        # [H,W] plane, a mode L image. uint8 tensors are encoded as they are.
        ws = self.socket("pil-gray")
        x = photo(1, 20, 30, 1)
        gray = np.clip(255.0 * x, 0, 255).astype(np.uint8)
        nodes.FramecastImageOutput().run("pil-gray", x, "PNG", 80, "")
        nodes.FramecastImageOutput().run("pil-gray", gray, "JPEG", 70, "")
        want = []
        for file_type, quality in (("PNG", 80), ("JPEG", 70)):
            buf = io.BytesIO()
            Image.fromarray(gray[0, :, :, 0]).save(buf, format=file_type, quality=quality, compress_level=1)
            want.append(buf.getvalue())
        self.assertEqual(digests(image for _, image in read_frames(ws, 2)), digests(want))

    def test_jpeg_drops_alpha(self):
        ws = self.socket("pil-rgba-jpeg")
        x = photo(1, 16, 16, 4)
        nodes.FramecastImageOutput().run("pil-rgba-jpeg", x, "JPEG", 90, "")
        rgb = np.clip(255.0 * x[0, :, :, :3], 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=90, compress_level=1)
        self.assertEqual(digests([read_frames(ws, 1)[0][1]]), digests([buf.getvalue()]))

    def test_batch_over_the_body_limit_goes_in_several_requests(self):
        # A limit below one image sends each image alone: 5 requests, one
        # batch of 5 for the clients.
        self.set_env(FRAMECAST_PRODUCER_URL=self.stack.url, FRAMECAST_TIMEOUT="20", FRAMECAST_MAX_BODY_BYTES="1")
        x = photo(5, 12, 12, 3)
        _, requests, frames = self.run_png("pil-split", x, 'framecast_producer_requests_total{code="200"}')
        self.assertEqual(requests, 5)
        self.assertEqual(digests(image for _, image in frames), digests(seed_encode(x, "PNG", 80)))
        self.assertEqual([(h["batch_index"], h["batch_size"]) for h, _ in frames], [(i, 5) for i in range(5)])

    def test_raw_upload_on_request(self):
        # FRAMECAST_ENCODE=producer sends the pixels; the producer encodes.
        self.set_env(FRAMECAST_PRODUCER_URL=self.stack.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ENCODE="producer")
        x = photo(2, 16, 24, 3)
        _, encodes, frames = self.run_png("pil-raw", x, "framecast_producer_encode_seconds_count")
        self.assertEqual(encodes, 1)
        # PNG is lossless: the pixels are the seed's either way.
        for (_, image), tensor in zip(frames, x):
            self.assertTrue(np.array_equal(np.asarray(Image.open(io.BytesIO(image))),
                                           np.clip(255.0 * tensor, 0, 255).astype(np.uint8)))

    def test_previews(self):
        # A 64x48 image with previews=32: a rendition=preview socket gets a
        # 32x24 WEBP, published just before the frame; a default socket
        # only the full frame.
        full = self.socket("pil-previews")
        small = self.socket("pil-previews", "&rendition=preview")
        x = photo(1, 48, 64, 3)
        got = nodes.FramecastImageOutput().run("pil-previews", x, "JPEG", 80, "", previews=32)
        ui = [(f["rendition"], f["content_type"], f["width"], f["height"]) for f in got["ui"]["framecast"]]
        self.assertEqual(ui, [("preview", "image/webp", 32, 24), ("full", "image/jpeg", 64, 48)])
        (h, image), = read_frames(small, 1)
        self.assertEqual((h["rendition"], h["content_type"], Image.open(io.BytesIO(image)).size),
                         ("preview", "image/webp", (32, 24)))
        (h, image), = read_frames(full, 1)
        self.assertEqual((h.get("rendition", "full"), h["seq"]), ("full", got["ui"]["framecast"][1]["seq"]))
        self.assertEqual(digests([image]), digests(seed_encode(x, "JPEG", 80)))
        self.assertLess(got["ui"]["framecast"][0]["seq"], h["seq"])

    def test_without_pil(self):
        # Importing PIL fails: the node says what to do, before any request.
        before = self.metric('framecast_producer_requests_total{code="200"}')
        with mock.patch.dict(sys.modules, {"PIL": None}):
            with self.assertRaises(RuntimeError) as ctx:
                nodes.FramecastImageOutput().run("pil-none", photo(1, 4, 4, 3), "WEBP", 80, "")
        self.assertEqual(str(ctx.exception),
                         "FRAMECAST_ENCODE=node needs PIL (Pillow), which ComfyUI ships; install it with "
                         "`pip install pillow`, or set FRAMECAST_ENCODE=producer to let the producer encode")
        self.assertEqual(self.metric('framecast_producer_requests_total{code="200"}'), before)


class ConversionTest(unittest.TestCase):
    def test_uint8_as_the_seed(self):
        # The seed's np.clip(255.0 * x, 0, 255).astype(np.uint8), on values
        # around every edge: out of range, exact steps, just below them.
        encode = sys.modules["framecast_comfyui.encode"]
        rng = np.random.default_rng(3)
        x = rng.uniform(-0.2, 1.2, size=(2, 16, 16, 3)).astype(np.float32)
        x[0, 0, :8, 0] = [0.0, 1.0, 1 / 255, 0.5, 254.5 / 255, np.float32(1) - np.float32(1e-7), -0.0, 1e-9]
        want = np.clip(255.0 * x, 0, 255).astype(np.uint8)
        got = encode.to_uint8(x)
        self.assertEqual(got.dtype, np.uint8)
        self.assertTrue(np.array_equal(got, want), f"{np.argwhere(got != want)[:5]}")
        self.assertIsNot(encode.to_uint8(want), want)


class MultipartTest(unittest.TestCase):
    def test_body_parses_back(self):
        # Python's own multipart parser reads back every image, in order.
        import email.parser
        import email.policy

        images = [b"\x89PNG first", b"", b"--not-a-boundary\r\n\r\nthird"]
        content_type, body = publish.multipart(images, "image/png")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content() for p in parts], images)
        self.assertEqual([p.get_content_type() for p in parts], ["image/png"] * 3)
        # The split accounts for at least what each part adds.
        self.assertLessEqual(len(body) - sum(map(len, images)), 3 * publish.MULTIPART_OVERHEAD)

    def test_groups(self):
        cases = [
            ("all fit", [3, 3, 3], 10, [(0, 3)]),
            ("two per request", [4, 4, 4, 4, 4], 8, [(0, 2), (2, 2), (4, 1)]),
            ("an item over the limit goes alone", [2, 20, 2], 10, [(0, 1), (1, 1), (2, 1)]),
            ("none", [], 10, []),
        ]
        for name, sizes, limit, want in cases:
            with self.subTest(name):
                self.assertEqual(publish._groups(sizes, limit), want)


if __name__ == "__main__":
    unittest.main()
