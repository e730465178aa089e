//! Box arithmetic of the MTCNN cascade, in the reference implementation's
//! convention (1-based inclusive pixel boxes `[x1, y1, x2, y2]`), and
//! non-maximum suppression in place on a bounded list.

use heapless::Vec;

/// A box with its face score and the regression that refines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// `[x1, y1, x2, y2]`, 1-based inclusive.
    pub b: [f32; 4],
    /// Face probability.
    pub score: f32,
    /// Box offsets in box sizes `[dx1, dy1, dx2, dy2]`.
    pub reg: [f32; 4],
    /// Index of what a stage keeps beside the box (O-Net's landmarks).
    pub tag: u16,
}

/// Intersection over union (`min == false`) or over the smaller box.
pub fn overlap(a: &[f32; 4], b: &[f32; 4], min: bool) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    let denom = if min {
        area(a).min(area(b))
    } else {
        area(a) + area(b) - inter
    };
    if denom > 0.0 { inter / denom } else { 0.0 }
}

/// Greedy non-maximum suppression in place: sorts best first and keeps a
/// box only if it overlaps no kept box by more than `threshold`; the kept
/// boxes end up first, and their number is returned.
pub fn nms_slice(c: &mut [Candidate], threshold: f32, min: bool) -> usize {
    c.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..c.len() {
        let cand = c[i];
        if c[..kept]
            .iter()
            .all(|k| overlap(&k.b, &cand.b, min) <= threshold)
        {
            c[kept] = cand;
            kept += 1;
        }
    }
    kept
}

/// [`nms_slice`] on a bounded list, dropping the suppressed boxes.
pub fn nms<const N: usize>(c: &mut Vec<Candidate, N>, threshold: f32, min: bool) {
    let kept = nms_slice(c, threshold, min);
    c.truncate(kept);
}

/// Adds `cand` to a bounded list; when it is full, `cand` replaces the
/// lowest-scoring entry if it scores higher. Returns whether a candidate
/// (it or the one it replaced) was dropped.
pub fn push_bounded<const N: usize>(c: &mut Vec<Candidate, N>, cand: Candidate) -> bool {
    let Err(cand) = c.push(cand) else {
        return false;
    };
    let worst = c
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
        .map(|(i, w)| (i, w.score));
    if let Some((i, score)) = worst {
        if cand.score > score {
            c[i] = cand;
        }
    }
    true
}

/// Grows a box to the square on its longer side, about its centre.
pub fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let x1 = b[0] + w * 0.5 - side * 0.5;
    let y1 = b[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

/// Applies a stage's regression (offsets in inclusive box sizes).
pub fn refine(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// Applies P-Net's regression, which the reference scales by the
/// exclusive size.
pub fn refine_exclusive(b: [f32; 4], reg: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// Truncates every coordinate toward zero (the reference's `fix`).
pub fn trunc(b: [f32; 4]) -> [f32; 4] {
    b.map(libm::truncf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: [f32; 4], score: f32) -> Candidate {
        Candidate {
            b,
            score,
            reg: [0.0; 4],
            tag: 0,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_all_disjoint_ones() {
        let mut c: Vec<Candidate, 8> = Vec::new();
        for x in [
            cand([0.0, 0.0, 9.0, 9.0], 0.8),
            cand([1.0, 1.0, 10.0, 10.0], 0.9),
            cand([50.0, 50.0, 59.0, 59.0], 0.7),
        ] {
            c.push(x).unwrap();
        }
        nms(&mut c, 0.5, false);
        let scores: std::vec::Vec<f32> = c.iter().map(|k| k.score).collect();
        assert_eq!(scores, [0.9, 0.7]);
        // A small box inside a large one: low IoU, but full overlap over the smaller.
        let mut c: Vec<Candidate, 8> = Vec::new();
        c.push(cand([0.0, 0.0, 99.0, 99.0], 0.9)).unwrap();
        c.push(cand([10.0, 10.0, 19.0, 19.0], 0.8)).unwrap();
        let mut by_min = c.clone();
        nms(&mut c, 0.7, false);
        assert_eq!(c.len(), 2);
        nms(&mut by_min, 0.7, true);
        assert_eq!(by_min.len(), 1);
    }

    #[test]
    fn a_full_list_keeps_the_best_candidates() {
        let mut c: Vec<Candidate, 2> = Vec::new();
        assert!(!push_bounded(&mut c, cand([0.0; 4], 0.5)));
        assert!(!push_bounded(&mut c, cand([0.0; 4], 0.7)));
        assert!(push_bounded(&mut c, cand([0.0; 4], 0.6)));
        assert!(push_bounded(&mut c, cand([0.0; 4], 0.1)));
        let mut scores: std::vec::Vec<f32> = c.iter().map(|k| k.score).collect();
        scores.sort_by(f32::total_cmp);
        assert_eq!(scores, [0.6, 0.7]);
    }

    #[test]
    fn square_and_refine_follow_the_reference_arithmetic() {
        assert_eq!(square([0.0, 10.0, 20.0, 20.0]), [0.0, 5.0, 20.0, 25.0]);
        assert_eq!(
            refine([0.0, 0.0, 10.0, 10.0], [0.1, 0.0, 0.1, 0.0]),
            [1.1, 0.0, 11.1, 10.0]
        );
        assert_eq!(
            refine_exclusive([0.0, 0.0, 10.0, 10.0], [0.1, 0.0, 0.1, 0.0]),
            [1.0, 0.0, 11.0, 10.0]
        );
        assert_eq!(overlap(&[0.0; 4], &[5.0, 5.0, 4.0, 4.0], false), 0.0);
    }
}
