//! Face alignment: the 5-point similarity transform (Umeyama's least-squares
//! estimate, with nalgebra's SVD) that maps detected landmarks onto the
//! ArcFace 112×112 template, and the bilinear warp that produces the aligned
//! crop every facegate model takes. In the core so that boards with a camera
//! can align on the device.

use nalgebra::{Matrix2, Vector2};

/// Side of an aligned face.
pub const FACE_SIDE: usize = 112;

/// The ArcFace template: left eye, right eye, nose tip, left and right
/// mouth corners in the 112×112 crop (the shared data's alignment).
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A similarity transform `p ↦ s·R·p + t`, as `[[a, -b, tx], [b, a, ty]]`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Similarity {
    /// `s·cos θ`.
    pub a: f32,
    /// `s·sin θ`.
    pub b: f32,
    /// Translation x.
    pub tx: f32,
    /// Translation y.
    pub ty: f32,
}

/// Why landmarks cannot be aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AlignError {
    /// The landmarks are (nearly) all at one point, or not finite.
    Degenerate,
    /// The image buffer does not match its stated size.
    ImageSize,
}

impl Similarity {
    /// Umeyama (1991) for 2-D, no reflection: the similarity that maps `from`
    /// onto `to` with the least squared error.
    pub fn estimate(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Result<Self, AlignError> {
        let n = from.len() as f64;
        let mean = |p: &[[f32; 2]; 5]| {
            p.iter().fold(Vector2::zeros(), |m: Vector2<f64>, q| {
                m + Vector2::new(f64::from(q[0]), f64::from(q[1]))
            }) / n
        };
        let (mu_x, mu_y) = (mean(from), mean(to));
        let mut cov = Matrix2::<f64>::zeros();
        let mut var_x = 0.0;
        for (p, q) in from.iter().zip(to) {
            let x = Vector2::new(f64::from(p[0]), f64::from(p[1])) - mu_x;
            let y = Vector2::new(f64::from(q[0]), f64::from(q[1])) - mu_y;
            cov += y * x.transpose();
            var_x += x.norm_squared();
        }
        cov /= n;
        var_x /= n;
        if !(var_x.is_finite() && var_x > 1e-9) {
            return Err(AlignError::Degenerate);
        }
        let svd = cov.svd(true, true);
        let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else {
            return Err(AlignError::Degenerate);
        };
        // Flip the smaller singular direction if U·Vᵀ would be a reflection.
        let mut d = Matrix2::identity();
        if (u.determinant() * v_t.determinant()) < 0.0 {
            d[(1, 1)] = -1.0;
        }
        let r = u * d * v_t;
        let scale =
            (svd.singular_values[0] * d[(0, 0)] + svd.singular_values[1] * d[(1, 1)]) / var_x;
        let t = mu_y - scale * r * mu_x;
        #[allow(clippy::cast_possible_truncation)]
        let s = Self {
            a: (scale * r[(0, 0)]) as f32,
            b: (scale * r[(1, 0)]) as f32,
            tx: t[0] as f32,
            ty: t[1] as f32,
        };
        if [s.a, s.b, s.tx, s.ty].iter().all(|v| v.is_finite()) {
            Ok(s)
        } else {
            Err(AlignError::Degenerate)
        }
    }

    /// Where `p` goes.
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform.
    pub fn inverse(&self) -> Result<Self, AlignError> {
        let det = self.a * self.a + self.b * self.b;
        if !(det.is_finite() && det > 1e-12) {
            return Err(AlignError::Degenerate);
        }
        let (a, b) = (self.a / det, -self.b / det);
        Ok(Self {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// Warps an RGB image (`width × height × 3`, row-major) into the aligned
/// 112×112 crop for `landmarks` (image coordinates), bilinear, black outside.
pub fn align_face(
    rgb: &[u8],
    width: usize,
    height: usize,
    landmarks: &[[f32; 2]; 5],
    out: &mut [u8; FACE_SIDE * FACE_SIDE * 3],
) -> Result<Similarity, AlignError> {
    if rgb.len() != width * height * 3 || width == 0 || height == 0 {
        return Err(AlignError::ImageSize);
    }
    let px = |x: usize, y: usize| {
        let i = (y * width + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    align_pixels(width, height, px, landmarks, out)
}

/// [`align_face`] over any image that can say its pixel at `(x, y)` (in
/// bounds: `x < width`, `y < height`) as RGB: camera frames in other pixel
/// formats are aligned without converting them whole first.
pub fn align_pixels(
    width: usize,
    height: usize,
    pixel: impl Fn(usize, usize) -> [u8; 3],
    landmarks: &[[f32; 2]; 5],
    out: &mut [u8; FACE_SIDE * FACE_SIDE * 3],
) -> Result<Similarity, AlignError> {
    if width == 0 || height == 0 {
        return Err(AlignError::ImageSize);
    }
    let (w, h) = (
        i64::try_from(width).map_err(|_| AlignError::ImageSize)?,
        i64::try_from(height).map_err(|_| AlignError::ImageSize)?,
    );
    let to_crop = Similarity::estimate(landmarks, &ARCFACE_TEMPLATE)?;
    let to_image = to_crop.inverse()?;
    for y in 0..FACE_SIDE {
        for x in 0..FACE_SIDE {
            #[allow(clippy::cast_precision_loss)]
            let [sx, sy] = to_image.apply([x as f32, y as f32]);
            let (fx, fy) = (libm::floorf(sx), libm::floorf(sy));
            let (wx, wy) = (sx - fx, sy - fy);
            #[allow(clippy::cast_possible_truncation)]
            let (x0, y0) = (fx as i64, fy as i64);
            let inside = |x: i64, y: i64| (0..w).contains(&x) && (0..h).contains(&y);
            let mut v = [0.0f32; 3];
            for (dx, dy, w) in [
                (0, 0, (1.0 - wx) * (1.0 - wy)),
                (1, 0, wx * (1.0 - wy)),
                (0, 1, (1.0 - wx) * wy),
                (1, 1, wx * wy),
            ] {
                let (xi, yi) = (x0 + dx, y0 + dy);
                if inside(xi, yi) {
                    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
                    let p = pixel(xi as usize, yi as usize);
                    for (a, s) in v.iter_mut().zip(p) {
                        *a += w * f32::from(s);
                    }
                }
            }
            for (c, a) in v.into_iter().enumerate() {
                #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
                let byte = libm::roundf(a).clamp(0.0, 255.0) as u8;
                out[(y * FACE_SIDE + x) * 3 + c] = byte;
            }
        }
    }
    Ok(to_crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity_and_inverts_it() {
        let truth = Similarity {
            a: 0.8 * 0.3f32.cos(),
            b: 0.8 * 0.3f32.sin(),
            tx: 12.0,
            ty: -7.5,
        };
        let to = ARCFACE_TEMPLATE.map(|p| truth.apply(p));
        let got = Similarity::estimate(&ARCFACE_TEMPLATE, &to).unwrap();
        for (g, t) in [got.a, got.b, got.tx, got.ty]
            .iter()
            .zip([truth.a, truth.b, truth.tx, truth.ty])
        {
            assert!((g - t).abs() < 1e-4, "{got:?} vs {truth:?}");
        }
        let back = got.inverse().unwrap();
        let p = back.apply(got.apply([3.0, 4.0]));
        assert!((p[0] - 3.0).abs() < 1e-4 && (p[1] - 4.0).abs() < 1e-4);
        assert_eq!(
            Similarity::estimate(&[[1.0, 1.0]; 5], &ARCFACE_TEMPLATE),
            Err(AlignError::Degenerate)
        );
    }
}
