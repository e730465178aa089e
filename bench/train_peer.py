#!/usr/bin/env python3
"""PyTorch peer of `facegate bench train`: the same network, head, optimiser,
images, batch size and thread count, timed the same way.

    bench/setup-torch.sh        # once: bench/.venv-torch with torch, numpy, Pillow
    facegate bench train        # runs burn, then this script, and prints the ratio

`facegate bench train` passes the network as JSON (`--arch`, the serialised
`facegate_train::model::Architecture`), so both sides build the same layers:
3×3/2 stem conv, 3×3 depthwise, inverted-residual bottlenecks (1×1 expand,
3×3 depthwise, 1×1 linear projection, residual add where shapes allow), 1×1
head, global depthwise conv, linear 1×1 to the embedding; each conv without
bias, followed by BatchNorm and (except the linear ones) per-channel PReLU.
Head: CosFace / AM-Softmax (s = 30, m = 0.35). Optimiser: SGD, momentum 0.9,
weight decay 5e-4, lr 0.1. Input: (x − 127.5) / 128, no augmentation.

Prints one JSON line: images per second over the timed steps and the
parameter count (checked against burn's by the caller).
"""
import argparse
import json
import os
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, help="Architecture as JSON")
    p.add_argument("--data", required=True, help="identity-per-folder root")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def faces(root, limit):
    """The first `limit` images, identities and files in sorted order, as
    the Rust side picks them; labels are identity indices."""
    import numpy as np
    from PIL import Image

    exts = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp"}
    pixels, labels = [], []
    for c, name in enumerate(sorted(os.listdir(root))):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if os.path.splitext(f)[1].lower() not in exts:
                continue
            img = Image.open(os.path.join(d, f)).convert("RGB").resize((112, 112))
            pixels.append(np.asarray(img, dtype=np.float32))
            labels.append(c)
            if len(pixels) == limit:
                break
        if len(pixels) == limit:
            break
    x = (np.stack(pixels) - 127.5) / 128.0
    classes = sorted(set(labels))
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[c] for c in labels], dtype=np.int64)
    return x.transpose(0, 3, 1, 2).copy(), y, len(classes)


def build(arch):
    import torch.nn as nn

    def conv_bn(cin, cout, k, stride, groups, pad, act):
        layers = [
            nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.PReLU(cout))
        return nn.Sequential(*layers)

    class Bottleneck(nn.Module):
        def __init__(self, cin, cout, stride, expansion):
            super().__init__()
            inner = cin * expansion
            self.body = nn.Sequential(
                conv_bn(cin, inner, 1, 1, 1, 0, True),
                conv_bn(inner, inner, 3, stride, inner, 1, True),
                conv_bn(inner, cout, 1, 1, 1, 0, False),
            )
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return y + x if self.residual else y

    stem = arch["stem"]
    layers = [conv_bn(3, stem, 3, 2, 1, 1, True), conv_bn(stem, stem, 3, 1, stem, 1, True)]
    hw = (arch["input"] + 2 - 3) // 2 + 1
    c = stem
    for s in arch["stages"]:
        for i in range(s["repeats"]):
            stride = s["stride"] if i == 0 else 1
            layers.append(Bottleneck(c, s["channels"], stride, s["expansion"]))
            hw = (hw + 2 - 3) // stride + 1
            c = s["channels"]
    head = arch["head"]
    layers += [
        conv_bn(c, head, 1, 1, 1, 0, True),
        conv_bn(head, head, hw, 1, head, 0, False),
        conv_bn(head, arch["embedding"], 1, 1, 1, 0, False),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers)


def main():
    a = parse()
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    arch = json.loads(a.arch)
    x_all, y_all, classes = faces(a.data, a.images)
    net = build(arch)
    params = sum(p.numel() for p in net.parameters())
    weight = torch.nn.Parameter(torch.randn(classes, arch["embedding"]) * 0.01)
    memory = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    opt = torch.optim.SGD(
        list(net.parameters()) + [weight], lr=0.1, momentum=0.9, weight_decay=5e-4
    )
    s, m = 30.0, 0.35
    n = len(y_all)

    def step(i):
        idx = np.arange(i * a.batch, (i + 1) * a.batch) % n
        x = torch.from_numpy(x_all[idx]).to(memory_format=memory)
        y = torch.from_numpy(y_all[idx])
        emb = net(x)
        cos = F.linear(F.normalize(emb), F.normalize(weight))
        logits = s * (cos - m * F.one_hot(y, classes))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    net.train()
    for i in range(a.warmup):
        step(i)
    started = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.steps):
        loss = step(i)
    secs = time.perf_counter() - started
    print(
        json.dumps(
            {
                "framework": f"pytorch {torch.__version__}"
                + (" channels_last" if a.channels_last else ""),
                "params": params,
                "images_per_second": a.steps * a.batch / secs,
                "threads": torch.get_num_threads(),
                "final_loss": loss,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
