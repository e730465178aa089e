//! `viz` end to end on a slice: Fashion-MNIST read, one panel per loss
//! trained, the grid drawn.

use facegate_train::viz::{DEBIAN_FASHION_MNIST, VizOptions, draw_grid, panels, train_panels};

#[test]
fn the_loss_grid_is_drawn_from_a_slice_of_fashion_mnist() {
    let data = std::path::PathBuf::from(DEBIAN_FASHION_MNIST);
    if !data.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "SKIP: no Fashion-MNIST at {DEBIAN_FASHION_MNIST} (scripts/setup.sh installs dataset-fashion-mnist)"
        );
        return;
    }
    let opts = VizOptions {
        data,
        train_images: 640,
        test_images: 200,
        epochs: 1,
        seed: 1,
        dim: 2,
    };
    let p = panels();
    let mut seen = Vec::new();
    let (feats, labels) = train_panels(&opts, &p, |t| seen.push(t.to_string())).expect("training");
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(labels.len(), 200);
    assert!(feats.iter().all(|f| {
        f.len() == 200
            && f.iter()
                .all(|v| v[0].is_finite() && v[1].is_finite() && v[2] == 0.0)
    }));
    // Fashion-MNIST's test set starts with an ankle boot (9), a pullover (2), trousers (1).
    assert_eq!(&labels[..3], &[9, 2, 1]);
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("grid.png");
    draw_grid(&png, &p, &feats, &labels, 2).expect("drawing");
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
}

#[test]
fn three_d_features_are_drawn_on_the_sphere() {
    let data = std::path::PathBuf::from(DEBIAN_FASHION_MNIST);
    if !data.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!("SKIP: no Fashion-MNIST at {DEBIAN_FASHION_MNIST}");
        return;
    }
    let opts = VizOptions {
        data,
        train_images: 320,
        test_images: 100,
        epochs: 1,
        seed: 1,
        dim: 3,
    };
    // Two panels are enough to exercise the 3-D path.
    let p: Vec<_> = panels().into_iter().skip(4).collect();
    let (feats, labels) = train_panels(&opts, &p, |_| {}).expect("training");
    // 3-D features really use the third axis.
    assert!(feats.iter().all(|f| f.iter().any(|v| v[2] != 0.0)));
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("sphere.png");
    draw_grid(&png, &p, &feats, &labels, 3).expect("drawing");
    assert_eq!(&std::fs::read(&png).expect("png")[1..4], b"PNG");
    // A 4-D request is a clear error, not a panic.
    let bad = VizOptions { dim: 4, ..opts };
    assert!(train_panels(&bad, &p, |_| {}).is_err());
    assert!(draw_grid(&png, &p, &feats, &labels, 4).is_err());
}
