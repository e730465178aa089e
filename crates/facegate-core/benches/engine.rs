//! `cargo bench -p facegate-core --bench engine`: host speed of the int8
//! engine — each convolution path (and the residual addition) against the
//! portable reference kernel on the layer shapes of the shipped `nano` model, then whole embeddings of
//! `models/nano.fgm`. Medians of repeated runs; a benchmark, not a test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use facegate_core::engine::Model;
use facegate_core::engine::kernels::{
    AddParams, ChannelParams, ConvGeometry, add, add_reference, conv2d, conv2d_reference,
};

/// Median wall time of `f` over enough runs to fill about `budget`.
fn median(budget: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < budget && times.len() < 1000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn bytes(n: usize, seed: &mut u64) -> Vec<i8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            #[allow(clippy::cast_possible_truncation)]
            let b = (*seed >> 24) as i8;
            b
        })
        .collect()
}

fn le(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One layer shape: name, input side, channels in/out, kernel, stride, padding, groups.
struct Layer(
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

fn main() {
    let layers = [
        Layer("stem 3x3/2 3->16 @112", 112, 3, 16, 3, 2, 1, 1),
        Layer("depthwise 3x3 16 @56", 56, 16, 16, 3, 1, 1, 16),
        Layer("pointwise 16->32 @56", 56, 16, 32, 1, 1, 0, 1),
        Layer("depthwise 3x3/2 32 @56", 56, 32, 32, 3, 2, 1, 32),
        Layer("pointwise 96->192 @7", 7, 96, 192, 1, 1, 0, 1),
        Layer("global depthwise 7x7 320", 7, 320, 320, 7, 1, 0, 320),
    ];
    let budget = Duration::from_millis(300);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>8}",
        "layer", "MACs", "reference", "engine", "speed-up"
    );
    for Layer(name, side, cin, cout, k, stride, pad, groups) in layers {
        let g = ConvGeometry::square([side, side, cin, cout, k, stride, pad, groups])
            .expect("valid layer");
        let out = g.out_h;
        let input = bytes(side * side * cin, &mut seed);
        let weights = bytes(cout * g.weights_per_output(), &mut seed);
        let n = i32::try_from(cout).expect("few channels");
        let (b, m, s) = (
            le(&vec![100; cout]),
            le(&(0..n).map(|i| (1 << 30) + i).collect::<Vec<_>>()),
            le(&vec![-8; cout]),
        );
        let p = ChannelParams {
            bias: &b,
            mult: &m,
            shift: &s,
            neg_mult: &m,
            neg_shift: &s,
        };
        let mut o = vec![0i8; out * out * cout];
        let reference = median(budget, || {
            conv2d_reference(&g, black_box(&input), 3, &weights, &p, -5, &mut o)
        });
        let engine = median(budget, || {
            conv2d(&g, black_box(&input), 3, &weights, &p, -5, &mut o)
        });
        println!(
            "{name:<28} {:>10} {:>9.3} ms {:>9.3} ms {:>7.1}x",
            g.macs(),
            reference.as_secs_f64() * 1e3,
            engine.as_secs_f64() * 1e3,
            reference.as_secs_f64() / engine.as_secs_f64()
        );
    }

    // A residual addition of a bottleneck's output (28×28×64 elements):
    // three requantisations per element.
    let (a, b) = (
        bytes(28 * 28 * 64, &mut seed),
        bytes(28 * 28 * 64, &mut seed),
    );
    let p = AddParams {
        a_zp: 3,
        b_zp: -7,
        out_zp: 1,
        a_mult: (1_500_000_000, -1),
        b_mult: (1_200_000_000, 0),
        out_mult: (1_800_000_000, -18),
    };
    let mut o = vec![0i8; a.len()];
    let reference = median(budget, || add_reference(&p, black_box(&a), &b, &mut o));
    let engine = median(budget, || add(&p, black_box(&a), &b, &mut o));
    println!(
        "{:<28} {:>10} {:>9.3} ms {:>9.3} ms {:>7.1}x",
        "residual add 64 @28",
        "-",
        reference.as_secs_f64() * 1e3,
        engine.as_secs_f64() * 1e3,
        reference.as_secs_f64() / engine.as_secs_f64()
    );

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/nano.fgm");
    let blob = std::fs::read(path).expect("models/nano.fgm (the shipped model)");
    let model = Model::parse(&blob).expect("a valid blob");
    let (h, w) = model.input_size();
    #[allow(clippy::cast_sign_loss)]
    let rgb: Vec<u8> = bytes(h * w * 3, &mut seed)
        .into_iter()
        .map(|b| b as u8)
        .collect();
    let mut arena = vec![0i8; model.arena_len()];
    let mut emb = vec![0.0f32; model.embedding_dim()];
    let parse = median(Duration::from_millis(300), || {
        black_box(Model::parse(black_box(&blob)).expect("a valid blob"));
    });
    println!(
        "\nnano.fgm: {:.3} ms to parse and validate (CRC, every table entry)",
        parse.as_secs_f64() * 1e3
    );
    let t = median(Duration::from_secs(3), || {
        model
            .embed(black_box(&rgb), &mut arena, &mut emb)
            .expect("embeds");
    });
    println!(
        "nano.fgm: {:.3} ms per embedding ({} MACs, {:.2} GMAC/s), one thread",
        t.as_secs_f64() * 1e3,
        model.macs(),
        model.macs() as f64 / t.as_secs_f64() / 1e9
    );
}
