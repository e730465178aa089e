//! Training throughput: timed SGD steps of an embedder with the CosFace head
//! on faces in memory, no augmentation — what `facegate bench train` runs
//! side by side with the same steps in PyTorch (`bench/train_peer.py`).

use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;

use crate::data::{DecodedFaces, batch};
use crate::heads::{HeadKind, MarginHead, labels_tensor};
use crate::model::Architecture;
use crate::training::Trainable;

/// What a throughput run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// Images per second over the timed steps (after the warm-up).
    pub images_per_second: f64,
    /// Loss of the last step (a sanity check that training happened).
    pub final_loss: f64,
    /// Parameters of the network (burn's count without BatchNorm statistics).
    pub params: usize,
}

/// Runs `warmup` untimed and then `steps` timed SGD steps (momentum 0.9,
/// weight decay 5e-4, lr 0.1, CosFace s = 30, m = 0.35) with batches taken in
/// order from `faces`, wrapping around, on `device` (without autodiff).
pub fn measure(
    arch: &Architecture,
    faces: &DecodedFaces,
    batch_size: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
    device: &Device,
) -> Throughput {
    let device = device.clone().autodiff();
    device.seed(seed);
    let mut model = Trainable {
        embedder: arch.init(&device),
        head: MarginHead::new(
            HeadKind::CosFace { s: 30.0, m: 0.35 },
            faces.classes(),
            arch.embedding,
            &device,
        ),
    };
    let mut optim: ModuleOptimizer = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let n = faces.len().max(1);
    let mut final_loss = f64::NAN;
    let mut started = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            started = Instant::now();
        }
        let idx: Vec<usize> = (step * batch_size..(step + 1) * batch_size)
            .map(|i| i % n)
            .collect();
        let crate::data::Batch {
            faces: x, labels, ..
        } = batch(faces, &idx, None, None, &device);
        let emb = model.embedder.forward(x);
        let loss = model.head.loss(emb, labels_tensor(&labels, &device), 0.0);
        final_loss = f64::from(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Throughput {
        images_per_second: (steps * batch_size) as f64 / secs,
        final_loss,
        params: arch.info().params,
    }
}
