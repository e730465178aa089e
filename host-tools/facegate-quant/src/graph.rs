//! ONNX → float network in NHWC, with BatchNorm and activations folded.
//!
//! Embedders (one 1×1×D output) load with [`FloatNet::load`]; networks with
//! map outputs, several heads and max pooling (the MTCNN detector) with
//! [`FloatNet::load_heads`], which merges heads that read the same map into
//! one convolution and says which channels each head got.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
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
    /// The output cannot take a constant shift ([`FloatNet::shift_output`]).
    #[error("cannot shift the embedding: {reason}")]
    Shift {
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
    /// Max pooling, padding left out of the windows.
    MaxPool {
        /// Input value.
        input: usize,
        /// Output value.
        output: usize,
        /// Kernel height, width.
        kernel: (usize, usize),
        /// Stride.
        stride: usize,
        /// Padding top, left, bottom, right.
        pads: [usize; 4],
    },
}

impl Layer {
    /// Values the layer reads.
    pub fn reads(&self) -> Vec<usize> {
        match self {
            Self::Conv { input, .. } | Self::MaxPool { input, .. } => vec![*input],
            Self::Add { a, b, .. } => vec![*a, *b],
        }
    }

    /// The value the layer writes.
    pub const fn writes(&self) -> usize {
        match self {
            Self::Conv { output, .. } | Self::Add { output, .. } | Self::MaxPool { output, .. } => {
                *output
            }
        }
    }

    fn renumber(&mut self, map: &[usize]) {
        match self {
            Self::Conv { input, output, .. } | Self::MaxPool { input, output, .. } => {
                *input = map[*input];
                *output = map[*output];
            }
            Self::Add { a, b, output } => {
                *a = map[*a];
                *b = map[*b];
                *output = map[*output];
            }
        }
    }
}

/// One of a network's outputs, as channels of the merged output value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The ONNX output's name.
    pub name: String,
    /// Its channels in the output value.
    pub channels: Range<usize>,
    /// Whether the ONNX graph ends it with a softmax over the channels (the
    /// engine returns the logits; the caller applies it).
    pub softmax: bool,
}

/// How [`FloatNet::load_heads`] reads a graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Input height and width, for graphs whose input size is symbolic
    /// (fully convolutional nets such as MTCNN's P-Net).
    pub input: Option<(usize, usize)>,
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

/// The input's shape and whether ONNX declares it NHWC (`[N, H, W, 3]`)
/// rather than NCHW (`[N, 3, H, W]`); symbolic sides come from `opts`.
fn input_shape(
    info: &tract_onnx::pb::ValueInfoProto,
    opts: &LoadOptions,
) -> Result<(Shape, bool), String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use tract_onnx::pb::type_proto::Value as Type;
    let dims: Vec<Option<usize>> = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Type::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Dim::DimValue(v)) => usize::try_from(v).ok().filter(|&v| v > 0),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let (nhwc, h, w) = match dims[..] {
        [_, Some(3), h, w] => (false, h, w),
        [_, h, w, Some(3)] => (true, h, w),
        _ => return Err(format!("input {:?} is not one RGB image", info.name)),
    };
    let (h, w) = match (opts.input, h, w) {
        (Some(hw), _, _) => hw,
        (None, Some(h), Some(w)) => (h, w),
        _ => {
            return Err(format!(
                "input {:?} has a symbolic size: give the size to quantise for",
                info.name
            ));
        }
    };
    Ok((Shape { h, w, c: 3 }, nhwc))
}

/// Output height and width of a window sliding over `s`, or `None` when the
/// kernel does not fit the padded input.
fn out_size(
    s: Shape,
    (kh, kw): (usize, usize),
    stride: usize,
    pads: &[usize; 4],
) -> Option<(usize, usize)> {
    let len = |i: usize, k: usize, a: usize, b: usize| {
        (i + a + b).checked_sub(k).map(|v| v / stride.max(1) + 1)
    };
    Some((
        len(s.h, kh, pads[0], pads[2])?,
        len(s.w, kw, pads[1], pads[3])?,
    ))
}

/// Top, left, bottom, right padding of a convolution or pooling node,
/// from `pads` or `auto_pad` (`SAME_UPPER` puts the odd pixel at the end).
fn pads_of(
    n: &NodeProto,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    stride: usize,
) -> Result<[usize; 4], String> {
    let auto = attr(n, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned());
    match auto.as_deref() {
        None | Some("NOTSET" | "") => {
            let p = ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
            let [t, l, b, r] = p[..] else {
                return Err(format!("pads {p:?}"));
            };
            Ok([t, l, b, r])
        }
        Some("VALID") => Ok([0; 4]),
        Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
            let same = |len: usize, k: usize| {
                let out = len.div_ceil(stride.max(1));
                let total = ((out - 1) * stride + k).saturating_sub(len);
                let small = total / 2;
                if mode == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            };
            let ((t, b), (l, r)) = (same(h, kh), same(w, kw));
            Ok([t, l, b, r])
        }
        Some(other) => Err(format!("auto_pad {other}")),
    }
}

impl FloatNet {
    /// Reads an ONNX embedder: one RGB input (its size from the graph) and
    /// one 1×1×D output.
    pub fn load(path: &Path) -> Result<Self, GraphError> {
        let (net, heads) = Self::load_heads(path, &LoadOptions::default())?;
        let o = net.shapes[net.output];
        if heads.len() != 1 || (o.h, o.w) != (1, 1) {
            return Err(GraphError::Decode {
                path: path.to_path_buf(),
                reason: format!(
                    "output is {o:?} in {} head(s), not one 1×1×D embedding",
                    heads.len()
                ),
            });
        }
        Ok(net)
    }

    /// Reads an ONNX network with one RGB input, NCHW or NHWC (then
    /// transposed to NCHW by its first node, as Keras exports do), and one
    /// or more outputs. Several outputs must be convolutions or fully
    /// connected layers reading the same value (a detector's heads): they
    /// become one layer, and the heads say which channels each got, in the
    /// graph's output order.
    pub fn load_heads(path: &Path, opts: &LoadOptions) -> Result<(Self, Vec<Head>), GraphError> {
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
        let decode = |reason: String| GraphError::Decode {
            path: path.to_path_buf(),
            reason,
        };
        let input_info = graph
            .input
            .iter()
            .find(|v| !inits.contains_key(v.name.as_str()))
            .ok_or_else(|| decode("no input".into()))?;
        let input_name = input_info.name.as_str();
        let (in_shape, input_nhwc) = input_shape(input_info, opts).map_err(decode)?;
        let output_names: Vec<String> = graph.output.iter().map(|v| v.name.clone()).collect();
        if output_names.is_empty() {
            return Err(decode("no output".into()));
        }

        let mut consumers: HashMap<&str, usize> = HashMap::new();
        for n in &graph.node {
            for i in &n.input {
                *consumers.entry(i.as_str()).or_default() += 1;
            }
        }
        let mut net = Self {
            layers: Vec::new(),
            shapes: vec![in_shape],
            input: 0,
            output: 0,
        };
        let mut ids: HashMap<String, usize> = HashMap::from([(input_name.to_string(), 0)]);
        // Which layer produced each value (for folding BN / activations into it).
        let mut producer: HashMap<usize, usize> = HashMap::new();
        // ONNX names whose axis order is NHWC (every value is NHWC in
        // memory here; ONNX convolutions see NCHW). Transposes between the
        // two orders only move names in and out of this set.
        let mut nhwc: HashSet<String> = HashSet::new();
        if input_nhwc {
            nhwc.insert(input_name.to_string());
        }
        // Names that are a map flattened in (h, w, c) order, and names that
        // are a softmax over channels.
        let mut flat: HashSet<String> = HashSet::new();
        let mut softmaxed: HashSet<String> = HashSet::new();

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
            let in_nhwc = n.input.first().is_some_and(|i| nhwc.contains(i));
            if in_nhwc && !matches!(n.op_type.as_str(), "Transpose" | "Softmax" | "Flatten") {
                return Err(err(
                    "reads an NHWC-ordered tensor; only Transpose, Flatten and a final Softmax may"
                        .into(),
                ));
            }
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
                    if strides.len() != 2 || strides[0] != strides[1] || strides[0] == 0 {
                        return Err(err(format!(
                            "strides {strides:?}: only equal, non-zero strides"
                        )));
                    }
                    let pads = pads_of(n, (s.h, s.w), (kh, kw), strides[0]).map_err(&err)?;
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
                    let Some((oh, ow)) = out_size(s, (kh, kw), strides[0], &pads) else {
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
                "Add" if n.input.iter().any(|i| inits.contains_key(i.as_str())) => {
                    // A bias after MatMul (as Keras exports dense layers).
                    let (x_name, b_name) = if inits.contains_key(n.input[1].as_str()) {
                        (&n.input[0], &n.input[1])
                    } else {
                        (&n.input[1], &n.input[0])
                    };
                    let x = value(x_name)?;
                    let c = net.shapes[x].c;
                    let (_, b) = init(b_name)?;
                    let layer = producer
                        .get(&x)
                        .copied()
                        .filter(|_| consumers.get(x_name.as_str()) == Some(&1));
                    let Some(Layer::Conv {
                        bias, prelu: None, ..
                    }) = layer.and_then(|l| net.layers.get_mut(l))
                    else {
                        return Err(err(
                            "a constant is added only as the bias of the layer before it".into(),
                        ));
                    };
                    if b.len() != c && b.len() != 1 {
                        return Err(err(format!("{} biases for {c} channels", b.len())));
                    }
                    for (oc, v) in bias.iter_mut().enumerate() {
                        *v += b[oc % b.len()];
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
                "Flatten" if in_nhwc => {
                    // (h, w, c) order: the order of the values in memory.
                    let x = value(&n.input[0])?;
                    flat.insert(out_name.clone());
                    ids.insert(out_name, x);
                }
                "Flatten" | "Reshape" | "Identity" | "Dropout" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    if n.op_type != "Identity" && n.op_type != "Dropout" && (s.h, s.w) != (1, 1) {
                        return Err(err(format!(
                            "{} of a {}×{} map in NCHW order: only 1×1 maps, or maps transposed to NHWC first, are flattened",
                            n.op_type, s.h, s.w
                        )));
                    }
                    if flat.contains(&n.input[0]) {
                        flat.insert(out_name.clone());
                    }
                    ids.insert(out_name, x);
                }
                "Transpose" => {
                    let x = value(&n.input[0])?;
                    let perm = ints(n, "perm").unwrap_or_default();
                    match (perm.as_slice(), in_nhwc) {
                        ([0, 3, 1, 2], true) => {}
                        ([0, 2, 3, 1], false) => {
                            nhwc.insert(out_name.clone());
                        }
                        _ => {
                            return Err(err(format!(
                                "perm {perm:?}: only NHWC ↔ NCHW transposes are supported"
                            )));
                        }
                    }
                    ids.insert(out_name, x);
                }
                "MaxPool" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    let k = ints(n, "kernel_shape").unwrap_or_default();
                    let strides = ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
                    let [kh, kw] = k[..] else {
                        return Err(err(format!("kernel {k:?}")));
                    };
                    if strides.len() != 2 || strides[0] != strides[1] || strides[0] == 0 {
                        return Err(err(format!(
                            "strides {strides:?}: only equal, non-zero strides"
                        )));
                    }
                    if attr(n, "ceil_mode").is_some_and(|a| a.i != 0)
                        || ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1))
                    {
                        return Err(err("ceil mode and dilation are not supported".into()));
                    }
                    let pads = pads_of(n, (s.h, s.w), (kh, kw), strides[0]).map_err(&err)?;
                    let Some((oh, ow)) = out_size(s, (kh, kw), strides[0], &pads) else {
                        return Err(err("kernel larger than its padded input".into()));
                    };
                    if pads[0].max(pads[2]) >= kh || pads[1].max(pads[3]) >= kw {
                        return Err(err(format!("pads {pads:?} as large as the kernel")));
                    }
                    let out = net.shapes.len();
                    net.shapes.push(Shape {
                        h: oh,
                        w: ow,
                        c: s.c,
                    });
                    net.layers.push(Layer::MaxPool {
                        input: x,
                        output: out,
                        kernel: (kh, kw),
                        stride: strides[0],
                        pads,
                    });
                    ids.insert(out_name, out);
                }
                "Softmax" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    let axis = attr(n, "axis").map_or(-1, |a| a.i);
                    let channel_axis = if in_nhwc {
                        matches!(axis, -1 | 3)
                    } else if flat.contains(&n.input[0]) || (s.h, s.w) == (1, 1) {
                        matches!(axis, -1 | 1)
                    } else {
                        false
                    };
                    if !channel_axis {
                        return Err(err(format!("softmax over axis {axis}, not the channels")));
                    }
                    softmaxed.insert(out_name.clone());
                    ids.insert(out_name, x);
                }
                "Gemm" | "MatMul" => {
                    let x = value(&n.input[0])?;
                    let s = net.shapes[x];
                    if (s.h, s.w) != (1, 1) && !flat.contains(&n.input[0]) {
                        return Err(err(
                            "fully connected layers need a 1×1 input or a map flattened in NHWC order"
                                .into(),
                        ));
                    }
                    let (wd, w) = init(&n.input[1])?;
                    let trans_b =
                        n.op_type == "Gemm" && attr(n, "transB").is_some_and(|a| a.i == 1);
                    let [r, k] = wd[..] else {
                        return Err(err(format!("weight dims {wd:?}")));
                    };
                    let (cin, cout) = if trans_b { (k, r) } else { (r, k) };
                    if cin != s.len() {
                        return Err(err(format!("{cin} inputs for {} values", s.len())));
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
                    // Over a flattened map: a convolution whose kernel is
                    // the map (weights OHWI = the flattened (h, w, c) order).
                    net.layers.push(Layer::Conv {
                        input: x,
                        output: out,
                        weights,
                        bias,
                        kernel: (s.h, s.w),
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
        for name in &softmaxed {
            if !output_names.contains(name) || consumers.contains_key(name.as_str()) {
                return Err(decode(format!(
                    "softmax {name:?} is used inside the graph: only a final one is supported"
                )));
            }
        }
        let outputs: Vec<usize> = output_names
            .iter()
            .map(|name| {
                ids.get(name)
                    .copied()
                    .ok_or_else(|| decode(format!("output {name:?} is never computed")))
            })
            .collect::<Result<_, _>>()?;
        let heads = net.merge_heads(&outputs).map_err(decode)?;
        let heads = heads
            .into_iter()
            .zip(output_names)
            .map(|(channels, name)| Head {
                softmax: softmaxed.contains(&name),
                name,
                channels,
            })
            .collect();
        net.compact();
        Ok((net, heads))
    }

    /// Makes the outputs one value: a single output as it is; several
    /// (convolutions without activation reading the same value, read by
    /// nothing else) as one convolution with their channels side by side.
    fn merge_heads(&mut self, outputs: &[usize]) -> Result<Vec<Range<usize>>, String> {
        if let [only] = outputs {
            self.output = *only;
            let all = 0..self.shapes[*only].c;
            return Ok(Vec::from([all]));
        }
        let mut at = Vec::new();
        for &v in outputs {
            let i = self
                .layers
                .iter()
                .position(|l| l.writes() == v)
                .filter(|_| !self.layers.iter().any(|l| l.reads().contains(&v)))
                .ok_or_else(|| format!("output value {v} is not a head read by nothing else"))?;
            if at.contains(&i) {
                return Err("the same value is output twice".into());
            }
            at.push(i);
        }
        let Some(Layer::Conv {
            input: first_input,
            kernel: first_kernel,
            stride: first_stride,
            pads: first_pads,
            ..
        }) = self.layers.get(at[0]).cloned()
        else {
            return Err("heads must be convolutions or fully connected layers".into());
        };
        let (mut weights, mut bias, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
        for &i in &at {
            let Layer::Conv {
                input,
                output,
                weights: w,
                bias: b,
                kernel,
                stride,
                pads,
                groups: 1,
                prelu: None,
            } = &self.layers[i]
            else {
                return Err("heads must be convolutions without activation".into());
            };
            if (*input, *kernel, *stride, *pads)
                != (first_input, first_kernel, first_stride, first_pads)
            {
                return Err("heads must read the same value with the same geometry".into());
            }
            ranges.push(bias.len()..bias.len() + self.shapes[*output].c);
            weights.extend_from_slice(w);
            bias.extend_from_slice(b);
        }
        let merged = self.layers[at[0]].writes();
        self.shapes[merged].c = bias.len();
        if let Layer::Conv {
            weights: w,
            bias: b,
            ..
        } = &mut self.layers[at[0]]
        {
            *w = weights;
            *b = bias;
        }
        let mut drop: Vec<usize> = at[1..].to_vec();
        drop.sort_unstable();
        for i in drop.into_iter().rev() {
            self.layers.remove(i);
        }
        self.output = merged;
        Ok(ranges)
    }

    /// Drops values no layer reads or writes and numbers the rest in order.
    fn compact(&mut self) {
        let mut used = vec![false; self.shapes.len()];
        used[self.input] = true;
        used[self.output] = true;
        for l in &self.layers {
            for v in l.reads() {
                used[v] = true;
            }
            used[l.writes()] = true;
        }
        let mut map = vec![usize::MAX; self.shapes.len()];
        let mut shapes = Vec::new();
        for (v, &u) in used.iter().enumerate() {
            if u {
                map[v] = shapes.len();
                shapes.push(self.shapes[v]);
            }
        }
        for l in &mut self.layers {
            l.renumber(&map);
        }
        self.shapes = shapes;
        self.input = map[self.input];
        self.output = map[self.output];
    }

    /// Subtracts `center` from the output (one value per channel), folded
    /// into the bias of the convolution that writes it: exact in float and
    /// free at run time. The output must be written by a convolution with
    /// no activation after it, read by no other layer.
    pub fn shift_output(&mut self, center: &[f32]) -> Result<(), GraphError> {
        let out = self.output;
        let shift = |reason: &str| GraphError::Shift {
            reason: reason.into(),
        };
        if self.shapes.get(out).map(Shape::len) != Some(center.len()) {
            return Err(shift(&format!(
                "the center has {} values, the output {}",
                center.len(),
                self.shapes.get(out).map_or(0, Shape::len)
            )));
        }
        if center.iter().any(|c| !c.is_finite()) {
            return Err(shift("the center is not finite"));
        }
        if self.layers.iter().any(|l| l.reads().contains(&out)) {
            return Err(shift("another layer reads the output"));
        }
        let writer = self.layers.iter_mut().find(|l| match l {
            Layer::Conv { output, .. }
            | Layer::Add { output, .. }
            | Layer::MaxPool { output, .. } => *output == out,
        });
        match writer {
            Some(Layer::Conv {
                bias, prelu: None, ..
            }) if bias.len() == center.len() => {
                for (b, c) in bias.iter_mut().zip(center) {
                    *b -= c;
                }
                Ok(())
            }
            Some(Layer::Conv { prelu: Some(_), .. }) => {
                Err(shift("an activation follows the last convolution"))
            }
            _ => Err(shift(
                "the output is not written by a convolution over whole channels",
            )),
        }
    }

    /// Swaps the spatial axes of the whole network: for a network trained
    /// on transposed images (`[N, x, y, C]`, as MTCNN's Keras weights are),
    /// gives the same network over ordinary row-major images. Kernels,
    /// strides and pads swap with the axes; channels stay.
    pub fn transpose_spatial(&mut self) {
        for s in &mut self.shapes {
            std::mem::swap(&mut s.h, &mut s.w);
        }
        let swap_pads = |p: &mut [usize; 4]| *p = [p[1], p[0], p[3], p[2]];
        for l in &mut self.layers {
            match l {
                Layer::Conv {
                    weights,
                    kernel,
                    pads,
                    output,
                    ..
                } => {
                    let (kh, kw) = *kernel;
                    let o = self.shapes[*output].c;
                    let per = weights.len() / o.max(1);
                    let cin = per / (kh * kw).max(1);
                    let mut t = vec![0.0; weights.len()];
                    for oc in 0..o {
                        for y in 0..kh {
                            for x in 0..kw {
                                let src = oc * per + (y * kw + x) * cin;
                                let dst = oc * per + (x * kh + y) * cin;
                                t[dst..dst + cin].copy_from_slice(&weights[src..src + cin]);
                            }
                        }
                    }
                    *weights = t;
                    *kernel = (kw, kh);
                    swap_pads(pads);
                }
                Layer::MaxPool { kernel, pads, .. } => {
                    *kernel = (kernel.1, kernel.0);
                    swap_pads(pads);
                }
                Layer::Add { .. } => {}
            }
        }
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
                Layer::MaxPool {
                    input,
                    output,
                    kernel: (kh, kw),
                    stride,
                    pads,
                } => {
                    let (si, so) = (self.shapes[*input], self.shapes[*output]);
                    let x = &values[*input];
                    let c = si.c;
                    let mut y = vec![f32::NEG_INFINITY; so.len()];
                    for oy in 0..so.h {
                        for ox in 0..so.w {
                            let dst = (oy * so.w + ox) * c;
                            for ky in 0..*kh {
                                let iy = (oy * stride + ky).wrapping_sub(pads[0]);
                                for kx in 0..*kw {
                                    let ix = (ox * stride + kx).wrapping_sub(pads[1]);
                                    if iy >= si.h || ix >= si.w {
                                        continue;
                                    }
                                    let src = (iy * si.w + ix) * c;
                                    for ch in 0..c {
                                        y[dst + ch] = y[dst + ch].max(x[src + ch]);
                                    }
                                }
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
