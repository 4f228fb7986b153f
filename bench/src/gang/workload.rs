//! The training workload: gang jobs arriving over time, plus a background of
//! single-GPU and fractional pods. Generated from a seed or read from CSV.
//!
//! CSV (header required, one job a line, `#` comments allowed):
//!
//! ```text
//! arrival_s,duration_s,members,gpus_per_member,gpu_milli,min_members,required,preferred,limit_s
//! 0,3600,4,8,1000,4,,leaf,7200
//! 12.5,600,1,1,500,1,,,
//! ```
//!
//! `duration_s` is the run at full bandwidth; `limit_s` (optional, a ninth
//! column; ≥ `duration_s`) is the time limit the job declares, the only
//! length schedulers may plan with. Without one, `limits::assign` draws it.
//! `gpu_milli` below 1000 makes a fractional pod (members = gpus_per_member
//! = 1); `required` / `preferred` are topology levels (`node`, `nvlink`, a
//! tier name such as `leaf` or `spine`, `cluster`) or empty.

use std::fmt::Write as _;

use railyard_core::packing::SplitMix64;

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub arrival_s: f64,
    pub duration_s: f64,
    pub members: u32,
    pub gpus_per_member: u32,
    /// 1000 for whole GPUs; less for a fractional pod.
    pub gpu_milli: u32,
    pub min_members: u32,
    pub required: Option<String>,
    pub preferred: Option<String>,
    /// The declared time limit; `None` until `limits::assign` draws one
    /// (the simulator then plans with the exact duration).
    pub limit_s: Option<f64>,
}

impl Job {
    /// What a scheduler may plan with: the limit, else the duration.
    pub fn limit(&self) -> f64 {
        self.limit_s.unwrap_or(self.duration_s)
    }
    /// GPUs held, fractional pods as their share of one.
    pub fn gpu_share(&self) -> f64 {
        f64::from(self.gpus()) * f64::from(self.gpu_milli) / 1000.0
    }
    pub fn gpus(&self) -> u32 {
        self.members * self.gpus_per_member
    }
    pub fn is_fractional(&self) -> bool {
        self.gpu_milli < 1000
    }
    /// A gang: more than one GPU, so there is something to all-reduce.
    pub fn is_gang(&self) -> bool {
        !self.is_fractional() && self.gpus() > 1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("line {line}: {msg} ({value:?})")]
    Invalid {
        line: usize,
        value: String,
        msg: &'static str,
    },
    #[error("line {line}: expected 8 or 9 columns, found {found}")]
    Columns { line: usize, found: usize },
    #[error("the workload has no jobs")]
    Empty,
}

pub fn parse(text: &str) -> Result<Vec<Job>, WorkloadError> {
    let mut jobs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("arrival_s") {
            continue;
        }
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        if !(8..=9).contains(&cols.len()) {
            return Err(WorkloadError::Columns {
                line,
                found: cols.len(),
            });
        }
        let bad = |v: &str, msg| WorkloadError::Invalid {
            line,
            value: v.to_string(),
            msg,
        };
        let f = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        let u = |v: &str| v.parse::<u32>().ok();
        let arrival_s = f(cols[0]).ok_or_else(|| bad(cols[0], "arrival_s must be a number ≥ 0"))?;
        let duration_s = f(cols[1])
            .filter(|&d| d > 0.0)
            .ok_or_else(|| bad(cols[1], "duration_s must be a number > 0"))?;
        let members = u(cols[2])
            .filter(|&m| m > 0)
            .ok_or_else(|| bad(cols[2], "members must be ≥ 1"))?;
        let k = u(cols[3])
            .filter(|&m| m > 0)
            .ok_or_else(|| bad(cols[3], "gpus_per_member must be ≥ 1"))?;
        let milli = u(cols[4])
            .filter(|&m| (1..=1000).contains(&m))
            .ok_or_else(|| bad(cols[4], "gpu_milli must be 1..=1000"))?;
        if milli < 1000 && (members != 1 || k != 1) {
            return Err(bad(cols[4], "a fractional pod has members = gpus_per_member = 1"));
        }
        let min = u(cols[5])
            .filter(|&m| m >= 1 && m <= members)
            .ok_or_else(|| bad(cols[5], "min_members must be 1..=members"))?;
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let limit_s = match cols.get(8).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                f(v).filter(|&l| l >= duration_s)
                    .ok_or_else(|| bad(v, "limit_s must be a number ≥ duration_s"))?,
            ),
        };
        jobs.push(Job {
            arrival_s,
            duration_s,
            members,
            gpus_per_member: k,
            gpu_milli: milli,
            min_members: min,
            required: opt(cols[6]),
            preferred: opt(cols[7]),
            limit_s,
        });
    }
    if jobs.is_empty() {
        return Err(WorkloadError::Empty);
    }
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    Ok(jobs)
}

pub fn to_csv(jobs: &[Job]) -> String {
    let mut s =
        String::from("arrival_s,duration_s,members,gpus_per_member,gpu_milli,min_members,required,preferred,limit_s\n");
    for j in jobs {
        let _ = writeln!(
            s,
            "{:.1},{:.1},{},{},{},{},{},{},{}",
            j.arrival_s,
            j.duration_s,
            j.members,
            j.gpus_per_member,
            j.gpu_milli,
            j.min_members,
            j.required.as_deref().unwrap_or(""),
            j.preferred.as_deref().unwrap_or(""),
            // Rounded up so that a limit equal to the duration stays ≥ it.
            j.limit_s
                .map_or(String::new(), |l| format!("{:.1}", (l * 10.0).ceil() / 10.0))
        );
    }
    s
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Gang jobs.
    pub gangs: usize,
    /// Offered load: requested GPU-time over capacity × arrival window.
    pub load: f64,
    /// Share of the offered GPU-time that is background pods.
    pub background: f64,
    pub capacity_gpus: u64,
}

/// Gang sizes in GPUs and their weights: mostly 8-GPU jobs, fewer 16–256, a
/// few 512, the shape published cluster traces show (Philly, Helios, PAI:
/// multi-GPU jobs are dominated by one-node jobs, with a long tail of large
/// ones that hold most of the GPU-time).
const SIZES: [(u32, u32); 7] = [
    (8, 520),
    (16, 160),
    (32, 120),
    (64, 90),
    (128, 60),
    (256, 35),
    (512, 15),
];

fn uniform(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Log-normal duration with median `median_s`, clipped to `[lo, hi]`.
fn lognormal(r: &mut SplitMix64, median_s: f64, sigma: f64, lo: f64, hi: f64) -> f64 {
    let (u1, u2) = (uniform(r).max(1e-12), uniform(r));
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (median_s * (sigma * z).exp()).clamp(lo, hi)
}

fn pick<T: Copy>(r: &mut SplitMix64, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|t| t.1).sum();
    let mut x = r.below(u64::from(total)) as u32;
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// A reproducible workload for `seed`.
pub fn generate(mix: &Mix, seed: u64) -> Vec<Job> {
    let mut r = SplitMix64::new(seed ^ 0x6a09_e667_f3bc_c909);
    let mut jobs = Vec::new();
    let mut gang_gpu_s = 0.0;
    for _ in 0..mix.gangs {
        let gpus = pick(&mut r, &SIZES);
        // Pods of 8 GPUs mostly; some frameworks run 4- or 1-GPU pods.
        let k = pick(&mut r, &[(8u32, 80), (4, 12), (1, 8)]).min(gpus);
        let members = gpus / k;
        let duration_s = lognormal(&mut r, 2.0 * 3600.0, 1.0, 600.0, 24.0 * 3600.0);
        gang_gpu_s += f64::from(gpus) * duration_s;
        jobs.push(Job {
            arrival_s: 0.0,
            duration_s,
            members,
            gpus_per_member: k,
            gpu_milli: 1000,
            min_members: members,
            required: None,
            preferred: None,
            limit_s: None,
        });
    }
    // Background pods until they hold their share of GPU-time.
    let target = gang_gpu_s * mix.background / (1.0 - mix.background).max(1e-9);
    let mut bg = 0.0;
    while bg < target {
        let milli = pick(&mut r, &[(1000u32, 50), (500, 25), (250, 25)]);
        let duration_s = lognormal(&mut r, 3600.0, 1.0, 300.0, 12.0 * 3600.0);
        bg += f64::from(milli) / 1000.0 * duration_s;
        jobs.push(Job {
            arrival_s: 0.0,
            duration_s,
            members: 1,
            gpus_per_member: 1,
            gpu_milli: milli,
            min_members: 1,
            required: None,
            preferred: None,
            limit_s: None,
        });
    }
    r.shuffle(&mut jobs);
    // Poisson arrivals over the window that gives the offered load.
    let window = (gang_gpu_s + bg) / (mix.load * mix.capacity_gpus as f64);
    let rate = jobs.len() as f64 / window;
    let mut t = 0.0;
    for j in &mut jobs {
        j.arrival_s = t;
        t += -(1.0 - uniform(&mut r)).ln() / rate;
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_and_errors_name_the_value() {
        let mix = Mix {
            gangs: 50,
            load: 0.9,
            background: 0.15,
            capacity_gpus: 1024,
        };
        let jobs = generate(&mix, 7);
        assert_eq!(generate(&mix, 7), jobs, "seeded");
        let back = parse(&to_csv(&jobs)).expect("parse");
        assert_eq!(back.len(), jobs.len());
        assert!(back.iter().filter(|j| j.is_gang()).count() >= 40);
        let e = parse(
            "arrival_s,duration_s,members,gpus_per_member,gpu_milli,min_members,required,preferred\n0,10,2,8,500,2,,\n",
        )
        .expect_err("fractional gang");
        assert!(e.to_string().contains("line 2") && e.to_string().contains("500"), "{e}");
        assert!(matches!(
            parse("0,1,1\n"),
            Err(WorkloadError::Columns { line: 1, found: 3 })
        ));
    }
}
