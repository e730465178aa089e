//! Float embeddings: L2 normalisation and cosine similarity.

/// Embedding width used by facegate's models and templates.
pub const EMBEDDING_DIM: usize = 128;

/// Why a raw vector cannot become an [`Embedding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EmbeddingError {
    /// A component is NaN or infinite.
    NotFinite,
    /// The vector is (numerically) zero and has no direction.
    ZeroNorm,
    /// A slice had the wrong number of components.
    WrongLength {
        /// Components expected.
        expected: usize,
        /// Components given.
        found: usize,
    },
}

impl core::fmt::Display for EmbeddingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFinite => f.write_str("embedding has a NaN or infinite component"),
            Self::ZeroNorm => f.write_str("embedding is zero and cannot be normalised"),
            Self::WrongLength { expected, found } => {
                write!(f, "embedding has {found} components, expected {expected}")
            }
        }
    }
}

impl core::error::Error for EmbeddingError {}

/// Smallest norm we accept as a direction. Model outputs are O(1)-O(100); a
/// norm below this is a dead input (black frame), not a face.
const MIN_NORM: f32 = 1e-12;

/// A unit-length (L2-normalised) face embedding of `D` components.
///
/// The invariant (finite, norm 1 up to rounding) is established by the
/// constructors, so [`Embedding::cosine`] is a plain dot product.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Embedding<const D: usize = EMBEDDING_DIM>([f32; D]);

impl<const D: usize> Embedding<D> {
    /// L2-normalises `raw` into an embedding.
    pub fn normalize(mut raw: [f32; D]) -> Result<Self, EmbeddingError> {
        l2_normalize(&mut raw)?;
        Ok(Self(raw))
    }

    /// Normalises the first and only `D` values of a slice (e.g. a model's output buffer).
    pub fn from_slice(raw: &[f32]) -> Result<Self, EmbeddingError> {
        let array: [f32; D] = raw.try_into().map_err(|_| EmbeddingError::WrongLength {
            expected: D,
            found: raw.len(),
        })?;
        Self::normalize(array)
    }

    /// The unit vector's components.
    pub const fn as_array(&self) -> &[f32; D] {
        &self.0
    }

    /// Cosine similarity with another embedding, in `[-1, 1]`.
    pub fn cosine(&self, other: &Self) -> f32 {
        dot(&self.0, &other.0).clamp(-1.0, 1.0)
    }
}

/// Dot product of two equally long slices (extra elements of the longer one are ignored).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
pub fn l2_norm(v: &[f32]) -> f32 {
    libm::sqrtf(dot(v, v))
}

/// Scales `v` to unit L2 norm in place.
///
/// On error `v` is left unchanged.
pub fn l2_normalize(v: &mut [f32]) -> Result<(), EmbeddingError> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(EmbeddingError::NotFinite);
    }
    // Scale by the largest magnitude first so that squaring cannot overflow
    // (outputs near f32::MAX) or underflow (tiny but valid vectors).
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max < MIN_NORM {
        return Err(EmbeddingError::ZeroNorm);
    }
    let inv_max = 1.0 / max;
    let scaled_norm = libm::sqrtf(v.iter().map(|x| (x * inv_max) * (x * inv_max)).sum());
    let inv = inv_max / scaled_norm;
    v.iter_mut().for_each(|x| *x *= inv);
    Ok(())
}

/// Cosine similarity of two arbitrary (not necessarily normalised) vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32, EmbeddingError> {
    if a.len() != b.len() {
        return Err(EmbeddingError::WrongLength {
            expected: a.len(),
            found: b.len(),
        });
    }
    let (na, nb) = (l2_norm(a), l2_norm(b));
    if !(na.is_finite() && nb.is_finite()) {
        return Err(EmbeddingError::NotFinite);
    }
    if na < MIN_NORM || nb < MIN_NORM {
        return Err(EmbeddingError::ZeroNorm);
    }
    Ok((dot(a, b) / (na * nb)).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalize_gives_unit_norm() {
        let e = Embedding::<4>::normalize([3.0, 0.0, 4.0, 0.0]).unwrap();
        assert_eq!(e.as_array(), &[0.6, 0.0, 0.8, 0.0]);
    }

    #[test]
    fn rejects_zero_and_nan() {
        assert_eq!(
            Embedding::<3>::normalize([0.0; 3]),
            Err(EmbeddingError::ZeroNorm)
        );
        assert_eq!(
            Embedding::<3>::normalize([1.0, f32::NAN, 0.0]),
            Err(EmbeddingError::NotFinite)
        );
        assert_eq!(
            Embedding::<3>::from_slice(&[1.0, 2.0]),
            Err(EmbeddingError::WrongLength {
                expected: 3,
                found: 2
            })
        );
    }

    #[test]
    fn huge_and_tiny_vectors_normalise() {
        let e = Embedding::<2>::normalize([f32::MAX, f32::MAX]).unwrap();
        assert!((l2_norm(e.as_array()) - 1.0).abs() < 1e-6);
        let e = Embedding::<2>::normalize([1e-10, 0.0]).unwrap();
        assert_eq!(e.as_array(), &[1.0, 0.0]);
    }

    #[test]
    fn cosine_of_known_angles() {
        assert!(
            (cosine(&[1.0, 0.0], &[1.0, 1.0]).unwrap() - core::f32::consts::FRAC_1_SQRT_2).abs()
                < 1e-6
        );
        assert!((cosine(&[1.0, 2.0], &[-2.0, 1.0]).unwrap()).abs() < 1e-6);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]).unwrap() + 1.0).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn normalised_embeddings_have_unit_norm_and_bounded_cosine(
            a in proptest::array::uniform32(-100.0f32..100.0),
            b in proptest::array::uniform32(-100.0f32..100.0),
        ) {
            prop_assume!(l2_norm(&a) > 1e-3 && l2_norm(&b) > 1e-3);
            let (ea, eb) = (Embedding::normalize(a).unwrap(), Embedding::normalize(b).unwrap());
            prop_assert!((l2_norm(ea.as_array()) - 1.0).abs() < 1e-5);
            let c = ea.cosine(&eb);
            prop_assert!((-1.0..=1.0).contains(&c));
            prop_assert!((c - cosine(&a, &b).unwrap()).abs() < 1e-5);
            prop_assert!((ea.cosine(&ea) - 1.0).abs() < 1e-5);
        }
    }
}
