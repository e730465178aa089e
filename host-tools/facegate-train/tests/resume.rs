//! A run stopped after an epoch and resumed ends where an uninterrupted run
//! ends: model, optimiser state, Center-loss centres and the data order are
//! all restored from the checkpoint.

use facegate_train::heads::HeadKind;
use facegate_train::model::Preset;
use facegate_train::training::{CenterSettings, RunOptions, TrainConfig, train};

#[test]
fn resuming_after_a_stop_equals_training_straight_through() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let mut cfg = TrainConfig::new(Preset::Tiny, vec![data.join("orl")]);
    cfg.head = HeadKind::Softmax;
    cfg.center = Some(CenterSettings {
        lambda: 0.01,
        alpha: 0.5,
    });
    cfg.epochs = 2;
    cfg.batch_size = 40;
    cfg.max_identities = Some(20);
    cfg.max_images_per_identity = Some(6);
    let tmp = tempfile::tempdir().expect("tempdir");

    let straight = train(&cfg, &tmp.path().join("straight"), RunOptions::default()).expect("run");

    // The same run, stopped after epoch 1 (a 1-epoch run leaves exactly the
    // checkpoint a stop would), then resumed with the full config.
    let stopped = tmp.path().join("stopped");
    let mut first = cfg.clone();
    first.epochs = 1;
    // Epoch 1 is the warm-up in both configs, so the learning rates agree.
    assert_eq!(cfg.warmup_epochs, 1.0);
    let one = train(&first, &stopped, RunOptions::default()).expect("first epoch");
    assert_eq!(one.history.len(), 1);
    std::fs::write(
        stopped.join("config.toml"),
        toml::to_string(&cfg).expect("toml"),
    )
    .expect("config");
    let resumed = train(
        &cfg,
        &stopped,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .expect("resumed run");
    assert_eq!(resumed.history.len(), 2);
    let (a, b) = (&straight.history[1], &resumed.history[1]);
    eprintln!("epoch 2 loss: straight {} resumed {}", a.loss, b.loss);
    assert!(
        (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
        "straight {a:?} vs resumed {b:?}"
    );
    assert!(
        (a.train_accuracy - b.train_accuracy).abs() < 1e-9,
        "straight {a:?} vs resumed {b:?}"
    );

    // Resuming with a different config is refused, not silently mixed.
    let mut other = cfg.clone();
    other.lr = 0.5;
    let err = train(
        &other,
        &stopped,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .expect_err("a different config must be refused");
    assert!(err.to_string().contains("different config"), "{err}");
}
