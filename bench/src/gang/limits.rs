//! Time limits: what each job declares, the only length a scheduler may
//! plan reservations and backfill with.
//!
//! Users over-estimate. Mu'alem and Feitelson (IEEE TPDS 12(6), 2001)
//! found SP2 estimates far above the runtimes and modelled them as
//! `runtime × f` with `f` uniform in `[1, F]`; Tsafrir, Etsion and
//! Feitelson ("Modeling user runtime estimates", JSSPP 2005) found
//! estimates *modal*: a handful of round values (15 min, 1 h, 4 h, the
//! queue maximum …) cover most jobs, some jobs reach their limit, and
//! the rest use a spread of shares of it. Slurm sites see the same,
//! which is why Slurm's backfill replans at every pass instead of
//! trusting the first plan. `modal` follows that shape:
//!
//! - with probability [`HIT_SHARE`] the job runs to its limit (the limit is
//!   the duration: it was sized exactly, or the job would be killed at it);
//! - otherwise the accuracy `duration ÷ limit` is uniform in
//!   `[MIN_ACCURACY, 1)`, and the limit is rounded up to the next value of
//!   [`MODES`] (capped at the largest, or the duration if longer).
//!
//! The shares are this bench's choice in that shape, not numbers fitted to
//! a trace; `uniform:F` is the 2001 model and `exact` gives schedulers the
//! durations (the bench before limits).

use anyhow::{Result, bail};
use railyard_core::packing::SplitMix64;

use super::workload::Job;

/// Share of jobs whose limit equals their duration.
pub const HIT_SHARE: f64 = 0.1;
/// Lowest accuracy (duration ÷ limit) drawn for the others.
pub const MIN_ACCURACY: f64 = 0.05;
/// Round limits users pick, seconds: 15, 30 min, 1, 2, 4, 8, 12, 24, 48 h.
pub const MODES: [f64; 9] = [
    900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0, 172800.0,
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitModel {
    /// Limit = duration.
    Exact,
    /// Limit = duration × a factor uniform in `[1, F]`.
    Uniform(f64),
    /// The modal model above.
    Modal,
}

impl LimitModel {
    pub fn parse(s: &str) -> Result<LimitModel> {
        match s.trim() {
            "exact" => Ok(LimitModel::Exact),
            "modal" => Ok(LimitModel::Modal),
            other => {
                let Some(f) = other.strip_prefix("uniform:") else {
                    bail!("--limit-error: `{other}` is not exact, modal or uniform:F");
                };
                match f.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 1.0 => Ok(LimitModel::Uniform(x)),
                    _ => bail!("--limit-error uniform:F: F must be a number ≥ 1, got `{f}`"),
                }
            }
        }
    }

    /// The limit for a job of `duration_s`; always ≥ `duration_s`.
    pub fn draw(self, r: &mut SplitMix64, duration_s: f64) -> f64 {
        let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            LimitModel::Exact => duration_s,
            LimitModel::Uniform(f) => duration_s * (1.0 + u * (f - 1.0)),
            LimitModel::Modal => {
                if u < HIT_SHARE {
                    return duration_s;
                }
                // Reuse the rest of `u` for the accuracy: one draw per job
                // keeps every job's limit independent of the model's shares.
                let v = (u - HIT_SHARE) / (1.0 - HIT_SHARE);
                let raw = duration_s / (MIN_ACCURACY + v * (1.0 - MIN_ACCURACY));
                let top = MODES[MODES.len() - 1];
                MODES.iter().copied().find(|&m| m >= raw).unwrap_or(top).max(duration_s)
            }
        }
    }
}

/// Gives every job without a declared limit one drawn from `model`, from a
/// stream of its own so the workload itself does not change with the model.
pub fn assign(jobs: &mut [Job], model: LimitModel, seed: u64) {
    let mut r = SplitMix64::new(seed ^ 0xbb67_ae85_84ca_a73b);
    for j in jobs.iter_mut() {
        let l = model.draw(&mut r, j.duration_s);
        j.limit_s.get_or_insert(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_never_undercut_the_duration_and_mostly_overestimate() {
        let mut r = SplitMix64::new(3);
        let d = 5000.0;
        let xs: Vec<f64> = (0..10_000).map(|_| LimitModel::Modal.draw(&mut r, d)).collect();
        assert!(xs.iter().all(|&l| l >= d));
        let hit = xs.iter().filter(|&&l| l == d).count() as f64 / xs.len() as f64;
        assert!((hit - HIT_SHARE).abs() < 0.02, "{hit}");
        // Everything else lands on a round value.
        assert!(xs.iter().filter(|&&l| l != d).all(|l| MODES.contains(l)));
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted[sorted.len() / 2] >= 2.0 * d, "median factor ≥ 2");
        assert_eq!(LimitModel::Exact.draw(&mut r, d), d);
        let u = LimitModel::Uniform(3.0).draw(&mut r, d);
        assert!((d..=3.0 * d).contains(&u));
    }

    #[test]
    fn model_names_parse_and_bad_ones_name_the_value() {
        assert_eq!(LimitModel::parse("modal").ok(), Some(LimitModel::Modal));
        assert_eq!(LimitModel::parse("uniform:4").ok(), Some(LimitModel::Uniform(4.0)));
        let e = LimitModel::parse("uniform:0.5").expect_err("F < 1");
        assert!(e.to_string().contains("0.5"), "{e}");
        let e = LimitModel::parse("guess").expect_err("unknown");
        assert!(e.to_string().contains("guess"), "{e}");
    }
}
