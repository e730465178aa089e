//! The portable reference kernels: the convolution, the dot products and the
//! residual addition that define the engine's results. Every fast path
//! (`conv2d`'s blocks, `sse2`, `dsp`) is tested bit-exact against them.

use super::super::requant::Multiplier;
use super::{ChannelParams, ChannelRequant, ConvGeometry, le_i32};

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

/// Max pooling over `g`'s windows (`out_c = in_c`, `groups` unused), NHWC.
/// Padding is left out of every window rather than read as a value, as in
/// ONNX `MaxPool`; the input and output share scale and zero point (the
/// blob parser checks it), so the largest int8 is the int8 of the largest
/// real value and no requantisation is needed. Every window holds at least
/// one real pixel when each pad is smaller than the kernel (checked by the
/// parser); a window without one would give −128.
pub fn max_pool(g: &ConvGeometry, input: &[i8], out: &mut [i8]) {
    let c = g.in_c;
    // Window [lo, hi) along one axis, clipped to the input.
    let window = |o: usize, k: usize, pad: usize, len: usize| {
        let start = o * g.stride;
        (
            start.saturating_sub(pad),
            (start + k).saturating_sub(pad).min(len),
        )
    };
    for oy in 0..g.out_h {
        let (y0, y1) = window(oy, g.kh, g.pad_top, g.in_h);
        for ox in 0..g.out_w {
            let (x0, x1) = window(ox, g.kw, g.pad_left, g.in_w);
            let Some(dst) = out.get_mut((oy * g.out_w + ox) * c..(oy * g.out_w + ox + 1) * c)
            else {
                return;
            };
            dst.fill(i8::MIN);
            for y in y0..y1 {
                for x in x0..x1 {
                    let at = (y * g.in_w + x) * c;
                    let Some(src) = input.get(at..at + c) else {
                        return;
                    };
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = (*d).max(s);
                    }
                }
            }
        }
    }
}
