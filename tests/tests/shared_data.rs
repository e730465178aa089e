//! The shared face data is where and what the later pipeline expects.

use facegate_e2e::shared_data;
use facegate_eval::pairs::parse_pairs;

fn pairs(file: &std::path::Path) -> facegate_eval::pairs::PairList {
    parse_pairs(&std::fs::read_to_string(file).unwrap(), file).unwrap()
}

#[test]
fn lfw_view2_has_ten_balanced_folds_of_existing_images() {
    let Some(data) = shared_data() else { return };
    let lfw = data.join("lfw");
    let list = pairs(&lfw.join("pairs.txt"));
    assert_eq!((list.pairs.len(), list.folds), (6000, 10));
    let missing: Vec<_> = list
        .pairs
        .iter()
        .flat_map(|p| [&p.a, &p.b])
        .filter(|img| !lfw.join("aligned_112").join(img.relative_path()).is_file())
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing images: {missing:?}");
}

#[test]
fn lfw_view1_lists_have_no_header() {
    let Some(data) = shared_data() else { return };
    let train = pairs(&data.join("lfw/pairsDevTrain.txt"));
    let test = pairs(&data.join("lfw/pairsDevTest.txt"));
    assert_eq!(
        (train.pairs.len(), test.pairs.len(), test.folds),
        (2200, 1000, 1)
    );
    assert_eq!(test.pairs.iter().filter(|p| p.same).count(), 500);
}
