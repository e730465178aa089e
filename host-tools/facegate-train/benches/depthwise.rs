//! Depthwise convolutions on `flex` at the shapes of one `mfn` training step
//! (batch 64): facegate's forward beside burn's generic `conv2d`, and
//! facegate's two gradients; the best of five runs per layer shape and the
//! step's totals. A measurement, not a test. `facegate` keeps freed memory in
//! the process (no fresh, page-faulting 50 MB buffers per op); to measure the
//! same here, give glibc that policy:
//!
//! ```text
//! GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 \
//!     cargo bench -p facegate-train --bench depthwise
//! ```
use std::time::Instant;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::tensor::TensorData;
use facegate_train::conv_ops::SeparableConvOps;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Deterministic values in [−1, 1), as the kernel tests draw them.
fn values(shape: [usize; 4], seed: u64) -> FlexTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    // (channels, side, stride, kernel, pad, layers of this shape in mfn)
    let layers = [
        (64, 56, 1, 3, 1, 1),
        (128, 56, 2, 3, 1, 1),
        (128, 28, 1, 3, 1, 4),
        (256, 28, 2, 3, 1, 1),
        (256, 14, 1, 3, 1, 6),
        (256, 14, 2, 3, 1, 1),
        (256, 7, 1, 3, 1, 2),
        (512, 7, 1, 7, 0, 1),
    ];
    let batch = 64;
    let (mut total_burn, mut total_y, mut total_x, mut total_w) = (0.0, 0.0, 0.0, 0.0);
    println!("depthwise convolutions on flex, batch {batch} (best of 5; ms)");
    for (c, side, stride, k, pad, count) in layers {
        let out = (side + 2 * pad - k) / stride + 1;
        let x = values([batch, c, side, side], 1);
        let w = values([c, 1, k, k], 2);
        let g = values([batch, c, out, out], 3);
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], c);
        let burn = best_ms(|| {
            Flex::conv2d(x.clone(), w.clone(), None, options.clone());
        });
        let y = best_ms(|| {
            Flex::depthwise_conv2d(x.clone(), w.clone(), stride, pad);
        });
        let dx = best_ms(|| {
            Flex::depthwise_conv2d_x_backward(x.clone(), w.clone(), g.clone(), stride, pad);
        });
        let dw = best_ms(|| {
            Flex::depthwise_conv2d_weight_backward(x.clone(), w.clone(), g.clone(), stride, pad);
        });
        println!(
            "{c:4} ch {side:2}×{side:<2} {k}×{k} stride {stride} (×{count}): forward {y:6.2} (burn {burn:6.2}), input gradient {dx:6.2}, weight gradient {dw:6.2}"
        );
        let count = count as f64;
        total_burn += burn * count;
        total_y += y * count;
        total_x += dx * count;
        total_w += dw * count;
    }
    println!(
        "one mfn step: forward {total_y:.1} ms (burn's conv2d {total_burn:.1} ms), input gradients {total_x:.1} ms, weight gradients {total_w:.1} ms"
    );
}
