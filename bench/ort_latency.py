#!/usr/bin/env python3
"""onnxruntime peer of `facegate bench engine`: median latency per embedding,
batch 1, one thread, on the face files named on stdin (one path per line, the
same faces and order the Rust side times), with the same input scaling
((x − 127.5) / 128, RGB, NCHW 1×3×112×112).

Prints one JSON line: {"onnxruntime": version, "<label>": ms, ...} for each
--model LABEL=PATH. The session runs with every graph optimisation (the speed
a user gets); on CPUs without VNNI its fused int8 kernels may saturate, so QDQ
*accuracy* is checked elsewhere (tract is the reference) — this is speed only.
"""
import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def load(path):
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    if rgb.shape != (112, 112, 3):
        sys.exit(f"{path}: {rgb.shape[1]}×{rgb.shape[0]} is not a 112×112 face crop")
    return ((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


def median_ms(session, faces, warmup=3):
    name = session.get_inputs()[0].name
    for x in faces[:warmup]:
        session.run(None, {name: x})
    times = []
    for x in faces:
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="LABEL=PATH")
    args = ap.parse_args()
    faces = [load(line.strip()) for line in sys.stdin if line.strip()]
    if not faces:
        sys.exit("no faces on stdin")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    result = {"onnxruntime": ort.__version__}
    for spec in args.model:
        label, _, path = spec.partition("=")
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        result[label] = median_ms(session, faces)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
