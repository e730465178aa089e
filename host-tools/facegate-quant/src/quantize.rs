//! Calibration, int8 quantisation and the `.fgm` blob writer.

use facegate_core::engine::blob::{
    self, HASH_AT, HEADER_LEN, LUT_LEN, OP_ADD, OP_CONV, OP_LEN, OP_MAX_POOL, OUT_SCALES_AT,
    TENSOR_LEN,
};
use facegate_core::engine::kernels::ADD_LEFT_SHIFT;
use facegate_core::engine::requant::quantize_multiplier;
use facegate_eval::faces::Face;
use facegate_eval::onnx::InputNorm;
use sha2::{Digest, Sha256};

use crate::graph::{FloatNet, Layer};

/// Errors of quantisation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// No calibration images.
    #[error("calibration needs at least one face")]
    NoCalibration,
    /// A value does not fit the blob's fields (too many channels, tensors …).
    #[error("model too large for the blob format: {0}")]
    TooLarge(String),
    /// The arena does not fit the budget even with every expansion banded.
    #[error(
        "the arena needs {arena} B, over the budget of {max} B even with every bottleneck expansion computed in row bands"
    )]
    ArenaBudget {
        /// Bytes the smallest plan needs.
        arena: usize,
        /// The budget.
        max: usize,
    },
    /// A detector's per-channel output ranges do not match its output.
    #[error("{found} output channel ranges for an output of {expected} channels")]
    OutputRanges {
        /// Channels of the output.
        expected: usize,
        /// Ranges given.
        found: usize,
    },
    /// The network has max pooling: only a detector blob holds it.
    #[error("the network has max pooling: quantise it as a detector (per-channel output scales)")]
    PoolingInEmbedder,
    /// A multiplier could not be represented.
    #[error("value {value} has a multiplier out of range ({real})")]
    Multiplier {
        /// Value id.
        value: usize,
        /// The real multiplier.
        real: String,
    },
}

/// Per-tensor activation quantisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i8,
}

impl ActQuant {
    /// Asymmetric int8 over `[min, max]` (widened to include 0, so padding is exact).
    pub fn from_range(min: f32, max: f32) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let scale = ((hi - lo) / 255.0).max(1e-8);
        #[allow(clippy::cast_possible_truncation)]
        let zp = (-128.0 - lo / scale).round_ties_even().clamp(-128.0, 127.0) as i8;
        Self {
            scale,
            zero_point: zp,
        }
    }

    /// Quantises one value, rounding half to even as ONNX QuantizeLinear does.
    pub fn quantize(&self, x: f32) -> i8 {
        #[allow(clippy::cast_possible_truncation)]
        let q = ((x / self.scale).round_ties_even() + f32::from(self.zero_point))
            .clamp(-128.0, 127.0) as i8;
        q
    }
}

/// Normalised network input of a face, NHWC.
pub fn normalise(face: &Face, norm: InputNorm) -> Vec<f32> {
    face.rgb.iter().map(|&p| norm_value(p, norm)).collect()
}

fn norm_value(p: u8, norm: InputNorm) -> f32 {
    match norm {
        InputNorm::ArcFace => (f32::from(p) - 127.5) / 128.0,
        InputNorm::Unit => f32::from(p) / 255.0,
    }
}

/// Min and max of every value over the calibration faces.
pub fn calibrate(
    net: &FloatNet,
    faces: &[Face],
    norm: InputNorm,
) -> Result<Vec<(f32, f32)>, QuantError> {
    calibrate_by(net, faces.len(), |i| normalise(&faces[i], norm), norm)
}

/// Normalised network input of an RGB image (row-major, 3 bytes a pixel).
pub fn normalise_rgb(rgb: &[u8], norm: InputNorm) -> Vec<f32> {
    rgb.iter().map(|&p| norm_value(p, norm)).collect()
}

/// Min and max of every value over `n` inputs given by `input(i)`; a max
/// pooling's output gets its input's range (the engine pools in the
/// input's quantisation).
fn calibrate_by(
    net: &FloatNet,
    n: usize,
    input: impl Fn(usize) -> Vec<f32>,
    norm: InputNorm,
) -> Result<Vec<(f32, f32)>, QuantError> {
    if n == 0 {
        return Err(QuantError::NoCalibration);
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); net.shapes.len()];
    for i in 0..n {
        for (r, v) in ranges.iter_mut().zip(net.run(input(i))) {
            for x in v {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
    }
    // The input's range is known exactly: the whole pixel range.
    ranges[net.input] = (norm_value(0, norm), norm_value(255, norm));
    tie_pools(net, &mut ranges);
    Ok(ranges)
}

/// Gives every max pooling's output its input's range.
fn tie_pools<T: Copy>(net: &FloatNet, per_value: &mut [T]) {
    for l in &net.layers {
        if let Layer::MaxPool { input, output, .. } = l {
            per_value[*output] = per_value[*input];
        }
    }
}

/// Min and max of each channel of value `v` over the inputs (a detector's
/// output, whose heads differ by orders of magnitude).
pub fn channel_ranges(net: &FloatNet, inputs: &[Vec<f32>], v: usize) -> Vec<(f32, f32)> {
    let c = net.shapes[v].c;
    let mut r = vec![(f32::INFINITY, f32::NEG_INFINITY); c];
    for x in inputs {
        let values = net.run(x.clone());
        for (i, &y) in values[v].iter().enumerate() {
            let e = &mut r[i % c];
            e.0 = e.0.min(y);
            e.1 = e.1.max(y);
        }
    }
    r
}

/// [`calibrate_with`] over normalised inputs of the network's input size
/// (e.g. image tiles for a detector) rather than faces.
pub fn calibrate_inputs(
    net: &FloatNet,
    inputs: &[Vec<f32>],
    norm: InputNorm,
    method: Calibration,
) -> Result<Vec<(f32, f32)>, QuantError> {
    calibrate_by_with(net, inputs.len(), |i| inputs[i].clone(), norm, method)
}

/// How activation ranges are chosen from the calibration faces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Calibration {
    /// The observed minimum and maximum.
    MinMax,
    /// The given two-sided percentile (e.g. 99.99): outliers are clipped.
    Percentile(f64),
    /// The clipping range that minimises the expected squared quantisation error.
    Mse,
}

const HIST_BINS: usize = 2048;

/// Activation ranges by `method`: min–max first, then (for percentile and
/// MSE) a histogram of every value over that range in a second pass.
pub fn calibrate_with(
    net: &FloatNet,
    faces: &[Face],
    norm: InputNorm,
    method: Calibration,
) -> Result<Vec<(f32, f32)>, QuantError> {
    calibrate_by_with(
        net,
        faces.len(),
        |i| normalise(&faces[i], norm),
        norm,
        method,
    )
}

fn calibrate_by_with(
    net: &FloatNet,
    n: usize,
    input: impl Fn(usize) -> Vec<f32>,
    norm: InputNorm,
    method: Calibration,
) -> Result<Vec<(f32, f32)>, QuantError> {
    let minmax = calibrate_by(net, n, &input, norm)?;
    if method == Calibration::MinMax {
        return Ok(minmax);
    }
    let mut hists = vec![vec![0u64; HIST_BINS]; minmax.len()];
    for i in 0..n {
        for ((h, &(lo, hi)), v) in hists.iter_mut().zip(&minmax).zip(net.run(input(i))) {
            let width = (hi - lo).max(f32::MIN_POSITIVE);
            for x in v {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let b = (((x - lo) / width) * HIST_BINS as f32) as usize;
                h[b.min(HIST_BINS - 1)] += 1;
            }
        }
    }
    let mut ranges: Vec<(f32, f32)> = minmax
        .iter()
        .zip(&hists)
        .enumerate()
        .map(|(v, (&(lo, hi), h))| {
            if v == net.input || h.iter().all(|&c| c == 0) {
                return (lo, hi); // the input's range is exact; empty values keep min–max
            }
            match method {
                Calibration::Percentile(p) => percentile_range(h, lo, hi, p),
                _ => mse_range(h, lo, hi),
            }
        })
        .collect();
    tie_pools(net, &mut ranges);
    Ok(ranges)
}

fn bin_centre(lo: f32, hi: f32, b: usize) -> f32 {
    lo + (hi - lo) * (b as f32 + 0.5) / HIST_BINS as f32
}

fn percentile_range(h: &[u64], lo: f32, hi: f32, p: f64) -> (f32, f32) {
    let total: u64 = h.iter().sum();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let tail = ((1.0 - p / 100.0).clamp(0.0, 1.0) * total as f64) as u64;
    let (mut acc, mut a) = (0, 0);
    while a < HIST_BINS - 1 && acc + h[a] <= tail {
        acc += h[a];
        a += 1;
    }
    let (mut acc, mut b) = (0, HIST_BINS - 1);
    while b > a && acc + h[b] <= tail {
        acc += h[b];
        b -= 1;
    }
    let step = (hi - lo) / HIST_BINS as f32;
    (lo + step * a as f32, lo + step * (b + 1) as f32)
}

fn mse_range(h: &[u64], lo: f32, hi: f32) -> (f32, f32) {
    let (lo0, hi0) = (lo.min(0.0), hi.max(0.0));
    let mut best = (f64::INFINITY, (lo, hi));
    for k in 8..=128u16 {
        let f = f32::from(k) / 128.0;
        let q = ActQuant::from_range(lo0 * f, hi0 * f);
        let err: f64 = h
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &c)| {
                let x = bin_centre(lo, hi, b);
                let d = q.scale * (f32::from(q.quantize(x)) - f32::from(q.zero_point)) - x;
                #[allow(clippy::cast_precision_loss)]
                let c = c as f64;
                f64::from(d * d) * c
            })
            .sum();
        if err < best.0 {
            best = (err, (lo0 * f, hi0 * f));
        }
    }
    best.1
}

fn mult(value: usize, real: f64) -> Result<(i32, i32), QuantError> {
    quantize_multiplier(real).ok_or(QuantError::Multiplier {
        value,
        real: format!("{real:e}"),
    })
}

fn u16_of(v: usize, what: &str) -> Result<u16, QuantError> {
    u16::try_from(v).map_err(|_| QuantError::TooLarge(format!("{what} = {v}")))
}

fn u32_of(v: usize, what: &str) -> Result<u32, QuantError> {
    u32::try_from(v).map_err(|_| QuantError::TooLarge(format!("{what} = {v}")))
}

/// A convolution's int8 weights (OHWI), per-channel scales and int32 biases.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvQuant {
    /// Weights, `round(w / scale[oc])` in `[-127, 127]`.
    pub weights: Vec<i8>,
    /// Per output channel: `max|w| / 127` (1 for an all-zero channel).
    pub scales: Vec<f32>,
    /// Per output channel: `round(b / (input_scale · scale[oc]))`.
    pub bias: Vec<i32>,
}

/// Per-channel symmetric weight quantisation (shared by the blob and the QDQ export).
pub fn quantize_conv(weights: &[f32], bias: &[f32], cout: usize, input_scale: f32) -> ConvQuant {
    let per = weights.len() / cout.max(1);
    let mut q = ConvQuant {
        weights: Vec::with_capacity(weights.len()),
        scales: Vec::new(),
        bias: Vec::new(),
    };
    for oc in 0..cout {
        let w = &weights[oc * per..(oc + 1) * per];
        let max = w.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        let sw = if max > 0.0 { max / 127.0 } else { 1.0 };
        #[allow(clippy::cast_possible_truncation)]
        q.weights.extend(
            w.iter()
                .map(|x| (x / sw).round().clamp(-127.0, 127.0) as i8),
        );
        let acc_scale = f64::from(input_scale) * f64::from(sw);
        #[allow(clippy::cast_possible_truncation)]
        q.bias.push(
            (f64::from(bias[oc]) / acc_scale)
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32,
        );
        q.scales.push(sw);
    }
    q
}

/// Activation quantisation of every value from calibration ranges (a max
/// pooling's output takes its input's).
pub fn activation_quants(net: &FloatNet, ranges: &[(f32, f32)]) -> Vec<ActQuant> {
    let mut acts: Vec<ActQuant> = ranges
        .iter()
        .map(|&(lo, hi)| ActQuant::from_range(lo, hi))
        .collect();
    tie_pools(net, &mut acts);
    acts
}

/// Symmetric per-channel scales of a detector's output (zero point 0):
/// `max(|min|, |max|) / 127` of each channel.
pub fn channel_scales(ranges: &[(f32, f32)]) -> Vec<f32> {
    ranges
        .iter()
        .map(|&(lo, hi)| (lo.abs().max(hi.abs()) / 127.0).max(1e-8))
        .collect()
}

/// A quantised model, written as a blob.
#[derive(Debug)]
pub struct QuantizedModel {
    /// The `.fgm` bytes.
    pub blob: Vec<u8>,
    /// Arena bytes it needs.
    pub arena_len: usize,
}

/// Data section builder: 16-byte aligned arrays.
struct Data(Vec<u8>);

impl Data {
    fn push(&mut self, bytes: &[u8]) -> usize {
        while self.0.len() % 16 != 0 {
            self.0.push(0);
        }
        let at = self.0.len();
        self.0.extend_from_slice(bytes);
        at
    }
    fn push_i32(&mut self, v: &[i32]) -> usize {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(&b)
    }
}

/// Bytes value `v` takes in the arena: `bands[v]` rows if banded, else all.
fn footprint(net: &FloatNet, bands: &[u8], v: usize) -> usize {
    let s = net.shapes[v];
    match bands[v] {
        0 => s.len(),
        rows => usize::from(rows) * s.w * s.c,
    }
}

/// Values that can be banded: a pointwise expansion (1×1, stride 1, no
/// padding, one group) read only by the depthwise convolution right after
/// it; with the rows that depthwise window needs.
fn band_candidates(net: &FloatNet) -> Vec<(usize, u8)> {
    let readers = |v: usize| {
        net.layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.reads().contains(&v))
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for (i, l) in net.layers.iter().enumerate() {
        let Layer::Conv {
            output,
            kernel: (1, 1),
            stride: 1,
            pads: [0, 0, 0, 0],
            groups: 1,
            ..
        } = l
        else {
            continue;
        };
        let v = *output;
        if v == net.output || v == net.input || readers(v) != [i + 1] {
            continue;
        }
        let Some(Layer::Conv {
            input,
            output: dw_out,
            kernel,
            stride,
            pads,
            groups,
            ..
        }) = net.layers.get(i + 1)
        else {
            continue;
        };
        let (c, h_in, h_out) = (net.shapes[v].c, net.shapes[v].h, net.shapes[*dw_out].h);
        let depthwise = *input == v && *groups == c && net.shapes[*dw_out].c == c;
        // Every output row's window must hold a real row (the engine's rule).
        let windows_ok =
            kernel.0 > 0 && pads[0] < kernel.0 && (h_out - 1) * stride < h_in + pads[0];
        if let (true, true, Ok(rows)) = (depthwise, windows_ok, u8::try_from(kernel.0)) {
            out.push((v, rows));
        }
    }
    out
}

/// How the arena is planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaPlan {
    /// Every value whole (blob version 1).
    Whole,
    /// At most this many bytes: values whole if that fits, else the largest
    /// bottleneck expansions in row bands until it fits.
    Fit(usize),
    /// Every bottleneck expansion in row bands: the least RAM.
    BandEvery,
}

/// The arena plan: offsets, arena bytes and the rows kept of each value (0: all).
fn plan_within(
    net: &FloatNet,
    plan: ArenaPlan,
) -> Result<(Vec<usize>, usize, Vec<u8>), QuantError> {
    let mut bands = vec![0u8; net.shapes.len()];
    let mut candidates = band_candidates(net);
    // Largest last, to pop.
    candidates.sort_by_key(|&(v, _)| net.shapes[v].len());
    loop {
        let (offsets, arena) = plan_arena(net, &bands);
        let over = match plan {
            ArenaPlan::Whole => None,
            ArenaPlan::Fit(max) => Some(max).filter(|&m| arena > m),
            ArenaPlan::BandEvery => (!candidates.is_empty()).then_some(0),
        };
        let Some(max) = over else {
            return Ok((offsets, arena, bands));
        };
        let Some((v, rows)) = candidates.pop() else {
            return Err(QuantError::ArenaBudget { arena, max });
        };
        bands[v] = rows;
    }
}

/// Greedy first-fit arena plan over value lifetimes, largest value first; returns offsets and the arena size.
fn plan_arena(net: &FloatNet, bands: &[u8]) -> (Vec<usize>, usize) {
    let n = net.shapes.len();
    // Value v is live from the layer that writes it (input: −1 → 0) to its last reader.
    let mut first = vec![0usize; n];
    let mut last = vec![0usize; n];
    for (i, l) in net.layers.iter().enumerate() {
        let step = i + 1;
        first[l.writes()] = step;
        for v in l.reads() {
            last[v] = last[v].max(step);
        }
    }
    last[net.output] = net.layers.len() + 1;
    // A banded expansion is computed while its depthwise reader runs, so
    // the expansion's input lives until that reader's step.
    for (i, l) in net.layers.iter().enumerate() {
        if let Layer::Conv { input, output, .. } = l {
            if bands[*output] > 0 {
                last[*input] = last[*input].max(i + 2);
            }
        }
    }
    let mut offsets = vec![0usize; n];
    let mut placed: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, value)
    let mut arena = 0;
    let mut order: Vec<usize> = (0..n).collect();
    // Largest first (TFLite's "greedy by size"): big maps claim the low
    // offsets, small ones fill the gaps, instead of big maps landing above
    // small ones placed earlier.
    order.sort_by_key(|&v| (std::cmp::Reverse(footprint(net, bands, v)), first[v]));
    for v in order {
        let size = footprint(net, bands, v);
        let live = |u: usize| first[u] <= last[v] && first[v] <= last[u];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&(_, _, u)| live(u))
            .map(|&(s, e, _)| (s, e))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (s, e) in busy {
            if at + size <= s {
                break;
            }
            at = at.max(e.next_multiple_of(16));
        }
        offsets[v] = at;
        placed.push((at, at + size, v));
        arena = arena.max(at + size);
    }
    (offsets, arena)
}

/// Quantises `net` with the calibration ranges into a blob whose arena plan
/// keeps every value whole.
pub fn quantize(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    norm: InputNorm,
) -> Result<QuantizedModel, QuantError> {
    quantize_within(net, ranges, norm, ArenaPlan::Whole)
}

/// [`quantize`] with an arena plan: with [`ArenaPlan::Fit`], when whole
/// values need more than the budget, bottleneck expansions are banded (the
/// engine computes them a few rows at a time with their depthwise reader;
/// same results to the bit) until the plan fits, or
/// [`QuantError::ArenaBudget`] if even banding every one does not.
pub fn quantize_within(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    norm: InputNorm,
    plan: ArenaPlan,
) -> Result<QuantizedModel, QuantError> {
    if net
        .layers
        .iter()
        .any(|l| matches!(l, Layer::MaxPool { .. }))
    {
        return Err(QuantError::PoolingInEmbedder);
    }
    write_blob(net, ranges, norm, plan, None)
}

/// A detector blob (version 3): like [`quantize_within`], but the output
/// (several heads side by side, e.g. face logits and box offsets) is
/// quantised symmetrically per channel from `out_ranges`, its min and max
/// per channel ([`channel_ranges`]), and max pooling is allowed.
pub fn quantize_detector(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    out_ranges: &[(f32, f32)],
    norm: InputNorm,
    plan: ArenaPlan,
) -> Result<QuantizedModel, QuantError> {
    let expected = net.shapes[net.output].c;
    if out_ranges.len() != expected {
        return Err(QuantError::OutputRanges {
            expected,
            found: out_ranges.len(),
        });
    }
    write_blob(net, ranges, norm, plan, Some(&channel_scales(out_ranges)))
}

/// Activation quantisation with the output's replaced by the symmetric
/// per-channel one, when there is one (its tensor scale is the largest).
fn acts_with_output(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    out_scales: Option<&[f32]>,
) -> Vec<ActQuant> {
    let mut acts = activation_quants(net, ranges);
    if let Some(sc) = out_scales {
        acts[net.output] = ActQuant {
            scale: sc.iter().copied().fold(0.0, f32::max),
            zero_point: 0,
        };
    }
    acts
}

fn write_blob(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    norm: InputNorm,
    plan: ArenaPlan,
    out_scales: Option<&[f32]>,
) -> Result<QuantizedModel, QuantError> {
    let acts = acts_with_output(net, ranges, out_scales);
    let mut data = Data(Vec::new());
    let input_q = acts[net.input];
    let lut: Vec<u8> = (0..3)
        .flat_map(|_| (0..=255u8).map(|p| input_q.quantize(norm_value(p, norm)).to_le_bytes()[0]))
        .collect();
    debug_assert_eq!(lut.len(), LUT_LEN);
    let lut_off = data.push(&lut);

    let mut ops: Vec<[u8; OP_LEN]> = Vec::new();
    for layer in &net.layers {
        let mut rec = [0u8; OP_LEN];
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
                let (si, so) = (acts[*input], acts[*output]);
                let cout = net.shapes[*output].c;
                let cq = quantize_conv(weights, bias, cout, si.scale);
                let wq: Vec<u8> = cq.weights.iter().map(|w| w.to_le_bytes()[0]).collect();
                let bq = &cq.bias;
                let (mut m, mut s, mut nm, mut ns) = (vec![], vec![], vec![], vec![]);
                for (oc, &sw) in cq.scales.iter().enumerate() {
                    let out_scale = out_scales
                        .filter(|_| *output == net.output)
                        .map_or(so.scale, |sc| sc[oc]);
                    let real = f64::from(si.scale) * f64::from(sw) / f64::from(out_scale);
                    let (pm, ps) = mult(*output, real)?;
                    let alpha = prelu.as_ref().map_or(1.0, |a| f64::from(a[oc]));
                    let (qm, qs) = mult(*output, real * alpha)?;
                    m.push(pm);
                    s.push(ps);
                    nm.push(qm);
                    ns.push(qs);
                }
                let offs = [
                    data.push(&wq),
                    data.push_i32(bq),
                    data.push_i32(&m),
                    data.push_i32(&s),
                    data.push_i32(&nm),
                    data.push_i32(&ns),
                ];
                rec[0] = OP_CONV;
                rec[2..4].copy_from_slice(&u16_of(*input, "tensor")?.to_le_bytes());
                rec[4..6].copy_from_slice(&u16_of(*output, "tensor")?.to_le_bytes());
                rec[6..8].copy_from_slice(&u16_of(*groups, "groups")?.to_le_bytes());
                let small = |v: usize| {
                    u8::try_from(v)
                        .map_err(|_| QuantError::TooLarge(format!("kernel/stride/pad {v}")))
                };
                rec[8] = small(kernel.0)?;
                rec[9] = small(kernel.1)?;
                rec[10] = small(*stride)?;
                rec[11] = small(pads[0])?;
                rec[12] = small(pads[1])?;
                rec[13] = small(pads[2])?;
                rec[14] = small(pads[3])?;
                for (k, o) in offs.iter().enumerate() {
                    rec[16 + 4 * k..20 + 4 * k]
                        .copy_from_slice(&u32_of(*o, "data offset")?.to_le_bytes());
                }
            }
            Layer::Add { a, b, output } => {
                let (qa, qb, qo) = (acts[*a], acts[*b], acts[*output]);
                let twice_max = 2.0 * f64::from(qa.scale.max(qb.scale));
                let am = mult(*output, f64::from(qa.scale) / twice_max)?;
                let bm = mult(*output, f64::from(qb.scale) / twice_max)?;
                let om = mult(
                    *output,
                    twice_max / (f64::from(1u32 << ADD_LEFT_SHIFT) * f64::from(qo.scale)),
                )?;
                rec[0] = OP_ADD;
                rec[2..4].copy_from_slice(&u16_of(*a, "tensor")?.to_le_bytes());
                rec[4..6].copy_from_slice(&u16_of(*output, "tensor")?.to_le_bytes());
                rec[6..8].copy_from_slice(&u16_of(*b, "tensor")?.to_le_bytes());
                for (k, v) in [am.0, am.1, bm.0, bm.1, om.0, om.1].iter().enumerate() {
                    rec[8 + 4 * k..12 + 4 * k].copy_from_slice(&v.to_le_bytes());
                }
            }
            Layer::MaxPool {
                input,
                output,
                kernel,
                stride,
                pads,
            } => {
                let small = |v: usize| {
                    u8::try_from(v).map_err(|_| QuantError::TooLarge(format!("pool size {v}")))
                };
                rec[0] = OP_MAX_POOL;
                rec[2..4].copy_from_slice(&u16_of(*input, "tensor")?.to_le_bytes());
                rec[4..6].copy_from_slice(&u16_of(*output, "tensor")?.to_le_bytes());
                rec[8] = small(kernel.0)?;
                rec[9] = small(kernel.1)?;
                rec[10] = small(*stride)?;
                for (k, &p) in pads.iter().enumerate() {
                    rec[11 + k] = small(p)?;
                }
            }
        }
        ops.push(rec);
    }
    let out_scales_off = out_scales.map(|sc| {
        let b: Vec<u8> = sc.iter().flat_map(|s| s.to_le_bytes()).collect();
        data.push(&b)
    });

    let (offsets, arena_len, bands) = plan_within(net, plan)?;
    let mut tensors = Vec::new();
    for (v, s) in net.shapes.iter().enumerate() {
        let mut t = [0u8; TENSOR_LEN];
        t[0..2].copy_from_slice(&u16_of(s.h, "height")?.to_le_bytes());
        t[2..4].copy_from_slice(&u16_of(s.w, "width")?.to_le_bytes());
        t[4..6].copy_from_slice(&u16_of(s.c, "channels")?.to_le_bytes());
        t[6] = acts[v].zero_point.to_le_bytes()[0];
        t[7] = bands[v];
        t[8..12].copy_from_slice(&acts[v].scale.to_bits().to_le_bytes());
        t[12..16].copy_from_slice(&u32_of(offsets[v], "arena offset")?.to_le_bytes());
        tensors.extend_from_slice(&t);
    }

    let tensors_off = HEADER_LEN;
    let ops_off = tensors_off + tensors.len();
    let data_off = (ops_off + ops.len() * OP_LEN).next_multiple_of(16);
    let total = data_off + data.0.len();
    let mut b = vec![0u8; total];
    b[0..4].copy_from_slice(&blob::MAGIC);
    let version = if out_scales.is_some() {
        blob::VERSION_DETECTOR
    } else if bands.iter().any(|&r| r > 0) {
        blob::VERSION_BANDED
    } else {
        blob::VERSION
    };
    b[4..6].copy_from_slice(&version.to_le_bytes());
    b[6..8].copy_from_slice(&u16_of(HEADER_LEN, "header")?.to_le_bytes());
    b[8..12].copy_from_slice(&u32_of(total, "blob size")?.to_le_bytes());
    b[12..14].copy_from_slice(&u16_of(net.shapes.len(), "tensors")?.to_le_bytes());
    b[14..16].copy_from_slice(&u16_of(ops.len(), "ops")?.to_le_bytes());
    b[16..20].copy_from_slice(&u32_of(arena_len, "arena")?.to_le_bytes());
    b[20..22].copy_from_slice(&u16_of(net.input, "input")?.to_le_bytes());
    b[22..24].copy_from_slice(&u16_of(net.output, "output")?.to_le_bytes());
    let si = net.shapes[net.input];
    b[24..26].copy_from_slice(&u16_of(si.h, "input height")?.to_le_bytes());
    b[26..28].copy_from_slice(&u16_of(si.w, "input width")?.to_le_bytes());
    b[28..30].copy_from_slice(&u16_of(net.shapes[net.output].c, "embedding")?.to_le_bytes());
    b[64..68].copy_from_slice(&u32_of(tensors_off, "offset")?.to_le_bytes());
    b[68..72].copy_from_slice(&u32_of(ops_off, "offset")?.to_le_bytes());
    b[72..76].copy_from_slice(&u32_of(data_off, "offset")?.to_le_bytes());
    b[76..80].copy_from_slice(&u32_of(data.0.len(), "data")?.to_le_bytes());
    b[80..84].copy_from_slice(&u32_of(lut_off, "offset")?.to_le_bytes());
    if let Some(off) = out_scales_off {
        b[OUT_SCALES_AT..OUT_SCALES_AT + 4].copy_from_slice(&u32_of(off, "offset")?.to_le_bytes());
    }
    b[tensors_off..ops_off].copy_from_slice(&tensors);
    for (i, op) in ops.iter().enumerate() {
        b[ops_off + i * OP_LEN..ops_off + (i + 1) * OP_LEN].copy_from_slice(op);
    }
    b[data_off..].copy_from_slice(&data.0);
    // Hash with hash and CRC fields zero, then seal with the CRC.
    let hash = Sha256::digest(&b);
    b[HASH_AT..HASH_AT + 32].copy_from_slice(&hash);
    let crc = blob::blob_crc(&b);
    b[blob::CRC_AT..blob::CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(QuantizedModel { blob: b, arena_len })
}

/// The quantised model's arithmetic in float ("fake quantisation"): int8
/// weights and int32 biases dequantised, every value quantised and
/// dequantised. The QDQ ONNX export means exactly this; the engine must
/// agree with it up to fixed-point rounding.
pub fn simulate(net: &FloatNet, ranges: &[(f32, f32)], input: Vec<f32>) -> Vec<f32> {
    simulate_with(net, ranges, None, input)
}

/// [`simulate`] for a detector blob ([`quantize_detector`]): the output
/// fake-quantised symmetrically per channel.
pub fn simulate_detector(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    out_ranges: &[(f32, f32)],
    input: Vec<f32>,
) -> Vec<f32> {
    simulate_with(net, ranges, Some(&channel_scales(out_ranges)), input)
}

fn simulate_with(
    net: &FloatNet,
    ranges: &[(f32, f32)],
    out_scales: Option<&[f32]>,
    input: Vec<f32>,
) -> Vec<f32> {
    let acts = acts_with_output(net, ranges, out_scales);
    let fq = |v: &mut Vec<f32>, q: ActQuant| {
        for x in v.iter_mut() {
            *x = q.scale * (f32::from(q.quantize(*x)) - f32::from(q.zero_point));
        }
    };
    let mut sim = net.clone();
    for layer in &mut sim.layers {
        if let Layer::Conv {
            input,
            output,
            weights,
            bias,
            ..
        } = layer
        {
            let cout = net.shapes[*output].c;
            let cq = quantize_conv(weights, bias, cout, acts[*input].scale);
            let per = weights.len() / cout;
            for (i, w) in weights.iter_mut().enumerate() {
                *w = f32::from(cq.weights[i]) * cq.scales[i / per];
            }
            for (oc, b) in bias.iter_mut().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let v = cq.bias[oc] as f32 * cq.scales[oc] * acts[*input].scale;
                *b = v;
            }
        }
    }
    let mut x = input;
    fq(&mut x, acts[net.input]);
    // Run layer by layer so every value is fake-quantised before it is used.
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); net.shapes.len()];
    values[net.input] = x;
    for layer in &sim.layers {
        let one = FloatNet {
            layers: vec![layer.clone()],
            shapes: sim.shapes.clone(),
            input: sim.input,
            output: sim.output,
        };
        let (ins, out) = (layer.reads(), layer.writes());
        let mut partial = one.run_from(&values, &ins);
        let mut y = std::mem::take(&mut partial[out]);
        match out_scales.filter(|_| out == net.output) {
            Some(sc) => {
                for (i, x) in y.iter_mut().enumerate() {
                    let s = sc[i % sc.len()];
                    *x = s * (*x / s).round_ties_even().clamp(-128.0, 127.0);
                }
            }
            None => fq(&mut y, acts[out]),
        }
        values[out] = y;
    }
    std::mem::take(&mut values[net.output])
}
