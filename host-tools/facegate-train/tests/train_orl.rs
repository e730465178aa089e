//! Each loss trains a tiny embedder on a slice of ORL: the loss falls and
//! held-out faces are identified far above chance. The run of the default
//! head is then exported to ONNX and held equal to burn through tract.

use std::path::PathBuf;

use burn::tensor::Device;
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_train::data::FaceFolders;
use facegate_train::heads::HeadKind;
use facegate_train::inference::embed_faces;
use facegate_train::model::Preset;
use facegate_train::training::{CenterSettings, RunDir, RunOptions, TrainConfig, train};

const TRAIN_PER_PERSON: usize = 7;

fn config(orl: PathBuf, head: HeadKind, center: Option<CenterSettings>) -> TrainConfig {
    let mut cfg = TrainConfig::new(Preset::Tiny, vec![orl]);
    cfg.head = head;
    cfg.center = center;
    cfg.epochs = 8;
    cfg.batch_size = 28;
    cfg.lr = 0.1;
    cfg.warmup_epochs = 0.5;
    cfg.max_images_per_identity = Some(TRAIN_PER_PERSON);
    // A fast λ decay so the annealed heads reach their margin within the run.
    cfg.annealing.gamma = 1.0;
    cfg
}

/// Rank-1 identification of the held-out ORL images against the mean
/// embedding of each person's training images.
fn held_out_accuracy(run: &RunDir, orl: &PathBuf) -> f64 {
    let device = Device::flex();
    let net = run.load_embedder(&device).expect("trained embedder");
    let folders = FaceFolders::scan(std::slice::from_ref(orl)).expect("ORL");
    let load = |p: &PathBuf| Face::load(p).expect("ORL face").rgb;
    let mut centroids = Vec::new();
    let mut probes = Vec::new();
    for (c, id) in folders.identities.iter().enumerate() {
        let train: Vec<Vec<u8>> = id.files[..TRAIN_PER_PERSON].iter().map(load).collect();
        let refs: Vec<&[u8]> = train.iter().map(Vec::as_slice).collect();
        let e = embed_faces(&net, &refs, &device);
        let mut mean = vec![0.0f32; e[0].len()];
        e.iter()
            .for_each(|r| mean.iter_mut().zip(r).for_each(|(m, v)| *m += v));
        centroids.push(mean);
        for f in &id.files[TRAIN_PER_PERSON..] {
            probes.push((c, load(f)));
        }
    }
    let refs: Vec<&[u8]> = probes.iter().map(|(_, f)| f.as_slice()).collect();
    let e = embed_faces(&net, &refs, &device);
    let hits = e
        .iter()
        .zip(&probes)
        .filter(|(row, (c, _))| {
            let best = centroids
                .iter()
                .enumerate()
                .map(|(j, m)| (j, m.iter().zip(row.iter()).map(|(a, b)| a * b).sum::<f32>()))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(j, _)| j);
            best == Some(*c)
        })
        .count();
    hits as f64 / probes.len() as f64
}

#[test]
fn every_loss_learns_and_the_default_exports_equal_to_burn() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let orl = data.join("orl");
    let heads = [
        ("softmax", HeadKind::Softmax, None),
        (
            "softmax+center",
            HeadKind::Softmax,
            Some(CenterSettings {
                lambda: 0.01,
                alpha: 0.5,
            }),
        ),
        ("l-softmax", HeadKind::LSoftmax { m: 2 }, None),
        ("a-softmax", HeadKind::ASoftmax { m: 4 }, None),
        ("cosface", HeadKind::default(), None),
        ("arcface", HeadKind::ArcFace { s: 30.0, m: 0.5 }, None),
        (
            "combined",
            HeadKind::Combined {
                s: 30.0,
                m1: 1.0,
                m2: 0.3,
                m3: 0.2,
            },
            None,
        ),
    ];
    let chance = 1.0 / 40.0;
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, head, center) in heads {
        let dir = tmp.path().join(name);
        let cfg = config(orl.clone(), head, center);
        let s = train(&cfg, &dir, RunOptions::default()).expect("training run");
        let (first, last) = (&s.history[0], s.history.last().expect("epochs"));
        let acc = held_out_accuracy(&RunDir { root: dir.clone() }, &orl);
        eprintln!(
            "{name:>15}: loss {:.3} → {:.3}, train accuracy {:.3}, held-out rank-1 {acc:.3} (chance {chance:.3})",
            first.loss, last.loss, last.train_accuracy
        );
        assert!(
            last.loss < 0.8 * first.loss,
            "{name}: loss did not fall: {:?}",
            s.history
        );
        assert!(
            acc > 8.0 * chance,
            "{name}: held-out rank-1 {acc} vs chance {chance}"
        );
    }

    // Export the CosFace run: tract on the ONNX must give burn's embeddings.
    let run = RunDir {
        root: tmp.path().join("cosface"),
    };
    let device = Device::flex();
    let net = run.load_embedder(&device).expect("embedder");
    let arch = Preset::Tiny.architecture();
    let onnx = tmp.path().join("tiny.onnx");
    facegate_train::export::write_onnx(&net, &arch, &onnx).expect("export");
    let tract = OnnxEmbedder::load(&onnx, InputNorm::ArcFace).expect("tract loads the export");
    let lfw = data.join("lfw/aligned_112");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&lfw)
        .expect("lfw")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    people.sort();
    let faces: Vec<Face> = people
        .iter()
        .take(100)
        .map(|p| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .expect("person")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            files.sort();
            Face::load(&files[0]).expect("LFW face")
        })
        .collect();
    let refs: Vec<&[u8]> = faces.iter().map(|f| f.rgb.as_slice()).collect();
    let burn_emb = embed_faces(&net, &refs, &device);
    let mut worst = 1.0f32;
    for (f, b) in faces.iter().zip(&burn_emb) {
        let t = tract.embed(f).expect("tract embedding");
        let n = t.iter().map(|v| v * v).sum::<f32>().sqrt();
        let cos = t.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / n;
        worst = worst.min(cos);
    }
    eprintln!("export: worst cosine burn vs tract over 100 LFW faces {worst:.7}");
    assert!(worst >= 0.9999, "worst cosine {worst}");
}
