#!/usr/bin/python3
"""Shrink images with PIL's Image.thumbnail, on request, for the Go
benchmark of previews in services/producer/publish (preview_bench_test.go).

One request per line on stdin:

    <raw path> <width> <height> <side> <webp quality, 0: none>

The raw file holds RGB pixels (H,W,3 uint8); it is read once and kept. For
each request a copy of the image (made untimed) is shrunk in place with
img.thumbnail((side, side)), PIL's defaults (BICUBIC, reducing_gap=2.0),
and, with a quality, saved as WEBP at that quality. The answer is one line,
"<ns> <width> <height> <bytes>": ns the wall time of thumbnail (and save)
alone (time.perf_counter_ns), the preview's size and its WEBP bytes (0
without a quality). A failure answers "error <message>".
"""

import io
import sys
import time

from PIL import Image


def main():
    images = {}
    out = sys.stdout
    for line in sys.stdin:
        try:
            path, w, h, side, q = line.split()
            key = (path, w, h)
            if key not in images:
                with open(path, "rb") as f:
                    images[key] = Image.frombytes("RGB", (int(w), int(h)), f.read())
            img = images[key].copy()
            n = 0
            t0 = time.perf_counter_ns()
            img.thumbnail((int(side), int(side)))
            if int(q) > 0:
                buf = io.BytesIO()
                img.save(buf, format="WEBP", quality=int(q))
                n = len(buf.getvalue())
            ns = time.perf_counter_ns() - t0
            out.write("%d %d %d %d\n" % (ns, img.width, img.height, n))
        except Exception as e:  # the Go side reports it
            out.write("error %s\n" % str(e).replace("\n", " "))
        out.flush()


if __name__ == "__main__":
    main()
