#!/usr/bin/python3
"""Time the ComfyUI node (comfyui/) against the seed node's own code path,
on one 1024x1024 RGB batch, in one run against one real producer.

For each format it measures, per image of the batch (median of N runs):

- seed: the seed node's code path, ``255.0 * tensor``, clip, ``uint8``,
  ``Image.fromarray``, ``save(format, quality, compress_level=1)``; the seed
  then hands the bytes to ComfyUI's own websocket (not timed: nothing here
  stands in for it);
- PIL in node: ``FramecastImageOutput.run`` with the default
  FRAMECAST_ENCODE=node, until the producer has stored every frame;
- raw upload: the same with FRAMECAST_ENCODE=producer (float32 pixels, the
  producer encodes);
- async: the same with FRAMECAST_ASYNC=1, until the node returns; then the
  time until the background sender has published the batch;

and, to show where the blocking node's time goes, the part of "PIL in node"
spent in ComfyUI's process converting and encoding (``Batch.encode``), and
the producer's own time to publish and get the acknowledgements
(``framecast_producer_publish_seconds`` of its /metrics);

and the request body bytes per image of each upload.

    FRAMECAST_BENCH_IMAGE=bin/bench.rgb go test -count=1 -run '^TestWriteBenchImage$' ./shared/encode/
    go build -o bin/producer ./services/producer/cmd/producer
    /usr/bin/python3 bench/node_publish.py --producer bin/producer bin/bench.rgb

(``make bench-comfyui`` does all three.)
"""

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, features

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "comfyui" / "tests"))
from seed import encode as seed_node  # noqa: E402  the seed's code path, shared with the tests


def load_node():
    """Import comfyui/ the way ComfyUI imports a custom node directory."""
    name = "framecast_comfyui"
    spec = importlib.util.spec_from_file_location(
        name, REPO / "comfyui" / "__init__.py", submodule_search_locations=[str(REPO / "comfyui")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return sys.modules[name + ".nodes"], sys.modules[name + ".publish"], sys.modules[name + ".sender"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Producer:
    """A producer process with embedded NATS and a temporary store."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="framecast-bench-")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")}
        self.log = open(os.path.join(self.dir, "producer.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{port}", "--nats-url", f"nats://127.0.0.1:{free_port()}",
             "--embedded-nats", "--store-dir", os.path.join(self.dir, "store")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"producer did not start; see {self.log.name}")
            time.sleep(0.05)

    def metric(self, series):
        """The value of one series of the producer's /metrics, 0 when absent."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                name, _, value = line.rpartition(" ")
                if name == series:
                    return float(value)
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def median_ms(fn, runs, per):
    """Median milliseconds of fn() over runs, divided by per."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000 / per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="raw RGB file, H,W,C uint8 (the Go encoder benchmark's image)")
    ap.add_argument("--producer", required=True, help="the producer binary")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per figure (the median is reported)")
    args = ap.parse_args()

    raw = Path(args.path).read_bytes()
    want = args.width * args.height * 3
    if len(raw) != want:
        sys.exit(f"{args.path} is {len(raw)} bytes; expected {want} ({args.width}x{args.height} RGB)")
    img = np.frombuffer(raw, np.uint8).reshape(args.height, args.width, 3)
    # A batch of distinct images, as ComfyUI's float32 IMAGE tensor.
    batch = np.stack([np.roll(img, 37 * i, axis=1) for i in range(args.batch)]).astype(np.float32) / 255

    nodes, publish, sender = load_node()
    producer = Producer(args.producer)
    node = nodes.FramecastImageOutput()
    cases = [("JPEG", 80), ("WEBP", 80), ("PNG", 80)] if features.check("webp") else [("JPEG", 80), ("PNG", 80)]
    rows = []
    try:
        for file_type, quality in cases:
            def run(**env):
                os.environ.update(FRAMECAST_PRODUCER_URL=producer.url, FRAMECAST_ENCODE="node", FRAMECAST_ASYNC="0")
                os.environ.update(env)
                return node.run("bench", batch, file_type, quality, "")

            seed = median_ms(lambda: seed_node(batch, file_type, quality), args.runs, args.batch)
            encoding = median_ms(lambda: publish.prepare(batch, "bench", "", file_type, quality).encode(),
                                 args.runs, args.batch)
            published = producer.metric("framecast_producer_publish_seconds_sum")
            in_node = median_ms(lambda: run(), args.runs, args.batch)
            publishing = (producer.metric("framecast_producer_publish_seconds_sum") - published) * 1000 / (
                args.runs * args.batch)
            raw_upload = median_ms(lambda: run(FRAMECAST_ENCODE="producer"), args.runs, args.batch)
            returns, sent = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                run(FRAMECAST_ASYNC="1")
                t1 = time.perf_counter()
                if not sender.running().flush(120):
                    sys.exit("the background sender did not finish within 120 s")
                returns.append(t1 - t0)
                sent.append(time.perf_counter() - t0)
            if sender.running().stats()["sent_batches"] < args.runs:
                sys.exit(f"background sender: {sender.running().stats()}")

            settings = publish.Settings(url=producer.url)
            pil_batch = publish.prepare(batch, "bench", "", file_type, quality, publish.ENCODE_NODE)
            pil_bytes = sum(len(r[4]) for r in pil_batch.requests(settings))
            raw_batch = publish.prepare(batch, "bench", "", file_type, quality, publish.ENCODE_PRODUCER)
            raw_bytes = sum(r[4].nbytes for r in raw_batch.requests(settings))
            seed_bytes = sum(map(len, seed_node(batch, file_type, quality)))
            rows.append((f"{file_type} q{quality}" if file_type != "PNG" else "PNG", seed, in_node, encoding,
                         publishing, raw_upload,
                         statistics.median(returns) * 1000 / args.batch, statistics.median(sent) * 1000 / args.batch,
                         seed_bytes // args.batch, pil_bytes // args.batch, raw_bytes // args.batch))
    finally:
        producer.stop()

    print(f"PIL {Image.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, batch of {args.batch} "
          f"{args.width}x{args.height} RGB float32, median of {args.runs} runs, ms per image")
    print()
    print("| format | seed node (convert + encode) | PIL in node | of which convert + encode | of which producer "
          "publish (mean) | raw upload | async: node returns | async: published | seed bytes/image "
          "| PIL in node: bytes sent/image | raw upload: bytes sent/image |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, seed, in_node, encoding, publishing, raw_upload, returns, sent, seed_b, pil_b, raw_b in rows:
        print(f"| {label} | {seed:.1f} | {in_node:.1f} | {encoding:.1f} | {publishing:.1f} | {raw_upload:.1f} "
              f"| {returns:.1f} | {sent:.1f} | {seed_b} | {pil_b} | {raw_b} |")


if __name__ == "__main__":
    main()
