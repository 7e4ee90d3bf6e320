"""Tests for the forwarding of ComfyUI's execution events (events.py).

A stand-in of ComfyUI's PromptServer (an async send_json and a prompt
queue, driven through an event loop) gets the hook; the events go to a
real producer process, and are read back from its embedded NATS server's
stream, as gateways read them.
"""

import asyncio
import base64
import json
import socket
import sys
import threading
import types
import unittest
from unittest import mock

import test_node as base

events = sys.modules["framecast_comfyui.events"]
publish = base.publish
LOGGER = "framecast_comfyui.events"

producer = None


def setUpModule():
    global producer
    producer = base.Producer()


def tearDownModule():
    if producer is not None:
        producer.stop()


class NATS:
    """A minimal NATS client: enough to ask JetStream for stored messages."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        if not self.reader.readline().startswith(b"INFO "):
            raise RuntimeError("NATS did not start with INFO")
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                          b'"protocol":1}\r\nSUB _INBOX.events 1\r\n')

    def request(self, subject, payload):
        self.sock.sendall(f"PUB {subject} _INBOX.events {len(payload)}\r\n".encode() + payload + b"\r\n")
        while True:
            line = self.reader.readline()
            if not line:
                raise ConnectionError("NATS closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())
            elif line.startswith((b"MSG ", b"HMSG ")):
                parts = line.split()
                size = int(parts[-1])
                data = self.reader.read(size + 2)[:size]
                return data[int(parts[-2]):] if line.startswith(b"HMSG") else data

    def stored_events(self, stream="OUTPUTS"):
        """Every message of the stream on outputs.~events.>, in order:
        dicts of seq, subject, headers and data."""
        out, seq = [], 1
        while True:
            ask = json.dumps({"seq": seq, "next_by_subj": "outputs.~events.>"}).encode()
            answer = json.loads(self.request(f"$JS.API.STREAM.MSG.GET.{stream}", ask))
            if "error" in answer:
                if answer["error"].get("code") == 404:
                    return out
                raise RuntimeError(f"stream message get: {answer['error']}")
            m = answer["message"]
            headers = {}
            for line in base64.b64decode(m.get("hdrs", "")).decode().split("\r\n")[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip()] = v.strip()
            out.append({"seq": m["seq"], "subject": m["subject"], "headers": headers,
                        "data": base64.b64decode(m.get("data", ""))})
            seq = m["seq"] + 1

    def close(self):
        self.reader.close()
        self.sock.close()


class StandInPromptQueue:
    """ComfyUI's PromptQueue as the hook reads it: a mutex, the running
    items by task number, the history by prompt id, the queue. An item is
    (number, prompt_id, workflow, extra_data, outputs_to_execute)."""

    def __init__(self):
        self.mutex = threading.RLock()
        self.queue = []
        self.currently_running = {}
        self.history = {}


class StandInPromptServer:
    """ComfyUI's PromptServer as far as the hook sees it: an async
    send_json(event, data, sid=None) that writes to its own sockets, here
    a list, and a prompt_queue."""

    def __init__(self):
        self.sent = []  # (event, data, sid) as ComfyUI's own sockets got them
        self.prompt_queue = StandInPromptQueue()
        self.now = 0.0  # the hook's clock

    async def send_json(self, event, data, sid=None):
        await asyncio.sleep(0)
        self.sent.append((event, data, sid))


# An API-format workflow of three nodes; node 1 is cached.
WORKFLOW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "steps": 3}},
    "3": {"class_type": "FramecastImageOutput", "inputs": {"images": ["2", 0], "output_id": "o"}},
}


def comfy_messages(prompt_id, sid):
    """The send_json calls ComfyUI makes for one prompt of WORKFLOW, in
    order, with the clock time of each (for elapsed_time)."""
    at = lambda t, event, data, to=sid: (t, event, data, to)  # noqa: E731
    return [
        at(0.0, "status", {"status": {"exec_info": {"queue_remaining": 1}}}, None),
        at(10.0, "execution_start", {"prompt_id": prompt_id, "timestamp": 1}),
        at(10.0, "execution_cached", {"nodes": ["1"], "prompt_id": prompt_id, "timestamp": 2}),
        at(10.5, "executing", {"node": "2", "display_node": "2", "prompt_id": prompt_id}),
        *[at(11.0 + i, "progress", {"value": i + 1, "max": 3, "prompt_id": prompt_id, "node": "2"}) for i in range(3)],
        at(13.0, "executing", {"node": "3", "display_node": "3", "prompt_id": prompt_id}),
        at(13.5, "executed", {"node": "3", "display_node": "3", "output": {"framecast": [{"seq": 7}]},
                              "prompt_id": prompt_id}),
        at(14.25, "execution_success", {"prompt_id": prompt_id, "timestamp": 3}),
        at(14.5, "executing", {"node": None, "prompt_id": prompt_id}),
        at(15.0, "status", {"status": {"exec_info": {"queue_remaining": 0}}}, None),
    ]


def event_body(event, data):
    return json.dumps({"event": event, "data": data}, separators=(",", ":"), ensure_ascii=False).encode()


class ForwarderCase(unittest.TestCase):
    def setUp(self):
        self.nats = NATS(producer.nats_port)
        self.addCleanup(self.nats.close)
        self.before = len(self.nats.stored_events())

    def stored(self):
        return self.nats.stored_events()[self.before:]

    def forwarder(self, url=None, **kw):
        fwd = events.Forwarder(publish.Settings(url or producer.url, timeout=20), **kw)
        self.addCleanup(fwd.close)
        return fwd


class ForwardTest(ForwarderCase):
    def test_prompt_events_reach_the_stream_in_order(self):
        server = StandInPromptServer()
        fwd = events.install(server, settings=publish.Settings(producer.url, timeout=20), clock=lambda: server.now)
        self.addCleanup(fwd.close)
        self.assertIs(events.install(server), fwd, "a second install wraps again")
        prompt_id, sid = "p-1", "sid-1"
        messages = comfy_messages(prompt_id, sid)

        async def run():
            for t, event, data, to in messages:
                if event == "execution_start":
                    server.prompt_queue.currently_running[0] = (1, prompt_id, WORKFLOW, {"client_id": sid}, ["3"])
                server.now = t
                await server.send_json(event, data, to)
        asyncio.run(run())
        self.assertTrue(fwd.flush(20), f"events not delivered: {fwd.stats()}")

        # ComfyUI's own sockets got exactly its messages, in order.
        self.assertEqual(server.sent, [(e, d, to) for _, e, d, to in messages])

        want = []
        for _, event, data, to in messages:
            want.append((event, data, to))
            if event == "executing" and data["node"] == "2":
                want.append(("live_status", {"prompt_id": prompt_id, "current_node": "KSampler", "progress": 0.67}, to))
            if event == "executing" and data["node"] == "3":
                want.append(("live_status", {"prompt_id": prompt_id, "current_node": "FramecastImageOutput",
                                             "progress": 1.0}, to))
            if event == "execution_success":
                want.append(("elapsed_time", {"prompt_id": prompt_id, "elapsed_time": 4.25}, to))
        got = self.stored()
        self.assertEqual([(m["subject"], m["headers"].get("Framecast-Event"), m["data"]) for m in got],
                         [("outputs.~events." + (to or "~all"), e, event_body(e, d)) for e, d, to in want])
        seqs = [m["seq"] for m in got]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(fwd.stats(), {"sent": len(want), "dropped_progress": 0, "dropped": 0, "refused": 0,
                                       "invalid": 0, "retries": 0, "queued": 0})

    def test_invalid_events_are_counted_not_sent(self):
        server = StandInPromptServer()
        fwd = events.install(server, forwarder=self.forwarder())
        cases = [
            ("65-byte name", "e" * 65, {}, None),
            ("name with a newline", "a\nb", {}, None),
            ("data a list", "custom", [1, 2], None),
            ("sid with a control character", "custom", {}, "a\tb"),
            ("data not JSON", "custom", {"x": object()}, None),
            ("NaN", "custom", {"x": float("nan")}, None),
            ("over 64 KiB", "custom", {"x": "x" * (64 << 10)}, None),
        ]

        async def run():
            for _, event, data, sid in cases:
                await server.send_json(event, data, sid)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            asyncio.run(run())
        self.assertTrue(fwd.flush(20))
        self.assertEqual(len(server.sent), len(cases), "ComfyUI's own send_json was not called for each")
        self.assertEqual(fwd.stats()["invalid"], len(cases))
        self.assertEqual(self.stored(), [])
        self.assertIn("event 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee' not forwarded: "
                      "event name", logs.output[0])
        self.assertIn("(events not forwardable: 1 so far)", logs.output[0])

    def test_refused_without_token(self):
        token_producer = base.Producer("--token", base.TOKEN)
        self.addCleanup(token_producer.stop)
        fwd = self.forwarder(token_producer.url)
        item = fwd.encode("status", {}, None)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.assertTrue(fwd.put_nowait(item))
            self.assertTrue(fwd.flush(20))
        self.assertEqual((fwd.stats()["refused"], fwd.stats()["sent"]), (1, 0))
        self.assertIn("producer refused event 'status': HTTP 401 unauthorized", logs.output[0])
        self.assertIn("(set FRAMECAST_TOKEN to a token the producer accepts)", logs.output[0])

        fwd = events.Forwarder(publish.Settings(token_producer.url, token=base.TOKEN, timeout=20))
        self.addCleanup(fwd.close)
        self.assertTrue(fwd.put_nowait(fwd.encode("status", {}, None)))
        self.assertTrue(fwd.flush(20))
        self.assertEqual(fwd.stats()["sent"], 1)


class StallingProxy(base._Proxy):
    """Forwards requests to the producer and holds each answer until
    release is set."""

    def __init__(self, upstream_port):
        self.release = threading.Event()
        super().__init__(upstream_port)

    def answer(self, conn, resp, data):
        self.release.wait(30)
        conn.sendall(f"HTTP/1.1 {resp.status} {resp.reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)

    def close(self):
        self.release.set()
        super().close()


class PressureTest(ForwarderCase):
    def test_full_queue_drops_progress_first(self):
        proxy = StallingProxy(producer.port)
        self.addCleanup(proxy.close)
        server = StandInPromptServer()
        fwd = events.install(server, forwarder=self.forwarder(proxy.url, max_events=4, full_wait=0.3))
        ticks = []

        async def ticker():
            while True:
                ticks.append(1)
                await asyncio.sleep(0.01)

        async def run():
            send = server.send_json
            await send("execution_start", {"prompt_id": "p"}, "s")
            while fwd.stats()["queued"]:  # the sender took it and waits for its answer
                await asyncio.sleep(0.01)
            for i in range(4):
                await send("progress", {"value": i, "max": 9}, "s")
            for i in range(4):  # each makes room by dropping the oldest progress
                await send("executed", {"node": f"e{i}"}, "s")
            await send("progress", {"value": 8, "max": 9}, "s")  # no progress left to drop: dropped
            tick = asyncio.ensure_future(ticker())
            await send("executed", {"node": "late"}, "s")  # waits 0.3 s for room, then dropped
            waited = len(ticks)
            asyncio.get_running_loop().call_later(0.1, proxy.release.set)
            await send("executed", {"node": "in time"}, "s")  # room comes while it waits
            tick.cancel()
            return waited

        with self.assertLogs(LOGGER, "WARNING") as logs:
            waited = asyncio.run(run())
            self.assertTrue(fwd.flush(20), f"events not delivered: {fwd.stats()}")
        self.assertGreater(waited, 5, "the event loop was blocked while an event waited for room")
        got = [(m["headers"]["Framecast-Event"], json.loads(m["data"])["data"]) for m in self.stored()]
        want = [("execution_start", {"prompt_id": "p"})] + [("executed", {"node": f"e{i}"}) for i in range(4)] + [
            ("executed", {"node": "in time"})]
        self.assertEqual(got, want)
        self.assertEqual(len(server.sent), 12, "ComfyUI's own send_json missed events")
        stats = fwd.stats()
        self.assertEqual((stats["sent"], stats["dropped_progress"], stats["dropped"]), (6, 5, 1))
        text = "\n".join(logs.output)
        self.assertIn("progress events dropped: the event queue is full (progress events dropped: 1 so far)", text)
        self.assertIn("event 'executed' dropped: the event queue stayed full for 0.3 s (other events dropped: 1 so far)",
                      text)

    def test_unreachable_producer_drops_without_waiting(self):
        down = base.Producer(embedded=False)  # answers 503: no broker
        self.addCleanup(down.stop)
        fwd = self.forwarder(down.url, max_events=2, full_wait=30)

        async def run():
            item = fwd.encode("execution_start", {"prompt_id": "p"}, "s")
            await fwd.put(item)
            while fwd.stats()["retries"] == 0:
                await asyncio.sleep(0.01)
            for i in range(3):
                await fwd.put(fwd.encode("executed", {"node": str(i)}, "s"))

        with self.assertLogs(LOGGER, "WARNING") as logs:
            asyncio.run(run())
        self.assertEqual(fwd.stats()["dropped"], 1)
        text = "\n".join(logs.output)
        self.assertIn(f"producer at {down.url} answered an event with HTTP 503; retrying in 2 s (failed attempts: 1 so far)",
                      text)
        self.assertIn("event 'executed' dropped: the event queue is full and the producer is unreachable", text)
        fwd.close()
        # The event being retried and the two queued ones are dropped at close.
        self.assertEqual(fwd.stats()["dropped"], 4)


class QueueTest(unittest.TestCase):
    def item(self, name, size=10):
        return events.Item(name, b"x" * size, "")

    def test_eviction_by_bytes_is_undone_when_it_does_not_make_room(self):
        q = events.EventQueue(max_events=10, max_bytes=64 << 10)
        for item in (self.item("progress", 100), self.item("executed", (64 << 10) - 300), self.item("progress", 100)):
            self.assertEqual(q.offer(item)[0], "queued")
        # 250 bytes do not fit; dropping both progress items frees only 200.
        self.assertEqual(q.offer(self.item("executed", 450)), ("full", 0))
        self.assertEqual([i.name for i in q._items], ["progress", "executed", "progress"])
        self.assertEqual(q.offer(self.item("status", 150)), ("evicted", 1))
        self.assertEqual([i.name for i in q._items], ["executed", "progress", "status"])


class TrackerTest(unittest.TestCase):
    def test_live_status_as_comfyui_deploy(self):
        now = [0.0]
        tracker = events.PromptTracker({"p": WORKFLOW}.get, clock=lambda: now[0], limit=2)
        steps = [
            ("executing", {"node": "2", "prompt_id": "p"},
             [("live_status", {"prompt_id": "p", "current_node": "KSampler", "progress": 0.33})]),
            ("progress", {"value": 1, "max": 3, "prompt_id": "p"}, []),
            ("executing", {"node": "2", "prompt_id": "p"}, []),  # the same node again: nothing
            # An expanded node is counted as the workflow node it came from.
            ("executing", {"node": "3.0.1", "display_node": "3", "prompt_id": "p"},
             [("live_status", {"prompt_id": "p", "current_node": "FramecastImageOutput", "progress": 0.67})]),
            ("executing", {"node": "99", "prompt_id": "p"}, []),  # not in the workflow
            # Started before the hook saw execution_start: no elapsed_time.
            ("executing", {"node": None, "prompt_id": "p"}, []),
            ("executing", {"node": "1", "prompt_id": "unknown"}, []),
            ("status", {"status": {}}, []),
            ("executing", {"node": "1"}, []),  # no prompt_id
        ]
        for event, data, want in steps:
            with self.subTest(event=event, data=data):
                self.assertEqual(tracker.observe(event, data), want)

    def test_elapsed_time_once_and_prompts_bounded(self):
        now = [5.0]
        tracker = events.PromptTracker({"a": WORKFLOW, "b": WORKFLOW, "c": WORKFLOW}.get, clock=lambda: now[0], limit=2)
        for p in ("a", "b", "c"):  # "a" is forgotten when "c" starts
            tracker.observe("execution_start", {"prompt_id": p})
        now[0] = 7.5
        self.assertEqual(tracker.observe("execution_success", {"prompt_id": "c"}),
                         [("elapsed_time", {"prompt_id": "c", "elapsed_time": 2.5})])
        self.assertEqual(tracker.observe("executing", {"node": None, "prompt_id": "c"}), [])
        self.assertEqual(tracker.observe("executing", {"node": None, "prompt_id": "a"}), [])
        self.assertEqual(tracker.observe("executing", {"node": None, "prompt_id": "b"}),
                         [("elapsed_time", {"prompt_id": "b", "elapsed_time": 2.5})])


class InstallTest(base.EnvMixin, unittest.TestCase):
    def test_forward_enabled(self):
        for value, want in [("1", True), (" TRUE ", True), ("yes", True), ("On", True),
                            ("", False), ("0", False), ("false", False), ("No", False), ("off", False)]:
            with self.subTest(value):
                self.assertIs(events.forward_enabled({"FRAMECAST_FORWARD_EVENTS": value}), want)
        self.assertIs(events.forward_enabled({}), False)
        with self.assertRaises(ValueError) as ctx:
            events.forward_enabled({"FRAMECAST_FORWARD_EVENTS": "maybe"})
        self.assertEqual(str(ctx.exception), "FRAMECAST_FORWARD_EVENTS 'maybe' is not allowed; allowed: 1, true, yes, "
                                             "on to forward, 0, false, no, off or unset not to (any case)")

    def test_install_from_env(self):
        server = StandInPromptServer()
        comfy = types.ModuleType("server")
        comfy.PromptServer = types.SimpleNamespace(instance=server)
        original = server.send_json
        with mock.patch.dict(sys.modules, {"server": comfy}):
            self.assertIsNone(events.install_from_env({}))
            self.assertEqual(server.send_json, original)
            with self.assertLogs(LOGGER, "ERROR") as logs:
                self.assertIsNone(events.install_from_env({"FRAMECAST_FORWARD_EVENTS": "sometimes"}))
            self.assertIn("FRAMECAST_FORWARD_EVENTS 'sometimes' is not allowed", logs.output[0])
            with self.assertLogs(LOGGER, "ERROR") as logs:
                env = {"FRAMECAST_FORWARD_EVENTS": "1", "FRAMECAST_PRODUCER_URL": "nowhere"}
                self.assertIsNone(events.install_from_env(env))
            self.assertIn("FRAMECAST_PRODUCER_URL 'nowhere' is not a valid URL", logs.output[0])

            env = {"FRAMECAST_FORWARD_EVENTS": "on", "FRAMECAST_PRODUCER_URL": producer.url}
            fwd = events.install_from_env(env)
            self.addCleanup(fwd.close)
            self.assertIsInstance(fwd, events.Forwarder)
            self.assertIs(server.send_json.framecast_forwarder, fwd)
            self.assertIs(events.install_from_env(env), fwd)
            asyncio.run(server.send_json("status", {"status": {}}, None))
            self.assertTrue(fwd.flush(20))
            self.assertEqual((fwd.stats()["sent"], len(server.sent)), (1, 1))
        with mock.patch.dict(sys.modules, {"server": None}), self.assertLogs(LOGGER, "ERROR") as logs:
            self.assertIsNone(events.install_from_env({"FRAMECAST_FORWARD_EVENTS": "1"}))
        self.assertIn("PromptServer is not running", logs.output[0])


if __name__ == "__main__":
    unittest.main()
