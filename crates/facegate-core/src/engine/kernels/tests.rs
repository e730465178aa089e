//! The fast paths held to the reference kernels (property tests).

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

fn le(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `n` pseudo-random bytes per call, from `seed` (xorshift).
fn byte_source(seed: u64) -> impl FnMut(usize) -> Vec<i8> {
    let mut s = seed | 1;
    move |n| {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                #[allow(clippy::cast_possible_truncation)]
                let b = s as i8;
                b
            })
            .collect()
    }
}

/// PReLU's negative-side multiplier as a fraction of the positive one:
/// none (the same multiplier), a positive slope, a negative slope.
fn prelu_divisor() -> impl Strategy<Value = i32> {
    prop_oneof![Just(1), Just(4), Just(-4)]
}

/// `g` run by [`conv2d`] and by [`conv2d_reference`] on random input and
/// weights, per-channel biases, right shifts of 3 to 11 and multipliers
/// near 2^30 (the negative side's divided by `prelu`): both outputs.
fn both_kernels(
    g: &ConvGeometry,
    seed: u64,
    in_zp: i32,
    out_zp: i32,
    prelu: i32,
) -> (Vec<i8>, Vec<i8>) {
    let mut bytes = byte_source(seed);
    let input = bytes(g.in_h * g.in_w * g.in_c);
    let weights = bytes(g.out_c * g.weights_per_output());
    let cout = i32::try_from(g.out_c).unwrap();
    let bias: Vec<i32> = (0..cout).map(|i| (i - 2) * 777).collect();
    let mult: Vec<i32> = (0..cout).map(|i| (1 << 30) + i * 1_000_003).collect();
    let shift: Vec<i32> = (0..cout).map(|i| -(i % 9) - 3).collect();
    let neg: Vec<i32> = mult.iter().map(|m| m / prelu).collect();
    run_both(
        g,
        &input,
        &weights,
        [&bias, &mult, &shift, &neg, &shift],
        in_zp,
        out_zp,
    )
}

/// `g` run by both kernels with the given per-channel bias, multiplier,
/// shift, negative-side multiplier and shift.
fn run_both(
    g: &ConvGeometry,
    input: &[i8],
    weights: &[i8],
    channels: [&[i32]; 5],
    in_zp: i32,
    out_zp: i32,
) -> (Vec<i8>, Vec<i8>) {
    let [b, m, sh, nm, nsh] = channels.map(le);
    let params = ChannelParams {
        bias: &b,
        mult: &m,
        shift: &sh,
        neg_mult: &nm,
        neg_shift: &nsh,
    };
    let out = g.out_h * g.out_w * g.out_c;
    let (mut fast, mut reference) = (vec![0i8; out], vec![0i8; out]);
    conv2d(g, input, in_zp, weights, &params, out_zp, &mut fast);
    conv2d_reference(g, input, in_zp, weights, &params, out_zp, &mut reference);
    (fast, reference)
}

/// Per-channel requantisation a forged or unusual blob may hold: any
/// multiplier, any shift a blob can store (left shifts, no shift, shifts
/// past 22), biases up to the i32 limits, and any zero points.
fn wild_channels(cout: usize, seed: u64) -> [Vec<i32>; 5] {
    let mut bytes = byte_source(seed ^ 0x5EED);
    let mut word = move || {
        let b = bytes(4);
        i32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
    };
    let mut column = |f: &mut dyn FnMut(i32) -> i32| (0..cout).map(|_| f(word())).collect();
    [
        column(&mut |w| if w % 3 == 0 { w } else { w % 100_000 }),
        column(&mut |w| w),
        column(&mut |w| w % 40),
        column(&mut |w| w),
        column(&mut |w| w % 40),
    ]
}

/// A 1×1 convolution over `h × w` pixels.
fn pointwise(h: usize, w: usize, cin: usize, cout: usize) -> ConvGeometry {
    ConvGeometry {
        in_h: h,
        in_w: w,
        in_c: cin,
        out_h: h,
        out_w: w,
        out_c: cout,
        kh: 1,
        kw: 1,
        stride: 1,
        pad_top: 0,
        pad_left: 0,
        groups: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The pointwise fast path gives the reference's bits.
    #[test]
    fn pointwise_equals_reference(
        h in 1usize..6, w in 1usize..6, cin in 1usize..20, cout in 1usize..12,
        in_zp in -128i32..128, out_zp in -128i32..128, seed in any::<u64>(),
        prelu in prelu_divisor(),
    ) {
        let (fast, reference) = both_kernels(&pointwise(h, w, cin, cout), seed, in_zp, out_zp, prelu);
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
        prelu in prelu_divisor(),
    ) {
        let (pt, pb, pl, pr) = pads;
        let out_h = ConvGeometry::out_len(h, kh, stride, pt, pb);
        let out_w = ConvGeometry::out_len(w, kw, stride, pl, pr);
        let (Some(out_h), Some(out_w)) = (out_h, out_w) else { return Ok(()) };
        let (groups, cout) = if depthwise { (cin, cin) } else { (1, cout) };
        let g = ConvGeometry { in_h: h, in_w: w, in_c: cin, out_h, out_w, out_c: cout, kh, kw, stride, pad_top: pt, pad_left: pl, groups };
        let (fast, reference) = both_kernels(&g, seed, in_zp, out_zp, prelu);
        prop_assert_eq!(fast, reference);
    }

    /// Depthwise layers as wide as the network's (the AVX2 path takes
    /// sixteen channels at a time, the rest four and one at a time).
    #[test]
    fn wide_depthwise_equals_reference(
        h in 1usize..8, w in 1usize..8, ch in 1usize..56,
        k in 1usize..4, stride in 1usize..3, pad in 0usize..2,
        in_zp in -128i32..128, out_zp in -128i32..128, seed in any::<u64>(),
        prelu in prelu_divisor(),
    ) {
        let Some(g) = ConvGeometry::square([h, w, ch, ch, k, stride, pad, ch]) else { return Ok(()) };
        let (fast, reference) = both_kernels(&g, seed, in_zp, out_zp, prelu);
        prop_assert_eq!(fast, reference);
    }

    /// Pointwise layers as deep as the network's (sixteen-byte bodies and
    /// every tail, channel groups of four and their remainders).
    #[test]
    fn deep_pointwise_equals_reference(
        px in 1usize..7, cin in 1usize..80, cout in 1usize..20,
        in_zp in -128i32..128, out_zp in -128i32..128, seed in any::<u64>(),
        prelu in prelu_divisor(),
    ) {
        let (fast, reference) = both_kernels(&pointwise(1, px, cin, cout), seed, in_zp, out_zp, prelu);
        prop_assert_eq!(fast, reference);
    }

    /// Every path gives the reference's bits whatever requantisation the
    /// blob holds: the fast requantisation where it is exact, the exact
    /// path for the channels it refuses.
    #[test]
    fn any_requantisation_equals_reference(
        h in 1usize..6, w in 1usize..6, cin in 1usize..40, cout in 1usize..10,
        kind in 0usize..3,
        in_zp in any::<i32>(), out_zp in -200i32..200, seed in any::<u64>(),
    ) {
        let in_zp = if in_zp % 4 == 0 { in_zp } else { in_zp % 129 };
        let g = match kind {
            0 => pointwise(h, w, cin, cout),
            1 => ConvGeometry::square([h, w, cin, cin, 3, 1, 1, cin]).unwrap(),
            _ => ConvGeometry::square([h, w, cin % 7 + 1, cout, 3, 2, 1, 1]).unwrap(),
        };
        let mut bytes = byte_source(seed);
        let input = bytes(g.in_h * g.in_w * g.in_c);
        let weights = bytes(g.out_c * g.weights_per_output());
        let channels = wild_channels(g.out_c, seed);
        let [a, b, c, d, e] = &channels;
        let (fast, reference) = run_both(&g, &input, &weights, [a, b, c, d, e], in_zp, out_zp);
        prop_assert_eq!(fast, reference);
    }

    /// With the parameters a quantiser writes (inputs rescaled by at most
    /// one half, the output by about 2^-20), the scalar fast addition
    /// takes the layer and gives the reference's bits.
    #[test]
    fn fast_add_takes_quantiser_parameters(
        n in 1usize..100, seed in any::<u64>(),
        zps in (any::<i8>(), any::<i8>(), any::<i8>()),
        m0 in prop::array::uniform3((1i32 << 30)..i32::MAX),
        input_shifts in (-6i32..=0, -6i32..=0),
        out_shift in -22i32..=-12,
    ) {
        let mut bytes = byte_source(seed);
        let (a, b) = (bytes(n), bytes(n));
        let p = AddParams {
            a_zp: i32::from(zps.0), b_zp: i32::from(zps.1), out_zp: i32::from(zps.2),
            a_mult: (m0[0], input_shifts.0), b_mult: (m0[1], input_shifts.1), out_mult: (m0[2], out_shift),
        };
        let (mut scalar, mut reference) = (vec![0i8; n], vec![0i8; n]);
        prop_assert!(add_fast(&p, &a, &b, &mut scalar));
        add_reference(&p, &a, &b, &mut reference);
        prop_assert_eq!(scalar, reference);
    }

    /// The residual addition (AVX2 where the CPU has it) gives the
    /// reference's bits for any lengths, zero points and rescales, left
    /// shifts and saturation included.
    #[test]
    fn add_equals_reference(
        n in 0usize..100, seed in any::<u64>(),
        zps in (any::<i8>(), any::<i8>(), any::<i8>()),
        m0 in prop::array::uniform3(prop_oneof![(1i32 << 30)..i32::MAX, any::<i32>()]),
        shifts in prop::array::uniform3(-35i32..35),
    ) {
        let mut bytes = byte_source(seed);
        let (a, b) = (bytes(n), bytes(n));
        let p = AddParams {
            a_zp: i32::from(zps.0), b_zp: i32::from(zps.1), out_zp: i32::from(zps.2),
            a_mult: (m0[0], shifts[0]), b_mult: (m0[1], shifts[1]), out_mult: (m0[2], shifts[2]),
        };
        let mut fast = vec![0i8; n];
        let mut reference = vec![0i8; n];
        add(&p, &a, &b, &mut fast);
        add_reference(&p, &a, &b, &mut reference);
        prop_assert_eq!(&fast, &reference);
        // The scalar fast form (Cortex-M and hosts without AVX2), where it applies.
        let mut scalar = vec![0i8; n];
        if add_fast(&p, &a, &b, &mut scalar) {
            prop_assert_eq!(&scalar, &reference);
        }
    }
}

#[test]
fn max_pool_leaves_padding_out_of_its_windows() {
    // 3×3 input, 2 channels; 2×2 windows at stride 2 with ONNX SAME_UPPER
    // padding (one pixel after): the last row and column pool over the
    // real pixels only, even when all of them are below zero.
    let input: Vec<i8> = (0..18).map(|v| -100 + 5 * v).collect();
    let g = ConvGeometry {
        in_h: 3,
        in_w: 3,
        in_c: 2,
        out_h: 2,
        out_w: 2,
        out_c: 2,
        kh: 2,
        kw: 2,
        stride: 2,
        pad_top: 0,
        pad_left: 0,
        groups: 2,
    };
    let mut out = [0i8; 8];
    max_pool(&g, &input, &mut out);
    let at = |y: usize, x: usize, c: usize| input[(y * 3 + x) * 2 + c];
    assert_eq!(
        out,
        [
            at(1, 1, 0),
            at(1, 1, 1),
            at(1, 2, 0),
            at(1, 2, 1),
            at(2, 1, 0),
            at(2, 1, 1),
            at(2, 2, 0),
            at(2, 2, 1)
        ]
    );
    assert!(out.iter().all(|&v| v < 0 && v > i8::MIN));
    // Padding before: the first window holds only pixel (0, 0).
    let g = ConvGeometry {
        pad_top: 1,
        pad_left: 1,
        ..g
    };
    max_pool(&g, &input, &mut out);
    assert_eq!(&out[..2], &[at(0, 0, 0), at(0, 0, 1)]);
    assert_eq!(&out[6..], &[at(2, 2, 0), at(2, 2, 1)]);
}
