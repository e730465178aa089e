//! The recipes shipped in `models/recipes/` are valid training configs whose
//! data (and a teacher's targets) never includes LFW (LFW is only measured on).

use facegate_train::training::TrainConfig;

#[test]
fn every_shipped_recipe_parses_and_keeps_lfw_out_of_training() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/recipes");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("models/recipes") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let cfg: TrainConfig = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a training config: {e}", path.display()));
        assert!(cfg.epochs > 0, "{}", path.display());
        assert!(
            cfg.data
                .iter()
                .all(|d| !d.to_string_lossy().contains("lfw")),
            "{} trains on LFW",
            path.display()
        );
        if let Some(d) = &cfg.distill {
            assert!(
                !d.teacher.to_string_lossy().contains("lfw"),
                "{} distils on LFW faces",
                path.display()
            );
            if let Some(v) = &d.views {
                for p in [&v.dir, &v.teacher] {
                    assert!(
                        !p.to_string_lossy().contains("lfw"),
                        "{} shows views of LFW faces",
                        path.display()
                    );
                }
            }
        }
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} recipes in {}", dir.display());
}
