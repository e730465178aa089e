//! LFW View 1 during training: the threshold chosen on `pairsDevTrain.txt`,
//! the accuracy measured on `pairsDevTest.txt` (never trained on).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use facegate_eval::faces::Face;
use facegate_eval::pairs::{ImageRef, Pair, parse_pairs};
use facegate_eval::verification::{accuracy_at, best_threshold};

use crate::inference::embed_faces;
use crate::model::Embedder;

/// The dev pairs with their faces decoded in memory.
#[derive(Debug)]
pub struct LfwDev {
    faces: Vec<Vec<u8>>,
    index: BTreeMap<ImageRef, usize>,
    train: Vec<Pair>,
    test: Vec<Pair>,
}

impl LfwDev {
    /// Reads the two dev lists and decodes their images from `dir/aligned_112`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let list = |name: &str| -> Result<Vec<Pair>, String> {
            let p = dir.join(name);
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(parse_pairs(&text, &p).map_err(|e| e.to_string())?.pairs)
        };
        let (train, test) = (list("pairsDevTrain.txt")?, list("pairsDevTest.txt")?);
        let mut index = BTreeMap::new();
        for p in train.iter().chain(&test) {
            for r in [&p.a, &p.b] {
                let n = index.len();
                index.entry(r.clone()).or_insert(n);
            }
        }
        let mut faces = vec![Vec::new(); index.len()];
        let root = dir.join("aligned_112");
        for (r, &i) in &index {
            let path = root.join(r.relative_path());
            faces[i] = Face::load(&path).map_err(|e| e.to_string())?.rgb;
        }
        Ok(Self {
            faces,
            index,
            train,
            test,
        })
    }

    /// View 1 test accuracy of an embedder in validation mode whose
    /// weights live on `device`.
    pub fn accuracy(&self, embedder: &Embedder, device: &Device) -> f64 {
        let refs: Vec<&[u8]> = self.faces.iter().map(Vec::as_slice).collect();
        let emb = embed_faces(embedder, &refs, device);
        let scores = |pairs: &[Pair]| -> (Vec<f32>, Vec<bool>) {
            pairs
                .iter()
                .map(|p| {
                    let (a, b) = (&emb[self.index[&p.a]], &emb[self.index[&p.b]]);
                    (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(), p.same)
                })
                .unzip()
        };
        let (s, y) = scores(&self.train);
        let threshold = best_threshold(&s, &y).map_or(0.5, |(t, _)| t);
        let (s, y) = scores(&self.test);
        accuracy_at(&s, &y, threshold)
    }
}
