//! 1:1 verification and 1:N identification with a decision policy.
//!
//! A person may own several templates; their score is the best one. The
//! gallery is any iterator of `(person, template)` in any order, so the same
//! code runs over a flash store, a `heapless::Vec` or a static table, without
//! allocating: best and runner-up persons are tracked in one pass.

use crate::template::Template;

/// Identifier of an enrolled person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersonId(pub u32);

impl PersonId {
    /// The largest id a person may have: ids live in 31 bits so that every
    /// store can key them without overflow (the flash store keys a person
    /// at `2³¹ + id`, above its settings records).
    pub const MAX: u32 = 0x7FFF_FFFF;

    /// Whether the id is one a person may have (`≤ PersonId::MAX`).
    pub const fn is_valid(self) -> bool {
        self.0 <= Self::MAX
    }
}

/// A similarity score: cosine in `[-1, 1]`, higher is more alike.
pub type Score = f32;

/// The threshold of a board that was never given one (new, or factory
/// reset). A door fails closed: only a probe identical to an enrolled
/// template reaches cosine 1, so nobody is let in until provisioning sets
/// the model's threshold. (Today's models already accept 1 % of strangers
/// at about 0.87–0.89, so a low placeholder such as 0.5 would open the door
/// to most people.)
pub const FACTORY_THRESHOLD: Score = 1.0;

/// The thresholds a door accepts: a cosine in `(0, 1]`. At 0 or below half
/// of all random directions would pass, and NaN or infinities would turn
/// every comparison into "reject" or "accept" by accident of IEEE rules.
pub fn threshold_is_valid(t: Score) -> bool {
    t > 0.0 && t <= 1.0
}

/// A person and their best score against the probe.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Candidate {
    /// Who.
    pub id: PersonId,
    /// Their best template's similarity to the probe.
    pub score: Score,
}

/// Why a probe was not accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RejectReason {
    /// Nobody (or, for 1:1, no template of the claimed person) is enrolled.
    EmptyGallery,
    /// The best score is below the threshold.
    BelowThreshold,
    /// The best person passed the threshold, but the runner-up is within the margin.
    Ambiguous {
        /// The second-best person.
        runner_up: Candidate,
    },
}

/// The outcome of a match.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decision {
    /// The probe is this person.
    Accept(Candidate),
    /// The probe is nobody we accept; `best` is the closest person, if any.
    Reject {
        /// Why.
        reason: RejectReason,
        /// The best-scoring person, for logs and diagnostics.
        best: Option<Candidate>,
    },
}

impl Decision {
    /// The accepted person, if any.
    pub fn accepted(&self) -> Option<PersonId> {
        match self {
            Self::Accept(c) => Some(c.id),
            Self::Reject { .. } => None,
        }
    }

    /// The best score seen (accepted or not).
    pub fn best_score(&self) -> Option<Score> {
        match self {
            Self::Accept(c) => Some(c.score),
            Self::Reject { best, .. } => best.map(|c| c.score),
        }
    }
}

/// An invalid matcher configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The threshold is not within `[-1, 1]`.
    ThresholdOutOfRange,
    /// The margin is not within `[0, 2]`.
    MarginOutOfRange,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ThresholdOutOfRange => "threshold must be a cosine in [-1, 1]",
            Self::MarginOutOfRange => "margin must be in [0, 2]",
        })
    }
}

impl core::error::Error for ConfigError {}

/// Decision policy.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MatcherConfig {
    /// Accept when the best score is at least this cosine.
    pub threshold: Score,
    /// For 1:N: also require `best - runner_up >= margin` (runner-up = best other person).
    pub margin: Option<Score>,
}

/// Matches probes against enrolled templates under a [`MatcherConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Matcher {
    config: MatcherConfig,
}

/// Best and runner-up persons of a gallery scan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TopTwo {
    /// Best person.
    pub best: Option<Candidate>,
    /// Best person other than `best`.
    pub runner_up: Option<Candidate>,
}

impl TopTwo {
    /// Folds one `(person, score)` observation in.
    ///
    /// Invariant: `best` holds the person with the highest per-person maximum
    /// so far; `runner_up` the highest per-person maximum among the others.
    /// It holds for any order of observations, including several per person.
    pub fn observe(&mut self, id: PersonId, score: Score) {
        let cand = Candidate { id, score };
        match self.best {
            None => self.best = Some(cand),
            Some(best) if best.id == id => {
                if score > best.score {
                    self.best = Some(cand);
                }
            }
            Some(best) if score > best.score => {
                self.runner_up = Some(best);
                self.best = Some(cand);
            }
            Some(_) => {
                if self.runner_up.is_none_or(|r| score > r.score) {
                    self.runner_up = Some(cand);
                }
            }
        }
    }
}

impl Matcher {
    /// A matcher with a validated configuration.
    pub fn new(config: MatcherConfig) -> Result<Self, ConfigError> {
        if !(-1.0..=1.0).contains(&config.threshold) {
            return Err(ConfigError::ThresholdOutOfRange);
        }
        if let Some(m) = config.margin {
            if !(0.0..=2.0).contains(&m) {
                return Err(ConfigError::MarginOutOfRange);
            }
        }
        Ok(Self { config })
    }

    /// The policy in force.
    pub const fn config(&self) -> &MatcherConfig {
        &self.config
    }

    /// Scans the gallery and returns the best two persons.
    pub fn rank<'a, const D: usize, I>(probe: &Template<D>, gallery: I) -> TopTwo
    where
        I: IntoIterator<Item = (PersonId, &'a Template<D>)>,
    {
        let mut top = TopTwo::default();
        for (id, t) in gallery {
            top.observe(id, probe.cosine(t));
        }
        top
    }

    /// 1:N identification: who, among the enrolled, is this probe?
    pub fn identify<'a, const D: usize, I>(&self, probe: &Template<D>, gallery: I) -> Decision
    where
        I: IntoIterator<Item = (PersonId, &'a Template<D>)>,
    {
        self.decide(Self::rank(probe, gallery))
    }

    /// 1:1 verification: is this probe the claimed person (given their templates)?
    pub fn verify<'a, const D: usize, I>(
        &self,
        probe: &Template<D>,
        claimed: PersonId,
        templates: I,
    ) -> Decision
    where
        I: IntoIterator<Item = &'a Template<D>>,
    {
        let top = Self::rank(probe, templates.into_iter().map(|t| (claimed, t)));
        // The margin compares persons; with one person there is no runner-up.
        self.decide(top)
    }

    /// Applies the policy to a ranking.
    pub fn decide(&self, top: TopTwo) -> Decision {
        let Some(best) = top.best else {
            return Decision::Reject {
                reason: RejectReason::EmptyGallery,
                best: None,
            };
        };
        if best.score < self.config.threshold {
            return Decision::Reject {
                reason: RejectReason::BelowThreshold,
                best: Some(best),
            };
        }
        if let (Some(margin), Some(runner_up)) = (self.config.margin, top.runner_up) {
            if best.score - runner_up.score < margin {
                return Decision::Reject {
                    reason: RejectReason::Ambiguous { runner_up },
                    best: Some(best),
                };
            }
        }
        Decision::Accept(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Embedding;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    const D: usize = 8;

    fn tpl(v: [f32; D]) -> Template<D> {
        Template::quantize(&Embedding::normalize(v).unwrap())
    }

    fn axis(i: usize) -> Template<D> {
        let mut v = [0.0; D];
        v[i] = 1.0;
        tpl(v)
    }

    fn matcher(threshold: f32, margin: Option<f32>) -> Matcher {
        Matcher::new(MatcherConfig { threshold, margin }).unwrap()
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(
            Matcher::new(MatcherConfig {
                threshold: 1.5,
                margin: None
            }),
            Err(ConfigError::ThresholdOutOfRange)
        );
        assert_eq!(
            Matcher::new(MatcherConfig {
                threshold: f32::NAN,
                margin: None
            }),
            Err(ConfigError::ThresholdOutOfRange)
        );
        assert_eq!(
            Matcher::new(MatcherConfig {
                threshold: 0.5,
                margin: Some(-0.1)
            }),
            Err(ConfigError::MarginOutOfRange)
        );
    }

    #[test]
    fn empty_gallery_rejects() {
        let d = matcher(0.3, None).identify(&axis(0), core::iter::empty());
        assert_eq!(
            d,
            Decision::Reject {
                reason: RejectReason::EmptyGallery,
                best: None
            }
        );
    }

    #[test]
    fn identify_best_template_wins() {
        let (a0, a1, b0) = (axis(0), tpl([0.6, 0.8, 0., 0., 0., 0., 0., 0.]), axis(2));
        let gallery = [(PersonId(1), &a0), (PersonId(2), &b0), (PersonId(1), &a1)];
        let probe = axis(1);
        let d = matcher(0.5, None).identify(&probe, gallery);
        let Decision::Accept(c) = d else {
            panic!("{d:?}")
        };
        assert_eq!(c.id, PersonId(1));
        assert!((c.score - 0.8).abs() < 0.01);
        // Raise the threshold above 0.8: rejected, but the best is still reported.
        let d = matcher(0.9, None).identify(&probe, gallery);
        assert_eq!(d.accepted(), None);
        assert!(
            matches!(d, Decision::Reject { reason: RejectReason::BelowThreshold, best: Some(c) } if c.id == PersonId(1))
        );
    }

    #[test]
    fn margin_rejects_ambiguous() {
        let a = tpl([1.0, 0.1, 0., 0., 0., 0., 0., 0.]);
        let b = tpl([1.0, -0.1, 0., 0., 0., 0., 0., 0.]);
        let gallery = [(PersonId(1), &a), (PersonId(2), &b)];
        let probe = tpl([1.0, 0.05, 0., 0., 0., 0., 0., 0.]);
        assert_eq!(
            matcher(0.5, None).identify(&probe, gallery).accepted(),
            Some(PersonId(1))
        );
        let d = matcher(0.5, Some(0.1)).identify(&probe, gallery);
        assert!(
            matches!(d, Decision::Reject { reason: RejectReason::Ambiguous { runner_up }, .. } if runner_up.id == PersonId(2))
        );
    }

    #[test]
    fn verify_one_to_one() {
        let ts = [axis(0), axis(1)];
        let m = matcher(0.5, Some(0.5));
        assert_eq!(
            m.verify(&axis(1), PersonId(7), &ts).accepted(),
            Some(PersonId(7))
        );
        assert_eq!(m.verify(&axis(2), PersonId(7), &ts).accepted(), None);
        assert_eq!(m.verify(&axis(2), PersonId(7), &[]).best_score(), None);
    }

    /// Brute-force reference: per-person maxima, sorted.
    fn reference(
        probe: &Template<D>,
        gallery: &[(PersonId, Template<D>)],
        m: &Matcher,
    ) -> Option<PersonId> {
        let mut best: BTreeMap<PersonId, f32> = BTreeMap::new();
        for (id, t) in gallery {
            let s = probe.cosine(t);
            let e = best.entry(*id).or_insert(s);
            *e = e.max(s);
        }
        let mut v: Vec<_> = best.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (id, s) = *v.first()?;
        if s < m.config().threshold {
            return None;
        }
        if let (Some(margin), Some(&(_, s2))) = (m.config().margin, v.get(1)) {
            if s - s2 < margin {
                return None;
            }
        }
        Some(id)
    }

    fn vec8() -> impl Strategy<Value = [f32; D]> {
        proptest::array::uniform8(-1.0f32..1.0)
            .prop_filter("non-zero", |v| v.iter().any(|x| x.abs() > 0.05))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn identify_matches_brute_force_in_any_order(
            gallery in proptest::collection::vec((0u32..6, vec8()), 0..24),
            probe in vec8(),
            threshold in -0.2f32..0.9,
            margin in proptest::option::of(0.0f32..0.3),
            rotate in 0usize..24,
        ) {
            let mut g: Vec<(PersonId, Template<D>)> =
                gallery.iter().map(|(id, v)| (PersonId(*id), tpl(*v))).collect();
            let probe = tpl(probe);
            let m = matcher(threshold, margin);
            let expected = reference(&probe, &g, &m);
            // Ties between persons make "the" best ambiguous; skip those draws.
            let top = Matcher::rank(&probe, g.iter().map(|(i, t)| (*i, t)));
            prop_assume!(top.runner_up.is_none_or(|r| r.score != top.best.unwrap().score));
            prop_assert_eq!(m.identify(&probe, g.iter().map(|(i, t)| (*i, t))).accepted(), expected);
            if !g.is_empty() { let n = rotate % g.len(); g.rotate_left(n); }
            g.reverse();
            prop_assert_eq!(m.identify(&probe, g.iter().map(|(i, t)| (*i, t))).accepted(), expected);
        }

        #[test]
        fn enrolled_template_identifies_itself(vs in proptest::collection::vec(vec8(), 1..10), pick in 0usize..10) {
            let g: Vec<(PersonId, Template<D>)> =
                vs.iter().enumerate().map(|(i, v)| (PersonId(u32::try_from(i).unwrap()), tpl(*v))).collect();
            let (id, t) = g[pick % g.len()];
            let top = Matcher::rank(&t, g.iter().map(|(i, t)| (*i, t)));
            // Unless another person has an identical direction, the probe finds itself with score ~1.
            prop_assume!(top.runner_up.is_none_or(|r| r.score < 0.9999));
            let d = matcher(0.99, None).identify(&t, g.iter().map(|(i, t)| (*i, t)));
            prop_assert_eq!(d.accepted(), Some(id));
        }
    }
}
