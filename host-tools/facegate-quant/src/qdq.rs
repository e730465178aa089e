//! ONNX export of a float network ([`export_float`]) and QDQ export: the quantised model as standard ONNX, with
//! QuantizeLinear/DequantizeLinear around float ops, so tract and
//! onnxruntime can run exactly the int8 grid the engine runs.
//!
//! Per value: `Q → DQ` with the calibrated scale and zero point; per
//! convolution: int8 weights with a per-channel `DQ` (axis 0), int32 bias with
//! a `DQ` of scale `s_in · s_w`, then `Conv` (+ `PRelu`) in float. Opset 13.

use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

use crate::graph::{FloatNet, Layer};
use crate::quantize::{activation_quants, quantize_conv};

const FLOAT: i32 = 1;
const INT8: i32 = 3;
const INT32: i32 = 6;

fn tensor(name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect(),
        data_type,
        raw_data: raw,
        ..Default::default()
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v
            .iter()
            .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| (*s).to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(
                i64::try_from(d).unwrap_or(i64::MAX),
            )),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// OHWI weights (the float net's layout) to ONNX's OIHW.
fn ohwi_to_oihw<T: Copy + Default>(
    w: &[T],
    cout: usize,
    kh: usize,
    kw: usize,
    cin_g: usize,
) -> Vec<T> {
    let mut oihw = vec![T::default(); w.len()];
    for oc in 0..cout {
        for y in 0..kh {
            for x in 0..kw {
                for ic in 0..cin_g {
                    oihw[((oc * cin_g + ic) * kh + y) * kw + x] =
                        w[((oc * kh + y) * kw + x) * cin_g + ic];
                }
            }
        }
    }
    oihw
}

/// Writes a float network as plain ONNX (opset 13): `Conv` with folded
/// BatchNorm, `PRelu`, `Add`, and a final `Flatten` to `[1, dim]`. Input
/// `face`: the normalised NCHW face; output `embedding` (not L2-normalised:
/// the caller normalises, as every facegate consumer does).
pub fn export_float(net: &FloatNet, producer: &str) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let v = |i: usize| {
        if i == net.input {
            "face".to_string()
        } else {
            format!("v{i}")
        }
    };
    for (k, layer) in net.layers.iter().enumerate() {
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
                let cout = net.shapes[*output].c;
                let cin_g = net.shapes[*input].c / groups;
                let (kh, kw) = *kernel;
                let p = format!("c{k}");
                let w = ohwi_to_oihw(weights, cout, kh, kw, cin_g);
                inits.push(tensor(
                    &format!("{p}_w"),
                    &[cout, cin_g, kh, kw],
                    FLOAT,
                    f32s(&w),
                ));
                inits.push(tensor(&format!("{p}_b"), &[cout], FLOAT, f32s(bias)));
                let attrs = vec![
                    attr_ints("kernel_shape", &[kh, kw]),
                    attr_ints("strides", &[*stride, *stride]),
                    attr_ints("pads", pads),
                    attr_int("group", i64::try_from(*groups).unwrap_or(1)),
                ];
                let conv_out = if prelu.is_some() {
                    format!("{p}_y")
                } else {
                    v(*output)
                };
                nodes.push(node(
                    "Conv",
                    &[&v(*input), &format!("{p}_w"), &format!("{p}_b")],
                    &conv_out,
                    attrs,
                ));
                if let Some(alpha) = prelu {
                    inits.push(tensor(
                        &format!("{p}_alpha"),
                        &[cout, 1, 1],
                        FLOAT,
                        f32s(alpha),
                    ));
                    nodes.push(node(
                        "PRelu",
                        &[&conv_out, &format!("{p}_alpha")],
                        &v(*output),
                        vec![],
                    ));
                }
            }
            Layer::Add { a, b, output } => {
                nodes.push(node("Add", &[&v(*a), &v(*b)], &v(*output), vec![]));
            }
            Layer::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => {
                nodes.push(node(
                    "MaxPool",
                    &[&v(*input)],
                    &v(*output),
                    pool_attrs(*kernel, *stride, pads),
                ));
            }
        }
    }
    nodes.push(node(
        "Flatten",
        &[&v(net.output)],
        "embedding",
        vec![attr_int("axis", 1)],
    ));
    let si = net.shapes[net.input];
    let graph = GraphProto {
        name: "facegate_embedder".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info("face", &[1, si.c, si.h, si.w])],
        output: vec![value_info("embedding", &[1, net.shapes[net.output].c])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        producer_name: producer.into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn pool_attrs(kernel: (usize, usize), stride: usize, pads: &[usize; 4]) -> Vec<AttributeProto> {
    vec![
        attr_ints("kernel_shape", &[kernel.0, kernel.1]),
        attr_ints("strides", &[stride, stride]),
        attr_ints("pads", pads),
    ]
}

/// Writes the QDQ ONNX model (input: the normalised NCHW face, as the float model's).
pub fn export_qdq(net: &FloatNet, ranges: &[(f32, f32)]) -> Vec<u8> {
    let acts = activation_quants(net, ranges);
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let v = |i: usize| format!("v{i}");
    // Q → DQ of value `i` from float `src` into the name `v{i}`.
    let qdq = |nodes: &mut Vec<NodeProto>, inits: &mut Vec<TensorProto>, src: &str, i: usize| {
        let (s, z) = (format!("v{i}_scale"), format!("v{i}_zp"));
        inits.push(tensor(&s, &[], FLOAT, f32s(&[acts[i].scale])));
        inits.push(tensor(
            &z,
            &[],
            INT8,
            acts[i].zero_point.to_le_bytes().to_vec(),
        ));
        let q = format!("v{i}_q");
        nodes.push(node("QuantizeLinear", &[src, &s, &z], &q, vec![]));
        nodes.push(node("DequantizeLinear", &[&q, &s, &z], &v(i), vec![]));
    };
    qdq(&mut nodes, &mut inits, "face", net.input);
    for (k, layer) in net.layers.iter().enumerate() {
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
                let cout = net.shapes[*output].c;
                let cin_g = net.shapes[*input].c / groups;
                let cq = quantize_conv(weights, bias, cout, acts[*input].scale);
                let (kh, kw) = *kernel;
                let oihw: Vec<u8> = ohwi_to_oihw(&cq.weights, cout, kh, kw, cin_g)
                    .into_iter()
                    .map(|w| w.to_le_bytes()[0])
                    .collect();
                let p = format!("c{k}");
                inits.push(tensor(
                    &format!("{p}_w"),
                    &[cout, cin_g, kh, kw],
                    INT8,
                    oihw,
                ));
                inits.push(tensor(&format!("{p}_ws"), &[cout], FLOAT, f32s(&cq.scales)));
                inits.push(tensor(&format!("{p}_wz"), &[cout], INT8, vec![0; cout]));
                let bscale: Vec<f32> = cq.scales.iter().map(|s| s * acts[*input].scale).collect();
                inits.push(tensor(
                    &format!("{p}_b"),
                    &[cout],
                    INT32,
                    cq.bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
                ));
                inits.push(tensor(&format!("{p}_bs"), &[cout], FLOAT, f32s(&bscale)));
                inits.push(tensor(
                    &format!("{p}_bz"),
                    &[cout],
                    INT32,
                    vec![0; cout * 4],
                ));
                let axis0 = || vec![attr_int("axis", 0)];
                nodes.push(node(
                    "DequantizeLinear",
                    &[&format!("{p}_w"), &format!("{p}_ws"), &format!("{p}_wz")],
                    &format!("{p}_wf"),
                    axis0(),
                ));
                nodes.push(node(
                    "DequantizeLinear",
                    &[&format!("{p}_b"), &format!("{p}_bs"), &format!("{p}_bz")],
                    &format!("{p}_bf"),
                    axis0(),
                ));
                let attrs = vec![
                    attr_ints("kernel_shape", &[kh, kw]),
                    attr_ints("strides", &[*stride, *stride]),
                    attr_ints("pads", pads),
                    attr_int("group", i64::try_from(*groups).unwrap_or(1)),
                ];
                let y = format!("{p}_y");
                nodes.push(node(
                    "Conv",
                    &[&v(*input), &format!("{p}_wf"), &format!("{p}_bf")],
                    &y,
                    attrs,
                ));
                let src = if let Some(alpha) = prelu {
                    inits.push(tensor(
                        &format!("{p}_alpha"),
                        &[cout, 1, 1],
                        FLOAT,
                        f32s(alpha),
                    ));
                    let z = format!("{p}_act");
                    nodes.push(node("PRelu", &[&y, &format!("{p}_alpha")], &z, vec![]));
                    z
                } else {
                    y
                };
                qdq(&mut nodes, &mut inits, &src, *output);
            }
            Layer::Add { a, b, output } => {
                let y = format!("a{k}_y");
                nodes.push(node("Add", &[&v(*a), &v(*b)], &y, vec![]));
                qdq(&mut nodes, &mut inits, &y, *output);
            }
            Layer::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => {
                // Same quantisation on both sides: the Q/DQ pair is exact.
                let y = format!("p{k}_y");
                nodes.push(node(
                    "MaxPool",
                    &[&v(*input)],
                    &y,
                    pool_attrs(*kernel, *stride, pads),
                ));
                qdq(&mut nodes, &mut inits, &y, *output);
            }
        }
    }
    nodes.push(node(
        "Flatten",
        &[&v(net.output)],
        "embedding",
        vec![attr_int("axis", 1)],
    ));
    let si = net.shapes[net.input];
    let graph = GraphProto {
        name: "facegate_qdq".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info("face", &[1, si.c, si.h, si.w])],
        output: vec![value_info("embedding", &[1, net.shapes[net.output].c])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "facegate quantize".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}
