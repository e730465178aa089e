//! Portable reference kernels. Arch-specific kernels (Cortex-M DSP) must
//! produce exactly these results; the tests hold them to it.

use super::requant::multiply_by_quantized_multiplier;

/// Shape and hyper-parameters of a convolution (NHWC, weights OHWI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input height, width, channels.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding above.
    pub pad_top: usize,
    /// Padding left.
    pub pad_left: usize,
    /// Groups (1: regular; `in_c`: depthwise).
    pub groups: usize,
}

impl ConvGeometry {
    /// Output size along one axis, or `None` when the kernel does not fit.
    pub const fn out_len(
        input: usize,
        kernel: usize,
        stride: usize,
        pad_before: usize,
        pad_after: usize,
    ) -> Option<usize> {
        let padded = input + pad_before + pad_after;
        if stride == 0 || kernel == 0 || padded < kernel {
            return None;
        }
        Some((padded - kernel) / stride + 1)
    }

    /// Weights per output channel.
    pub const fn weights_per_output(&self) -> usize {
        self.kh * self.kw * (self.in_c / self.groups)
    }

    /// Multiply-accumulates of one run.
    pub const fn macs(&self) -> usize {
        self.out_h * self.out_w * self.out_c * self.weights_per_output()
    }
}

/// Per-output-channel integer parameters, read from little-endian i32 arrays.
#[derive(Clone, Copy, Debug)]
pub struct ChannelParams<'a> {
    /// Bias (i32, accumulator scale).
    pub bias: &'a [u8],
    /// Multiplier for accumulators ≥ 0.
    pub mult: &'a [u8],
    /// Shift for accumulators ≥ 0.
    pub shift: &'a [u8],
    /// Multiplier for accumulators < 0 (PReLU fused), or the same as `mult`.
    pub neg_mult: &'a [u8],
    /// Shift for accumulators < 0.
    pub neg_shift: &'a [u8],
}

#[inline]
fn le_i32(b: &[u8], i: usize) -> i32 {
    match b.get(i * 4..i * 4 + 4) {
        Some(&[a, b2, c, d]) => i32::from_le_bytes([a, b2, c, d]),
        _ => 0, // lengths are validated by the blob parser; unreachable in practice
    }
}

/// One output channel's requantisation, decoded once per channel.
#[derive(Clone, Copy)]
struct ChannelRequant {
    pos: (i32, i32),
    neg: (i32, i32),
}

impl ChannelRequant {
    #[inline]
    fn of(p: &ChannelParams<'_>, oc: usize) -> Self {
        Self {
            pos: (le_i32(p.mult, oc), le_i32(p.shift, oc)),
            neg: (le_i32(p.neg_mult, oc), le_i32(p.neg_shift, oc)),
        }
    }

    #[inline]
    fn apply(self, acc: i32, out_zp: i32) -> i8 {
        let (m, s) = if acc >= 0 { self.pos } else { self.neg };
        let v = multiply_by_quantized_multiplier(acc, m, s).saturating_add(out_zp);
        // Clamped to the i8 range first.
        #[allow(clippy::cast_possible_truncation)]
        let q = v.clamp(-128, 127) as i8;
        q
    }
}

/// Convolution: `out = requant(bias + Σ (x − in_zp) · w) + out_zp`.
///
/// Accumulation wraps on i32 overflow (as the C kernels of TFLite and
/// CMSIS-NN do in practice): a calibrated model never gets near it, and a
/// forged blob must not be able to panic the device.
///
/// `input` is `in_h × in_w × in_c`, `weights` `out_c × kh × kw × (in_c / groups)`,
/// `output` `out_h × out_w × out_c`; the caller guarantees the lengths.
/// Dispatches to a pointwise fast path where it applies; every path gives
/// the bits of [`conv2d_reference`].
pub fn conv2d(
    g: &ConvGeometry,
    input: &[i8],
    in_zp: i32,
    weights: &[i8],
    params: &ChannelParams<'_>,
    out_zp: i32,
    output: &mut [i8],
) {
    let pointwise = g.kh == 1
        && g.kw == 1
        && g.groups == 1
        && g.stride == 1
        && g.pad_top == 0
        && g.pad_left == 0;
    if pointwise && g.out_h == g.in_h && g.out_w == g.in_w {
        conv1x1(g, input, in_zp, weights, params, out_zp, output);
    } else {
        conv2d_reference(g, input, in_zp, weights, params, out_zp, output);
    }
}

/// 1×1 convolution (most of a MobileFaceNet's MACs): no padding, so the
/// zero-point correction is one `in_zp · Σw` per output channel.
fn conv1x1(
    g: &ConvGeometry,
    input: &[i8],
    in_zp: i32,
    weights: &[i8],
    params: &ChannelParams<'_>,
    out_zp: i32,
    output: &mut [i8],
) {
    let (cin, cout) = (g.in_c, g.out_c);
    for oc in 0..g.out_c {
        let w = &weights[oc * cin..(oc + 1) * cin];
        let wsum = w.iter().fold(0i32, |a, &v| a.wrapping_add(i32::from(v)));
        let base = le_i32(params.bias, oc).wrapping_sub(in_zp.wrapping_mul(wsum));
        let rq = ChannelRequant::of(params, oc);
        for px in 0..g.out_h * g.out_w {
            let x = &input[px * cin..(px + 1) * cin];
            output[px * cout + oc] = rq.apply(base.wrapping_add(dot_i8(x, w)), out_zp);
        }
    }
}

/// `Σ x · w` over equally long slices (wrapping), with the target's best kernel.
#[inline]
fn dot_i8(x: &[i8], w: &[i8]) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        dsp::dot_i8(x, w)
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        dot_i8_portable(x, w)
    }
}

/// Portable `Σ x · w` (wrapping), in a shape LLVM vectorises on hosts.
#[inline]
pub fn dot_i8_portable(x: &[i8], w: &[i8]) -> i32 {
    x.iter().zip(w).fold(0i32, |acc, (&a, &b)| {
        acc.wrapping_add(i32::from(a) * i32::from(b))
    })
}

/// Cortex-M DSP-extension kernels (Cortex-M4/M7): two 16-bit MACs per
/// instruction. Integer arithmetic modulo 2^32 like the portable kernel, so
/// results are bit-identical in any order; the QEMU run checks it on random
/// vectors and on whole embeddings against the host.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
pub mod dsp {
    /// `Σ x · w` with SXTB16 + SMLAD, four products per iteration.
    #[inline]
    pub fn dot_i8(x: &[i8], w: &[i8]) -> i32 {
        let n = x.len().min(w.len());
        let (xs, xt) = x[..n].split_at(n - n % 4);
        let (ws, wt) = w[..n].split_at(n - n % 4);
        let mut acc: i32 = 0;
        for (a, b) in xs.chunks_exact(4).zip(ws.chunks_exact(4)) {
            let a = u32::from_le_bytes([a[0] as u8, a[1] as u8, a[2] as u8, a[3] as u8]);
            let b = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
            // SAFETY: register-only arithmetic (sign-extend byte pairs, dual
            // multiply-accumulate); no memory, stack or flags are touched that
            // Rust relies on.
            #[allow(unsafe_code)]
            unsafe {
                core::arch::asm!(
                    "sxtb16 {a02}, {a}",
                    "sxtb16 {a13}, {a}, ror #8",
                    "sxtb16 {b02}, {b}",
                    "sxtb16 {b13}, {b}, ror #8",
                    "smlad {acc}, {a02}, {b02}, {acc}",
                    "smlad {acc}, {a13}, {b13}, {acc}",
                    a = in(reg) a,
                    b = in(reg) b,
                    a02 = out(reg) _,
                    a13 = out(reg) _,
                    b02 = out(reg) _,
                    b13 = out(reg) _,
                    acc = inout(reg) acc,
                    options(pure, nomem, nostack),
                );
            }
        }
        acc.wrapping_add(super::dot_i8_portable(xt, wt))
    }
}

/// The portable reference convolution every other path must equal.
pub fn conv2d_reference(
    g: &ConvGeometry,
    input: &[i8],
    in_zp: i32,
    weights: &[i8],
    params: &ChannelParams<'_>,
    out_zp: i32,
    output: &mut [i8],
) {
    let cin_g = g.in_c / g.groups;
    let cout_g = g.out_c / g.groups;
    let wpo = g.weights_per_output();
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let out_px = (oy * g.out_w + ox) * g.out_c;
            for oc in 0..g.out_c {
                let grp = oc / cout_g;
                let w_oc = &weights[oc * wpo..(oc + 1) * wpo];
                let mut acc = le_i32(params.bias, oc);
                for ky in 0..g.kh {
                    let iy = (oy * g.stride + ky).wrapping_sub(g.pad_top);
                    if iy >= g.in_h {
                        continue; // padding (wrapped below zero or past the end)
                    }
                    for kx in 0..g.kw {
                        let ix = (ox * g.stride + kx).wrapping_sub(g.pad_left);
                        if ix >= g.in_w {
                            continue;
                        }
                        let in_px = (iy * g.in_w + ix) * g.in_c + grp * cin_g;
                        let x = &input[in_px..in_px + cin_g];
                        let w = &w_oc[(ky * g.kw + kx) * cin_g..(ky * g.kw + kx + 1) * cin_g];
                        acc = acc.wrapping_add(dot_zp(x, w, in_zp));
                    }
                }
                output[out_px + oc] = ChannelRequant::of(params, oc).apply(acc, out_zp);
            }
        }
    }
}

/// `Σ (x − zp) · w` over equally long slices.
#[inline]
fn dot_zp(x: &[i8], w: &[i8], zp: i32) -> i32 {
    let mut acc = 0i32;
    let mut wsum = 0i32;
    for (&a, &b) in x.iter().zip(w) {
        acc = acc.wrapping_add(i32::from(a) * i32::from(b));
        wsum = wsum.wrapping_add(i32::from(b));
    }
    acc.wrapping_sub(zp.wrapping_mul(wsum))
}

/// Parameters of a residual addition (TFLite's scheme: both inputs brought to
/// a common scale with 20 bits of headroom, summed, requantised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddParams {
    /// Zero point of input a.
    pub a_zp: i32,
    /// Zero point of input b.
    pub b_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Rescale of a: multiplier and shift.
    pub a_mult: (i32, i32),
    /// Rescale of b.
    pub b_mult: (i32, i32),
    /// Rescale of the sum to the output.
    pub out_mult: (i32, i32),
}

/// Headroom bits of the addition.
pub const ADD_LEFT_SHIFT: u32 = 20;

/// Reference residual addition, elementwise over equally long slices.
pub fn add(p: &AddParams, a: &[i8], b: &[i8], out: &mut [i8]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let xa = (i32::from(x) - p.a_zp) << ADD_LEFT_SHIFT;
        let yb = (i32::from(y) - p.b_zp) << ADD_LEFT_SHIFT;
        let sa = multiply_by_quantized_multiplier(xa, p.a_mult.0, p.a_mult.1);
        let sb = multiply_by_quantized_multiplier(yb, p.b_mult.0, p.b_mult.1);
        let v = multiply_by_quantized_multiplier(sa.saturating_add(sb), p.out_mult.0, p.out_mult.1)
            .saturating_add(p.out_zp);
        #[allow(clippy::cast_possible_truncation)]
        let q = v.clamp(-128, 127) as i8;
        *o = q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn le(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The pointwise fast path gives the reference's bits.
        #[test]
        fn pointwise_equals_reference(
            h in 1usize..6, w in 1usize..6, cin in 1usize..20, cout in 1usize..12,
            in_zp in -128i32..128, out_zp in -128i32..128, seed in any::<u64>(),
            prelu in any::<bool>(),
        ) {
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            #[allow(clippy::cast_possible_truncation)]
            let mut bytes = |n: usize| -> Vec<i8> { (0..n).map(|_| next() as i8).collect() };
            let input = bytes(h * w * cin);
            let weights = bytes(cout * cin);
            let cout32 = i32::try_from(cout).unwrap();
            let bias: Vec<i32> = (0..cout32).map(|i| (i - 5) * 1000).collect();
            let mult: Vec<i32> = (0..cout32).map(|i| (1 << 30) + i * 1_000_003).collect();
            let shift: Vec<i32> = (0..cout32).map(|i| -(i % 9) - 1).collect();
            let neg: Vec<i32> = mult.iter().map(|m| if prelu { m / 4 } else { *m }).collect();
            let (b, m, sh, nm) = (le(&bias), le(&mult), le(&shift), le(&neg));
            let params = ChannelParams { bias: &b, mult: &m, shift: &sh, neg_mult: &nm, neg_shift: &sh };
            let g = ConvGeometry { in_h: h, in_w: w, in_c: cin, out_h: h, out_w: w, out_c: cout, kh: 1, kw: 1, stride: 1, pad_top: 0, pad_left: 0, groups: 1 };
            let mut fast = vec![0i8; h * w * cout];
            let mut reference = vec![0i8; h * w * cout];
            conv2d(&g, &input, in_zp, &weights, &params, out_zp, &mut fast);
            conv2d_reference(&g, &input, in_zp, &weights, &params, out_zp, &mut reference);
            prop_assert_eq!(fast, reference);
        }
    }
}
