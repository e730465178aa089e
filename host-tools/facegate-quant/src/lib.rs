//! facegate-quant: from a float ONNX face embedder to the int8 `.fgm` blob
//! that facegate's engine runs on boards (and on the host, bit for bit).
//!
//! - [`graph`]: reads the ONNX graph (Conv, BatchNormalization, PRelu/Relu,
//!   Add, Flatten/Reshape, Gemm/MatMul) into a float network, folding BN and
//!   activations into the convolutions; [`graph::FloatNet::run`] is its
//!   float reference executor (held to tract in the tests).
//! - [`quantize`]: calibration (min–max over face images), per-channel
//!   symmetric int8 weights, per-tensor int8 activations, int32 biases,
//!   fixed-point multipliers, the arena plan, and the blob.
//! - [`detector`]: MTCNN's three nets as int8 detector blobs for the
//!   board's cascade (`facegate_core::detect`), calibrated on photo crops.
//! - [`engine`]: the engine as an [`facegate_eval::embedder::Embedder`], so
//!   `facegate eval` measures the int8 model exactly as the board runs it.
#![deny(missing_docs)]

pub mod detector;
pub mod engine;
pub mod graph;
pub mod qdq;
pub mod quantize;
