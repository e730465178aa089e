//! Runs facegate's int8 engine on faces compiled into flash and compares the
//! embeddings with the host engine's, bit for bit.

use facegate_core::engine::Model;

/// The blob (public: the door image runs it), faces (112×112 RGB each) and host embeddings (f32 LE), when compiled in.
pub static MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model.fgm"));
static FACES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/faces.rgb"));
static EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/expected.f32"));
/// The MobileFaceNet-size blob (the shipped `mfn`, or its untrained
/// stand-in without one) and the host engine's embedding of the first face
/// (see [`run_mfn`]).
static MFN_MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mfn.fgm"));
static MFN_EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mfn_expected.f32"));

/// Outcome of the engine check.
#[derive(Debug, defmt::Format, PartialEq, Eq)]
pub enum EngineCheck {
    /// No fixture was compiled in (`FACEGATE_ENGINE_FIXTURE` unset at build time).
    NotCompiledIn,
    /// Every face's embedding equals the host's.
    Equal {
        /// Faces checked.
        faces: u32,
        /// Timer ticks of the slowest embedding (the board's clock, see its caller).
        max_ticks: u32,
        /// Multiply-accumulates per embedding.
        macs: u32,
    },
    /// Something differed or failed.
    Failed,
}

/// The DSP dot-product kernels against the portable ones on pseudo-random
/// vectors of every length up to 67 (all tail cases), including extremes.
pub fn dsp_kernel_matches_portable() -> bool {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        use facegate_core::engine::kernels::{dot_i8_2x2_portable, dot_i8_portable, dsp};
        let mut s = 0x9E37_79B9u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let mut ok = true;
        for round in 0..200u32 {
            let n = (round % 68) as usize;
            let mut x = [0i8; 67];
            let mut w = [0i8; 67];
            for (a, b) in x.iter_mut().zip(w.iter_mut()) {
                let r = next().to_le_bytes();
                (*a, *b) = if round % 10 == 0 {
                    (-128, -128)
                } else {
                    (r[0] as i8, r[1] as i8)
                };
            }
            ok &= dsp::dot_i8(&x[..n], &w[..n]) == dot_i8_portable(&x[..n], &w[..n]);
            // The 2×2 block of the pointwise kernel: the same vectors, shifted, as the other pixel and channel.
            let m = n.saturating_sub(1);
            ok &= dsp::dot_i8_2x2(&x[..m], &x[1..=m], &w[..m], &w[1..=m])
                == dot_i8_2x2_portable(&x[..m], &x[1..=m], &w[..m], &w[1..=m]);
        }
        ok
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        true
    }
}

/// Layer shapes for [`kernels_match_reference`]: side h × w, channels in and
/// out, square kernel, stride, padding, groups. They reach every fast path
/// and its edges: depthwise in four-lane groups with tail channels, strides
/// and a 5×5 kernel; regular convolutions with odd pixel and channel counts;
/// pointwise with lengths that leave tails: four-pixel blocks with a pixel
/// tail, channels past one chunk of 32, inputs of 40 (five 8-channel steps),
/// 12 and 19 (a 4- and a 3-channel tail) and 4 (the two-by-two path);
/// regular convolutions whose patches are whole 8-byte steps (72, and 8
/// over two chunks of output channels) as well as ragged ones (27, 36).
const KERNEL_SHAPES: [[usize; 8]; 11] = [
    [9, 7, 8, 8, 3, 1, 1, 8],
    [9, 9, 6, 6, 3, 2, 1, 6],
    [5, 5, 12, 12, 5, 1, 2, 12],
    [10, 10, 3, 5, 3, 2, 1, 1],
    [7, 6, 4, 3, 3, 1, 1, 1],
    [4, 5, 19, 7, 1, 1, 0, 1],
    [3, 3, 40, 9, 1, 1, 0, 1],
    [2, 3, 12, 33, 1, 1, 0, 1],
    [5, 5, 4, 6, 1, 1, 0, 1],
    [4, 4, 8, 6, 3, 1, 1, 1],
    [5, 5, 2, 40, 2, 1, 0, 1],
];

/// The engine's fast convolution paths as compiled for this target (DSP
/// kernels on Cortex-M) against its portable reference kernel, on
/// pseudo-random inputs, weights, zero points and multipliers, with and
/// without PReLU — the host's property test, run on the device. Returns the
/// number of layers compared, or `None` at the first difference.
pub fn kernels_match_reference() -> Option<u32> {
    use facegate_core::engine::kernels::{ChannelParams, ConvGeometry, conv2d, conv2d_reference};
    let mut s = 0x2545_F491u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    let mut layers = 0;
    for round in 0..4u32 {
        for shape in KERNEL_SHAPES {
            let g = ConvGeometry::square(shape)?;
            let (h, w, cin, cout) = (g.in_h, g.in_w, g.in_c, g.out_c);
            let (out_h, out_w) = (g.out_h, g.out_w);
            // Odd rounds start the weights one byte in: rows that are not
            // word-aligned take the pointwise kernel's single-word loads.
            #[repr(align(4))]
            struct WordAligned([i8; 513]);
            let (mut input, mut weight_store) = ([0i8; 1024], WordAligned([0; 513]));
            let weights = &mut weight_store.0[(round % 2) as usize..];
            let (n_in, n_w, n_out) = (
                h * w * cin,
                cout * g.weights_per_output(),
                out_h * out_w * cout,
            );
            for v in input[..n_in].iter_mut().chain(weights[..n_w].iter_mut()) {
                *v = next() as i8;
            }
            let (mut bias, mut mult, mut shift, mut neg) =
                ([0u8; 256], [0u8; 256], [0u8; 256], [0u8; 256]);
            for oc in 0..cout {
                let m = (1i32 << 30) + (next() >> 2) as i32 % (1 << 30);
                let put = |b: &mut [u8; 256], v: i32| {
                    b[oc * 4..oc * 4 + 4].copy_from_slice(&v.to_le_bytes())
                };
                // Every fifth channel has what the fast requantisation
                // refuses (no right shift, a left shift, a shift past 22, a
                // bias near the i32 limit): it must take the exact path.
                let (b, sh) = if oc % 5 == 4 {
                    match next() % 4 {
                        0 => (0, 0),
                        1 => (1_000, 1),
                        2 => (1_000, -24),
                        _ => (0x7FFF_0000, -9),
                    }
                } else {
                    (
                        (next() % 20_001) as i32 - 10_000,
                        -((next() % 8) as i32) - 2,
                    )
                };
                put(&mut bias, b);
                put(&mut mult, m);
                put(&mut shift, sh);
                put(&mut neg, if round % 2 == 1 { m / 4 } else { m });
            }
            let n = cout * 4;
            let params = ChannelParams {
                bias: &bias[..n],
                mult: &mult[..n],
                shift: &shift[..n],
                neg_mult: &neg[..n],
                neg_shift: &shift[..n],
            };
            let (in_zp, out_zp) = ((next() % 256) as i32 - 128, (next() % 256) as i32 - 128);
            let (mut fast, mut reference) = ([0i8; 1024], [0i8; 1024]);
            type Kernel = fn(&ConvGeometry, &[i8], i32, &[i8], &ChannelParams<'_>, i32, &mut [i8]);
            let apply = |kernel: Kernel, out: &mut [i8]| {
                kernel(
                    &g,
                    &input[..n_in],
                    in_zp,
                    &weights[..n_w],
                    &params,
                    out_zp,
                    out,
                );
            };
            apply(conv2d, &mut fast[..n_out]);
            apply(conv2d_reference, &mut reference[..n_out]);
            if fast[..n_out] != reference[..n_out] {
                defmt::error!(
                    "engine: fast path differs from the reference on layer {} (h, w, in, out, k, stride, pad, groups; round {})",
                    shape,
                    round
                );
                return None;
            }
            layers += 1;
        }
    }
    Some(layers)
}

/// Whether the data for the check was compiled in.
pub const COMPILED_IN: bool = cfg!(engine_fixture);

/// Runs the check with the caller's arena (its size must cover the model's plan).
/// `elapsed` times a closure in the board's timer ticks.
pub fn run(arena: &mut [i8], elapsed: &mut dyn FnMut(&mut dyn FnMut()) -> u32) -> EngineCheck {
    run_model(MODEL, FACES, EXPECTED, arena, elapsed)
}

/// The same check with the MobileFaceNet-size blob (203 M MACs)
/// on the first face (the one its host embedding was recorded for); its
/// blob is planned for a 512 KiB arena (expansions in row bands).
pub fn run_mfn(arena: &mut [i8], elapsed: &mut dyn FnMut(&mut dyn FnMut()) -> u32) -> EngineCheck {
    run_model(MFN_MODEL, FACES, MFN_EXPECTED, arena, elapsed)
}

/// Embeds the faces of `faces_rgb` that have an embedding in
/// `expected_f32` (in order) with `blob` and compares them bit for bit.
fn run_model(
    blob: &[u8],
    faces_rgb: &[u8],
    expected_f32: &[u8],
    arena: &mut [i8],
    elapsed: &mut dyn FnMut(&mut dyn FnMut()) -> u32,
) -> EngineCheck {
    if !COMPILED_IN {
        return EngineCheck::NotCompiledIn;
    }
    let model = match Model::parse(blob) {
        Ok(m) => m,
        Err(e) => {
            defmt::error!("engine: blob rejected: {}", e);
            return EngineCheck::Failed;
        }
    };
    defmt::info!(
        "engine: model {} ops, {} MACs, blob {} B, arena {} B, hash {=[u8]:02x}",
        model.op_count(),
        u32::try_from(model.macs()).unwrap_or(u32::MAX),
        model.blob_len() as u32,
        model.arena_len() as u32,
        model.hash().0[..8]
    );
    let (h, w) = model.input_size();
    let dim = model.embedding_dim();
    let face_len = h * w * 3;
    let mut out = [0.0f32; 512];
    let Some(out) = out.get_mut(..dim) else {
        defmt::error!(
            "engine: embedding of {} values is wider than the check's buffer",
            dim
        );
        return EngineCheck::Failed;
    };
    let mut faces = 0u32;
    let mut max_ticks = 0;
    for (face, expected) in faces_rgb
        .chunks_exact(face_len)
        .zip(expected_f32.chunks_exact(dim * 4))
    {
        let mut result = Ok(());
        let ticks = elapsed(&mut || result = model.embed(face, arena, out));
        max_ticks = max_ticks.max(ticks);
        if let Err(e) = result {
            defmt::error!("engine: {}", e);
            return EngineCheck::Failed;
        }
        let equal = out
            .iter()
            .zip(expected.chunks_exact(4))
            .all(|(o, e)| o.to_bits().to_le_bytes() == [e[0], e[1], e[2], e[3]]);
        defmt::info!(
            "engine: face {}: embedding[0..4] = {}, equal to host: {}",
            faces,
            out[..4.min(dim)],
            equal
        );
        if !equal {
            return EngineCheck::Failed;
        }
        faces += 1;
    }
    if faces == 0 {
        EngineCheck::Failed
    } else {
        EngineCheck::Equal {
            faces,
            max_ticks,
            macs: u32::try_from(model.macs()).unwrap_or(u32::MAX),
        }
    }
}
