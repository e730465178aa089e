//! facegate's 5-point alignment reproduces the shared data's: the raw LFW
//! photos of `lfw/raw_subset`, warped with their landmarks from
//! `lfw/landmarks_mtcnn.tsv` onto the ArcFace template by the core's
//! Umeyama estimate, land on `lfw/aligned_112` with no shift at all.

use std::collections::HashMap;

use facegate_core::align::{FACE_SIDE, align_face};
use facegate_e2e::shared_data;

/// Mean absolute difference of two 112×112 RGB crops, `b` shifted by (dx, dy),
/// over the central 80×80 (away from the borders the shift uncovers).
fn mad(a: &[u8], b: &[u8], dx: i32, dy: i32) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in 16..96i32 {
        for x in 16..96i32 {
            for c in 0..3 {
                let i = ((y * 112 + x) * 3 + c) as usize;
                let j = (((y + dy) * 112 + x + dx) * 3 + c) as usize;
                sum += u64::from(a[i].abs_diff(b[j]));
                n += 1;
            }
        }
    }
    sum as f64 / n as f64
}

#[test]
fn raw_photos_align_onto_the_shared_data_exactly() {
    let Some(data) = shared_data() else { return };
    let tsv = std::fs::read_to_string(data.join("lfw/landmarks_mtcnn.tsv")).unwrap();
    let landmarks: HashMap<&str, [[f32; 2]; 5]> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.get(1) == Some(&"ok")).then(|| {
                let v: Vec<f32> = f[4..14].iter().map(|x| x.parse().unwrap()).collect();
                (f[0], core::array::from_fn(|k| [v[2 * k], v[2 * k + 1]]))
            })
        })
        .collect();
    let mut people: Vec<_> = std::fs::read_dir(data.join("lfw/raw_subset"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    let (mut checked, mut worst_shift, mut worst_mad) = (0, 0, 0.0f64);
    for person in people.iter().take(20) {
        let mut photos: Vec<_> = std::fs::read_dir(person)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        photos.sort();
        for photo in photos.iter().take(2) {
            let name = person.file_name().unwrap().to_str().unwrap();
            let file = photo.file_name().unwrap().to_str().unwrap();
            let key = format!("{name}/{file}");
            let Some(marks) = landmarks.get(key.as_str()) else {
                continue;
            };
            let raw = image::open(photo).unwrap().to_rgb8();
            let (w, h) = raw.dimensions();
            let mut ours = [0u8; FACE_SIDE * FACE_SIDE * 3];
            align_face(raw.as_raw(), w as usize, h as usize, marks, &mut ours).unwrap();
            let theirs = image::open(data.join("lfw/aligned_112").join(&key))
                .unwrap()
                .to_rgb8();
            // The shift that makes ours and theirs agree best.
            let (mut best, mut best_mad) = ((0, 0), f64::MAX);
            for dy in -4..=4 {
                for dx in -4..=4 {
                    let m = mad(theirs.as_raw(), &ours, dx, dy);
                    if m < best_mad {
                        (best, best_mad) = ((dx, dy), m);
                    }
                }
            }
            let shift = best.0.abs().max(best.1.abs());
            eprintln!(
                "{key}: best shift {best:?}, mean |Δ| {best_mad:.2} (unshifted {:.2})",
                mad(theirs.as_raw(), &ours, 0, 0)
            );
            worst_shift = worst_shift.max(shift);
            worst_mad = worst_mad.max(best_mad);
            checked += 1;
        }
    }
    eprintln!("{checked} photos: worst shift {worst_shift} px, worst mean |Δ| {worst_mad:.2}");
    assert!(checked >= 30, "only {checked} photos had landmarks");
    assert_eq!(worst_shift, 0, "an aligned crop is {worst_shift} px off");
    assert!(
        worst_mad < 12.0,
        "crops differ by {worst_mad:.2} on average"
    );
}
