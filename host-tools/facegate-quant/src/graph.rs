//! ONNX → float network in NHWC, with BatchNorm and activations folded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// Errors reading a model.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not an ONNX protobuf.
    #[error("{}: not an ONNX model ({reason})", path.display())]
    Decode {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something the quantizer does not support, or an inconsistent graph.
    #[error("{}: node {node:?} ({op}): {reason}", path.display())]
    Unsupported {
        /// Where.
        path: PathBuf,
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Why.
        reason: String,
    },
}

/// Shape of an activation, NHWC with N = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// Elements.
    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }
    /// Whether empty.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A float layer on value ids.
#[derive(Clone, Debug)]
pub enum Layer {
    /// Convolution (+ folded BN) (+ PReLU, α per channel; ReLU is α = 0).
    Conv {
        /// Input value.
        input: usize,
        /// Output value.
        output: usize,
        /// Weights, OHWI.
        weights: Vec<f32>,
        /// Bias per output channel.
        bias: Vec<f32>,
        /// Kernel height, width.
        kernel: (usize, usize),
        /// Stride.
        stride: usize,
        /// Padding top, left, bottom, right.
        pads: [usize; 4],
        /// Groups.
        groups: usize,
        /// PReLU slopes per output channel, if an activation follows.
        prelu: Option<Vec<f32>>,
    },
    /// Elementwise sum.
    Add {
        /// First input.
        a: usize,
        /// Second input.
        b: usize,
        /// Output.
        output: usize,
    },
}

/// A float network: layers in execution order over numbered values.
#[derive(Clone, Debug)]
pub struct FloatNet {
    /// Layers.
    pub layers: Vec<Layer>,
    /// Shape of every value.
    pub shapes: Vec<Shape>,
    /// The input value (the normalised RGB face).
    pub input: usize,
    /// The output value (the embedding).
    pub output: usize,
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn ints(n: &NodeProto, name: &str) -> Option<Vec<usize>> {
    attr(n, name).map(|a| {
        a.ints
            .iter()
            .map(|&v| usize::try_from(v).unwrap_or(usize::MAX))
            .collect()
    })
}

fn tensor_data(t: &TensorProto) -> Option<(Vec<usize>, Vec<f32>)> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    // data_type 1 = FLOAT
    if t.data_type != 1 {
        return None;
    }
    let data = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    (data.len() == dims.iter().product::<usize>()).then_some((dims, data))
}

impl FloatNet {
    /// Reads an ONNX file whose input is one 3×112×112 (NCHW) face.
    pub fn load(path: &Path) -> Result<Self, GraphError> {
        let bytes = std::fs::read(path).map_err(|source| GraphError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let model = ModelProto::decode(bytes.as_slice()).map_err(|e| GraphError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let graph = model.graph.ok_or_else(|| GraphError::Decode {
            path: path.to_path_buf(),
            reason: "no graph".into(),
        })?;
        let inits: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let input_name = graph
            .input
            .iter()
            .map(|v| v.name.as_str())
            .find(|n| !inits.contains_key(n))
            .ok_or_else(|| GraphError::Decode {
                path: path.to_path_buf(),
                reason: "no input".into(),
            })?;
        let output_name = graph
            .output
            .first()
            .map(|v| v.name.clone())
            .ok_or_else(|| GraphError::Decode {
                path: path.to_path_buf(),
                reason: "no output".into(),
            })?;

        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for n in &graph.node {
            for i in &n.input {
                *consumers.entry(i.as_str()).or_default() += 1;
            }
        }
        let mut net = Self {
            layers: Vec::new(),
            shapes: vec![Shape {
                h: 112,
                w: 112,
                c: 3,
            }],
            input: 0,
            output: 0,
        };
        let mut ids: HashMap<String, usize> = HashMap::from([(input_name.to_string(), 0)]);
        // Which layer produced each value (for folding BN / activations into it).
        let mut producer: HashMap<usize, usize> = HashMap::new();

        for n in &graph.node {
            let err = |reason: String| GraphError::Unsupported {
                path: path.to_path_buf(),
                node: n.name.clone(),
                op: n.op_type.clone(),
                reason,
            };
            let value = |name: &str| {
                ids.get(name)
                    .copied()
                    .ok_or_else(|| err(format!("input {name:?} is not computed before it is used")))
            };
            let init = |name: &str| {
                inits
                    .get(name)
                    .and_then(|t| tensor_data(t))
                    .ok_or_else(|| err(format!("{name:?} is not a float initializer")))
            };
            let out_name = n
                .output
                .first()
                .cloned()
                .ok_or_else(|| err("no output".into()))?;
            match n.op_type.as_str() {
                "Conv" => {
                    let x = value(&n.input[0])?;
                    let (wd, w) = init(&n.input[1])?;
                    let s = net.shapes[x];
                    let groups = attr(n, "group").map_or(1, |a| usize::try_from(a.i).unwrap_or(0));
                    let [o, ig, kh, kw] = wd[..] else {
                        return Err(err(format!("weight dims {wd:?}")));
                    };
                    if groups == 0 || ig * groups != s.c || o % groups != 0 {
                        return Err(err(format!(
                            "groups {groups} with {} input channels and weights {wd:?}",
                            s.c
                        )));
                    }
                    if ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                        return Err(err("dilated convolutions are not supported".into()));
                    }
                    let strides = ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
                    if strides.len() != 2 || strides[0] != strides[1] {
                        return Err(err(format!("strides {strides:?}: only equal strides")));
                    }
                    let p = ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
                    let pads = [p[0], p[1], p[2], p[3]];
                    let bias = match n.input.get(2) {
                        Some(b) if !b.is_empty() => init(b)?.1,
                        _ => vec![0.0; o],
                    };
                    // OIHW → OHWI
                    let mut weights = vec![0.0; w.len()];
                    for oc in 0..o {
                        for ic in 0..ig {
                            for y in 0..kh {
                                for xk in 0..kw {
                                    weights[((oc * kh + y) * kw + xk) * ig + ic] =
                                        w[((oc * ig + ic) * kh + y) * kw + xk];
                                }
                            }
                        }
                    }
                    let out_len = |i: usize, k: usize, a: usize, b: usize| {
                        (i + a + b).checked_sub(k).map(|v| v / strides[0] + 1)
                    };
                    let (Some(oh), Some(ow)) = (
                        out_len(s.h, kh, pads[0], pads[2]),
                        out_len(s.w, kw, pads[1], pads[3]),
                    ) else {
                        return Err(err("kernel larger than its padded input".into()));
                    };
                    let out = net.shapes.len();
                    net.shapes.push(Shape { h: oh, w: ow, c: o });
                    producer.insert(out, net.layers.len());
                    net.layers.push(Layer::Conv {
                        input: x,
                        output: out,
                        weights,
                        bias,
                        kernel: (kh, kw),
                        stride: strides[0],
                        pads,
                        groups,
                        prelu: None,
                    });
                    ids.insert(out_name, out);
                }
                "BatchNormalization" | "PRelu" | "Relu" => {
                    let x = value(&n.input[0])?;
                    let c = net.shapes[x].c;
                    let layer = producer
                        .get(&x)
                        .copied()
                        .filter(|_| consumers.get(n.input[0].as_str()) == Some(&1));
                    let Some(Layer::Conv {
                        weights,
                        bias,
                        prelu,
                        ..
                    }) = layer.and_then(|l| net.layers.get_mut(l))
                    else {
                        return Err(err(
                            "must directly follow a convolution whose output it alone uses".into(),
                        ));
                    };
                    match n.op_type.as_str() {
                        "BatchNormalization" => {
                            if prelu.is_some() {
                                return Err(err("BatchNormalization after an activation".into()));
                            }
                            let eps = attr(n, "epsilon").map_or(1e-5, |a| a.f);
                            let [g, b, m, v] =
                                [1, 2, 3, 4].map(|i| n.input.get(i).map(|s| init(s)));
                            let (Some(g), Some(b), Some(m), Some(v)) = (g, b, m, v) else {
                                return Err(err("needs 4 initializers".into()));
                            };
                            let (g, b, m, v) = (g?.1, b?.1, m?.1, v?.1);
                            let per = weights.len() / c;
                            for oc in 0..c {
                                let k = g[oc] / (v[oc] + eps).sqrt();
                                weights[oc * per..(oc + 1) * per]
                                    .iter_mut()
                                    .for_each(|w| *w *= k);
                                bias[oc] = (bias[oc] - m[oc]) * k + b[oc];
                            }
                        }
                        "PRelu" => {
                            let (_, a) = init(&n.input[1])?;
                            let alpha = if a.len() == 1 { vec![a[0]; c] } else { a };
                            if alpha.len() != c || prelu.is_some() {
                                return Err(err(format!(
                                    "{} slopes for {c} channels",
                                    alpha.len()
                                )));
                            }
                            *prelu = Some(alpha);
                        }
                        _ => *prelu = Some(vec![0.0; c]),
                    }
                    ids.insert(out_name, x);
                }
                "Add" => {
                    let (a, b) = (value(&n.input[0])?, value(&n.input[1])?);
                    if net.shapes[a] != net.shapes[b] {
                        return Err(err(format!(
                            "shapes {:?} and {:?}",
                            net.shapes[a], net.shapes[b]
                        )));
                    }
                    let out = net.shapes.len();
                    net.shapes.push(net.shapes[a]);
                    net.layers.push(Layer::Add { a, b, output: out });
                    ids.insert(out_name, out);
                }
                "Flatten" | "Reshape" | "Identity" | "Dropout" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    if n.op_type != "Identity" && n.op_type != "Dropout" && (s.h, s.w) != (1, 1) {
                        return Err(err(format!(
                            "{} of a {}×{} map: only 1×1 maps are flattened",
                            n.op_type, s.h, s.w
                        )));
                    }
                    ids.insert(out_name, x);
                }
                "Gemm" | "MatMul" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    if (s.h, s.w) != (1, 1) {
                        return Err(err(
                            "fully connected layers need a flattened 1×1 input".into()
                        ));
                    }
                    let (wd, w) = init(&n.input[1])?;
                    let trans_b =
                        n.op_type == "Gemm" && attr(n, "transB").is_some_and(|a| a.i == 1);
                    let [r, k] = wd[..] else {
                        return Err(err(format!("weight dims {wd:?}")));
                    };
                    let (cin, cout) = if trans_b { (k, r) } else { (r, k) };
                    if cin != s.c {
                        return Err(err(format!("{cin} inputs for {} channels", s.c)));
                    }
                    let weights: Vec<f32> = (0..cout)
                        .flat_map(|o| (0..cin).map(move |i| (o, i)))
                        .map(|(o, i)| {
                            if trans_b {
                                w[o * cin + i]
                            } else {
                                w[i * cout + o]
                            }
                        })
                        .collect();
                    let bias = match n.input.get(2) {
                        Some(b) if !b.is_empty() => init(b)?.1,
                        _ => vec![0.0; cout],
                    };
                    let out = net.shapes.len();
                    net.shapes.push(Shape {
                        h: 1,
                        w: 1,
                        c: cout,
                    });
                    producer.insert(out, net.layers.len());
                    net.layers.push(Layer::Conv {
                        input: x,
                        output: out,
                        weights,
                        bias,
                        kernel: (1, 1),
                        stride: 1,
                        pads: [0; 4],
                        groups: 1,
                        prelu: None,
                    });
                    ids.insert(out_name, out);
                }
                other => {
                    return Err(err(format!(
                        "op {other} is not supported by the int8 engine"
                    )));
                }
            }
        }
        net.output = ids
            .get(&output_name)
            .copied()
            .ok_or_else(|| GraphError::Decode {
                path: path.to_path_buf(),
                reason: format!("output {output_name:?} is never computed"),
            })?;
        let o = net.shapes[net.output];
        if (o.h, o.w) != (1, 1) {
            return Err(GraphError::Decode {
                path: path.to_path_buf(),
                reason: format!("output is {o:?}, not 1×1×D"),
            });
        }
        Ok(net)
    }

    /// Runs the float network on a normalised NHWC input; returns every value
    /// (for calibration) — `values[self.output]` is the embedding.
    pub fn run(&self, input: Vec<f32>) -> Vec<Vec<f32>> {
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.shapes.len()];
        values[self.input] = input;
        self.run_layers(values)
    }

    /// Runs the layers with the given values already known (by id; `known` lists them).
    pub fn run_from(&self, known: &[Vec<f32>], ids: &[usize]) -> Vec<Vec<f32>> {
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.shapes.len()];
        for &i in ids {
            values[i] = known[i].clone();
        }
        self.run_layers(values)
    }

    fn run_layers(&self, mut values: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
        for layer in &self.layers {
            match layer {
                Layer::Conv {
                    input,
                    output,
                    weights,
                    bias,
                    kernel,
                    stride,
                    pads,
                    groups,
                    prelu,
                } => {
                    let (si, so) = (self.shapes[*input], self.shapes[*output]);
                    let x = &values[*input];
                    let (cin_g, cout_g) = (si.c / groups, so.c / groups);
                    let (kh, kw) = *kernel;
                    let mut y = vec![0.0f32; so.len()];
                    for oy in 0..so.h {
                        for ox in 0..so.w {
                            for oc in 0..so.c {
                                let g = oc / cout_g;
                                let mut acc = bias[oc];
                                for ky in 0..kh {
                                    let iy = (oy * stride + ky).wrapping_sub(pads[0]);
                                    if iy >= si.h {
                                        continue;
                                    }
                                    for kx in 0..kw {
                                        let ix = (ox * stride + kx).wrapping_sub(pads[1]);
                                        if ix >= si.w {
                                            continue;
                                        }
                                        let xi = (iy * si.w + ix) * si.c + g * cin_g;
                                        let wi = ((oc * kh + ky) * kw + kx) * cin_g;
                                        acc += x[xi..xi + cin_g]
                                            .iter()
                                            .zip(&weights[wi..wi + cin_g])
                                            .map(|(a, b)| a * b)
                                            .sum::<f32>();
                                    }
                                }
                                if let Some(a) = prelu {
                                    if acc < 0.0 {
                                        acc *= a[oc];
                                    }
                                }
                                y[(oy * so.w + ox) * so.c + oc] = acc;
                            }
                        }
                    }
                    values[*output] = y;
                }
                Layer::Add { a, b, output } => {
                    values[*output] = values[*a]
                        .iter()
                        .zip(&values[*b])
                        .map(|(x, y)| x + y)
                        .collect();
                }
            }
        }
        values
    }
}
