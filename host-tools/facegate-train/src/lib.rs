//! facegate-train: compact face embedders trained with the margin losses of
//! face recognition, on burn (CPU `flex` by default).
//!
//! - [`device`]: flex, or LibTorch on CPU/CUDA (`tch` feature).
//! - [`conv_ops`]: depthwise and 1×1 convolutions with fast gradients.
//! - [`model`]: the `mfn` and `nano` MobileFaceNet presets and their cost.
//! - [`heads`]: Softmax, Center loss, L-Softmax, A-Softmax, CosFace /
//!   AM-Softmax, ArcFace and the combined margin.
//! - [`distill`]: embedding distillation from a stronger teacher's embeddings;
//!   [`views`]: augmented views the teacher embedded, for a consistent teacher.
//! - [`training`]: the training loop, its config and run folder; [`inference`]:
//!   a trained embedder's embeddings; [`lfw_dev`]: the LFW check between epochs.
//! - [`throughput`]: timed training steps for the PyTorch peer benchmark.
#![deny(missing_docs)]

pub mod conv_ops;
pub mod data;
pub mod device;
pub mod distill;
pub mod export;
pub mod heads;
pub mod inference;
pub mod lfw_dev;
pub mod model;
pub mod throughput;
pub mod training;
pub mod views;
pub mod viz;
