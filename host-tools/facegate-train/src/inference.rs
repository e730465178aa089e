//! Running a trained embedder: faces in, L2-normalised embeddings out (what
//! the LFW check during training, the tests and the exports' parity checks
//! use).

use burn::tensor::{Device, Tensor};

use crate::model::Embedder;

/// Embeds faces (RGB bytes) with a validation-mode embedder, batched; rows L2-normalised.
pub fn embed_faces(embedder: &Embedder, faces: &[&[u8]], device: &Device) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(faces.len());
    for chunk in faces.chunks(64) {
        let x = crate::data::faces_tensor(chunk, device);
        let y: Tensor<2> = embedder.forward(x);
        let [n, d] = y.dims();
        let v = y.into_data().try_to_vec::<f32>().unwrap_or_default();
        for i in 0..n {
            let mut row = v[i * d..(i + 1) * d].to_vec();
            let norm = row.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|a| *a /= norm);
            out.push(row);
        }
    }
    out
}
