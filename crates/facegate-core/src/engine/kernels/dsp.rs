//! Cortex-M DSP-extension kernels (Cortex-M4/M7): two 16-bit MACs per
//! instruction. Integer arithmetic modulo 2^32 like the portable kernels, so
//! results are bit-identical in any order; the QEMU run checks them on random
//! vectors and on whole embeddings against the host.

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
