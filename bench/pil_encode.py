#!/usr/bin/python3
"""Time PIL encoding the way the seed ComfyUI node does, for comparison with
the Go encoders in shared/encode.

The seed calls img.save(buf, format=file_type, quality=quality,
compress_level=1) on each image. This script encodes one raw RGB image
(H,W,C bytes) with those parameters, takes the median wall time of N runs
of each save (time.perf_counter), and prints a markdown table.

Use the Go benchmark's byte-identical input:

    FRAMECAST_BENCH_IMAGE=/tmp/bench.rgb go test -run TestWriteBenchImage ./shared/encode/
    /usr/bin/python3 bench/pil_encode.py /tmp/bench.rgb
    go test -run XXX -bench . -benchtime 10x ./shared/encode/

Note: PIL's WEBP quality=100 is still lossy; lossless needs lossless=True,
where quality becomes libwebp's effort (0 fastest .. 100 smallest). Both are
measured and labelled.
"""

import argparse
import io
import statistics
import sys
import time

try:
    from PIL import Image, features
except ImportError:
    print("PIL not available: skipping")
    sys.exit(0)


def cases(webp):
    """(label, PIL call shown in the table, save kwargs)"""
    out = [
        ("jpeg q80", "JPEG, quality=80", dict(format="JPEG", quality=80, compress_level=1)),
        ("png", "PNG, compress_level=1", dict(format="PNG", quality=80, compress_level=1)),
    ]
    if webp:
        out += [
            ("webp q80 (lossy)", "WEBP, quality=80", dict(format="WEBP", quality=80, compress_level=1)),
            ("webp q100 (lossy, as the seed)", "WEBP, quality=100", dict(format="WEBP", quality=100, compress_level=1)),
            ("webp lossless", "WEBP, quality=100, lossless=True",
             dict(format="WEBP", quality=100, lossless=True, compress_level=1)),
            ("webp lossless (PIL default effort)", "WEBP, lossless=True",
             dict(format="WEBP", lossless=True, compress_level=1)),
        ]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="raw RGB file, H,W,C uint8")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per format (median is reported)")
    args = ap.parse_args()

    with open(args.path, "rb") as f:
        raw = f.read()
    want = args.width * args.height * 3
    if len(raw) != want:
        sys.exit(f"{args.path} is {len(raw)} bytes; expected {want} ({args.width}x{args.height} RGB)")
    img = Image.frombytes("RGB", (args.width, args.height), raw)

    webp = features.check("webp")
    print(f"PIL {Image.__version__}, libwebp {features.version('webp') if webp else 'absent'}, "
          f"{args.width}x{args.height} RGB, median of {args.runs} runs")
    print()
    print("| format | PIL call | ms/op | bytes |")
    print("|---|---|---:|---:|")
    for label, call, kw in cases(webp):
        times, size = [], 0
        for _ in range(args.runs):
            buf = io.BytesIO()
            t0 = time.perf_counter()
            img.save(buf, **kw)
            times.append(time.perf_counter() - t0)
            size = buf.tell()
        print(f"| {label} | `{call}` | {statistics.median(times) * 1e3:.1f} | {size} |")
    if not webp:
        print("\nPIL was built without WEBP: webp rows skipped")


if __name__ == "__main__":
    main()
