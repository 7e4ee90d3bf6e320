"""Tests for the framecast ComfyUI node against a real producer process.

The producer is FRAMECAST_PRODUCER_BIN when set (``make test-comfyui``
builds it), else it is built once with ``go build`` into a temporary
directory. Each producer runs with embedded NATS and its own store.
"""

import base64
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

import comfy_validation as comfy

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "comfyui"
TOKEN = "secret"


def load_package():
    """Import comfyui/ the way ComfyUI imports a custom node directory."""
    name = "framecast_comfyui"
    spec = importlib.util.spec_from_file_location(
        name, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pkg = load_package()
nodes = sys.modules["framecast_comfyui.nodes"]
publish = sys.modules["framecast_comfyui.publish"]


class FakeTensor:
    """Stands in for a torch tensor: the node only calls .cpu().numpy()."""

    def __init__(self, array):
        self.array = array
        self.calls = []

    def cpu(self):
        self.calls.append("cpu")
        return self

    def numpy(self):
        self.calls.append("numpy")
        return self.array


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_built_dir = None

# The binaries the tests run: name -> (variable naming a built one, package).
BINARIES = {
    "producer": ("FRAMECAST_PRODUCER_BIN", "./services/producer/cmd/producer"),
    "framecast": ("FRAMECAST_BIN", "./services/framecast/cmd/framecast"),
}


def binary(name):
    """Path of a framecast binary: the one its variable names, or one built now."""
    global _built_dir
    variable, package = BINARIES[name]
    path = os.environ.get(variable)
    if path:
        return path
    if _built_dir is None:
        _built_dir = tempfile.mkdtemp(prefix="framecast-bin-")
    path = os.path.join(_built_dir, name)
    if not os.path.exists(path):
        env = dict(os.environ, CGO_ENABLED="0")
        subprocess.run(["go", "build", "-o", path, package], cwd=REPO, env=env, check=True)
    return path


def _die_with_parent():
    """Ask Linux to stop the process when the test process dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Service:
    """A framecast process listening on a free port, with a temporary folder.

    args(dir, port) gives its command line; it is awaited on ready_path.
    """

    def __init__(self, args, ready_path="/readyz"):
        self.ready_path = ready_path
        # A free port can be taken by another process before the service
        # binds it; then it starts again on new ports.
        for attempt in range(3):
            self._start(args)
            try:
                self._wait_ready()
                return
            except BaseException:
                in_use = "address already in use" in self.output()
                self.stop()
                if not in_use or attempt == 2:
                    raise

    def _start(self, args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="framecast-service-")
        self.log_path = os.path.join(self.dir, "service.log")
        self.log = open(self.log_path, "wb")
        # Empty FRAMECAST_* variables so the caller's environment cannot
        # change the service's configuration.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")}
        self.proc = subprocess.Popen(
            args(self.dir, self.port), stdout=self.log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_die_with_parent,
        )

    def _wait_ready(self):
        # A bound so a broken service fails the run instead of hanging it;
        # readiness itself is awaited by polling, not by a fixed sleep.
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[0]} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.proc.args[0]} at {self.url} not ready:\n{self.output()}")
            time.sleep(0.05)

    def metric(self, series):
        """The value of one series of the service's /metrics, 0 when absent."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return 0.0

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Producer(Service):
    """A producer process with embedded NATS on free ports and a temporary store.

    With embedded=False it gets a NATS URL nothing listens on, so it serves
    HTTP but never becomes ready; it is awaited on /healthz instead.
    """

    def __init__(self, *extra_args, embedded=True):
        def args(folder, port):
            # nats_port is the embedded NATS server's client port.
            self.nats_port = free_port()
            return [
                binary("producer"),
                "--listen", f"127.0.0.1:{port}",
                "--nats-url", f"nats://127.0.0.1:{self.nats_port}",
                *(["--embedded-nats", "--store-dir", os.path.join(folder, "store")] if embedded else []),
                *extra_args,
            ]

        super().__init__(args, "/readyz" if embedded else "/healthz")


class DevStack(Service):
    """`framecast run`: embedded NATS, the producer API and a gateway with
    anonymous access, on one free port."""

    def __init__(self):
        super().__init__(lambda folder, port: [
            binary("framecast"), "run",
            "--addr", f"127.0.0.1:{port}", "--nats-port", "-1", "--store-dir", os.path.join(folder, "store"),
        ])


class EnvMixin:
    """Sets FRAMECAST_* for one test and restores the environment after."""

    def set_env(self, **values):
        saved = {k: v for k, v in os.environ.items() if k.startswith("FRAMECAST_")}

        def restore():
            for k in [k for k in os.environ if k.startswith("FRAMECAST_")]:
                del os.environ[k]
            os.environ.update(saved)

        self.addCleanup(restore)
        for k in [k for k in os.environ if k.startswith("FRAMECAST_")]:
            del os.environ[k]
        os.environ.update(values)


open_producer = None
token_producer = None


def setUpModule():
    global open_producer, token_producer
    open_producer = Producer()
    token_producer = Producer("--token", TOKEN)


def tearDownModule():
    for p in (open_producer, token_producer):
        if p is not None:
            p.stop()
    if _built_dir is not None:
        shutil.rmtree(_built_dir, ignore_errors=True)


def ramp(batch, height, width, channels, dtype=np.float32):
    """A deterministic image batch with values across 0..1 (or 0..255)."""
    n = batch * height * width * channels
    x = np.linspace(0.0, 1.0, n, dtype=np.float64).reshape(batch, height, width, channels)
    if dtype == np.uint8:
        return (x * 255).astype(np.uint8)
    return x.astype(dtype)


class NodeDefinitionTest(unittest.TestCase):
    def test_mappings(self):
        self.assertIs(pkg.NODE_CLASS_MAPPINGS["FramecastImageOutput"], nodes.FramecastImageOutput)
        got = pkg.NODE_DISPLAY_NAME_MAPPINGS["FramecastImageOutput"]
        self.assertEqual(got, "Image Websocket Output (framecast)")

    def test_inputs_are_the_seeds_and_previews(self):
        got = nodes.FramecastImageOutput.INPUT_TYPES()
        previews = got["optional"].pop("previews")
        self.assertEqual(previews[0], "INT")
        self.assertEqual({k: previews[1][k] for k in ("default", "min", "max", "step")},
                         {"default": 0, "min": 0, "max": 1024, "step": 1})
        want = {
            "required": {
                "output_id": ("STRING", {"multiline": False, "default": "output_id"}),
                "images": ("IMAGE",),
                "file_type": (["WEBP", "PNG", "JPEG"],),
                "quality": ("INT", {"default": 80, "min": 1, "max": 100, "step": 1}),
            },
            "optional": {
                "client_id": ("STRING", {"multiline": False, "default": ""}),
            },
        }
        self.assertEqual(got, want)

    def test_node_attributes(self):
        cls = nodes.FramecastImageOutput
        self.assertIs(cls.OUTPUT_NODE, True)
        self.assertEqual(cls.RETURN_TYPES, ())
        self.assertTrue(callable(getattr(cls(), cls.FUNCTION)))
        self.assertTrue(cls.CATEGORY)


class ValidationTest(EnvMixin, unittest.TestCase):
    """Bad inputs fail before any connection is made."""

    def setUp(self):
        # A listening socket that never accepts: a connection attempt would
        # sit in its backlog, where the test looks for it afterwards.
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.addCleanup(self.listener.close)
        port = self.listener.getsockname()[1]
        self.set_env(FRAMECAST_PRODUCER_URL=f"http://127.0.0.1:{port}", FRAMECAST_TIMEOUT="5")

    def assert_not_contacted(self):
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.close()
        self.fail("got a connection to the producer; want none")

    def test_run_rejects(self):
        good = FakeTensor(ramp(1, 2, 2, 3))
        cases = [
            ("25-byte output_id", dict(output_id="a" * 25), "output_id size is greater than 24 bytes"),
            ("non-ASCII output_id", dict(output_id="caf\u00e9"), "output_id is not ASCII encodable"),
            ("long non-ASCII output_id", dict(output_id="\u00e9" * 30), "output_id is not ASCII encodable"),
            ("empty output_id", dict(output_id=""), "output_id is empty; it must be 1..24 bytes of printable ASCII"),
            ("control character in output_id", dict(output_id="a\nb"),
             "output_id contains control character 0x0A at offset 1; allowed: printable ASCII 0x20-0x7E"),
            ("non-ASCII client_id", dict(client_id="\u00fc"),
             "client_id is not ASCII encodable; allowed: 0..128 bytes of printable ASCII"),
            ("129-byte client_id", dict(client_id="c" * 129), "client_id size is greater than 128 bytes (got 129)"),
            ("control character in client_id", dict(client_id="\x7f"),
             "client_id contains control character 0x7F at offset 0; allowed: printable ASCII 0x20-0x7E"),
            ("file_type GIF", dict(file_type="GIF"), "file_type 'GIF' is not supported; allowed: WEBP, PNG, JPEG"),
            ("quality 0", dict(quality=0), "quality 0 is not allowed; it must be an integer 1..100"),
            ("quality 101", dict(quality=101), "quality 101 is not allowed; it must be an integer 1..100"),
            ("quality not an integer", dict(quality=8.5), "quality 8.5 is not allowed; it must be an integer 1..100"),
            ("2 channels", dict(images=FakeTensor(np.zeros((1, 2, 2, 2), np.float32))),
             "images has 2 channels (shape (1, 2, 2, 2)); allowed: 1, 3, 4"),
            ("rank 2", dict(images=np.zeros((2, 2), np.float32)),
             "images has shape (2, 2); allowed: [batch, height, width, channels]"),
            ("zero width", dict(images=np.zeros((1, 2, 0, 3), np.float32)),
             "images has shape (1, 2, 0, 3); width and height must be at least 1"),
            ("int32 elements", dict(images=np.zeros((1, 2, 2, 3), np.int32)),
             "images has element type int32; allowed: float (0..1) or uint8 (0..255)"),
            ("previews 15", dict(previews=15), "previews 15 is not allowed; it must be 0 (no previews) or an "
             "integer 16..1024, the longest side in pixels of each image's preview"),
            ("previews 1025", dict(previews=1025), "previews 1025 is not allowed; it must be 0 (no previews) or an "
             "integer 16..1024, the longest side in pixels of each image's preview"),
        ]
        for name, change, want in cases:
            with self.subTest(name):
                kwargs = dict(output_id="out", images=good, file_type="WEBP", quality=80, client_id="")
                kwargs.update(change)
                with self.assertRaises(ValueError) as ctx:
                    nodes.FramecastImageOutput().run(**kwargs)
                self.assertEqual(str(ctx.exception), want)
        self.assert_not_contacted()

    def test_validate_inputs(self):
        v = nodes.FramecastImageOutput.VALIDATE_INPUTS
        cases = [
            ("valid", dict(output_id="out", file_type="PNG", quality=1, client_id="c"), True),
            ("linked inputs left out", dict(), True),
            ("25-byte output_id", dict(output_id="x" * 25), "output_id size is greater than 24 bytes"),
            ("non-ASCII output_id", dict(output_id="\u4f60\u597d"), "output_id is not ASCII encodable"),
            ("bad file_type", dict(file_type="BMP"), "file_type 'BMP' is not supported; allowed: WEBP, PNG, JPEG"),
            ("bad quality", dict(quality=0), "quality 0 is not allowed; it must be an integer 1..100"),
            ("bad client_id", dict(client_id="\u00e9"),
             "client_id is not ASCII encodable; allowed: 0..128 bytes of printable ASCII"),
            ("every input, linked ones as None", dict(output_id="out", images=None, file_type="JPEG", quality=100,
                                                      client_id="", previews=0), True),
            ("bad previews", dict(previews=8), "previews 8 is not allowed; it must be 0 (no previews) or an "
             "integer 16..1024, the longest side in pixels of each image's preview"),
        ]
        for name, kwargs, want in cases:
            with self.subTest(name):
                got = v(**kwargs)
                self.assertEqual(got, want)
        self.assert_not_contacted()

    def test_settings_from_env(self):
        cases = [
            ("timeout not a number", dict(FRAMECAST_TIMEOUT="soon"),
             "FRAMECAST_TIMEOUT 'soon' is not a number; it must be a positive number of seconds"),
            ("timeout zero", dict(FRAMECAST_TIMEOUT="0"),
             "FRAMECAST_TIMEOUT 0.0 is not allowed; it must be a positive number of seconds"),
            ("max body not an integer", dict(FRAMECAST_MAX_BODY_BYTES="64M"),
             "FRAMECAST_MAX_BODY_BYTES '64M' is not an integer; it must be a positive number of bytes"),
            ("max body negative", dict(FRAMECAST_MAX_BODY_BYTES="-1"),
             "FRAMECAST_MAX_BODY_BYTES -1 is not allowed; it must be a positive number of bytes"),
            ("URL without scheme", dict(FRAMECAST_PRODUCER_URL="127.0.0.1:8081"),
             "FRAMECAST_PRODUCER_URL '127.0.0.1:8081' is not a valid URL; "
             "allowed: http:// or https:// with a host, e.g. http://127.0.0.1:8081"),
            ("URL with query", dict(FRAMECAST_PRODUCER_URL="http://h/?a=1"),
             "FRAMECAST_PRODUCER_URL 'http://h/?a=1' has a query or fragment; allowed: scheme://host[:port][/path]"),
            ("encode elsewhere", dict(FRAMECAST_ENCODE="gpu"),
             "FRAMECAST_ENCODE 'gpu' is not allowed; allowed: node (PIL in ComfyUI, the default) "
             "or producer (raw pixels, the producer encodes)"),
            ("async neither on nor off", dict(FRAMECAST_ASYNC="later"),
             "FRAMECAST_ASYNC 'later' is not allowed; allowed: 1, true, yes, on to publish from a background "
             "sender, 0, false, no, off or unset not to (any case)"),
            ("async bound not an integer", dict(FRAMECAST_ASYNC_MAX_BYTES="1G"),
             "FRAMECAST_ASYNC_MAX_BYTES '1G' is not an integer; it must be a positive number of bytes"),
            ("async bound zero", dict(FRAMECAST_ASYNC_MAX_BYTES="0"),
             "FRAMECAST_ASYNC_MAX_BYTES 0 is not allowed; it must be a positive number of bytes"),
        ]
        for name, env, want in cases:
            with self.subTest(name):
                with self.assertRaises(ValueError) as ctx:
                    publish.Settings.from_env(env)
                self.assertEqual(str(ctx.exception), want)
        got = publish.Settings.from_env({})
        self.assertEqual(
            (got.url, got.token, got.timeout, got.max_body_bytes), ("http://127.0.0.1:8081", "", 30.0, 64 << 20)
        )
        got = publish.Settings.from_env({
            "FRAMECAST_PRODUCER_URL": "https://p.example/base/", "FRAMECAST_TOKEN": "t",
            "FRAMECAST_TIMEOUT": "2.5", "FRAMECAST_MAX_BODY_BYTES": "1000",
        })
        self.assertEqual((got.url, got.token, got.timeout, got.max_body_bytes), ("https://p.example/base", "t", 2.5, 1000))
        self.assertEqual((got.encode, got.asynchronous, got.async_max_bytes), ("node", False, 512 << 20))
        got = publish.Settings.from_env({"FRAMECAST_ENCODE": " Producer ", "FRAMECAST_ASYNC": "ON",
                                         "FRAMECAST_ASYNC_MAX_BYTES": "4096"})
        self.assertEqual((got.encode, got.asynchronous, got.async_max_bytes), ("producer", True, 4096))

    def test_url(self):
        s = publish.Settings("http://h:1/")
        got = publish.images_url(s, "a/b c?", "", "WEBP", 80, (2, 3, 4, 3), np.dtype(np.float32))
        want = ("http://h:1/v1/outputs/a%2Fb%20c%3F/images?client_id=&file_type=webp&quality=80"
                "&width=4&height=3&channels=3&dtype=float32&batch=2")
        self.assertEqual(got, want)
        got = publish.images_url(s, "o", "", "PNG", 80, (3, 1, 1, 3), np.dtype(np.uint8), part=(5, 8))
        self.assertTrue(got.endswith("&dtype=uint8&batch=3&batch_offset=5&batch_total=8"), f"got {got!r}")

    def test_empty_batch_publishes_nothing(self):
        got = nodes.FramecastImageOutput().run("out", np.zeros((0, 4, 4, 3), np.float32), "WEBP", 80)
        self.assertEqual(got, {"ui": {"framecast": []}})
        self.assert_not_contacted()


# A prompt's inputs for the node, images linked from node "1".
PROMPT_INPUTS = {"output_id": "out", "images": ["1", 0], "file_type": "WEBP", "quality": 80, "client_id": ""}

# The inputs ComfyUI of 2023-09-07..2023-12-28 calls VALIDATE_INPUTS for:
# the required widget inputs, in INPUT_TYPES order.
WIDGETS = ("output_id", "file_type", "quality")


class ComfyValidationTest(unittest.TestCase):
    """VALIDATE_INPUTS as each ComfyUI convention calls it (see comfy_validation)."""

    node = nodes.FramecastImageOutput

    def errors(self, convention, node=None, **change):
        return comfy.validate(node or self.node, dict(PROMPT_INPUTS, **change), convention)

    def test_valid_prompts_pass(self):
        without_client = {k: v for k, v in PROMPT_INPUTS.items() if k != "client_id"}
        prompts = [
            ("widgets and a linked image", PROMPT_INPUTS),
            ("no client_id", without_client),
            ("output_id and client_id linked", dict(PROMPT_INPUTS, output_id=["2", 0], client_id=["3", 0])),
        ]
        for convention in comfy.CONVENTIONS:
            for name, inputs in prompts:
                with self.subTest(convention=convention, prompt=name):
                    self.assertEqual(comfy.validate(self.node, inputs, convention), [])

    def test_bad_output_id_is_shown_once(self):
        message = "output_id size is greater than 24 bytes"
        for convention in (comfy.NAMED, comfy.NAMED_OR_KWARGS):
            with self.subTest(convention):
                got = self.errors(convention, output_id="x" * 25)
                want = [{"type": "custom_validation_failed", "input_name": "output_id",
                         "details": f"output_id - {message}"}]
                self.assertEqual(got, want)
        # ComfyUI of 2023-09-07..2023-12-28 reports a failure under each
        # widget input it called VALIDATE_INPUTS for, whatever the signature.
        got = [(e["input_name"], e["details"]) for e in self.errors(comfy.ALL_INPUTS, output_id="x" * 25)]
        self.assertEqual(got, [(name, f"{name} - {message}") for name in WIDGETS])

    def test_file_type_and_quality_checked_once(self):
        cases = [
            ("file_type", dict(file_type="GIF"), "value_not_in_list", "file_type: 'GIF' not in ['WEBP', 'PNG', 'JPEG']"),
            ("quality 0", dict(quality=0), "value_smaller_than_min", "quality"),
            ("quality 101", dict(quality=101), "value_bigger_than_max", "quality"),
        ]
        for convention in (comfy.NAMED, comfy.NAMED_OR_KWARGS):
            for name, change, kind, details in cases:
                with self.subTest(convention=convention, case=name):
                    got = self.errors(convention, **change)
                    input_name = next(iter(change))
                    self.assertEqual(got, [{"type": kind, "input_name": input_name, "details": details}])
        # The oldest convention skips ComfyUI's combo check for a node with
        # VALIDATE_INPUTS, which then checks file_type itself.
        got = [e["details"] for e in self.errors(comfy.ALL_INPUTS, file_type="GIF")]
        message = "file_type 'GIF' is not supported; allowed: WEBP, PNG, JPEG"
        self.assertEqual(got, [f"{name} - {message}" for name in WIDGETS])

    def test_bad_client_id(self):
        # Newer ComfyUI does not pass client_id to VALIDATE_INPUTS: run()
        # refuses it, before any request (ValidationTest.test_run_rejects).
        for convention in (comfy.NAMED, comfy.NAMED_OR_KWARGS):
            with self.subTest(convention):
                self.assertEqual(self.errors(convention, client_id="\u00e9"), [])
        message = "client_id is not ASCII encodable; allowed: 0..128 bytes of printable ASCII"
        got = [e["details"] for e in self.errors(comfy.ALL_INPUTS, client_id="\u00e9")]
        self.assertEqual(got, [f"{name} - {message}" for name in WIDGETS])

    def test_stand_in_shows_what_other_signatures_do(self):
        check = nodes.FramecastImageOutput.VALIDATE_INPUTS

        class EveryWidget(nodes.FramecastImageOutput):
            # The signature the node had: every widget input named.
            @classmethod
            def VALIDATE_INPUTS(cls, output_id=None, file_type=None, quality=None, client_id=None):
                return check(output_id=output_id, file_type=file_type, quality=quality, client_id=client_id)

        class Kwargs(nodes.FramecastImageOutput):
            @classmethod
            def VALIDATE_INPUTS(cls, **kwargs):
                return check(**kwargs)

        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'images'"):
            self.errors(comfy.ALL_INPUTS, node=EveryWidget)
        bad = dict(output_id="x" * 25)
        named = [e["input_name"] for e in self.errors(comfy.NAMED, node=EveryWidget, **bad)]
        self.assertEqual(sorted(named), ["client_id", "file_type", "output_id", "quality"])
        # **kwargs: ComfyUI of 2023-12-28..2024-08 passes nothing (the
        # error is lost); later ComfyUI passes, and blames, every input.
        self.assertEqual(self.errors(comfy.NAMED, node=Kwargs, **bad), [])
        every = [e["input_name"] for e in self.errors(comfy.NAMED_OR_KWARGS, node=Kwargs, **bad)]
        self.assertEqual(sorted(every), sorted(PROMPT_INPUTS))


class PublishTest(EnvMixin, unittest.TestCase):
    """The node against a running producer."""

    def setUp(self):
        self.set_env(FRAMECAST_PRODUCER_URL=open_producer.url, FRAMECAST_TIMEOUT="20")

    def check_frames(self, frames, n, width, height, content_type, output_id, client_id):
        self.assertEqual(len(frames), n, f"frames: {frames}")
        seqs = [f["seq"] for f in frames]
        self.assertEqual(seqs, sorted(set(seqs)), "seqs not strictly increasing")
        for i, f in enumerate(frames):
            got = (f["batch_index"], f["width"], f["height"], f["content_type"], f["output_id"], f["client_id"])
            want = (i, width, height, content_type, output_id, client_id)
            self.assertEqual(got, want)
            self.assertGreater(f["bytes"], 0)

    def test_float32_batch(self):
        cases = [
            ("WEBP", "image/webp"),
            ("PNG", "image/png"),
            ("JPEG", "image/jpeg"),
        ]
        for file_type, content_type in cases:
            with self.subTest(file_type):
                tensor = FakeTensor(ramp(2, 24, 32, 3))
                got = nodes.FramecastImageOutput().run("float-out", tensor, file_type, 80, client_id="c-1")
                self.assertEqual(tensor.calls, ["cpu", "numpy"])
                self.check_frames(got["ui"]["framecast"], 2, 32, 24, content_type, "float-out", "c-1")

    def test_uint8_batch(self):
        got = nodes.FramecastImageOutput().run("u8-out", FakeTensor(ramp(3, 5, 7, 4, np.uint8)), "PNG", 80)
        self.check_frames(got["ui"]["framecast"], 3, 7, 5, "image/png", "u8-out", "")

    def test_float32_converted_as_the_seed_does(self):
        # PNG is lossless, so the producer's float32 conversion equals the
        # seed's uint8(clip(255*x, 0, 255)) when both encode to the same size.
        self.set_env(FRAMECAST_PRODUCER_URL=open_producer.url, FRAMECAST_TIMEOUT="20", FRAMECAST_ENCODE="producer")
        rng = np.random.default_rng(1)
        x = rng.uniform(-0.2, 1.2, size=(1, 16, 16, 3)).astype(np.float32)
        x[0, 0, :6, 0] = [0.0, 1.0, 1 / 255, 0.5, 254.5 / 255, np.float32(1) - np.float32(1e-7)]
        seed = np.clip(255.0 * x, 0, 255).astype(np.uint8)
        got = publish.publish(x, "conv-out", file_type="PNG")["frames"][0]["bytes"]
        want = publish.publish(seed, "conv-out", file_type="PNG")["frames"][0]["bytes"]
        self.assertEqual(got, want)

    def test_shapes(self):
        cases = [
            ("grey", np.full((1, 9, 6, 1), 0.5, np.float32), 6, 9),
            ("single image without batch axis", ramp(1, 8, 8, 3)[0], 8, 8),
            ("float64 converted to float32", ramp(1, 4, 5, 3, np.float64), 5, 4),
            ("strided view", ramp(1, 8, 10, 3)[:, ::2, ::2, :], 5, 4),
        ]
        for name, images, width, height in cases:
            with self.subTest(name):
                got = nodes.FramecastImageOutput().run("shape-out", images, "PNG", 80, "")
                self.check_frames(got["ui"]["framecast"], 1, width, height, "image/png", "shape-out", "")

    def test_output_id_needing_escapes(self):
        output_id = "a.b/c d%~*>"
        got = nodes.FramecastImageOutput().run(output_id, ramp(1, 4, 4, 3), "WEBP", 50, "x.y")
        self.check_frames(got["ui"]["framecast"], 1, 4, 4, "image/webp", output_id, "x.y")

    def test_large_batch_in_several_requests(self):
        # 6x6x3 float32 is 432 bytes per image: 1000 bytes fit 2 images.
        self.set_env(FRAMECAST_PRODUCER_URL=open_producer.url, FRAMECAST_TIMEOUT="20",
                     FRAMECAST_MAX_BODY_BYTES="1000", FRAMECAST_ENCODE="producer")
        before = open_producer.metric('framecast_producer_requests_total{code="200"}')
        got = nodes.FramecastImageOutput().run("split-out", ramp(5, 6, 6, 3), "PNG", 80, "")
        self.check_frames(got["ui"]["framecast"], 5, 6, 6, "image/png", "split-out", "")
        requests = open_producer.metric('framecast_producer_requests_total{code="200"}') - before
        self.assertEqual(requests, 3)

    def test_same_idempotency_key_publishes_once(self):
        images = ramp(2, 6, 6, 3)
        first = publish.publish(images, "idem-out", "", "PNG", 80, idempotency_key="key-1")
        second = publish.publish(images, "idem-out", "", "PNG", 80, idempotency_key="key-1")
        third = publish.publish(images, "idem-out", "", "PNG", 80, idempotency_key="key-2")
        seqs = lambda a: [f["seq"] for f in a["frames"]]
        self.assertEqual(seqs(second), seqs(first))
        self.assertGreater(min(seqs(third)), max(seqs(first)))


class _Proxy:
    """Forwards each HTTP request to a producer on upstream_port and hands
    the producer's answer to answer(conn, resp, data), which replies (or
    does not)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.seen = []  # (method, target, headers) of each request forwarded
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn):
        f = conn.makefile("rb")
        method, target, _ = f.readline().decode().split(" ", 2)
        headers = {}
        while True:
            line = f.readline().decode()
            if line in ("\r\n", "\n", ""):
                break
            k, v = line.split(":", 1)
            headers[k.strip()] = v.strip()
        body = f.read(int(headers.get("Content-Length", "0")))
        self.seen.append((method, target, headers))
        up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=20)
        up.request(method, target, body=body, headers=headers)
        resp = up.getresponse()
        data = resp.read()
        up.close()
        self.answer(conn, resp, data)

    def answer(self, conn, resp, data):
        raise NotImplementedError

    def close(self):
        # shutdown wakes the accept() of the serving thread; close alone does not.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)
        if self.thread.is_alive():
            raise RuntimeError("proxy thread did not end")


class DropFirstResponseProxy(_Proxy):
    """Forwards HTTP requests to a producer; for the first one it drops the
    connection after the producer answered, as a network failure would."""

    def __init__(self, upstream_port):
        self.dropped = []  # the answers the client never saw
        self.requests = 0
        super().__init__(upstream_port)

    def answer(self, conn, resp, data):
        self.requests += 1
        if self.requests == 1:
            self.dropped.append(json.loads(data))
            return
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                out.append(f"{k}: {v}\r\n")
        out.append(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
        conn.sendall("".join(out).encode() + data)


class PartialAfterFirstProxy(_Proxy):
    """Forwards HTTP requests to a producer. The first answer goes back as
    it is; every later request is stored by the producer, but answered with
    the 503 of a batch that stopped after its first frame."""

    def __init__(self, upstream_port):
        self.answers = []  # the producer's answers, in order
        super().__init__(upstream_port)

    def answer(self, conn, resp, data):
        answer = json.loads(data)
        self.answers.append(answer)
        status, extra = "200 OK", ""
        if len(self.answers) > 1:
            status, extra = "503 Service Unavailable", "Retry-After: 0\r\n"
            answer = {"error": {"code": "broker_unavailable",
                                "message": f"published 1 of {len(answer['frames'])} frames; frame 1 failed",
                                "published": answer["frames"][:1]}}
        data = json.dumps(answer).encode()
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
        )


class SplitBatchFailureTest(EnvMixin, unittest.TestCase):
    def test_error_lists_every_published_frame_of_the_batch(self):
        # 6x6x3 float32 is 432 bytes per image: 1000 bytes fit 2 images, so
        # a batch of 4 goes in 2 requests; the second stops after 1 frame.
        proxy = PartialAfterFirstProxy(open_producer.port)
        self.addCleanup(proxy.close)
        self.set_env(FRAMECAST_PRODUCER_URL=proxy.url, FRAMECAST_TIMEOUT="20", FRAMECAST_MAX_BODY_BYTES="1000",
                     FRAMECAST_ENCODE="producer")
        with self.assertRaises(publish.ProducerError) as ctx:
            publish.publish(ramp(4, 6, 6, 3), "split-fail", file_type="PNG")
        err = ctx.exception
        self.assertEqual((err.status, err.code), (503, "broker_unavailable"))
        stored = proxy.answers[0]["frames"] + proxy.answers[1]["frames"][:1]
        got = [(f["batch_index"], f["seq"]) for f in err.published]
        want = [(i, f["seq"]) for i, f in enumerate(stored)]
        self.assertEqual(got, want)
        self.assertIn(f"frames 0..2 of the batch of 4 were published (seq {want[0][1]}..{want[2][1]})", str(err))


class WebSocket:
    """A minimal RFC 6455 client: enough to read what a gateway sends."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, port, path, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        status = self.reader.readline().decode().strip()
        headers = {}
        while True:
            line = self.reader.readline().decode()
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not status.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"websocket upgrade of {path} refused: {status}")
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise RuntimeError(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}; want {accept!r}")

    def _exact(self, n):
        data = self.reader.read(n)
        if len(data) != n:
            raise ConnectionError(f"websocket ended after {len(data)} of {n} bytes")
        return data

    def _frame(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(8), "big")
        mask = self._exact(4) if b1 & 0x80 else None
        data = self._exact(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def _send(self, opcode, data):
        # Only control frames are sent: always under 126 bytes, masked.
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(data)]) + mask
                          + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def receive(self, timeout=20):
        """The next message as (opcode, data): 1 for text, 2 for binary.
        Pings are answered; a close frame raises ConnectionError; no
        message within timeout seconds raises TimeoutError."""
        deadline = time.monotonic() + timeout
        kind, parts = None, []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no websocket message in {timeout} s")
            self.sock.settimeout(left)
            fin, opcode, data = self._frame()
            if opcode == 9:
                self._send(10, data)
                continue
            if opcode == 10:
                continue
            if opcode == 8:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                raise ConnectionError(f"websocket closed with {code}: {data[2:].decode('utf-8', 'replace')}")
            if opcode:
                kind = opcode
            parts.append(data)
            if fin:
                return kind, b"".join(parts)

    def close(self):
        try:
            self._send(8, (1000).to_bytes(2, "big"))
        except OSError:
            pass
        self.reader.close()
        self.sock.close()


class SplitBatchWebsocketTest(EnvMixin, unittest.TestCase):
    """A batch sent in several requests reaches a websocket client as one
    batch, through `framecast run` (producer API and gateway)."""

    @classmethod
    def setUpClass(cls):
        cls.stack = DevStack()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_split_batch_is_one_batch_on_the_websocket(self):
        ws = WebSocket(self.stack.port, "/v1/ws?output_id=split-ws")
        self.addCleanup(ws.close)
        kind, data = ws.receive()
        self.assertEqual((kind, json.loads(data)["type"]), (1, "hello"))

        # 6x6x3 float32 is 432 bytes per image: 2200 bytes fit 5 images, so
        # a batch of 8 goes in two requests, of 5 and 3.
        self.set_env(FRAMECAST_PRODUCER_URL=self.stack.url, FRAMECAST_TIMEOUT="20", FRAMECAST_MAX_BODY_BYTES="2200",
                     FRAMECAST_ENCODE="producer")
        before = self.stack.metric('framecast_producer_requests_total{code="200"}')
        got = nodes.FramecastImageOutput().run("split-ws", ramp(8, 6, 6, 3), "PNG", 80, "")
        self.assertEqual(self.stack.metric('framecast_producer_requests_total{code="200"}') - before, 2)

        frames = []
        while len(frames) < 8:
            try:
                kind, data = ws.receive(timeout=10)
            except TimeoutError:
                self.fail(f"got {len(frames)} frames; want 8: {[h for h, _ in frames]}")
            if kind == 2:
                n = int.from_bytes(data[:4], "big")
                frames.append((json.loads(data[4:4 + n]), data[4 + n:]))
            elif json.loads(data)["type"] == "error":
                self.fail(f"gateway error: {data!r}")
        published = got["ui"]["framecast"]
        want = [(f["seq"], i, 8, "image/png", f["bytes"]) for i, f in enumerate(published)]
        seen = [(h["seq"], h["batch_index"], h["batch_size"], h["content_type"], len(image)) for h, image in frames]
        self.assertEqual(seen, want)
        self.assertEqual([f["batch_index"] for f in published], list(range(8)))


class RetryTest(EnvMixin, unittest.TestCase):
    def test_retry_after_lost_answer_publishes_once(self):
        proxy = DropFirstResponseProxy(open_producer.port)
        self.addCleanup(proxy.close)
        self.set_env(FRAMECAST_PRODUCER_URL=proxy.url, FRAMECAST_TIMEOUT="20")
        got = nodes.FramecastImageOutput().run("retry-out", ramp(2, 4, 4, 3), "PNG", 80, "")
        self.assertEqual(proxy.requests, 2)
        seqs = [f["seq"] for f in got["ui"]["framecast"]]
        want = [f["seq"] for f in proxy.dropped[0]["frames"]]
        self.assertEqual(seqs, want)


class FailureTest(EnvMixin, unittest.TestCase):
    def test_producer_refuses_without_token(self):
        self.set_env(FRAMECAST_PRODUCER_URL=token_producer.url, FRAMECAST_TIMEOUT="20")
        with self.assertRaises(publish.ProducerError) as ctx:
            nodes.FramecastImageOutput().run("auth-out", ramp(1, 4, 4, 3), "WEBP", 80, "")
        err = ctx.exception
        self.assertEqual(err.status, 401)
        self.assertTrue(err.code, "no error code parsed from the body")
        self.assertTrue(err.message, "no error message parsed from the body")
        want = (f"framecast producer refused POST {token_producer.url}/v1/outputs/auth-out/images: "
                f"HTTP 401 {err.code}: {err.message} (set FRAMECAST_TOKEN to a token the producer accepts)")
        self.assertEqual(str(err), want)

    def test_wrong_token(self):
        self.set_env(FRAMECAST_PRODUCER_URL=token_producer.url, FRAMECAST_TOKEN="wrong", FRAMECAST_TIMEOUT="20")
        with self.assertRaises(publish.ProducerError) as ctx:
            nodes.FramecastImageOutput().run("auth-out", ramp(1, 4, 4, 3), "WEBP", 80, "")
        self.assertIn(ctx.exception.status, (401, 403))
        self.assertIn("set FRAMECAST_TOKEN", str(ctx.exception))

    def test_token_accepted(self):
        self.set_env(FRAMECAST_PRODUCER_URL=token_producer.url, FRAMECAST_TOKEN=TOKEN, FRAMECAST_TIMEOUT="20")
        got = nodes.FramecastImageOutput().run("auth-out", ramp(1, 4, 4, 3), "WEBP", 80, "")
        self.assertEqual(len(got["ui"]["framecast"]), 1)

    def test_broker_unavailable(self):
        # The producer answers 503 with Retry-After; the node retries once
        # with the same key, then fails naming the status and code.
        producer = Producer(embedded=False)
        self.addCleanup(producer.stop)
        self.set_env(FRAMECAST_PRODUCER_URL=producer.url, FRAMECAST_TIMEOUT="20")
        with self.assertRaises(publish.ProducerError) as ctx:
            nodes.FramecastImageOutput().run("down-out", ramp(1, 4, 4, 3), "WEBP", 80, "")
        err = ctx.exception
        self.assertEqual((err.status, err.code), (503, "broker_unavailable"))
        want_prefix = f"framecast producer refused POST {producer.url}/v1/outputs/down-out/images: HTTP 503 broker_unavailable: "
        self.assertTrue(str(err).startswith(want_prefix), f"got {str(err)!r}; want prefix {want_prefix!r}")
        self.assertRegex(str(err), r"\(retry after \d+ s\)$")
        asked = float(str(err).rsplit("(retry after ", 1)[1].split(" ")[0])
        self.assertEqual(err.retry_after, min(asked, publish.MAX_RETRY_AFTER), "retry_after: the answer's Retry-After")
        self.assertEqual(producer.metric('framecast_producer_requests_total{code="503"}'), 2)

    def test_unreachable_producer(self):
        url = f"http://127.0.0.1:{free_port()}"
        self.set_env(FRAMECAST_PRODUCER_URL=url, FRAMECAST_TIMEOUT="5")
        with self.assertRaises(publish.ProducerError) as ctx:
            nodes.FramecastImageOutput().run("gone-out", ramp(1, 4, 4, 3), "WEBP", 80, "")
        err = ctx.exception
        self.assertIsNone(err.status)
        want_prefix = f"framecast producer at {url} is unreachable (POST {url}/v1/outputs/gone-out/images, 2 attempts): "
        self.assertTrue(str(err).startswith(want_prefix), f"got {str(err)!r}; want prefix {want_prefix!r}")
        self.assertIn("Connection refused", str(err))
        self.assertTrue(str(err).endswith("; check FRAMECAST_PRODUCER_URL and that the producer runs"))


if __name__ == "__main__":
    unittest.main()
