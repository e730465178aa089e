//! The shared face data is where and what the later pipeline expects.

use facegate_e2e::{parse_pairs, shared_data};

#[test]
fn lfw_view2_has_ten_balanced_folds_of_existing_images() {
    let Some(data) = shared_data() else { return };
    let lfw = data.join("lfw");
    let pairs = parse_pairs(&std::fs::read_to_string(lfw.join("pairs.txt")).unwrap()).unwrap();
    assert_eq!(pairs.len(), 6000);
    for (fold, chunk) in pairs.chunks(600).enumerate() {
        let same = chunk.iter().filter(|p| p.same).count();
        assert_eq!(same, 300, "fold {fold}");
    }
    let missing: Vec<_> = pairs
        .iter()
        .flat_map(|p| [&p.a, &p.b])
        .filter(|img| !lfw.join("aligned_112").join(img).is_file())
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing images: {missing:?}");
}

#[test]
fn lfw_view1_lists_have_no_header() {
    let Some(data) = shared_data() else { return };
    let train =
        parse_pairs(&std::fs::read_to_string(data.join("lfw/pairsDevTrain.txt")).unwrap()).unwrap();
    let test =
        parse_pairs(&std::fs::read_to_string(data.join("lfw/pairsDevTest.txt")).unwrap()).unwrap();
    assert_eq!((train.len(), test.len()), (2200, 1000));
    assert_eq!(test.iter().filter(|p| p.same).count(), 500);
}

#[test]
fn pair_lines_parse() {
    let p = parse_pairs("10\t300\nAbel_Pacheco\t1\t4\nA_B\t2\tC_D\t11\n").unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].a, "Abel_Pacheco/Abel_Pacheco_0001.jpg");
    assert!(p[0].same && !p[1].same);
    assert_eq!(p[1].b, "C_D/C_D_0011.jpg");
    assert!(parse_pairs("x y z w v\n").is_err());
}
