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

/// Longest operand row [`widen_4px`] widens (the stack buffer of the
/// pointwise and regular convolutions: 4 rows × 576 bytes × 2 — a 3×3
/// patch over 64 channels, the largest the detector's nets have).
pub const MAX_WIDE: usize = 576;

/// The first `n` elements (a multiple of 8, at most [`MAX_WIDE`]) of four
/// rows, sign-extended to 16-bit pairs in the order [`dot_4px`] reads them:
/// per group of four elements, for each row, elements (0, 2) then (1, 3) —
/// the pairs SXTB16 makes of a weight word. Past a row's end the elements
/// are zeros, so they add nothing whatever weights meet them.
#[inline]
pub fn widen_4px(rows: [&[i8]; 4], n: usize, wide: &mut [u32]) {
    let [r0, r1, r2, r3] = rows.map(|r| r.chunks_exact(4));
    // Groups inside every row: one word load each.
    let mut done = 0;
    for ((((out, a), b), c), d) in wide
        .chunks_exact_mut(8)
        .take(n / 4)
        .zip(r0)
        .zip(r1)
        .zip(r2)
        .zip(r3)
    {
        for (pair, v) in out
            .chunks_exact_mut(2)
            .zip([word(a), word(b), word(c), word(d)])
        {
            pair[0] = sxtb16(v);
            pair[1] = sxtb16_ror8(v);
        }
        done += 1;
    }
    // The rest: zero-filled past each row's end.
    for (group, out) in wide.chunks_exact_mut(8).take(n / 4).enumerate().skip(done) {
        for (pair, row) in out.chunks_exact_mut(2).zip(rows) {
            let v = word_tail(row.get(group * 4..).unwrap_or(&[]));
            pair[0] = sxtb16(v);
            pair[1] = sxtb16_ror8(v);
        }
    }
}

/// The loop body shared by [`dot_4px`] and [`dot_4px_rows`], after the
/// weight load: 8 weights (in `w0`, `w1`) against 8 widened elements of
/// each of the four rows, then the step count and the branch back to `2:`.
macro_rules! widened_step {
    () => {
        concat!(
            "sxtb16 {wo}, {w0}, ror #8\n",
            "sxtb16 {w0}, {w0}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a0}, {xe}, {w0}, {a0}\n",
            "smlad {a0}, {xo}, {wo}, {a0}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a1}, {xe}, {w0}, {a1}\n",
            "smlad {a1}, {xo}, {wo}, {a1}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a2}, {xe}, {w0}, {a2}\n",
            "smlad {a2}, {xo}, {wo}, {a2}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a3}, {xe}, {w0}, {a3}\n",
            "smlad {a3}, {xo}, {wo}, {a3}\n",
            "sxtb16 {wo}, {w1}, ror #8\n",
            "sxtb16 {w1}, {w1}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a0}, {xe}, {w1}, {a0}\n",
            "smlad {a0}, {xo}, {wo}, {a0}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a1}, {xe}, {w1}, {a1}\n",
            "smlad {a1}, {xo}, {wo}, {a1}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a2}, {xe}, {w1}, {a2}\n",
            "smlad {a2}, {xo}, {wo}, {a2}\n",
            "ldrd {xe}, {xo}, [{xp}], #8\n",
            "smlad {a3}, {xe}, {w1}, {a3}\n",
            "smlad {a3}, {xo}, {wo}, {a3}\n",
            "subs {k}, {k}, #1\n",
            "bne 2b\n",
        )
    };
}

/// One step of [`dot_4px`]'s loop: 8 weights (loaded by `$load`) against
/// 8 widened channels of each of the four pixels.
macro_rules! dot_4px_loop {
    ($wide:expr, $w:expr, $steps:expr, $($load:literal),+) => {{
        let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
        // SAFETY: the loop runs `steps ≥ 1` times; each step reads 8 weight
        // bytes and 16 widened words, within the `8 · steps` weights and
        // `16 · steps` words the caller checked; it writes only registers.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!(
                "2:",
                $($load,)+
                widened_step!(),
                xp = inout(reg) $wide.as_ptr() => _,
                wp = inout(reg) $w.as_ptr() => _,
                k = inout(reg) $steps => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                w0 = out(reg) _,
                w1 = out(reg) _,
                wo = out(reg) _,
                xe = out(reg) _,
                xo = out(reg) _,
                options(nostack, readonly),
            );
        }
        [a0, a1, a2, a3]
    }};
}

/// `Σ x_p · w` over the first `8 · steps` channels for the four pixels
/// widened by [`widen_4px`]: per 8 channels one (or, for weights that are
/// not word-aligned, two) weight loads, four SXTB16, eight doubleword
/// input loads and sixteen SMLAD — 31 instructions for 32 products, with
/// the loop. Returns zeros when `steps` is 0 or the slices are too short.
#[inline]
pub fn dot_4px(wide: &[u32], w: &[i8], steps: usize, aligned: bool) -> [i32; 4] {
    if steps == 0 || wide.len() < steps * 16 || w.len() < steps * 8 {
        return [0; 4];
    }
    if aligned && (w.as_ptr() as usize) % 4 == 0 {
        dot_4px_loop!(wide, w, steps, "ldrd {w0}, {w1}, [{wp}], #8")
    } else {
        dot_4px_loop!(
            wide,
            w,
            steps,
            "ldr {w0}, [{wp}], #4",
            "ldr {w1}, [{wp}], #4"
        )
    }
}

/// [`dot_4px`] for `channels` consecutive weight rows of exactly `8 · steps`
/// bytes each (a pointwise layer's rows when its input channels are a
/// multiple of 8), with the loop over the rows in the assembly too: 14
/// instructions per row besides the products (reload the widened inputs'
/// start and the step count, zero and store the four sums, count the
/// rows) instead of a call's set-up and checks. Row `j`'s sums go to
/// `sums[j]`. Does nothing when the slices are too short.
#[inline]
pub fn dot_4px_rows(
    wide: &[u32],
    w: &[i8],
    steps: usize,
    channels: usize,
    aligned: bool,
    sums: &mut [[i32; 4]],
) {
    if steps == 0
        || channels == 0
        || wide.len() < steps * 16
        || w.len() < steps * 8 * channels
        || sums.len() < channels
    {
        return;
    }
    // The row loop's state, kept on the stack inside the assembly: the
    // widened inputs' start, the steps per row, the rows left, where the next sums go.
    let frame = [
        wide.as_ptr() as usize,
        steps,
        channels,
        sums.as_mut_ptr() as usize,
    ];
    macro_rules! rows_loop {
        ($($load:literal),+) => {
            // SAFETY: reads `8 · steps · channels` weight bytes and
            // `16 · steps` widened words per row, all within the slices
            // checked above; writes `channels` × 16 bytes of `sums` (checked)
            // and 16 bytes of stack it frees again.
            #[allow(unsafe_code)]
            unsafe {
                core::arch::asm!(
                    "sub sp, sp, #16",
                    "ldr {xe}, [{xo}, #0]",
                    "str {xe}, [sp, #0]",
                    "ldr {xe}, [{xo}, #4]",
                    "str {xe}, [sp, #4]",
                    "ldr {xe}, [{xo}, #8]",
                    "str {xe}, [sp, #8]",
                    "ldr {xe}, [{xo}, #12]",
                    "str {xe}, [sp, #12]",
                    "3:",
                    "ldr {xp}, [sp, #0]",
                    "ldr {k}, [sp, #4]",
                    "movs {a0}, #0",
                    "movs {a1}, #0",
                    "movs {a2}, #0",
                    "movs {a3}, #0",
                    "2:",
                    $($load,)+
                    widened_step!(),
                    "ldr {xe}, [sp, #12]",
                    "strd {a0}, {a1}, [{xe}], #8",
                    "strd {a2}, {a3}, [{xe}], #8",
                    "str {xe}, [sp, #12]",
                    "ldr {xe}, [sp, #8]",
                    "subs {xe}, {xe}, #1",
                    "str {xe}, [sp, #8]",
                    "bne 3b",
                    "add sp, sp, #16",
                    xo = inout(reg) frame.as_ptr() => _,
                    wp = inout(reg) w.as_ptr() => _,
                    xp = out(reg) _,
                    k = out(reg) _,
                    a0 = out(reg) _,
                    a1 = out(reg) _,
                    a2 = out(reg) _,
                    a3 = out(reg) _,
                    w0 = out(reg) _,
                    w1 = out(reg) _,
                    wo = out(reg) _,
                    xe = out(reg) _,
                );
            }
        };
    }
    if aligned && (w.as_ptr() as usize) % 4 == 0 {
        rows_loop!("ldrd {w0}, {w1}, [{wp}], #8");
    } else {
        rows_loop!("ldr {w0}, [{wp}], #4", "ldr {w1}, [{wp}], #4");
    }
}

/// One 3×3 depthwise window of four neighbouring channels, every tap inside
/// the input: `acc[j] += Σ x · w` with `window` starting at the window's
/// top-left tap of channel 0, `ch` bytes between horizontally adjacent taps
/// and `row_step` between rows, and the taps packed as (0, 2) / (1, 3)
/// halves. Unrolled: per tap one load, one doubleword weight load, two
/// SXTB16, four single-lane MACs and one pointer step. Returns `false`
/// (nothing changed) when the window does not fit in `window`.
#[inline(always)]
pub fn window3x3_4(
    acc: &mut [i32; 4],
    window: &[i8],
    ch: usize,
    row_step: usize,
    taps: &[[u32; 2]; 9],
) -> bool {
    let Some(rowskip) = row_step.checked_sub(2 * ch) else {
        return false;
    };
    if window.len() < 2 * row_step + 2 * ch + 4 {
        return false;
    }
    let [mut a0, mut a1, mut a2, mut a3] = *acc;
    macro_rules! tap {
        ($step:literal) => {
            concat!(
                "ldr {x}, [{p}]\n",
                "ldrd {we}, {wo}, [{tp}], #8\n",
                "sxtb16 {xo}, {x}, ror #8\n",
                "sxtb16 {x}, {x}\n",
                "smlabb {a0}, {x}, {we}, {a0}\n",
                "smlatt {a2}, {x}, {we}, {a2}\n",
                "smlabb {a1}, {xo}, {wo}, {a1}\n",
                "smlatt {a3}, {xo}, {wo}, {a3}\n",
                "add {p}, {p}, ",
                $step,
                "\n",
            )
        };
    }
    // SAFETY: reads 4 bytes at each of the nine taps, the furthest
    // 2 · row_step + 2 · ch bytes in (checked above), and the 72 bytes of
    // `taps`; writes only registers.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::asm!(
            tap!("{ch}"), tap!("{ch}"), tap!("{skip}"),
            tap!("{ch}"), tap!("{ch}"), tap!("{skip}"),
            tap!("{ch}"), tap!("{ch}"),
            "ldr {x}, [{p}]",
            "ldrd {we}, {wo}, [{tp}]",
            "sxtb16 {xo}, {x}, ror #8",
            "sxtb16 {x}, {x}",
            "smlabb {a0}, {x}, {we}, {a0}",
            "smlatt {a2}, {x}, {we}, {a2}",
            "smlabb {a1}, {xo}, {wo}, {a1}",
            "smlatt {a3}, {xo}, {wo}, {a3}",
            p = inout(reg) window.as_ptr() => _,
            tp = inout(reg) taps.as_ptr() => _,
            ch = in(reg) ch,
            skip = in(reg) rowskip,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            x = out(reg) _,
            xo = out(reg) _,
            we = out(reg) _,
            wo = out(reg) _,
            options(nostack, readonly),
        );
    }
    *acc = [a0, a1, a2, a3];
    true
}
