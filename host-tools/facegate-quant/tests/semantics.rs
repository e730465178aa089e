//! The engine computes the quantised model's arithmetic (QDQ semantics,
//! simulated in float by `quantize::simulate`) up to fixed-point rounding:
//! op by op on small networks, where rounding differences cannot compound.

use facegate_core::embedding::cosine;
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::Face;
use facegate_eval::onnx::InputNorm;
use facegate_quant::engine::EngineEmbedder;
use facegate_quant::graph::{FloatNet, Layer, Shape};
use facegate_quant::quantize::{calibrate, normalise, quantize, simulate};

/// A small network: a strided 3×3 conv (+ PReLU if `kind & 1`), a 1×1 conv
/// and a residual Add (if `kind & 2`), a depthwise 3×3 (if `kind & 4`), and a
/// global depthwise conv to 1×1.
fn net(kind: u8) -> FloatNet {
    let mut s = 12345u64;
    let mut r = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
    };
    let c = 8;
    let w: Vec<f32> = (0..c * 27).map(|_| r()).collect();
    let b: Vec<f32> = (0..c).map(|_| r() * 0.1).collect();
    let mut layers = vec![Layer::Conv {
        input: 0,
        output: 1,
        weights: w,
        bias: b,
        kernel: (3, 3),
        stride: 2,
        pads: [1, 1, 1, 1],
        groups: 1,
        prelu: if kind & 1 == 1 {
            Some(vec![0.25; c])
        } else {
            None
        },
    }];
    let mut shapes = vec![
        Shape {
            h: 112,
            w: 112,
            c: 3,
        },
        Shape { h: 56, w: 56, c },
    ];
    let mut out = 1;
    if kind & 2 == 2 {
        let w2: Vec<f32> = (0..c * c).map(|_| r()).collect();
        layers.push(Layer::Conv {
            input: 1,
            output: 2,
            weights: w2,
            bias: vec![0.0; c],
            kernel: (1, 1),
            stride: 1,
            pads: [0; 4],
            groups: 1,
            prelu: None,
        });
        shapes.push(Shape { h: 56, w: 56, c });
        layers.push(Layer::Add {
            a: 1,
            b: 2,
            output: 3,
        });
        shapes.push(Shape { h: 56, w: 56, c });
        out = 3;
    }
    if kind & 4 == 4 {
        let w3: Vec<f32> = (0..c * 9).map(|_| r()).collect();
        layers.push(Layer::Conv {
            input: out,
            output: out + 1,
            weights: w3,
            bias: vec![0.1; c],
            kernel: (3, 3),
            stride: 1,
            pads: [1; 4],
            groups: c,
            prelu: None,
        });
        shapes.push(Shape { h: 56, w: 56, c });
        out += 1;
    }
    // pool to 1x1 with a full-size depthwise conv
    let wg: Vec<f32> = (0..c * 56 * 56).map(|_| r() * 0.01).collect();
    layers.push(Layer::Conv {
        input: out,
        output: out + 1,
        weights: wg,
        bias: vec![0.0; c],
        kernel: (56, 56),
        stride: 1,
        pads: [0; 4],
        groups: c,
        prelu: None,
    });
    shapes.push(Shape { h: 1, w: 1, c });
    FloatNet {
        layers,
        shapes,
        input: 0,
        output: out + 1,
    }
}

#[test]
fn engine_follows_qdq_semantics_op_by_op() {
    let faces: Vec<Face> = (0..6u8)
        .map(|k| Face {
            rgb: (0..112 * 112 * 3)
                .map(|i| ((i * 7 + usize::from(k) * 31) % 251) as u8)
                .collect(),
        })
        .collect();
    for kind in [0u8, 1, 2, 3, 4, 7] {
        let n = net(kind);
        let ranges = calibrate(&n, &faces[..4], InputNorm::ArcFace).unwrap();
        let q = quantize(&n, &ranges, InputNorm::ArcFace).unwrap();
        let e = EngineEmbedder::new("x".into(), q.blob).unwrap();
        let f = &faces[5];
        let sim = simulate(&n, &ranges, normalise(f, InputNorm::ArcFace));
        let eng = e.embed(f).unwrap();
        let c = cosine(&sim, &eng).unwrap();
        assert!(
            c > 0.9999,
            "kind {kind}: cosine {c}: sim {sim:?} engine {eng:?}"
        );
    }
}

/// Centering the embedding moves every output by exactly the center, and
/// refuses outputs a bias cannot move.
#[test]
fn shifting_the_output_subtracts_the_center_from_every_face() {
    let face: Vec<f32> = (0..112 * 112 * 3)
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    for kind in [0u8, 3, 7] {
        let mut n = net(kind);
        let before = n.run(face.clone()).swap_remove(n.output);
        let center: Vec<f32> = (0..8).map(|k| k as f32 * 0.25 - 1.0).collect();
        n.shift_output(&center).unwrap();
        let after = n.run(face.clone()).swap_remove(n.output);
        for ((a, b), c) in after.iter().zip(&before).zip(&center) {
            assert!((a - (b - c)).abs() < 1e-5, "kind {kind}: {a} vs {b} - {c}");
        }
        // The wrong length changes nothing.
        let err = n.shift_output(&[0.0; 3]).unwrap_err().to_string();
        assert!(err.contains("3 values, the output 8"), "{err}");
        assert_eq!(n.run(face.clone()).swap_remove(n.output), after);
    }
    // An activation after the last convolution cannot be moved by its bias.
    let mut n = net(1);
    n.layers.truncate(1);
    n.shapes.truncate(2);
    n.output = 1;
    let err = n
        .shift_output(&vec![0.0; 56 * 56 * 8])
        .unwrap_err()
        .to_string();
    assert!(err.contains("activation"), "{err}");
}
