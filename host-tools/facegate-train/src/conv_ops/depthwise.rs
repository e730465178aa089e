//! The depthwise convolution on `flex`: its geometry, the zero-padded
//! planes split into the stride's phases, and the forward and both
//! gradients as long vectorised runs over them.

use super::*;

pub(super) fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A depthwise convolution's geometry, checked once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Depthwise {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Depthwise {
    pub(super) fn new(x: &Shape, weight: &Shape, stride: usize, pad: usize) -> Self {
        let [n, c, h, w] = dims4(x);
        let k = weight[2];
        Self {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        }
    }

    /// Calls `f(tap, i)` for each tap of output `(oy, ox)`'s window that
    /// lies inside the input plane, `i` the input's index in the plane.
    pub(super) fn for_each_tap(&self, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
        for kh in 0..self.k {
            let Some(iy) = (oy * self.stride + kh).checked_sub(self.pad) else {
                continue;
            };
            if iy >= self.h {
                continue;
            }
            for kw in 0..self.k {
                let Some(ix) = (ox * self.stride + kw).checked_sub(self.pad) else {
                    continue;
                };
                if ix < self.w {
                    f(kh * self.k + kw, iy * self.w + ix);
                }
            }
        }
    }
}

/// A depthwise convolution seen phase by phase: input rows `s·a + r`
/// (`s` the stride) meet output rows `a + d` through the taps `kh` with
/// `s·(a + d) + kh − pad = s·a + r`, and likewise for columns. Each phase is
/// then a stride-1 correlation, so both gradients become a few long,
/// contiguous runs over zero-padded row-major planes instead of one short
/// strided row per tap (mfn's planes are 7 to 56 values wide).
#[derive(Clone, Debug)]
pub(super) struct Phases {
    /// Per tap `kh`: the input phase `r` it reads and the shift `d`.
    pub(super) taps: Vec<(usize, isize)>,
    /// Smallest and largest shift.
    pub(super) lo: isize,
    pub(super) hi: isize,
}

impl Phases {
    pub(super) fn new(g: &Depthwise) -> Self {
        let (s, p) = (signed(g.stride), signed(g.pad));
        let taps: Vec<(usize, isize)> = (0..signed(g.k))
            .map(|kh| {
                let e = kh - p;
                (e.rem_euclid(s) as usize, -e.div_euclid(s))
            })
            .collect();
        let lo = taps.iter().map(|t| t.1).min().unwrap_or(0);
        let hi = taps.iter().map(|t| t.1).max().unwrap_or(0);
        Self { taps, lo, hi }
    }
}

/// A size as a signed offset (sizes of allocated planes are below
/// `isize::MAX`).
pub(super) fn signed(v: usize) -> isize {
    isize::try_from(v).unwrap_or(isize::MAX)
}

/// A zero-padded, row-major plane: `pad` zero rows and columns before the
/// data, `width` values a row, and a spare row so that a run of
/// `rows·width` values shifted by any tap stays inside. A buffer of this
/// layout starts zeroed and only its data area is ever written, so the
/// padding stays zero from plane to plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Padded {
    pub(super) pad: usize,
    pub(super) width: usize,
    pub(super) rows: usize,
}

impl Padded {
    /// A layout whose data spans `0..data[i]` and whose reads span
    /// `reads[i]` along rows (`i = 0`) and columns (`i = 1`).
    pub(super) fn new(data: [usize; 2], reads: [std::ops::Range<isize>; 2]) -> Self {
        let pad = reads.iter().map(|r| (-r.start).max(0)).max().unwrap_or(0) as usize;
        let extent = |i: usize| (signed(pad) + reads[i].end.max(signed(data[i]))).unsigned_abs();
        Self {
            pad,
            width: extent(1),
            rows: extent(0) + 1,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows * self.width
    }

    /// Offset of value `(y, x)` (which may lie in the padding).
    pub(super) fn at(&self, y: isize, x: isize) -> usize {
        let pad = signed(self.pad);
        (y + pad).unsigned_abs() * self.width + (x + pad).unsigned_abs()
    }

    /// Copies `rows × cols` values of `src` into the data area: value
    /// `(y, x)` from `src[offset + y·row_stride + x·stride]`.
    pub(super) fn fill(
        &self,
        dst: &mut [f32],
        src: &[f32],
        rows: usize,
        cols: usize,
        from: [usize; 3],
    ) {
        let [start, row_step, step] = from;
        for y in 0..rows {
            let to = &mut dst[self.at(signed(y), 0)..][..cols];
            let from = &src[start + y * row_step..];
            if step == 1 {
                to.copy_from_slice(&from[..cols]);
            } else {
                for (i, v) in to.iter_mut().enumerate() {
                    *v = from[i * step];
                }
            }
        }
    }
}

/// The input gradient of a depthwise convolution. Phase by phase (see
/// [`Phases`]) where the output is at least as large as the kernel; for a
/// global convolution (output smaller than the kernel) the phases would mostly
/// read padding, so each output value is spread over its window directly.
pub(super) fn flex_depthwise_x_backward(g: &Depthwise, wv: &[f32], gv: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; g.n * g.c * g.h * g.w];
    let plane_of = |plane: usize| {
        (
            &wv[(plane % g.c) * g.k * g.k..][..g.k * g.k],
            &gv[plane * g.oh * g.ow..][..g.oh * g.ow],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        dx.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(plane, dx)| {
                let (wk, gp) = plane_of(plane);
                for (o, &v) in gp.iter().enumerate() {
                    let (oy, ox) = (o / g.ow, o % g.ow);
                    g.for_each_tap(oy, ox, |tap, i| dx[i] += wk[tap] * v);
                }
            });
        return dx;
    }
    let ph = Phases::new(g);
    let s = g.stride;
    // Reads of the output gradient: a + d for input phase rows a < ⌈h/s⌉.
    let layout = Padded::new(
        [g.oh, g.ow],
        [
            ph.lo..signed(g.h.div_ceil(s)) + ph.hi,
            ph.lo..signed(g.w.div_ceil(s)) + ph.hi,
        ],
    );
    let arch = pulp::Arch::new();
    dx.par_chunks_mut(g.h * g.w).enumerate().for_each_init(
        || {
            let run = g.h.div_ceil(s) * layout.width;
            (vec![0.0f32; layout.len()], vec![0.0f32; run])
        },
        |(padded, out), (plane, dx)| {
            let (wk, gp) = plane_of(plane);
            arch.dispatch(XBackwardPlane {
                g,
                ph: &ph,
                layout: &layout,
                wk,
                gp,
                padded,
                out,
                dx,
            });
        },
    );
    dx
}

simd_op!(
    /// One plane of [`flex_depthwise_x_backward`]'s phased form: the weights
    /// and output gradient in, scratch for the padded gradient and a phase's
    /// output, and the plane's input gradient out.
    XBackwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        wk: &'a [f32],
        gp: &'a [f32],
        padded: &'a mut [f32],
        out: &'a mut [f32],
        dx: &'a mut [f32],
    } -> () {
        let s = g.stride;
        layout.fill(padded, gp, g.oh, g.ow, [0, g.ow, 1]);
        for r in 0..s {
            let rows = g.h.saturating_sub(r).div_ceil(s);
            for t in 0..s {
                let cols = g.w.saturating_sub(t).div_ceil(s);
                let out = &mut out[..rows * layout.width];
                out.fill(0.0);
                for (kh, &(rh, dy)) in ph.taps.iter().enumerate() {
                    for (kw, &(rw, dxs)) in ph.taps.iter().enumerate() {
                        if (rh, rw) == (r, t) {
                            let from = &padded[layout.at(dy, dxs)..][..out.len()];
                            axpy(out, from, wk[kh * g.k + kw]);
                        }
                    }
                }
                for a in 0..rows {
                    let src = &out[a * layout.width..][..cols];
                    let row = &mut dx[(s * a + r) * g.w..][..g.w];
                    if s == 1 {
                        row.copy_from_slice(src);
                    } else {
                        for (b, &v) in src.iter().enumerate() {
                            row[s * b + t] = v;
                        }
                    }
                }
            }
        }
    }
);

/// The weight gradient of a depthwise convolution: phase by phase (each
/// face's input plane split into its `s²` zero-padded phases, then a tap is
/// one dot product of the output gradient, laid out at the phases' width,
/// with its phase, shifted), or directly for a global convolution.
pub(super) fn flex_depthwise_weight_backward(g: &Depthwise, xv: &[f32], gv: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0f32; g.c * g.k * g.k];
    let planes = |face: usize, ch: usize| {
        let plane = face * g.c + ch;
        (
            &xv[plane * g.h * g.w..][..g.h * g.w],
            &gv[plane * g.oh * g.ow..][..g.oh * g.ow],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        dw.par_chunks_mut(g.k * g.k)
            .enumerate()
            .for_each(|(ch, dw)| {
                let mut acc = vec![0.0f64; g.k * g.k];
                for face in 0..g.n {
                    let (xp, gp) = planes(face, ch);
                    for (o, &v) in gp.iter().enumerate() {
                        let (oy, ox) = (o / g.ow, o % g.ow);
                        g.for_each_tap(oy, ox, |tap, i| acc[tap] += f64::from(xp[i] * v));
                    }
                }
                for (d, a) in dw.iter_mut().zip(acc) {
                    *d = a as f32;
                }
            });
        return dw;
    }
    let ph = Phases::new(g);
    let layout = input_phase_layout(g, &ph);
    let arch = pulp::Arch::new();
    dw.par_chunks_mut(g.k * g.k).enumerate().for_each_init(
        || phase_scratch(g, &layout),
        |(phases, wide), (ch, dw)| {
            // f64 sums across faces: a tap adds n·oh·ow products.
            let mut acc = vec![0.0f64; g.k * g.k];
            for face in 0..g.n {
                let (xp, gp) = planes(face, ch);
                arch.dispatch(WeightBackwardPlane {
                    g,
                    ph: &ph,
                    layout: &layout,
                    xp,
                    gp,
                    phases,
                    wide,
                    acc: &mut acc,
                });
            }
            for (d, a) in dw.iter_mut().zip(acc) {
                *d = a as f32;
            }
        },
    );
    dw
}

simd_op!(
    /// One face's plane of [`flex_depthwise_weight_backward`]'s phased form:
    /// input and output gradient planes in, scratch for the input's phases and
    /// the widened gradient, the taps' sums added to `acc`.
    WeightBackwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        xp: &'a [f32],
        gp: &'a [f32],
        phases: &'a mut [f32],
        wide: &'a mut [f32],
        acc: &'a mut [f64],
    } -> () {
        fill_phases(g, layout, phases, xp);
        // Columns past `ow` stay zero from allocation.
        for (oy, row) in wide.chunks_exact_mut(layout.width).enumerate() {
            row[..g.ow].copy_from_slice(&gp[oy * g.ow..][..g.ow]);
        }
        for_each_tap_run(g, ph, layout, phases, wide.len(), |tap, run| {
            acc[tap] += f64::from(dot(run, wide));
        });
    }
);

/// Splits an input plane into its `s²` stride phases, each written into
/// the data area of its slot of `phases` (`layout.len()` values a phase).
#[inline(always)]
pub(super) fn fill_phases(g: &Depthwise, layout: &Padded, phases: &mut [f32], xp: &[f32]) {
    let s = g.stride;
    for (i, phase) in phases.chunks_exact_mut(layout.len()).enumerate() {
        let (r, t) = (i / s, i % s);
        let rows = g.h.saturating_sub(r).div_ceil(s);
        let cols = g.w.saturating_sub(t).div_ceil(s);
        layout.fill(phase, xp, rows, cols, [r * g.w + t, s * g.w, s]);
    }
}

/// The layout of an input phase read by every output row and tap: rows
/// `oy − d` for `oy < oh` (likewise columns), `d` a tap's shift.
pub(super) fn input_phase_layout(g: &Depthwise, ph: &Phases) -> Padded {
    let s = g.stride;
    Padded::new(
        [g.h.div_ceil(s), g.w.div_ceil(s)],
        [-ph.hi..signed(g.oh) - ph.lo, -ph.hi..signed(g.ow) - ph.lo],
    )
}

/// Scratch for one worker of the phased kernels: the input's `s²` phases and
/// an output-sized plane at the phases' width. Zeroed once; the phases'
/// padding stays zero because only their data areas are ever written.
pub(super) fn phase_scratch(g: &Depthwise, layout: &Padded) -> (Vec<f32>, Vec<f32>) {
    (
        vec![0.0f32; g.stride * g.stride * layout.len()],
        vec![0.0f32; g.oh * layout.width],
    )
}

/// Calls `f(tap, run)` for each tap with the run of `len` values of its
/// input phase that lines up, shifted by the tap, with an output laid out
/// at the phases' width.
#[inline(always)]
pub(super) fn for_each_tap_run<'p>(
    g: &Depthwise,
    ph: &Phases,
    layout: &Padded,
    phases: &'p [f32],
    len: usize,
    mut f: impl FnMut(usize, &'p [f32]),
) {
    let s = g.stride;
    for (kh, &(rh, dy)) in ph.taps.iter().enumerate() {
        for (kw, &(rw, dxs)) in ph.taps.iter().enumerate() {
            let phase = &phases[(rh * s + rw) * layout.len()..][..layout.len()];
            f(kh * g.k + kw, &phase[layout.at(-dy, -dxs)..][..len]);
        }
    }
}

/// A depthwise convolution's forward, in the weight gradient's phased form:
/// each face's plane split into its `s²` zero-padded phases, then a tap adds
/// one long run of its phase, shifted and scaled by the tap's weight, into
/// an output laid out at the phases' width. A global convolution (output
/// smaller than the kernel) is summed directly.
pub(super) fn flex_depthwise_forward(g: &Depthwise, xv: &[f32], wv: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.c * g.oh * g.ow];
    let planes = |plane: usize| {
        (
            &xv[plane * g.h * g.w..][..g.h * g.w],
            &wv[(plane % g.c) * g.k * g.k..][..g.k * g.k],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        y.par_chunks_mut(g.oh * g.ow)
            .enumerate()
            .for_each(|(plane, yp)| {
                let (xp, wk) = planes(plane);
                for (o, v) in yp.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    g.for_each_tap(o / g.ow, o % g.ow, |tap, i| acc += wk[tap] * xp[i]);
                    *v = acc;
                }
            });
        return y;
    }
    let ph = Phases::new(g);
    let layout = input_phase_layout(g, &ph);
    let arch = pulp::Arch::new();
    y.par_chunks_mut(g.oh * g.ow).enumerate().for_each_init(
        || phase_scratch(g, &layout),
        |(phases, wide), (plane, yp)| {
            let (xp, wk) = planes(plane);
            arch.dispatch(ForwardPlane {
                g,
                ph: &ph,
                layout: &layout,
                xp,
                wk,
                phases,
                wide,
                yp,
            });
        },
    );
    y
}

simd_op!(
    /// One plane of [`flex_depthwise_forward`]'s phased form: the input plane
    /// and the channel's weights in, scratch for the phases and the widened
    /// output, the plane's output out.
    ForwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        xp: &'a [f32],
        wk: &'a [f32],
        phases: &'a mut [f32],
        wide: &'a mut [f32],
        yp: &'a mut [f32],
    } -> () {
        fill_phases(g, layout, phases, xp);
        wide.fill(0.0);
        for_each_tap_run(g, ph, layout, phases, wide.len(), |tap, run| {
            axpy(wide, run, wk[tap]);
        });
        // Columns past `ow` of the wide rows are products of padding and
        // the next row: not outputs.
        for (row, out) in wide.chunks_exact(layout.width).zip(yp.chunks_exact_mut(g.ow)) {
            out.copy_from_slice(&row[..g.ow]);
        }
    }
);
