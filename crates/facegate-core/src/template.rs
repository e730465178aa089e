//! int8 templates: what a board stores per enrolled face and matches against.
//!
//! Quantisation is symmetric per vector: step = max|x| / 127, `q = round(x /
//! step)` in `[-127, 127]`. The one stored scale is `1 / ‖q‖₂`, which makes
//! the dequantised template exactly unit-length, so the similarity of two
//! templates is `dot_i8(qa, qb) · sa · sb`, the cosine of the quantised
//! directions, with no square root on the matching path.

use crate::embedding::{EMBEDDING_DIM, Embedding};

/// Why raw parts do not form a valid [`Template`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TemplateError {
    /// The scale is zero, negative, NaN or infinite.
    BadScale,
    /// All components are zero: no direction.
    ZeroVector,
    /// The scale does not make the values unit-length (`scale ≠ 1/‖q‖₂`):
    /// forged or damaged. Trusting it would scale every score with it (a
    /// template with twice the scale matches strangers at twice their cosine).
    ScaleNotUnit,
}

impl core::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadScale => "template scale is not a finite positive number",
            Self::ZeroVector => "template vector is all zeros",
            Self::ScaleNotUnit => "template scale does not make it unit-length (forged or damaged)",
        })
    }
}

impl core::error::Error for TemplateError {}

/// An int8-quantised, unit-norm embedding with one scale.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Template<const D: usize = EMBEDDING_DIM> {
    values: [i8; D],
    scale: f32,
}

impl<const D: usize> Template<D> {
    /// Quantises a unit embedding.
    pub fn quantize(embedding: &Embedding<D>) -> Self {
        let v = embedding.as_array();
        // A unit vector has max|x| >= 1/sqrt(D) > 0, so the step is positive.
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let inv_step = 127.0 / max;
        let mut values = [0i8; D];
        for (q, x) in values.iter_mut().zip(v) {
            // In range by construction; the clamp guards float rounding at ±127.
            #[allow(clippy::cast_possible_truncation)]
            let r = libm::roundf(x * inv_step).clamp(-127.0, 127.0) as i8;
            *q = r;
        }
        let scale = 1.0 / libm::sqrtf(sum_squares(&values) as f32);
        Self { values, scale }
    }

    /// Rebuilds a template from stored parts, checking that they make sense.
    pub fn from_parts(values: [i8; D], scale: f32) -> Result<Self, TemplateError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(TemplateError::BadScale);
        }
        if values.iter().all(|&v| v == 0) {
            return Err(TemplateError::ZeroVector);
        }
        // `quantize` stores exactly 1/sqrt(Σq²) in f32; a relative slack of
        // 1e-5 (about 80 ulp) admits any honest computation of it and nothing
        // that moves a score by more than 1e-5.
        let unit = 1.0 / libm::sqrtf(sum_squares(&values) as f32);
        if (scale - unit).abs() > unit * 1e-5 {
            return Err(TemplateError::ScaleNotUnit);
        }
        Ok(Self { values, scale })
    }

    /// The int8 components.
    pub const fn values(&self) -> &[i8; D] {
        &self.values
    }

    /// The scale that maps `values` to a unit vector.
    pub const fn scale(&self) -> f32 {
        self.scale
    }

    /// Cosine similarity between two templates, computed in int8 with an i32 accumulator.
    pub fn cosine(&self, other: &Self) -> f32 {
        #[allow(clippy::cast_precision_loss)] // |dot| <= 127² · D, exact enough in f32
        let dot = dot_i8(&self.values, &other.values) as f32;
        (dot * self.scale * other.scale).clamp(-1.0, 1.0)
    }

    /// The dequantised unit vector (for host-side inspection).
    pub fn dequantize(&self) -> [f32; D] {
        let mut out = [0.0; D];
        for (o, &q) in out.iter_mut().zip(&self.values) {
            *o = f32::from(q) * self.scale;
        }
        out
    }
}

/// int8 · int8 dot product with an i32 accumulator.
///
/// Cannot overflow: |sum| <= 127² · D, and `D` is limited at compile time.
pub fn dot_i8<const D: usize>(a: &[i8; D], b: &[i8; D]) -> i32 {
    const {
        assert!(
            D <= i32::MAX as usize / (127 * 127),
            "dimension too large for an i32 accumulator"
        )
    };
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

fn sum_squares<const D: usize>(v: &[i8; D]) -> i32 {
    dot_i8(v, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(v: [f32; EMBEDDING_DIM]) -> Embedding {
        Embedding::normalize(v).unwrap()
    }

    #[test]
    fn quantize_known_vector() {
        let e = Embedding::<4>::normalize([0.5, -0.125, 0.0, 0.0]).unwrap();
        let t = Template::quantize(&e);
        // The largest component maps to 127, a quarter of it to -31.75 -> -32.
        assert_eq!(t.values(), &[127, -32, 0, 0]);
        let n = (127.0f32 * 127.0 + 32.0 * 32.0).sqrt();
        assert!((t.scale() - 1.0 / n).abs() < 1e-9);
        assert!((t.cosine(&t) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn from_parts_validates() {
        assert_eq!(
            Template::<2>::from_parts([1, 0], 0.0),
            Err(TemplateError::BadScale)
        );
        assert_eq!(
            Template::<2>::from_parts([1, 0], f32::NAN),
            Err(TemplateError::BadScale)
        );
        assert_eq!(
            Template::<2>::from_parts([0, 0], 1.0),
            Err(TemplateError::ZeroVector)
        );
        assert!(Template::<2>::from_parts([1, 0], 1.0).is_ok());
        // A forged scale (the attack: twice the honest one) is refused.
        assert_eq!(
            Template::<2>::from_parts([3, 4], 2.0 / 5.0),
            Err(TemplateError::ScaleNotUnit)
        );
        assert_eq!(
            Template::<2>::from_parts([3, 4], 0.2 * (1.0 + 1e-4)),
            Err(TemplateError::ScaleNotUnit)
        );
        assert!(Template::<2>::from_parts([3, 4], 0.2).is_ok());
    }

    #[test]
    fn dot_extremes_do_not_overflow() {
        let a = [-127i8; EMBEDDING_DIM];
        assert_eq!(dot_i8(&a, &a), 127 * 127 * 128);
        assert_eq!(dot_i8(&a, &[127i8; EMBEDDING_DIM]), -127 * 127 * 128);
    }

    fn gaussianish() -> impl Strategy<Value = [f32; EMBEDDING_DIM]> {
        // Sum of two uniforms: a cheap bell shape, like real embedding components.
        proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0), EMBEDDING_DIM)
            .prop_map(|v| core::array::from_fn(|i| v[i].0 + v[i].1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The bound: for unit vectors, int8 cosine within 0.01 of float cosine.
        #[test]
        fn int8_cosine_tracks_float_cosine(a in gaussianish(), b in gaussianish(), mix in 0.0f32..1.0) {
            // Mix b towards a so that the whole range of similarities is covered, not only ~0.
            let b: [f32; EMBEDDING_DIM] = core::array::from_fn(|i| mix * a[i] + (1.0 - mix) * b[i]);
            prop_assume!(crate::embedding::l2_norm(&a) > 1e-3 && crate::embedding::l2_norm(&b) > 1e-3);
            let (ea, eb) = (unit(a), unit(b));
            let float = ea.cosine(&eb);
            let int8 = Template::quantize(&ea).cosine(&Template::quantize(&eb));
            prop_assert!((float - int8).abs() <= 0.01, "float {float} int8 {int8}");
        }

        #[test]
        fn dequantised_template_is_unit_and_close(a in gaussianish()) {
            prop_assume!(crate::embedding::l2_norm(&a) > 1e-3);
            let e = unit(a);
            let d = Template::quantize(&e).dequantize();
            prop_assert!((crate::embedding::l2_norm(&d) - 1.0).abs() < 1e-5);
            prop_assert!(crate::embedding::dot(&d, e.as_array()) > 0.999);
        }

        #[test]
        fn sparse_vectors_also_within_bound(
            hot in 0usize..EMBEDDING_DIM, big in 0.5f32..10.0, a in gaussianish(), b in gaussianish(),
        ) {
            // One dominant component stretches the step to its coarsest (1/127
            // of the unit vector) and leaves the rest a few levels each: the
            // bound is looser than for bell-shaped vectors like real
            // embeddings (0.01 above). Proptest's shrunk worst case was
            // 0.0127 (`proptest-regressions/template.txt`, re-run first);
            // 200,000 random draws of this generator stayed under 0.0094.
            let mut a = a;
            a[hot] += big * 10.0;
            let (ea, eb) = (unit(a), unit(b));
            let int8 = Template::quantize(&ea).cosine(&Template::quantize(&eb));
            prop_assert!((ea.cosine(&eb) - int8).abs() <= 0.02);
        }
    }
}
