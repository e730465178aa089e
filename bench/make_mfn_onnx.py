#!/usr/bin/env python3
"""Writes an untrained MobileFaceNet (the `mfn` architecture) as ONNX, for
timing engines before a trained model exists. Random weights: its accuracy
is meaningless, its cost (0.9 M params, ~0.2 G MACs at 112×112) is real.

    .venv/bin/pip install onnx && .venv/bin/python bench/make_mfn_onnx.py target/bench/mfn_random.onnx
    .venv/bin/python bench/make_mfn_onnx.py tests/fixtures/tiny_mfn_random.onnx --tiny

`--tiny` writes the same block structure with very few channels (a test
fixture for the quantizer and the int8 engine, a few tens of KB).

BatchNorm is taken as already folded into the convolutions (as in exports).
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
nodes, inits = [], []
counter = [0]
params = [0]
macs = [0]


def name(prefix):
    counter[0] += 1
    return f"{prefix}{counter[0]}"


def conv(x, cin, cout, k, s, hw, group=1, prelu=True):
    """Conv (+ folded BN bias) (+ PReLU). Returns output name and spatial size."""
    w = name("w")
    b = name("b")
    fan_in = cin // group * k * k
    inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32), w))
    inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
    y = name("conv")
    pad = (k - 1) // 2 if k > 1 and k != hw else 0
    nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4, group=group))
    out_hw = (hw + 2 * pad - k) // s + 1
    params[0] += cout * (cin // group) * k * k + cout
    macs[0] += cout * (cin // group) * k * k * out_hw * out_hw
    if prelu:
        a = name("alpha")
        inits.append(numpy_helper.from_array(np.full((cout, 1, 1), 0.25, np.float32), a))
        z = name("prelu")
        nodes.append(helper.make_node("PRelu", [y, a], [z]))
        params[0] += cout
        y = z
    return y, out_hw


def bottleneck(x, cin, cout, s, hw, expansion=2):
    h, hw1 = conv(x, cin, cin * expansion, 1, 1, hw)
    h, hw2 = conv(h, cin * expansion, cin * expansion, 3, s, hw1, group=cin * expansion)
    h, hw3 = conv(h, cin * expansion, cout, 1, 1, hw2, prelu=False)
    if s == 1 and cin == cout:
        y = name("add")
        nodes.append(helper.make_node("Add", [x, h], [y]))
        h = y
    return h, hw3


tiny = "--tiny" in sys.argv
stem, blocks, head = (8, [(8, 1, 2), (16, 1, 2), (16, 2, 1), (16, 1, 2)], 32) if tiny else \
    (64, [(64, 5, 2), (128, 1, 2), (128, 6, 1), (128, 1, 2), (128, 2, 1)], 512)
x, hw = conv("face", 3, stem, 3, 2, 112)
x, hw = conv(x, stem, stem, 3, 1, hw, group=stem)
c = stem
for t_out, n, s in blocks:
    for i in range(n):
        x, hw = bottleneck(x, c, t_out, s if i == 0 else 1, hw)
        c = t_out
x, hw = conv(x, c, head, 1, 1, hw)
x, hw = conv(x, head, head, hw, 1, hw, group=head, prelu=False)  # global depthwise conv
x, hw = conv(x, head, 128, 1, 1, hw, prelu=False)  # linear embedding
nodes.append(helper.make_node("Flatten", [x], ["embedding"], axis=1))

graph = helper.make_graph(
    nodes, "mfn_random",
    [helper.make_tensor_value_info("face", TensorProto.FLOAT, [1, 3, 112, 112])],
    [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 128])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facegate-bench")
model.ir_version = 8
onnx.checker.check_model(model)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
out = args[0] if args else "mfn_random.onnx"
onnx.save(model, out)
print(f"{out}: {params[0] / 1e6:.3f} M params, {macs[0] / 1e6:.1f} M MACs")
