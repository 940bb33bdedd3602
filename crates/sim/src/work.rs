//! How long a job takes: fixed, or drawn from an exponential, a lognormal given its mean and
//! p95, or an empirical list of durations (such as a scrape of `job_duration_seconds`).

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};

/// The 95th percentile of the standard normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

/// The work-time distribution, as a scenario file gives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkTime {
    /// fixed, exponential, lognormal or empirical.
    pub distribution: WorkDistribution,
    /// The fixed time (fixed), in seconds.
    #[serde(default)]
    pub secs: Option<f64>,
    /// The mean (exponential, lognormal), in seconds.
    #[serde(default)]
    pub mean_secs: Option<f64>,
    /// The 95th percentile (lognormal), in seconds.
    #[serde(default)]
    pub p95_secs: Option<f64>,
    /// The durations to draw from, each equally likely (empirical), in seconds.
    #[serde(default)]
    pub values_secs: Option<Vec<f64>>,
}

/// The kinds of work-time distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkDistribution {
    /// Every job takes `secs`.
    Fixed,
    /// Exponential with mean `mean_secs`.
    Exponential,
    /// Lognormal with mean `mean_secs` and 95th percentile `p95_secs`.
    Lognormal,
    /// One of `values_secs`, uniformly.
    Empirical,
}

impl WorkTime {
    /// A fixed work time.
    pub fn fixed(secs: f64) -> Self {
        WorkTime {
            distribution: WorkDistribution::Fixed,
            secs: Some(secs),
            mean_secs: None,
            p95_secs: None,
            values_secs: None,
        }
    }

    /// Checks the fields the distribution needs, and only those; the error starts with the
    /// field's name.
    pub fn check(&self) -> Result<(), String> {
        self.sampler().map(|_| ())
    }

    /// The mean work time, in seconds.
    pub fn mean(&self) -> f64 {
        match self.sampler() {
            Ok(WorkSampler::Fixed(s)) => s,
            Ok(WorkSampler::Exponential(_, mean) | WorkSampler::Lognormal(_, mean)) => mean,
            Ok(WorkSampler::Empirical(v)) => v.iter().sum::<f64>() / v.len() as f64,
            Err(_) => f64::NAN,
        }
    }

    /// The squared coefficient of variation (variance / mean^2): 0 fixed, 1 exponential,
    /// `exp(sigma^2) - 1` lognormal, the list's own for empirical; what the staffing
    /// approximations of [`crate::staffing`] scale the wait by.
    pub fn scv(&self) -> f64 {
        match self.sampler() {
            Ok(WorkSampler::Fixed(_)) => 0.0,
            Ok(WorkSampler::Exponential(..)) => 1.0,
            Ok(WorkSampler::Lognormal(..)) => self
                .mean_secs
                .zip(self.p95_secs)
                .and_then(|(mean, p95)| lognormal_from_mean_p95(mean, p95).ok())
                .map_or(f64::NAN, |(_, sigma)| (sigma * sigma).exp_m1()),
            Ok(WorkSampler::Empirical(v)) => {
                let n = v.len() as f64;
                let mean = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                var / (mean * mean)
            }
            Err(_) => f64::NAN,
        }
    }

    /// The sampler for this distribution.
    pub fn sampler(&self) -> Result<WorkSampler, String> {
        let positive = |name: &str, v: Option<f64>| match v {
            Some(v) if v.is_finite() && v > 0.0 => Ok(v),
            Some(_) => Err(format!("{name}: must be above 0")),
            None => Err(format!(
                "{name}: needed by the {:?} distribution",
                self.distribution
            )),
        };
        let unused = |name: &str, present: bool| {
            if present {
                Err(format!(
                    "{name}: not used by the {:?} distribution",
                    self.distribution
                ))
            } else {
                Ok(())
            }
        };
        match self.distribution {
            WorkDistribution::Fixed => {
                unused("mean_secs", self.mean_secs.is_some())?;
                unused("p95_secs", self.p95_secs.is_some())?;
                unused("values_secs", self.values_secs.is_some())?;
                Ok(WorkSampler::Fixed(positive("secs", self.secs)?))
            }
            WorkDistribution::Exponential => {
                unused("secs", self.secs.is_some())?;
                unused("p95_secs", self.p95_secs.is_some())?;
                unused("values_secs", self.values_secs.is_some())?;
                let mean = positive("mean_secs", self.mean_secs)?;
                let exp = Exp::new(1.0 / mean).map_err(|e| format!("mean_secs: {e}"))?;
                Ok(WorkSampler::Exponential(exp, mean))
            }
            WorkDistribution::Lognormal => {
                unused("secs", self.secs.is_some())?;
                unused("values_secs", self.values_secs.is_some())?;
                let mean = positive("mean_secs", self.mean_secs)?;
                let p95 = positive("p95_secs", self.p95_secs)?;
                let (mu, sigma) = lognormal_from_mean_p95(mean, p95)?;
                let d = LogNormal::new(mu, sigma).map_err(|e| format!("p95_secs: {e}"))?;
                Ok(WorkSampler::Lognormal(d, mean))
            }
            WorkDistribution::Empirical => {
                unused("secs", self.secs.is_some())?;
                unused("mean_secs", self.mean_secs.is_some())?;
                unused("p95_secs", self.p95_secs.is_some())?;
                let values = self
                    .values_secs
                    .as_ref()
                    .ok_or("values_secs: needed by the Empirical distribution")?;
                if values.is_empty() {
                    return Err("values_secs: needs at least one duration".into());
                }
                if let Some(bad) = values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(format!("values_secs[{bad}]: must be above 0"));
                }
                Ok(WorkSampler::Empirical(values.clone()))
            }
        }
    }
}

/// `(mu, sigma)` of the lognormal with this mean and 95th percentile: `mean = exp(mu + s^2/2)`
/// and `p95 = exp(mu + z s)` give `s^2/2 - z s + ln(p95/mean) = 0`, whose smaller root is the
/// one with the p95 above the mean.
fn lognormal_from_mean_p95(mean: f64, p95: f64) -> Result<(f64, f64), String> {
    let gap = (p95 / mean).ln();
    if gap <= 0.0 {
        return Err("p95_secs: must be above mean_secs".into());
    }
    let discriminant = Z95 * Z95 - 2.0 * gap;
    if discriminant < 0.0 {
        return Err(format!(
            "p95_secs: no lognormal has a p95 above {:.3} x its mean",
            (Z95 * Z95 / 2.0).exp()
        ));
    }
    let sigma = Z95 - discriminant.sqrt();
    Ok((mean.ln() - sigma * sigma / 2.0, sigma))
}

/// Draws work times.
#[derive(Clone, Debug)]
pub enum WorkSampler {
    /// Always this many seconds.
    Fixed(f64),
    /// Exponential, and its mean.
    Exponential(Exp<f64>, f64),
    /// Lognormal, and its mean.
    Lognormal(LogNormal<f64>, f64),
    /// One of these, uniformly.
    Empirical(Vec<f64>),
}

impl WorkSampler {
    /// One work time, in seconds.
    pub fn draw<R: Rng>(&self, rng: &mut R) -> f64 {
        match self {
            WorkSampler::Fixed(s) => *s,
            WorkSampler::Exponential(d, _) => d.sample(rng),
            WorkSampler::Lognormal(d, _) => d.sample(rng),
            WorkSampler::Empirical(v) => v[rng.random_range(0..v.len())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn lognormal(mean: f64, p95: f64) -> WorkTime {
        WorkTime {
            distribution: WorkDistribution::Lognormal,
            secs: None,
            mean_secs: Some(mean),
            p95_secs: Some(p95),
            values_secs: None,
        }
    }

    #[test]
    fn work_lognormal_has_the_mean_and_p95_asked_for() {
        let sampler = lognormal(5.0, 9.0).sampler().expect("valid");
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let mut draws: Vec<f64> = (0..200_000).map(|_| sampler.draw(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        draws.sort_by(f64::total_cmp);
        let p95 = draws[draws.len() * 95 / 100];
        assert!((mean - 5.0).abs() < 0.05, "mean {mean}");
        assert!((p95 - 9.0).abs() < 0.1, "p95 {p95}");
    }

    #[test]
    fn work_scv_is_the_draws_variance_over_the_mean_squared() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        let exponential = WorkTime {
            distribution: WorkDistribution::Exponential,
            secs: None,
            mean_secs: Some(5.0),
            p95_secs: None,
            values_secs: None,
        };
        for work in [lognormal(5.0, 9.0), exponential, WorkTime::fixed(5.0)] {
            let sampler = work.sampler().expect("valid");
            let draws: Vec<f64> = (0..400_000).map(|_| sampler.draw(&mut rng)).collect();
            let n = draws.len() as f64;
            let mean = draws.iter().sum::<f64>() / n;
            let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let scv = var / (mean * mean);
            assert!(
                (scv - work.scv()).abs() < 0.01,
                "{work:?}: {scv} against {}",
                work.scv()
            );
        }
        let empirical = WorkTime {
            distribution: WorkDistribution::Empirical,
            secs: None,
            mean_secs: None,
            p95_secs: None,
            values_secs: Some(vec![1.0, 3.0]),
        };
        // Mean 2, variance 1.
        assert_eq!(empirical.scv(), 0.25);
    }

    #[test]
    fn work_distributions_refuse_missing_or_unused_fields() {
        assert!(lognormal(5.0, 4.0)
            .check()
            .expect_err("p95 below")
            .starts_with("p95_secs"));
        assert!(lognormal(5.0, 500.0).check().is_err());
        let mut fixed = WorkTime::fixed(5.0);
        fixed.mean_secs = Some(1.0);
        assert!(fixed
            .check()
            .expect_err("unused")
            .starts_with("mean_secs: not used"));
        let empirical = WorkTime {
            distribution: WorkDistribution::Empirical,
            secs: None,
            mean_secs: None,
            p95_secs: None,
            values_secs: Some(vec![1.0, -2.0]),
        };
        assert_eq!(
            empirical.check().expect_err("negative"),
            "values_secs[1]: must be above 0"
        );
        assert!(WorkTime::fixed(0.0).check().is_err());
    }
}
