#!/usr/bin/env python3
"""Where int8 activation ranges clip a face, and what that does to matching.

    bench/setup-ort.sh          # once: bench/.venv-ort (onnxruntime, onnx, numpy, Pillow)
    facegate model card --models models --cache   # fills facegate's embedding cache
    bench/.venv-ort/bin/python bench/trace_clipping.py --name mfn --worst 7

1. Reads the float and engine embeddings of every LFW face from facegate's
   own cache (`facegate-eval/src/cache.rs`: the file name is the first 16
   bytes of SHA-256(model hash, flip byte, each relative path + NUL); the
   ONNX model's hash is the SHA-256 of its file, the blob's is in its
   header), so the numbers are those of the card, not a second
   implementation of the networks.
2. Lists the faces whose engine embedding is furthest from float, and for
   the worst ones against random faces: how many other-person faces score
   above the deployed threshold, the best other-person and own-photo scores.
3. For the worst faces and a few random ones, runs the float ONNX on
   onnxruntime with every tensor the QDQ model quantizes as an output and
   prints, per tensor, the face's peak over the quantized range and the
   fraction of its values that clip.

A diagnostic, not a test: it prints, it asserts nothing.
"""
import argparse
import hashlib
import os
import pathlib
import sys
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from PIL import Image

HASH_AT = 32  # where a .fgm blob keeps its model hash (facegate-core engine/blob.rs)


def cache_dir():
    if os.environ.get("FACEGATE_CACHE"):
        return pathlib.Path(os.environ["FACEGATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return pathlib.Path(base) / "facegate"


def load_cached(model_hash, rel_paths):
    h = hashlib.sha256()
    h.update(model_hash)
    h.update(b"\0")  # no flip test
    for p in rel_paths:
        h.update(p.encode())
        h.update(b"\0")
    path = cache_dir() / (h.digest()[:16].hex() + ".emb")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        sys.exit(f"{path}: not cached; run `facegate model card --models models --cache` first")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest or body[:8] != b"FGEMBC01":
        sys.exit(f"{path}: damaged cache file")
    dim, rows = np.frombuffer(body[8:24], dtype="<u8")
    e = np.frombuffer(body[24:], dtype="<f4").reshape(int(rows), int(dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def face_input(path):
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return ((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="mfn", help="shipped model in --models (default mfn)")
    ap.add_argument("--models", default="models")
    ap.add_argument("--lfw", default="../shared/data/lfw/aligned_112")
    ap.add_argument("--worst", type=int, default=7, help="worst faces to trace")
    ap.add_argument("--random", type=int, default=500, help="random faces to compare with")
    a = ap.parse_args()
    models, lfw = pathlib.Path(a.models), pathlib.Path(a.lfw)
    rel = sorted(str(p.relative_to(lfw)) for p in lfw.glob("*/*") if p.is_file())
    ids = np.array([p.split("/")[0] for p in rel])
    float_onnx = models / f"{a.name}.onnx"
    blob = (models / f"{a.name}.fgm").read_bytes()
    f = load_cached(hashlib.sha256(float_onnx.read_bytes()).digest(), rel)
    e = load_cached(blob[HASH_AT:HASH_AT + 32], rel)
    threshold = tomllib.loads((models / f"{a.name}.deployment.toml").read_text())["threshold"]

    cos = (f * e).sum(1)
    order = np.argsort(cos)
    print(f"{a.name}: engine vs float over {len(rel)} faces: mean {cos.mean():.5f}, "
          f"{int((cos < 0.95).sum())} below 0.95")
    worst = order[: a.worst]
    rs = np.random.RandomState(1)
    rand = rs.choice(len(rel), a.random, replace=False)

    def matching(i, m):
        s = m @ m[i]
        other = ids != ids[i]
        own = ~other
        own[i] = False
        return int((s[other] > threshold).sum()), s[other].max(), (s[own].max() if own.any() else None)

    print(f"\nmatching at the deployed threshold {threshold} (other-person faces above it; best other; best own photo):")
    print(f"{'face':36} {'cos':>6} | {'float':>22} | {'engine':>22}")
    for i in worst:
        fm, em = matching(i, f), matching(i, e)
        fmt = lambda m: f"{m[0]:3d} {m[1]:.3f} {('%.3f' % m[2]) if m[2] is not None else '  -  ':>6}"
        print(f"{rel[i].split('/')[-1]:36} {cos[i]:6.3f} | {fmt(fm):>22} | {fmt(em):>22}")
    for label, m in (("float", f), ("engine", e)):
        r = [matching(i, m) for i in rand]
        print(f"{a.random} random faces, {label}: {np.mean([x[0] for x in r]):.1f} others above on average, "
              f"median best other {np.median([x[1] for x in r]):.3f}")

    # Layer by layer: the float network's tensors against the QDQ model's ranges.
    qdq = onnx.load(models / f"{a.name}.int8.onnx")
    init = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    ranges = {}
    for n in qdq.graph.node:
        if n.op_type == "QuantizeLinear":
            s, z = float(init[n.input[1]]), float(init[n.input[2]])
            ranges[n.output[0].removesuffix("_q")] = (s * (-128 - z), s * (127 - z))
    net = onnx.load(float_onnx)
    produced = {o for n in net.graph.node for o in n.output}
    names = [t for t in ranges if t in produced]
    for t in names:
        net.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(net.SerializeToString())
    traced = list(worst[:3]) + list(rand[:2])
    outs = {i: dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"face": face_input(lfw / rel[i])})))
            for i in traced}
    print("\nper quantized tensor: peak / range end, fraction of values clipped")
    print(f"{'tensor':8} {'range':>16} | " + " | ".join(f"{rel[i].split('/')[-1][:22]:>22}" for i in traced))
    for t in names:
        lo, hi = ranges[t]
        cells = []
        for i in traced:
            x = outs[i][t]
            peak = max(x.max() / hi if hi > 0 else 0, x.min() / lo if lo < 0 else 0)
            clipped = ((x > hi) | (x < lo)).mean()
            cells.append(f"{peak:6.2f}× {clipped:8.1e}")
        print(f"{t:8} [{lo:6.2f},{hi:6.2f}] | " + " | ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
