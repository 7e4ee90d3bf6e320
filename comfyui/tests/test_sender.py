"""FRAMECAST_ASYNC: the node returns once its batch is queued, and the
background sender (sender.py) publishes in order, retries with the
batch's Idempotency-Key, drops and logs what the producer refuses, and
bounds what it holds.

A gate in front of `framecast run` holds every request until the test
opens it, so "not sent yet" is a fact of the test, not a race; frames are
read back by a websocket client.
"""

import io
import json
import threading
import time
import unittest

import numpy as np
from PIL import Image

import test_node as base
from test_pil import StackTest, digests, photo, read_frames, seed_encode

nodes, publish = base.nodes, base.publish
sender = base.sys.modules["framecast_comfyui.sender"]

FRAMES_STORED = 'framecast_producer_frames_total{format="png"}'


class GateProxy(base._Proxy):
    """Forwards each request to the producer once the gate is open;
    until then the request waits, unanswered and not forwarded."""

    def __init__(self, upstream_port):
        self.gate = threading.Event()
        self.arrived = threading.Event()  # a request reached the gate
        super().__init__(upstream_port)

    def _handle(self, conn):
        self.arrived.set()
        self.gate.wait()
        super()._handle(conn)

    def answer(self, conn, resp, data):
        reply(conn, resp.status, resp.reason, resp.getheaders(), data)


def reply(conn, status, reason, headers, data):
    out = [f"HTTP/1.1 {status} {reason}\r\n"]
    for k, v in headers:
        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
            out.append(f"{k}: {v}\r\n")
    out.append(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    conn.sendall("".join(out).encode() + data)


class FlakyProxy(base._Proxy):
    """Forwards every request to the producer; the answers to the first
    `lost` requests never reach the client (the connection closes), as
    when the network fails after the producer stored the frames."""

    def __init__(self, upstream_port, lost):
        self.lost, self.answers = lost, []
        super().__init__(upstream_port)

    def answer(self, conn, resp, data):
        self.answers.append(json.loads(data))
        if len(self.answers) > self.lost:
            reply(conn, resp.status, resp.reason, resp.getheaders(), data)


def wait_for(check, what, timeout=30):
    """Poll check() until it is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class AsyncTest(StackTest):
    def setUp(self):
        self.gate = GateProxy(self.stack.port)
        self.addCleanup(self.gate.close)
        # Whatever a test leaves queued is sent before the next one starts.
        self.addCleanup(lambda: self.assertTrue(sender.default(publish.DEFAULT_ASYNC_MAX_BYTES).flush(60)))
        self.addCleanup(self.gate.gate.set)
        self.set_env(FRAMECAST_PRODUCER_URL=self.gate.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1")

    def replay(self, output_id, n, query=""):
        """The first n frames of output_id, read from the stream's start."""
        return read_frames(self.socket(output_id, "&since=0" + query), n)

    def test_returns_before_the_producer_answers_and_keeps_order(self):
        batches = [photo(2, 16, 20, 3, seed=s) for s in range(3)]
        uis = [nodes.FramecastImageOutput().run("async-order", x, "PNG", 80, "c") for x in batches]
        # Every execution returned while the gate held back every request.
        self.assertEqual(self.gate.seen, [])
        keys = []
        for ui in uis:
            entries = ui["ui"]["framecast"]
            keys.append(entries[0]["idempotency_key"])
            want = [{"batch_index": i, "width": 20, "height": 16, "content_type": "image/png", "output_id": "async-order",
                     "client_id": "c", "queued": True, "idempotency_key": keys[-1]} for i in range(2)]
            self.assertEqual(entries, want)
        self.assertEqual(len(set(keys)), 3)

        self.gate.gate.set()
        self.assertTrue(sender.running().flush(60))
        frames = self.replay("async-order", 6, "&client_id=c")
        want = [d for x in batches for d in digests(seed_encode(x, "PNG", 80))]
        self.assertEqual(digests(image for _, image in frames), want)
        self.assertEqual([(h["batch_index"], h["batch_size"]) for h, _ in frames], [(0, 2), (1, 2)] * 3)
        self.assertEqual([h["Idempotency-Key"] for _, _, h in self.gate.seen], keys)

    def test_raw_upload_and_previews(self):
        # FRAMECAST_ENCODE=producer: the sender sends the uint8 copy, which
        # the producer encodes to the seed's pixels; previews come along.
        self.set_env(FRAMECAST_PRODUCER_URL=self.gate.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1",
                     FRAMECAST_ENCODE="producer")
        x = photo(2, 24, 40, 3, seed=5)
        nodes.FramecastImageOutput().run("async-raw", base.FakeTensor(x), "PNG", 80, "", previews=20)
        x[:] = 0  # the tensor changes after the node returned; the queued copy does not
        self.gate.gate.set()
        self.assertTrue(sender.running().flush(60))
        _, target, _ = self.gate.seen[-1]
        self.assertIn("dtype=uint8", target)
        self.assertIn("previews=20", target)
        frames = self.replay("async-raw", 4, "&rendition=all")
        got = [(h["rendition"], h["batch_index"], h["width"], h["height"]) for h, _ in frames]
        self.assertEqual(got, [("preview", 0, 20, 12), ("full", 0, 40, 24), ("preview", 1, 20, 12), ("full", 1, 40, 24)])
        seed = [Image.open(io.BytesIO(b)) for b in seed_encode(photo(2, 24, 40, 3, seed=5), "PNG", 80)]
        for (_, image), want in zip(frames[1::2], seed):
            self.assertTrue(np.array_equal(np.asarray(Image.open(io.BytesIO(image))), np.asarray(want)))

    def test_full_queue_blocks_the_node_until_there_is_room(self):
        # Each batch is 2*16*16*3 = 1536 bytes of uint8 pixels; the sender
        # holds 3500: the batch being sent and one queued; the third waits
        # for room.
        self.set_env(FRAMECAST_PRODUCER_URL=self.gate.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1",
                     FRAMECAST_ASYNC_MAX_BYTES="3500")
        self.addCleanup(setattr, sender.default(3500), "max_bytes", publish.DEFAULT_ASYNC_MAX_BYTES)
        batches = [photo(2, 16, 16, 3, seed=10 + s) for s in range(3)]
        nodes.FramecastImageOutput().run("async-full", batches[0], "PNG", 80, "")
        self.gate.arrived.wait(30)  # the first batch is being sent
        nodes.FramecastImageOutput().run("async-full", batches[1], "PNG", 80, "")
        third = threading.Thread(target=nodes.FramecastImageOutput().run,
                                 args=("async-full", batches[2], "PNG", 80, ""))
        third.start()
        wait_for(lambda: sender.running().stats()["waiting"] == 1, "the third execution to wait for room")
        self.assertTrue(third.is_alive())
        self.assertEqual(sender.running().stats()["pending_bytes"], 2 * 1536)

        self.gate.gate.set()
        third.join(60)
        self.assertFalse(third.is_alive())
        self.assertTrue(sender.running().flush(60))
        frames = self.replay("async-full", 6)
        want = [d for x in batches for d in digests(seed_encode(x, "PNG", 80))]
        self.assertEqual(digests(image for _, image in frames), want)

    def test_queue_full_for_too_long_fails_the_node(self):
        own = sender.Sender(max_bytes=700, full_wait=0.2)
        self.addCleanup(own.close, 60)
        settings = publish.Settings.from_env()
        first = publish.prepare(photo(1, 16, 16, 3), "async-stuck", file_type="PNG", snapshot=True)
        own.put(first, settings)  # an empty queue takes a batch over the bound
        second = publish.prepare(photo(1, 4, 4, 3), "async-stuck", file_type="PNG", snapshot=True)
        with self.assertRaises(sender.QueueFull) as ctx:
            own.put(second, settings)
        self.assertTrue(str(ctx.exception).startswith(
            "framecast: the background send queue stayed full for 0.2 s (0 batches, 768 bytes queued for at most "
            "700; last error: none); this execution's 1 images were not queued."), str(ctx.exception))
        self.gate.gate.set()
        self.assertTrue(own.flush(60))
        self.assertEqual(own.stats()["sent_frames"], 1)

    def test_sync_execution_waits_for_queued_batches(self):
        ws = self.socket("async-then-sync")
        queued = photo(1, 8, 8, 3, seed=1)
        nodes.FramecastImageOutput().run("async-then-sync", queued, "PNG", 80, "")
        self.set_env(FRAMECAST_PRODUCER_URL=self.gate.url, FRAMECAST_TIMEOUT="20")
        direct = photo(1, 8, 8, 3, seed=2)
        result = {}
        t = threading.Thread(target=lambda: result.update(
            ui=nodes.FramecastImageOutput().run("async-then-sync", direct, "PNG", 80, "")))
        t.start()
        self.gate.arrived.wait(30)
        self.gate.gate.set()
        t.join(60)
        self.assertFalse(t.is_alive())
        frames = read_frames(ws, 2)
        want = digests(seed_encode(queued, "PNG", 80) + seed_encode(direct, "PNG", 80))
        self.assertEqual(digests(image for _, image in frames), want)
        self.assertEqual(result["ui"]["ui"]["framecast"][0]["seq"], frames[1][0]["seq"])


class RetryTest(StackTest):
    def test_lost_answers_are_retried_with_the_same_key_and_stored_once(self):
        # Three answers are lost; the sender tries each request once and
        # retries after a pause, so its fourth try gets the producer's
        # answer to a duplicate.
        proxy = FlakyProxy(self.stack.port, lost=3)
        self.addCleanup(proxy.close)
        self.set_env(FRAMECAST_PRODUCER_URL=proxy.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1")
        before = self.metric(FRAMES_STORED)
        background = sender.default(publish.DEFAULT_ASYNC_MAX_BYTES)
        retries = background.stats()["retries"]
        ui = nodes.FramecastImageOutput().run("async-retry", photo(2, 8, 8, 3), "PNG", 80, "")
        self.assertTrue(background.flush(60))
        key = ui["ui"]["framecast"][0]["idempotency_key"]
        self.assertEqual([h["Idempotency-Key"] for _, _, h in proxy.seen], [key] * 4)
        self.assertEqual(background.stats()["retries"] - retries, 3)
        first = [f["seq"] for f in proxy.answers[0]["frames"]]
        self.assertEqual([[f["seq"] for f in a["frames"]] for a in proxy.answers], [first] * 4)
        self.assertEqual([f.get("duplicate", False) for f in proxy.answers[-1]["frames"]], [True, True])
        self.assertEqual(self.metric(FRAMES_STORED) - before, 2)


class RefusalTest(base.EnvMixin, unittest.TestCase):
    def test_refused_batch_is_logged_and_dropped_and_the_next_goes(self):
        producer = base.Producer("--token", base.TOKEN)
        self.addCleanup(producer.stop)
        self.set_env(FRAMECAST_PRODUCER_URL=producer.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1")
        background = sender.default(publish.DEFAULT_ASYNC_MAX_BYTES)
        before = background.stats()
        with self.assertLogs("framecast_comfyui.sender", "ERROR") as logs:
            nodes.FramecastImageOutput().run("async-refused", photo(2, 8, 8, 3), "PNG", 80, "")
            self.assertTrue(background.flush(60))
        self.assertEqual(len(logs.records), 1)
        self.assertIn("framecast: batch of 2 images for output 'async-refused' dropped: framecast producer refused "
                      f"POST {producer.url}/v1/outputs/async-refused/images: HTTP 401", logs.output[0])
        after = background.stats()
        self.assertEqual((after["refused_batches"] - before["refused_batches"],
                          after["refused_frames"] - before["refused_frames"]), (1, 2))

        self.set_env(FRAMECAST_PRODUCER_URL=producer.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ASYNC="1",
                     FRAMECAST_TOKEN=base.TOKEN)
        nodes.FramecastImageOutput().run("async-refused", photo(1, 8, 8, 3), "PNG", 80, "")
        self.assertTrue(background.flush(60))
        self.assertEqual(background.stats()["sent_frames"] - after["sent_frames"], 1)
        self.assertEqual(producer.metric(FRAMES_STORED), 1)


class CloseTest(StackTest):
    def test_close_drops_and_counts_what_is_queued(self):
        gate = GateProxy(self.stack.port)
        self.addCleanup(gate.close)
        self.addCleanup(gate.gate.set)
        own = sender.Sender()
        settings = publish.Settings(url=gate.url, timeout=20)
        batches = [publish.prepare(photo(1, 4, 4, 3), "async-close", file_type="PNG", snapshot=True) for _ in range(3)]
        for b in batches:
            own.put(b, settings)
        gate.arrived.wait(30)
        with self.assertLogs("framecast_comfyui.sender", "ERROR") as logs:
            self.assertEqual(own.close(0.1), 2)
        self.assertEqual(logs.output, ["ERROR:framecast_comfyui.sender:framecast: 2 queued batches (2 images) "
                                       "dropped at close, unsent"])
        with self.assertRaises(RuntimeError):
            own.put(batches[0], settings)


if __name__ == "__main__":
    unittest.main()
