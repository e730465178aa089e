//! The engine's kernels: [`conv2d_reference`], the portable convolution
//! that defines the results, and [`conv2d`], which dispatches to fast paths
//! (pointwise 2×2 blocks, depthwise four channels per word, regular
//! convolutions through gathered patches) with the target's inner steps
//! (Cortex-M DSP instructions in `dsp`, SSE2 in `sse2` on x86-64, portable
//! Rust elsewhere). Every path must give the reference's bits: property
//! tests here hold them to it on the host, and the QEMU firmware runs the
//! same comparison on the device.

use super::requant::Multiplier;

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
        conv1x1(&c, output);
    } else if g.groups == g.in_c && g.groups == g.out_c {
        depthwise(&c, output);
    } else if g.groups == 1 {
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
    let grouped = g.in_c / 4 * 4;
    for c0 in (0..grouped).step_by(4) {
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
    let rq: [ChannelRequant; LANES] = core::array::from_fn(|j| ChannelRequant::of(params, c0 + j));
    // `LANES` input bytes at `i`, as the four lanes of one tap.
    let lanes = |i: usize| -> [i8; 4] {
        let mut x = [0i8; 4];
        x[..LANES].copy_from_slice(&input[i..i + LANES]);
        x
    };
    let row_step = g.in_w * ch;
    for oy in 0..g.out_h {
        let rows_inside = (oy_lo..oy_hi).contains(&oy);
        for ox in 0..g.out_w {
            let out = (oy * g.out_w + ox) * ch + c0;
            let acc = if rows_inside && (ox_lo..ox_hi).contains(&ox) {
                let top_left =
                    ((oy * g.stride - g.pad_top) * g.in_w + ox * g.stride - g.pad_left) * ch + c0;
                let mut acc = [0i32; 4];
                acc[..LANES].copy_from_slice(&full);
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
                output[out + j] = rq[j].apply(acc[j], out_zp);
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
        let rq: [ChannelRequant; CHANNEL_CHUNK] =
            core::array::from_fn(|j| ChannelRequant::of(params, (oc0 + j).min(last)));
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
                output[px * cout + oc0 + j] = rq[j].apply(full[j].wrapping_add(a[0]), out_zp);
                output[px * cout + oc0 + j1] = rq[j1].apply(full[j1].wrapping_add(a[1]), out_zp);
                output[px1 * cout + oc0 + j] = rq[j].apply(full[j].wrapping_add(a[2]), out_zp);
                output[px1 * cout + oc0 + j1] = rq[j1].apply(full[j1].wrapping_add(a[3]), out_zp);
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
/// zero-point correction is one `in_zp · Σw` per output channel. Two output
/// channels × two pixels per step, so each loaded (and, on Cortex-M,
/// sign-extended) input and weight word serves two products.
fn conv1x1(c: &Conv<'_>, output: &mut [i8]) {
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
        (w, base, ChannelRequant::of(params, oc))
    };
    let mut oc = 0;
    while oc + 2 <= cout {
        let ((w0, b0, r0), (w1, b1, r1)) = (channel(oc), channel(oc + 1));
        let mut px = 0;
        while px + 2 <= pixels {
            let x0 = &input[px * cin..(px + 1) * cin];
            let x1 = &input[(px + 1) * cin..(px + 2) * cin];
            let [a00, a01, a10, a11] = dot_i8_2x2(x0, x1, w0, w1);
            output[px * cout + oc] = r0.apply(b0.wrapping_add(a00), out_zp);
            output[px * cout + oc + 1] = r1.apply(b1.wrapping_add(a01), out_zp);
            output[(px + 1) * cout + oc] = r0.apply(b0.wrapping_add(a10), out_zp);
            output[(px + 1) * cout + oc + 1] = r1.apply(b1.wrapping_add(a11), out_zp);
            px += 2;
        }
        if px < pixels {
            let x = &input[px * cin..(px + 1) * cin];
            output[px * cout + oc] = r0.apply(b0.wrapping_add(dot_i8(x, w0)), out_zp);
            output[px * cout + oc + 1] = r1.apply(b1.wrapping_add(dot_i8(x, w1)), out_zp);
        }
        oc += 2;
    }
    if oc < cout {
        let (w, base, rq) = channel(oc);
        for px in 0..pixels {
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

/// `[x0·w0, x0·w1, x1·w0, x1·w1]` over equally long slices, with the target's best kernel.
#[inline(always)]
fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        dsp::dot_i8_2x2(x0, x1, w0, w1)
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        sse2::dot_i8_2x2(x0, x1, w0, w1)
    }
    #[cfg(not(any(
        all(target_arch = "arm", target_feature = "dsp"),
        all(target_arch = "x86_64", target_feature = "sse2")
    )))]
    {
        dot_i8_2x2_portable(x0, x1, w0, w1)
    }
}

/// x86-64 kernels (SSE2, part of every x86-64 CPU): bytes sign-extended to
/// 16 bits, PMADDWD multiplies eight pairs and adds neighbours into four
/// 32-bit lanes. A pair of i8 products cannot overflow i32 and lanes add
/// modulo 2^32, so results equal the portable kernel's bit for bit (the
/// property tests run this path on x86 hosts).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub mod sse2 {
    #[allow(clippy::wildcard_imports)]
    use core::arch::x86_64::*;

    /// 16 bytes as two vectors of eight sign-extended 16-bit values.
    #[inline(always)]
    fn widen(b: &[i8]) -> (__m128i, __m128i) {
        debug_assert!(b.len() >= 16);
        // SAFETY: SSE2 is enabled for the target (cfg above); the load reads
        // 16 bytes of a slice that holds at least 16 (callers pass exact chunks).
        #[allow(unsafe_code)]
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast());
            (
                _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8),
                _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8),
            )
        }
    }

    /// `acc + Σ a · b` over sixteen widened bytes, in four lanes.
    #[inline(always)]
    fn madd(acc: __m128i, a: (__m128i, __m128i), b: (__m128i, __m128i)) -> __m128i {
        // SAFETY: register-only SSE2 arithmetic.
        #[allow(unsafe_code)]
        unsafe {
            _mm_add_epi32(
                acc,
                _mm_add_epi32(_mm_madd_epi16(a.0, b.0), _mm_madd_epi16(a.1, b.1)),
            )
        }
    }

    /// The four lanes' sum (wrapping).
    #[inline(always)]
    fn lanes_sum(v: __m128i) -> i32 {
        // SAFETY: register-only SSE2 arithmetic.
        #[allow(unsafe_code)]
        unsafe {
            let s = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b0100_1110));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b1011_0001)))
        }
    }

    /// `[x0·w0, x0·w1, x1·w0, x1·w1]`, sixteen bytes per step, the tail portable.
    #[inline(always)]
    pub fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
        let body = n - n % 16;
        // SAFETY: register-only SSE2 arithmetic.
        #[allow(unsafe_code)]
        let mut acc = unsafe { [_mm_setzero_si128(); 4] };
        let rows = x0[..body].chunks_exact(16).zip(x1[..body].chunks_exact(16));
        let cols = w0[..body].chunks_exact(16).zip(w1[..body].chunks_exact(16));
        for ((a, b), (c, d)) in rows.zip(cols) {
            let (a, b, c, d) = (widen(a), widen(b), widen(c), widen(d));
            acc[0] = madd(acc[0], a, c);
            acc[1] = madd(acc[1], a, d);
            acc[2] = madd(acc[2], b, c);
            acc[3] = madd(acc[3], b, d);
        }
        let tail =
            super::dot_i8_2x2_portable(&x0[body..n], &x1[body..n], &w0[body..n], &w1[body..n]);
        core::array::from_fn(|i| lanes_sum(acc[i]).wrapping_add(tail[i]))
    }
}

/// Portable `Σ x · w` (wrapping), in a shape LLVM vectorises on hosts.
#[inline]
pub fn dot_i8_portable(x: &[i8], w: &[i8]) -> i32 {
    x.iter().zip(w).fold(0i32, |acc, (&a, &b)| {
        acc.wrapping_add(i32::from(a) * i32::from(b))
    })
}

/// Portable four dot products of two inputs with two weight rows (wrapping).
#[inline]
pub fn dot_i8_2x2_portable(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    let mut acc = [0i32; 4];
    for (((&a, &b), &c), &d) in x0.iter().zip(x1).zip(w0).zip(w1) {
        let (a, b, c, d) = (i32::from(a), i32::from(b), i32::from(c), i32::from(d));
        acc[0] = acc[0].wrapping_add(a * c);
        acc[1] = acc[1].wrapping_add(a * d);
        acc[2] = acc[2].wrapping_add(b * c);
        acc[3] = acc[3].wrapping_add(b * d);
    }
    acc
}

/// Cortex-M DSP-extension kernels (Cortex-M4/M7): two 16-bit MACs per
/// instruction. Integer arithmetic modulo 2^32 like the portable kernels, so
/// results are bit-identical in any order; the QEMU run checks them on random
/// vectors and on whole embeddings against the host.
#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
pub mod dsp {
    /// A register-only DSP instruction as an inlined function.
    macro_rules! dsp_instruction {
        ($(#[$doc:meta])* fn $name:ident(v) = $asm:literal) => {
            $(#[$doc])*
            #[inline(always)]
            fn $name(v: u32) -> u32 {
                let r: u32;
                // SAFETY: register-only arithmetic; no memory, stack or flags touched.
                #[allow(unsafe_code)]
                unsafe {
                    core::arch::asm!($asm, r = out(reg) r, v = in(reg) v, options(pure, nomem, nostack, preserves_flags));
                }
                r
            }
        };
        ($(#[$doc:meta])* fn $name:ident(a, b, acc) = $asm:literal) => {
            $(#[$doc])*
            #[inline(always)]
            fn $name(a: u32, b: u32, mut acc: i32) -> i32 {
                // SAFETY: register-only arithmetic; only the sticky Q flag
                // (set on overflow, read by nothing here) may change.
                #[allow(unsafe_code)]
                unsafe {
                    core::arch::asm!($asm, a = in(reg) a, b = in(reg) b, acc = inout(reg) acc, options(pure, nomem, nostack));
                }
                acc
            }
        };
    }

    dsp_instruction!(
        /// Bytes 0 and 2 of `v`, sign-extended into two 16-bit halves.
        fn sxtb16(v) = "sxtb16 {r}, {v}"
    );
    dsp_instruction!(
        /// Bytes 1 and 3 of `v`, sign-extended into two 16-bit halves.
        fn sxtb16_ror8(v) = "sxtb16 {r}, {v}, ror #8"
    );
    dsp_instruction!(
        /// `acc + a.lo·b.lo + a.hi·b.hi` on signed 16-bit halves (wraps).
        fn smlad(a, b, acc) = "smlad {acc}, {a}, {b}, {acc}"
    );
    dsp_instruction!(
        /// `acc + a.lo · b.lo`, one 16-bit lane (wraps).
        fn smlabb(a, b, acc) = "smlabb {acc}, {a}, {b}, {acc}"
    );
    dsp_instruction!(
        /// `acc + a.hi · b.hi`, one 16-bit lane (wraps).
        fn smlatt(a, b, acc) = "smlatt {acc}, {a}, {b}, {acc}"
    );

    #[inline(always)]
    fn word(b: &[i8]) -> u32 {
        match b {
            &[a, b, c, d, ..] => u32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
            _ => 0,
        }
    }

    /// Four channels, one tap: `acc[j] += x[j] · w[j]` with the weights
    /// packed as (0, 2) in `even` and (1, 3) in `odd`: one load, two SXTB16,
    /// four lane MACs.
    #[inline(always)]
    pub(super) fn mac4(acc: &mut [i32; 4], x: [i8; 4], even: u32, odd: u32) {
        let x = word(&x);
        let (x02, x13) = (sxtb16(x), sxtb16_ror8(x));
        acc[0] = smlabb(x02, even, acc[0]);
        acc[2] = smlatt(x02, even, acc[2]);
        acc[1] = smlabb(x13, odd, acc[1]);
        acc[3] = smlatt(x13, odd, acc[3]);
    }

    /// `Σ x · w` with SXTB16 + SMLAD, four products per iteration.
    #[inline]
    pub fn dot_i8(x: &[i8], w: &[i8]) -> i32 {
        let n = x.len().min(w.len());
        let (xs, xt) = x[..n].split_at(n - n % 4);
        let (ws, wt) = w[..n].split_at(n - n % 4);
        let mut acc: i32 = 0;
        for (a, b) in xs.chunks_exact(4).zip(ws.chunks_exact(4)) {
            let (a, b) = (word(a), word(b));
            acc = smlad(sxtb16(a), sxtb16(b), acc);
            acc = smlad(sxtb16_ror8(a), sxtb16_ror8(b), acc);
        }
        acc.wrapping_add(super::dot_i8_portable(xt, wt))
    }

    /// Up to four bytes as a word, zero-filled: a tail's last step.
    #[inline(always)]
    fn word_tail(b: &[i8]) -> u32 {
        let mut w = [0u8; 4];
        for (d, &s) in w.iter_mut().zip(b) {
            *d = s as u8;
        }
        u32::from_le_bytes(w)
    }

    /// `[x0·w0, x0·w1, x1·w0, x1·w1]`, four bytes of each row per step: a
    /// hand-scheduled loop that keeps the four sums and pointers in
    /// registers (26 instructions per 16 products: the even bytes of all
    /// four words, then the odd bytes, so at most three sign-extended words
    /// are live); a tail of 1–3 bytes is one more step on zero-filled words.
    #[inline(always)]
    pub fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
        let body = n - n % 4;
        let mut acc = [0i32; 4];
        if body > 0 {
            let [mut s0, mut s1, mut s2, mut s3] = acc;
            // SAFETY: the loop reads `body` bytes from the start of each of
            // the four slices, all at least `n ≥ body` long (unaligned word
            // loads are allowed on ARMv7E-M); it writes only registers.
            #[allow(unsafe_code)]
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldr {t0}, [{x0}]",
                    "ldr {t1}, [{w0}]",
                    "sxtb16 {t0}, {t0}",
                    "sxtb16 {t1}, {t1}",
                    "smlad {s0}, {t0}, {t1}, {s0}",
                    "ldr {t2}, [{w1}]",
                    "sxtb16 {t2}, {t2}",
                    "smlad {s1}, {t0}, {t2}, {s1}",
                    "ldr {t0}, [{x1}]",
                    "sxtb16 {t0}, {t0}",
                    "smlad {s2}, {t0}, {t1}, {s2}",
                    "smlad {s3}, {t0}, {t2}, {s3}",
                    "ldr {t0}, [{x0}], #4",
                    "ldr {t1}, [{w0}], #4",
                    "sxtb16 {t0}, {t0}, ror #8",
                    "sxtb16 {t1}, {t1}, ror #8",
                    "smlad {s0}, {t0}, {t1}, {s0}",
                    "ldr {t2}, [{w1}], #4",
                    "sxtb16 {t2}, {t2}, ror #8",
                    "smlad {s1}, {t0}, {t2}, {s1}",
                    "ldr {t0}, [{x1}], #4",
                    "sxtb16 {t0}, {t0}, ror #8",
                    "smlad {s2}, {t0}, {t1}, {s2}",
                    "smlad {s3}, {t0}, {t2}, {s3}",
                    "subs {k}, {k}, #1",
                    "bne 2b",
                    x0 = inout(reg) x0.as_ptr() => _,
                    x1 = inout(reg) x1.as_ptr() => _,
                    w0 = inout(reg) w0.as_ptr() => _,
                    w1 = inout(reg) w1.as_ptr() => _,
                    k = inout(reg) body / 4 => _,
                    s0 = inout(reg) s0,
                    s1 = inout(reg) s1,
                    s2 = inout(reg) s2,
                    s3 = inout(reg) s3,
                    t0 = out(reg) _,
                    t1 = out(reg) _,
                    t2 = out(reg) _,
                    options(nostack, readonly),
                );
            }
            acc = [s0, s1, s2, s3];
        }
        let mut step = |a: u32, b: u32, c: u32, d: u32| {
            let (a02, a13, b02, b13) = (sxtb16(a), sxtb16_ror8(a), sxtb16(b), sxtb16_ror8(b));
            let (c02, c13, d02, d13) = (sxtb16(c), sxtb16_ror8(c), sxtb16(d), sxtb16_ror8(d));
            acc[0] = smlad(a13, c13, smlad(a02, c02, acc[0]));
            acc[1] = smlad(a13, d13, smlad(a02, d02, acc[1]));
            acc[2] = smlad(b13, c13, smlad(b02, c02, acc[2]));
            acc[3] = smlad(b13, d13, smlad(b02, d02, acc[3]));
        };
        if body < n {
            let tail = |v: &[i8]| word_tail(&v[body..n]);
            step(tail(x0), tail(x1), tail(w0), tail(w1));
        }
        acc
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
    let ma = Multiplier::new(p.a_mult.0, p.a_mult.1);
    let mb = Multiplier::new(p.b_mult.0, p.b_mult.1);
    let mo = Multiplier::new(p.out_mult.0, p.out_mult.1);
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let xa = (i32::from(x) - p.a_zp) << ADD_LEFT_SHIFT;
        let yb = (i32::from(y) - p.b_zp) << ADD_LEFT_SHIFT;
        let v = mo
            .apply(ma.apply(xa).saturating_add(mb.apply(yb)))
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

        /// The depthwise and regular paths give the reference's bits for any
        /// kernel, stride and padding (borders, all-padding windows, strides
        /// that skip the last row), with and without PReLU.
        #[test]
        fn depthwise_and_dense_equal_reference(
            h in 1usize..9, w in 1usize..9, cin in 1usize..7, cout in 1usize..40,
            kh in 1usize..5, kw in 1usize..5, stride in 1usize..4,
            pads in (0usize..4, 0usize..4, 0usize..4, 0usize..4),
            depthwise in any::<bool>(),
            in_zp in -128i32..128, out_zp in -128i32..128, seed in any::<u64>(),
            prelu in any::<bool>(),
        ) {
            let (pt, pb, pl, pr) = pads;
            let out_h = ConvGeometry::out_len(h, kh, stride, pt, pb);
            let out_w = ConvGeometry::out_len(w, kw, stride, pl, pr);
            let (Some(out_h), Some(out_w)) = (out_h, out_w) else { return Ok(()) };
            let (groups, cout) = if depthwise { (cin, cin) } else { (1, cout) };
            let g = ConvGeometry { in_h: h, in_w: w, in_c: cin, out_h, out_w, out_c: cout, kh, kw, stride, pad_top: pt, pad_left: pl, groups };
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            #[allow(clippy::cast_possible_truncation)]
            let mut bytes = |n: usize| -> Vec<i8> { (0..n).map(|_| next() as i8).collect() };
            let input = bytes(h * w * cin);
            let weights = bytes(cout * g.weights_per_output());
            let cout32 = i32::try_from(cout).unwrap();
            let bias: Vec<i32> = (0..cout32).map(|i| (i - 2) * 777).collect();
            let mult: Vec<i32> = (0..cout32).map(|i| (1 << 30) + i * 1_000_003).collect();
            let shift: Vec<i32> = (0..cout32).map(|i| -(i % 7) - 3).collect();
            let neg: Vec<i32> = mult.iter().map(|m| if prelu { m / 4 } else { *m }).collect();
            let (b, m, sh, nm) = (le(&bias), le(&mult), le(&shift), le(&neg));
            let params = ChannelParams { bias: &b, mult: &m, shift: &sh, neg_mult: &nm, neg_shift: &sh };
            let mut fast = vec![0i8; out_h * out_w * cout];
            let mut reference = vec![0i8; out_h * out_w * cout];
            conv2d(&g, &input, in_zp, &weights, &params, out_zp, &mut fast);
            conv2d_reference(&g, &input, in_zp, &weights, &params, out_zp, &mut reference);
            prop_assert_eq!(fast, reference);
        }
    }
}
