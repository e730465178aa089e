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
    };
    let p = panels();
    let mut seen = Vec::new();
    let (feats, labels) = train_panels(&opts, &p, |t| seen.push(t.to_string())).expect("training");
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(labels.len(), 200);
    assert!(
        feats
            .iter()
            .all(|f| f.len() == 200 && f.iter().all(|v| v[0].is_finite() && v[1].is_finite()))
    );
    // Fashion-MNIST's test set starts with an ankle boot (9), a pullover (2), trousers (1).
    assert_eq!(&labels[..3], &[9, 2, 1]);
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("grid.png");
    draw_grid(&png, &p, &feats, &labels).expect("drawing");
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
}
