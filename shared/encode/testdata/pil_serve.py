#!/usr/bin/python3
"""Encode images with PIL the way the seed ComfyUI node does, on request,
for the Go tests and benchmarks in shared/encode (pil_test.go).

One request per line on stdin:

    <raw path> <width> <height> <mode L|RGB|RGBA> <format JPEG|WEBP|PNG> <quality>

The raw file holds the pixels (H,W,C uint8); it is read once and kept. The
answer on stdout is one line, "<ns> <n>", then n bytes of output: ns is the
wall time of img.save(buf, format=..., quality=..., compress_level=1)
alone (time.perf_counter_ns). A failure answers "error <message>".
"""

import io
import sys
import time

from PIL import Image


def main():
    images = {}
    out = sys.stdout.buffer
    for line in sys.stdin:
        try:
            path, w, h, mode, fmt, q = line.split()
            key = (path, w, h, mode)
            if key not in images:
                with open(path, "rb") as f:
                    images[key] = Image.frombytes(mode, (int(w), int(h)), f.read())
            buf = io.BytesIO()
            t0 = time.perf_counter_ns()
            images[key].save(buf, format=fmt, quality=int(q), compress_level=1)
            ns = time.perf_counter_ns() - t0
            b = buf.getvalue()
            out.write(b"%d %d\n" % (ns, len(b)))
            out.write(b)
        except Exception as e:  # the Go side reports it
            out.write(("error %s\n" % str(e).replace("\n", " ")).encode())
        out.flush()


if __name__ == "__main__":
    main()
