//! The engine's kernels: [`conv2d_reference`], the portable convolution
//! that defines the results, and [`conv2d`], which dispatches to fast paths
//! (pointwise 2×2 blocks, depthwise four channels per word, regular
//! convolutions through gathered patches) with the target's inner steps
//! (Cortex-M DSP instructions in `dsp`; on x86-64 AVX2 in `avx2` where the
//! CPU has it, else SSE2 in `sse2`; portable Rust elsewhere). Every path must give the reference's bits: property
//! tests here hold them to it on the host, and the QEMU firmware runs the
//! same comparison on the device.

use super::requant::{FastRequant, Multiplier};

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

    /// A square kernel with the same padding on every side over an `in_h ×
    /// in_w × in_c` input (`[h, w, in_c, out_c, kernel, stride, pad,
    /// groups]`), or `None` when the kernel does not fit.
    pub const fn square(shape: [usize; 8]) -> Option<Self> {
        let [in_h, in_w, in_c, out_c, k, stride, pad, groups] = shape;
        let (Some(out_h), Some(out_w)) = (
            Self::out_len(in_h, k, stride, pad, pad),
            Self::out_len(in_w, k, stride, pad, pad),
        ) else {
            return None;
        };
        Some(Self {
            in_h,
            in_w,
            in_c,
            out_h,
            out_w,
            out_c,
            kh: k,
            kw: k,
            stride,
            pad_top: pad,
            pad_left: pad,
            groups,
        })
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
    pos: Multiplier,
    neg: Multiplier,
}

impl ChannelRequant {
    #[inline]
    fn of(p: &ChannelParams<'_>, oc: usize) -> Self {
        Self {
            pos: Multiplier::new(le_i32(p.mult, oc), le_i32(p.shift, oc)),
            neg: Multiplier::new(le_i32(p.neg_mult, oc), le_i32(p.neg_shift, oc)),
        }
    }

    #[inline]
    fn apply(self, acc: i32, out_zp: i32) -> i8 {
        let m = if acc >= 0 { self.pos } else { self.neg };
        let v = m.apply(acc).saturating_add(out_zp);
        // Clamped to the i8 range first.
        #[allow(clippy::cast_possible_truncation)]
        let q = v.clamp(-128, 127) as i8;
        q
    }
}

/// A channel's requantisation as the fast kernels apply it: each side's
/// [`FastRequant`] where it is exact for every accumulator the channel can
/// produce, else the exact path (forged or unusual multipliers).
#[derive(Clone, Copy)]
enum OutputRequant {
    Fast { pos: FastRequant, neg: FastRequant },
    Exact { rq: ChannelRequant, out_zp: i32 },
}

impl OutputRequant {
    /// Channel `oc`'s requantisation for `taps` products of int8 inputs
    /// (zero point `in_zp`) with int8 weights.
    #[inline]
    fn of(p: &ChannelParams<'_>, oc: usize, taps: usize, in_zp: i32, out_zp: i32) -> Self {
        let bound = accumulator_bound(le_i32(p.bias, oc), taps, in_zp);
        let fast =
            |m: &[u8], s: &[u8]| FastRequant::new(le_i32(m, oc), le_i32(s, oc), out_zp, bound);
        match (fast(p.mult, p.shift), fast(p.neg_mult, p.neg_shift)) {
            (Some(pos), Some(neg)) => Self::Fast { pos, neg },
            _ => Self::Exact {
                rq: ChannelRequant::of(p, oc),
                out_zp,
            },
        }
    }

    #[inline(always)]
    fn apply(self, acc: i32) -> i8 {
        match self {
            Self::Fast { pos, neg } => {
                if acc >= 0 {
                    pos.apply(acc)
                } else {
                    neg.apply(acc)
                }
            }
            Self::Exact { rq, out_zp } => rq.apply(acc, out_zp),
        }
    }
}

/// The largest `|bias + Σ (x − in_zp) · w|` over `taps` products of int8
/// values (saturated to `u32::MAX`): every accumulator the fast kernels form
/// for the channel, with or without the zero-point correction folded in.
fn accumulator_bound(bias: i32, taps: usize, in_zp: i32) -> u32 {
    let per_tap = (128 + u64::from(in_zp.unsigned_abs())) * 128;
    let taps = u64::try_from(taps).unwrap_or(u64::MAX);
    let bound = u64::from(bias.unsigned_abs()).saturating_add(per_tap.saturating_mul(taps));
    u32::try_from(bound).unwrap_or(u32::MAX)
}

/// One convolution's operands (everything but the output), as the
/// internal kernels take them.
#[derive(Clone, Copy)]
struct Conv<'a> {
    g: &'a ConvGeometry,
    input: &'a [i8],
    in_zp: i32,
    weights: &'a [i8],
    params: &'a ChannelParams<'a>,
    out_zp: i32,
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
    let c = Conv {
        g,
        input,
        in_zp,
        weights,
        params,
        out_zp,
    };
    if pointwise && g.out_h == g.in_h && g.out_w == g.in_w {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if avx2::available() && avx2::conv1x1(&c, output) {
            return;
        }
        conv1x1(&c, output);
    } else if g.groups == g.in_c && g.groups == g.out_c {
        depthwise(&c, output);
    } else if g.groups == 1 {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if avx2::available() && avx2::dense(&c, output) {
            return;
        }
        dense(&c, output);
    } else {
        conv2d_reference(g, input, in_zp, weights, params, out_zp, output);
    }
}

/// The kernel taps `k0..k1` of one output position that land inside the
/// input, and the input coordinate of tap 0 (negative inside the padding).
#[inline]
fn window(
    out: usize,
    stride: usize,
    pad: usize,
    kernel: usize,
    input: usize,
) -> (usize, usize, isize) {
    // Geometry was validated against the blob's sizes: all of these fit isize.
    #[allow(clippy::cast_possible_wrap)]
    let start = (out * stride) as isize - pad as isize;
    let k0 = start.min(0).unsigned_abs().min(kernel);
    #[allow(clippy::cast_possible_wrap)]
    let room = (input as isize - start).max(0).unsigned_abs();
    let k1 = room.min(kernel).max(k0);
    (k0, k1, start)
}

/// Input index of tap `k` from a window start (only called for taps inside the input).
#[inline]
fn at(start: isize, k: usize) -> usize {
    start.wrapping_add_unsigned(k).unsigned_abs()
}

/// `Σ w` (wrapping): the zero-point correction of a full window.
#[inline]
fn weight_sum(w: &[i8]) -> i32 {
    w.iter().fold(0i32, |a, &v| a.wrapping_add(i32::from(v)))
}

/// Output positions `lo..hi` along one axis whose whole window lies inside
/// the input (no padding), so their taps need no clipping.
#[inline]
fn inner_range(
    out: usize,
    stride: usize,
    pad: usize,
    kernel: usize,
    input: usize,
) -> (usize, usize) {
    let lo = pad.div_ceil(stride).min(out);
    // Last position with `o·stride − pad + kernel ≤ input`.
    let hi = if input + pad >= kernel {
        ((input + pad - kernel) / stride + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Largest kernel (taps) the depthwise path packs on the stack (7×7: the
/// global depthwise convolution of a 112×112 MobileFaceNet); larger kernels
/// run on the reference kernel.
const MAX_DEPTHWISE_TAPS: usize = 49;

/// Depthwise convolution (one weight plane per channel). Four channels at a
/// time: in NHWC one tap of four neighbouring channels is one 32-bit word of
/// input, multiplied lane by lane with the four channels' weights packed once
/// per layer. Windows fully inside the input (almost all of them) need no
/// clipping and use a precomputed zero-point correction. The last
/// `channels % 4` channels go one by one through the same code.
fn depthwise(c: &Conv<'_>, output: &mut [i8]) {
    let g = c.g;
    if g.kh * g.kw > MAX_DEPTHWISE_TAPS {
        conv2d_reference(g, c.input, c.in_zp, c.weights, c.params, c.out_zp, output);
        return;
    }
    // Only the AVX2 path below moves it.
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_feature = "sse2")),
        allow(unused_mut)
    )]
    let mut first = 0;
    // With AVX2, sixteen channels at a time.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if avx2::available() {
        while first + 16 <= g.in_c {
            avx2::depthwise16(c, output, first);
            first += 16;
        }
    }
    let grouped = first + (g.in_c - first) / 4 * 4;
    for c0 in (first..grouped).step_by(4) {
        depthwise_lanes::<4>(c, output, c0);
    }
    for c0 in grouped..g.in_c {
        depthwise_lanes::<1>(c, output, c0);
    }
}

/// Channels `c0..c0 + LANES` (`LANES` ≤ 4) of a depthwise convolution.
fn depthwise_lanes<const LANES: usize>(c: &Conv<'_>, output: &mut [i8], c0: usize) {
    let Conv {
        g,
        input,
        in_zp,
        weights,
        params,
        out_zp,
    } = *c;
    let (ch, taps) = (g.in_c, g.kh * g.kw);
    let (oy_lo, oy_hi) = inner_range(g.out_h, g.stride, g.pad_top, g.kh, g.in_h);
    let (ox_lo, ox_hi) = inner_range(g.out_w, g.stride, g.pad_left, g.kw, g.in_w);
    // Lanes past LANES get zero weights and are never stored.
    let zeros = [0i8; MAX_DEPTHWISE_TAPS];
    let planes: [&[i8]; 4] = core::array::from_fn(|j| {
        if j < LANES {
            &weights[(c0 + j) * taps..(c0 + j + 1) * taps]
        } else {
            &zeros[..taps]
        }
    });
    let mut packed = [Taps4::default(); MAX_DEPTHWISE_TAPS];
    for (t, p) in packed.iter_mut().take(taps).enumerate() {
        *p = Taps4::new([planes[0][t], planes[1][t], planes[2][t], planes[3][t]]);
    }
    let packed = &packed[..taps];
    let bias: [i32; LANES] = core::array::from_fn(|j| le_i32(params.bias, c0 + j));
    let full: [i32; LANES] =
        core::array::from_fn(|j| bias[j].wrapping_sub(in_zp.wrapping_mul(weight_sum(planes[j]))));
    let rq: [OutputRequant; LANES] =
        core::array::from_fn(|j| OutputRequant::of(params, c0 + j, taps, in_zp, out_zp));
    // `LANES` input bytes at `i`, as the four lanes of one tap.
    let lanes = |i: usize| -> [i8; 4] {
        let mut x = [0i8; 4];
        x[..LANES].copy_from_slice(&input[i..i + LANES]);
        x
    };
    let row_step = g.in_w * ch;
    // A 3×3 window of four channels runs as unrolled assembly on Cortex-M.
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    let taps3x3 = (LANES == 4 && g.kh == 3 && g.kw == 3)
        .then(|| core::array::from_fn::<[u32; 2], 9, _>(|t| [packed[t].even, packed[t].odd]));
    for oy in 0..g.out_h {
        let rows_inside = (oy_lo..oy_hi).contains(&oy);
        for ox in 0..g.out_w {
            let out = (oy * g.out_w + ox) * ch + c0;
            let acc = if rows_inside && (ox_lo..ox_hi).contains(&ox) {
                let top_left =
                    ((oy * g.stride - g.pad_top) * g.in_w + ox * g.stride - g.pad_left) * ch + c0;
                let mut acc = [0i32; 4];
                acc[..LANES].copy_from_slice(&full);
                #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
                if let (Some(taps), Some(window)) = (&taps3x3, input.get(top_left..)) {
                    if dsp::window3x3_4(&mut acc, window, ch, row_step, taps) {
                        for j in 0..LANES {
                            output[out + j] = rq[j].apply(acc[j]);
                        }
                        continue;
                    }
                }
                for (ky, row_taps) in packed.chunks_exact(g.kw).enumerate() {
                    let mut at_x = top_left + ky * row_step;
                    for &tap in row_taps {
                        tap.mac(&mut acc, lanes(at_x));
                        at_x += ch;
                    }
                }
                acc
            } else {
                // Border: only the taps inside the input, and their weights'
                // sum for the zero-point correction (a MAC with x = 1).
                let (ky0, ky1, iy) = window(oy, g.stride, g.pad_top, g.kh, g.in_h);
                let (kx0, kx1, ix) = window(ox, g.stride, g.pad_left, g.kw, g.in_w);
                let (mut acc, mut wsum) = ([0i32; 4], [0i32; 4]);
                for ky in ky0..ky1 {
                    let row = at(iy, ky) * g.in_w;
                    for kx in kx0..kx1 {
                        let tap = packed[ky * g.kw + kx];
                        tap.mac(&mut acc, lanes((row + at(ix, kx)) * ch + c0));
                        tap.mac(&mut wsum, [1; 4]);
                    }
                }
                core::array::from_fn(|j| {
                    let b = bias.get(j).copied().unwrap_or(0);
                    b.wrapping_add(acc[j])
                        .wrapping_sub(in_zp.wrapping_mul(wsum[j]))
                })
            };
            for j in 0..LANES {
                output[out + j] = rq[j].apply(acc[j]);
            }
        }
    }
}

/// One tap's weights of four neighbouring channels, packed for the target:
/// channels (0, 2) and (1, 3) as signed 16-bit halves, the layout SXTB16
/// gives the input on Cortex-M.
#[derive(Clone, Copy, Debug, Default)]
struct Taps4 {
    even: u32,
    odd: u32,
}

impl Taps4 {
    fn new(w: [i8; 4]) -> Self {
        // Two's-complement bits of the sign-extended weight.
        #[allow(clippy::cast_sign_loss)]
        let half = |v: i8| u32::from(i16::from(v) as u16);
        Self {
            even: half(w[0]) | half(w[2]) << 16,
            odd: half(w[1]) | half(w[3]) << 16,
        }
    }

    /// `acc[j] += x[j] · w[j]` for the four channels.
    #[inline(always)]
    fn mac(self, acc: &mut [i32; 4], x: [i8; 4]) {
        #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
        {
            dsp::mac4(acc, x, self.even, self.odd);
        }
        #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            let lane = |v: u32, hi: bool| i32::from((if hi { v >> 16 } else { v }) as u16 as i16);
            let w = [
                lane(self.even, false),
                lane(self.odd, false),
                lane(self.even, true),
                lane(self.odd, true),
            ];
            for ((a, x), w) in acc.iter_mut().zip(x).zip(w) {
                *a = a.wrapping_add(i32::from(x) * w);
            }
        }
    }
}

/// Largest patch (`kh × kw × in_c`) the regular-convolution path gathers on
/// the stack (3×3 over 64 channels); larger ones run on the reference kernel.
const MAX_PATCH: usize = 576;

/// Output channels whose constants the regular-convolution path keeps at once.
const CHANNEL_CHUNK: usize = 32;

/// Regular convolution (one group, e.g. the stem's 3×3 over RGB): each output
/// pixel's receptive field is gathered once into a patch (padding filled with
/// the input zero point, so it adds nothing and every pixel shares one
/// zero-point correction), then two pixels × two output channels at a time
/// go through the pointwise kernel's 2×2 block.
fn dense(c: &Conv<'_>, output: &mut [i8]) {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if dsp_dense(c, output) {
        return;
    }
    let Conv {
        g,
        input,
        in_zp,
        weights,
        params,
        out_zp,
    } = *c;
    let patch_len = g.weights_per_output();
    let pad = match i8::try_from(in_zp) {
        Ok(pad) if patch_len <= MAX_PATCH => pad,
        _ => return conv2d_reference(g, input, in_zp, weights, params, out_zp, output),
    };
    let (pixels, cout) = (g.out_h * g.out_w, g.out_c);
    let plane = |oc: usize| &weights[oc * patch_len..(oc + 1) * patch_len];
    let mut patches = [[0i8; MAX_PATCH]; 2];
    for oc0 in (0..cout).step_by(CHANNEL_CHUNK) {
        let chunk = (cout - oc0).min(CHANNEL_CHUNK);
        let last = oc0 + chunk - 1;
        let full: [i32; CHANNEL_CHUNK] = core::array::from_fn(|j| {
            let oc = (oc0 + j).min(last);
            le_i32(params.bias, oc).wrapping_sub(in_zp.wrapping_mul(weight_sum(plane(oc))))
        });
        let rq: [OutputRequant; CHANNEL_CHUNK] = core::array::from_fn(|j| {
            OutputRequant::of(params, (oc0 + j).min(last), patch_len, in_zp, out_zp)
        });
        for px in (0..pixels).step_by(2) {
            // An odd last pixel is computed twice and stored once.
            let px1 = (px + 1).min(pixels - 1);
            let [p0, p1] = &mut patches;
            gather_patch(g, input, pad, px, &mut p0[..patch_len]);
            gather_patch(g, input, pad, px1, &mut p1[..patch_len]);
            let (p0, p1) = (&p0[..patch_len], &p1[..patch_len]);
            for j in (0..chunk).step_by(2) {
                // Likewise an odd last channel.
                let j1 = (j + 1).min(chunk - 1);
                let a = dot_i8_2x2(p0, p1, plane(oc0 + j), plane(oc0 + j1));
                output[px * cout + oc0 + j] = rq[j].apply(full[j].wrapping_add(a[0]));
                output[px * cout + oc0 + j1] = rq[j1].apply(full[j1].wrapping_add(a[1]));
                output[px1 * cout + oc0 + j] = rq[j].apply(full[j].wrapping_add(a[2]));
                output[px1 * cout + oc0 + j1] = rq[j1].apply(full[j1].wrapping_add(a[3]));
            }
        }
    }
}

/// The receptive field of output pixel `px` in OHWI weight order, with `pad`
/// where the window hangs over the input's border.
fn gather_patch(g: &ConvGeometry, input: &[i8], pad: i8, px: usize, patch: &mut [i8]) {
    let (oy, ox) = (px / g.out_w, px % g.out_w);
    let (ky0, ky1, iy) = window(oy, g.stride, g.pad_top, g.kh, g.in_h);
    let (kx0, kx1, ix) = window(ox, g.stride, g.pad_left, g.kw, g.in_w);
    let (cin, span) = (g.in_c, g.kw * g.in_c);
    let inside = ky0 == 0 && ky1 == g.kh && kx0 == 0 && kx1 == g.kw;
    if !inside {
        patch.fill(pad);
    }
    let n = (kx1 - kx0) * cin;
    // An all-padding window (n = 0) has no input index to compute.
    for ky in (ky0..ky1).filter(|_| n > 0) {
        let x0 = (at(iy, ky) * g.in_w + at(ix, kx0)) * cin;
        let dst = ky * span + kx0 * cin;
        patch[dst..dst + n].copy_from_slice(&input[x0..x0 + n]);
    }
}

/// 1×1 convolution (most of a MobileFaceNet's MACs): no padding, so the
/// zero-point correction is one `in_zp · Σw` per output channel. On
/// Cortex-M the DSP kernel takes four pixels × one channel per step over
/// inputs widened once ([`dsp_conv1x1`]); elsewhere two output channels ×
/// two pixels per step, so each loaded input and weight word serves two
/// products.
fn conv1x1(c: &Conv<'_>, output: &mut [i8]) {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    if dsp_conv1x1(c, output) {
        return;
    }
    let Conv {
        g,
        input,
        in_zp,
        weights,
        params,
        out_zp,
    } = *c;
    let (cin, cout, pixels) = (g.in_c, g.out_c, g.out_h * g.out_w);
    let channel = |oc: usize| {
        let w = &weights[oc * cin..(oc + 1) * cin];
        let base = le_i32(params.bias, oc).wrapping_sub(in_zp.wrapping_mul(weight_sum(w)));
        (w, base, OutputRequant::of(params, oc, cin, in_zp, out_zp))
    };
    let mut oc = 0;
    while oc + 2 <= cout {
        let ((w0, b0, r0), (w1, b1, r1)) = (channel(oc), channel(oc + 1));
        let mut px = 0;
        while px + 2 <= pixels {
            let x0 = &input[px * cin..(px + 1) * cin];
            let x1 = &input[(px + 1) * cin..(px + 2) * cin];
            let [a00, a01, a10, a11] = dot_i8_2x2(x0, x1, w0, w1);
            output[px * cout + oc] = r0.apply(b0.wrapping_add(a00));
            output[px * cout + oc + 1] = r1.apply(b1.wrapping_add(a01));
            output[(px + 1) * cout + oc] = r0.apply(b0.wrapping_add(a10));
            output[(px + 1) * cout + oc + 1] = r1.apply(b1.wrapping_add(a11));
            px += 2;
        }
        if px < pixels {
            let x = &input[px * cin..(px + 1) * cin];
            output[px * cout + oc] = r0.apply(b0.wrapping_add(dot_i8(x, w0)));
            output[px * cout + oc + 1] = r1.apply(b1.wrapping_add(dot_i8(x, w1)));
        }
        oc += 2;
    }
    if oc < cout {
        let (w, base, rq) = channel(oc);
        for px in 0..pixels {
            let x = &input[px * cin..(px + 1) * cin];
            output[px * cout + oc] = rq.apply(base.wrapping_add(dot_i8(x, w)));
        }
    }
}

/// Output channels whose constants the Cortex-M kernels keep at once (each
/// chunk widens the inputs again: one instruction per input byte against 32
/// products).
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
const WIDE_CHUNK: usize = 32;

/// One chunk of output channels of the Cortex-M pointwise and regular
/// convolutions: each channel's zero-point-corrected bias and requantisation.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
struct WideChannels<'a> {
    weights: &'a [i8],
    /// Weights per output channel (the operand rows' length).
    len: usize,
    /// Output channels of the layer (the output's pixel stride).
    cout: usize,
    oc0: usize,
    count: usize,
    constants: [(i32, OutputRequant); WIDE_CHUNK],
    /// Every weight row starts on a word (doubleword loads).
    aligned: bool,
    /// The layer's rows from `first_padded` on (those whose last 8-element
    /// step would run past the weights), copied with zeros after them.
    last_rows: [i8; 2 * dsp::MAX_WIDE],
    first_padded: usize,
}

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
impl<'a> WideChannels<'a> {
    /// Channels `oc0..oc0 + count` (`count` ≥ 1, at most [`WIDE_CHUNK`]).
    fn new(c: &Conv<'a>, len: usize, oc0: usize, count: usize) -> Self {
        let last = oc0 + count - 1;
        let weights = c.weights;
        // A row's padded end reaches at most 7 bytes past it, so only the
        // last ⌈7 / len⌉ + 1 rows (two for len ≥ 7) can run past the weights.
        let rows = weights.len() / len.max(1);
        let first_padded = rows.saturating_sub(2);
        let mut last_rows = [0i8; 2 * dsp::MAX_WIDE];
        if len % 8 != 0 {
            let tail = &weights[first_padded * len..rows * len];
            last_rows[..tail.len()].copy_from_slice(tail);
        }
        Self {
            weights,
            len,
            cout: c.g.out_c,
            oc0,
            count,
            constants: core::array::from_fn(|j| {
                let oc = (oc0 + j).min(last);
                let w = &weights[oc * len..(oc + 1) * len];
                let base =
                    le_i32(c.params.bias, oc).wrapping_sub(c.in_zp.wrapping_mul(weight_sum(w)));
                (
                    base,
                    OutputRequant::of(c.params, oc, len, c.in_zp, c.out_zp),
                )
            }),
            aligned: (weights.as_ptr() as usize) % 4 == 0 && len % 4 == 0,
            last_rows,
            first_padded,
        }
    }

    /// The four operand rows (`len` long: four pixels' inputs, or four
    /// gathered patches) against every channel of the chunk: widened once
    /// and zero-padded to whole 8-element steps ([`dsp::widen_4px`]), then
    /// SMLAD over those steps ([`dsp::dot_4px`]: 31 instructions per 32
    /// products; a weight row's step that runs past its end reads the next
    /// row's first weights, which meet the zeros), requantised and stored for
    /// output pixels `px..px + stored` (rows past `stored` are padding:
    /// computed, not stored).
    #[inline(always)]
    fn block4(
        &self,
        rows: [&[i8]; 4],
        wide: &mut [u32],
        px: usize,
        stored: usize,
        output: &mut [i8],
    ) {
        let (len, cout) = (self.len, self.cout);
        let steps = len.div_ceil(8);
        dsp::widen_4px(rows, steps * 8, wide);
        for (j, &(base, rq)) in self.constants.iter().take(self.count).enumerate() {
            let oc = self.oc0 + j;
            // The layer's last rows would read past the weights: their padded copy.
            let w = self
                .weights
                .get(oc * len..oc * len + steps * 8)
                .unwrap_or_else(|| {
                    let at = oc.saturating_sub(self.first_padded) * len;
                    self.last_rows.get(at..).unwrap_or(&[])
                });
            let acc = dsp::dot_4px(wide, w, steps, self.aligned);
            if stored == 4 {
                let [a, b, c, d] = acc.map(|a| rq.apply(base.wrapping_add(a)));
                output[px * cout + oc] = a;
                output[(px + 1) * cout + oc] = b;
                output[(px + 2) * cout + oc] = c;
                output[(px + 3) * cout + oc] = d;
            } else {
                for (p, &a) in acc.iter().enumerate().take(stored) {
                    output[(px + p) * cout + oc] = rq.apply(base.wrapping_add(a));
                }
            }
        }
    }
}

/// The Cortex-M pointwise kernel: four pixels' inputs are sign-extended to
/// 16-bit pairs once per chunk of output channels ([`dsp::widen_4px`]), then
/// every channel's int8 weights meet all four pixels with SMLAD
/// ([`dsp::dot_4px`]: 31 instructions per 32 products), and the four sums
/// are requantised with [`OutputRequant`]. Returns `false` (nothing
/// written) for shapes it does not take: fewer than 8 or more than
/// [`dsp::MAX_WIDE`] input channels.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
fn dsp_conv1x1(c: &Conv<'_>, output: &mut [i8]) -> bool {
    let Conv {
        g,
        input,
        in_zp,
        weights,
        params,
        out_zp,
    } = *c;
    let (cin, cout, pixels) = (g.in_c, g.out_c, g.out_h * g.out_w);
    if !(8..=dsp::MAX_WIDE).contains(&cin) {
        return false;
    }
    let (steps, body) = (cin / 8, cin / 8 * 8);
    // Doubleword weight loads need every row word-aligned.
    let aligned = (weights.as_ptr() as usize) % 4 == 0 && cin % 4 == 0;
    let mut wide = [0u32; dsp::MAX_WIDE * 2];
    let blocks = pixels / 4 * 4;
    for oc0 in (0..cout).step_by(WIDE_CHUNK) {
        let chunk = (cout - oc0).min(WIDE_CHUNK);
        let last = oc0 + chunk - 1;
        let constants: [(i32, OutputRequant); WIDE_CHUNK] = core::array::from_fn(|j| {
            let oc = (oc0 + j).min(last);
            let w = &weights[oc * cin..(oc + 1) * cin];
            let base = le_i32(params.bias, oc).wrapping_sub(in_zp.wrapping_mul(weight_sum(w)));
            (base, OutputRequant::of(params, oc, cin, in_zp, out_zp))
        });
        let first = &weights[oc0 * cin..(oc0 + chunk) * cin];
        let mut sums = [[0i32; 4]; WIDE_CHUNK];
        for px in (0..blocks).step_by(4) {
            let rows: [&[i8]; 4] =
                core::array::from_fn(|p| &input[(px + p) * cin..(px + p + 1) * cin]);
            dsp::widen_4px(rows, body, &mut wide);
            if body == cin {
                // Whole 8-channel steps: the row loop runs in the assembly.
                dsp::dot_4px_rows(&wide, first, steps, chunk, aligned, &mut sums);
                for (j, (&(base, rq), acc)) in constants.iter().zip(&sums).take(chunk).enumerate() {
                    let oc = oc0 + j;
                    let [a, b, c, d] = acc.map(|a| rq.apply(base.wrapping_add(a)));
                    output[px * cout + oc] = a;
                    output[(px + 1) * cout + oc] = b;
                    output[(px + 2) * cout + oc] = c;
                    output[(px + 3) * cout + oc] = d;
                }
                continue;
            }
            for (j, &(base, rq)) in constants.iter().take(chunk).enumerate() {
                let oc = oc0 + j;
                let w = &weights[oc * cin..(oc + 1) * cin];
                let acc = dsp::dot_4px(&wide, w, steps, aligned);
                for (p, (&a, row)) in acc.iter().zip(rows).enumerate() {
                    let tail = dot_i8_portable(&row[body..], &w[body..]);
                    output[(px + p) * cout + oc] =
                        rq.apply(base.wrapping_add(a).wrapping_add(tail));
                }
            }
        }
        for px in blocks..pixels {
            let x = &input[px * cin..(px + 1) * cin];
            for (j, &(base, rq)) in constants.iter().take(chunk).enumerate() {
                let oc = oc0 + j;
                let w = &weights[oc * cin..(oc + 1) * cin];
                output[px * cout + oc] = rq.apply(base.wrapping_add(dsp::dot_i8(x, w)));
            }
        }
    }
    true
}

/// The Cortex-M regular convolution: four output pixels' patches gathered
/// (as [`dense`] does) and put through [`WideChannels::block4`]; a last
/// block of fewer pixels repeats its last patch. Returns `false` (nothing
/// written) for patches shorter than 8 or longer than [`dsp::MAX_WIDE`], or
/// a zero point that is not an int8.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
fn dsp_dense(c: &Conv<'_>, output: &mut [i8]) -> bool {
    let g = c.g;
    let (len, cout, pixels) = (g.weights_per_output(), g.out_c, g.out_h * g.out_w);
    let Ok(pad) = i8::try_from(c.in_zp) else {
        return false;
    };
    if !(8..=dsp::MAX_WIDE.min(MAX_PATCH)).contains(&len) || output.len() < pixels * cout {
        return false;
    }
    let output = &mut output[..pixels * cout];
    let mut wide = [0u32; dsp::MAX_WIDE * 2];
    let mut patches = [[0i8; MAX_PATCH]; 4];
    for oc0 in (0..cout).step_by(WIDE_CHUNK) {
        let chunk = WideChannels::new(c, len, oc0, (cout - oc0).min(WIDE_CHUNK));
        for px in (0..pixels).step_by(4) {
            let stored = (pixels - px).min(4);
            for (p, patch) in patches.iter_mut().enumerate() {
                gather_patch(g, c.input, pad, px + p.min(stored - 1), &mut patch[..len]);
            }
            let [a, b, d, e] = &patches;
            chunk.block4(
                [&a[..len], &b[..len], &d[..len], &e[..len]],
                &mut wide,
                px,
                stored,
                output,
            );
        }
    }
    true
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

/// `[x0·w0, x0·w1, x1·w0, x1·w1]` over equally long slices, with the target's best kernel.
#[inline(always)]
fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        dsp::dot_i8_2x2(x0, x1, w0, w1)
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        if avx2::available() {
            avx2::dot_i8_2x2(x0, x1, w0, w1)
        } else {
            sse2::dot_i8_2x2(x0, x1, w0, w1)
        }
    }
    #[cfg(not(any(
        all(target_arch = "arm", target_feature = "dsp"),
        all(target_arch = "x86_64", target_feature = "sse2")
    )))]
    {
        dot_i8_2x2_portable(x0, x1, w0, w1)
    }
}

/// Residual addition `out = a + b` in the output's quantisation,
/// elementwise over equally long slices: the reference's bits, with AVX2
/// where the CPU has it.
pub fn add(p: &AddParams, a: &[i8], b: &[i8], out: &mut [i8]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if avx2::available() && avx2::add(p, a, b, out) {
        return;
    }
    if add_fast(p, a, b, out) {
        return;
    }
    add_reference(p, a, b, out);
}

/// The residual addition with [`FastRequant`]'s steps for all three
/// rescales (one rounding high multiply, an add and a shift each), where
/// the parameters let every one of them be exact: the inputs' rescales
/// for `|x − zp| · 2^20`, the output's for the bound their sum can reach.
/// Returns `false` (nothing written) where one of them would not be.
fn add_fast(p: &AddParams, a: &[i8], b: &[i8], out: &mut [i8]) -> bool {
    let input = |zp: i32, (m, s): (i32, i32)| {
        let bound = (128 + u64::from(zp.unsigned_abs())) << ADD_LEFT_SHIFT;
        FastRequant::new_rescale(m, s, u32::try_from(bound).ok()?).map(|f| (f, bound))
    };
    let (Some((fa, ba)), Some((fb, bb))) = (input(p.a_zp, p.a_mult), input(p.b_zp, p.b_mult))
    else {
        return false;
    };
    #[allow(clippy::cast_possible_truncation)] // both bounds are below 2^31 (checked by `input`)
    let sum = u64::from(fa.rescaled_bound(ba as u32)) + u64::from(fb.rescaled_bound(bb as u32));
    let Some(fo) = u32::try_from(sum)
        .ok()
        .and_then(|sum| FastRequant::new(p.out_mult.0, p.out_mult.1, p.out_zp, sum))
    else {
        return false;
    };
    let (a_zp, b_zp) = (p.a_zp, p.b_zp);
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let xa = fa.rescale((i32::from(x) - a_zp) << ADD_LEFT_SHIFT);
        let yb = fb.rescale((i32::from(y) - b_zp) << ADD_LEFT_SHIFT);
        *o = fo.apply(xa + yb);
    }
    true
}

mod reference;
pub use reference::{
    ADD_LEFT_SHIFT, AddParams, add as add_reference, conv2d_reference, dot_i8_2x2_portable,
    dot_i8_portable, max_pool,
};

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub mod avx2;
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
pub mod dsp;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub mod sse2;

#[cfg(test)]
mod tests;
