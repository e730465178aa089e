"""How much of the mean embedding to subtract (`facegate center` takes all of it).

Embeds LFW and every third CelebA training face with a float ONNX embedder
(onnxruntime, one thread), then for beta in 0, 0.25, 0.5, 0.75, 1 subtracts
beta x the CelebA mean from each raw embedding, L2-normalises, and prints
LFW View 2 10-fold accuracy and TAR at FAR 1e-3 over all LFW pairs.
Give it an uncentred model, e.g. the `nano` shipped before 2026-12-08:

    bash bench/setup-ort.sh
    git show 1704d92:models/nano.onnx > /tmp/nano-uncentred.onnx
    bench/.venv-ort/bin/python bench/centring_sweep.py /tmp/nano-uncentred.onnx

About 5 minutes on 2 cores. A measurement for docs/evaluation.md, not a test.
"""

import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

DATA = os.environ.get("FACEGATE_DATA", "../shared/data")


def identity_files(root):
    out, labels = [], []
    for k, d in enumerate(sorted(os.listdir(root))):
        for f in sorted(os.listdir(os.path.join(root, d))):
            out.append(os.path.join(root, d, f))
            labels.append(k)
    return out, np.array(labels)


def embed(session, files):
    name = session.get_inputs()[0].name
    out = np.zeros((len(files), session.get_outputs()[0].shape[1]), np.float32)
    for i, p in enumerate(files):
        rgb = np.asarray(Image.open(p).convert("RGB"), np.float32)
        x = ((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None]
        out[i] = session.run(None, {name: x})[0].reshape(-1)
    return out


def view2_pairs(files):
    index = {}
    for i, p in enumerate(files):
        person, stem = os.path.basename(os.path.dirname(p)), os.path.basename(p)
        index[(person, int(stem.rsplit("_", 1)[1][:4]))] = i
    pairs, same = [], []
    for line in open(os.path.join(DATA, "lfw/pairs.txt")).read().split("\n")[1:]:
        t = line.split()
        if len(t) == 3:
            pairs.append((index[(t[0], int(t[1]))], index[(t[0], int(t[2]))]))
            same.append(True)
        elif len(t) == 4:
            pairs.append((index[(t[0], int(t[1]))], index[(t[2], int(t[3]))]))
            same.append(False)
    return np.array(pairs), np.array(same)


def tenfold(scores, same):
    accs = []
    for f in range(10):
        test = np.zeros(len(same), bool)
        test[f * 600 : (f + 1) * 600] = True
        train_s, train_y = scores[~test], same[~test]
        best = max(np.unique(train_s), key=lambda t: ((train_s >= t) == train_y).mean())
        accs.append(((scores[test] >= best) == same[test]).mean())
    return float(np.mean(accs))


def tar_at_far(emb, labels, far=1e-3, bins=20000):
    edges = np.linspace(-1, 1, bins + 1)
    imp, gen = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for r0 in range(0, len(emb), 1000):
        block = emb[r0 : r0 + 1000] @ emb[r0:].T
        # Keep j > i only: column c of the block is face r0 + c.
        upper = np.triu(np.ones(block.shape, bool), k=1)
        same = labels[r0 : r0 + 1000, None] == labels[None, r0:]
        imp += np.histogram(block[upper & ~same], edges)[0]
        gen += np.histogram(block[upper & same], edges)[0]
    k = np.argmax(np.cumsum(imp[::-1])[::-1] / imp.sum() <= far)
    return gen[k:].sum() / gen.sum()


def main():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], opts)
    lfw, labels = identity_files(os.path.join(DATA, "lfw/aligned_112"))
    celeba = []
    for sub in ("wild_112", "align10k_112"):
        celeba += identity_files(os.path.join(DATA, "celeba", sub))[0]
    raw_lfw, center = embed(session, lfw), embed(session, celeba[::3]).mean(0)
    pairs, same = view2_pairs(lfw)
    print("| β | LFW 10-fold | TAR at FAR 1e-3, all pairs |")
    print("|---|---:|---:|")
    for beta in (0.0, 0.25, 0.5, 0.75, 1.0):
        e = raw_lfw - beta * center
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        scores = (e[pairs[:, 0]] * e[pairs[:, 1]]).sum(1)
        print(f"| {beta} | {100 * tenfold(scores, same):.2f} % | {100 * tar_at_far(e, labels):.2f} % |", flush=True)


if __name__ == "__main__":
    main()
