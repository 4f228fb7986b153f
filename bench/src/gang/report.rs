//! Summaries over seeds, the table, CSV files and SVG plots of the gang bench.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use super::sim::RunResult;
use crate::report::{Axes, Series, line_chart};

/// Per policy, over seeds (jobs pooled).
#[derive(Debug, Clone)]
pub struct GangSummary {
    pub policy: &'static str,
    pub seeds: usize,
    pub gangs_started: usize,
    pub ratio_mean: f64,
    pub ratio_p10: f64,
    pub one_leaf_pct: f64,
    pub one_nvl_pct: f64,
    pub gang_wait_min: f64,
    pub bg_wait_min: f64,
    pub alloc_pct: f64,
    pub running_pct: f64,
    pub partial_gangs: usize,
    pub evictions: u32,
    pub not_started: usize,
    pub decisions_per_s: f64,
    /// Mean wait in minutes of started gangs by size in GPUs, ascending.
    pub wait_by_gpus: Vec<(u32, f64)>,
    /// Mean allocation curve over seeds: (hours, allocated %).
    pub curve: Vec<(f64, f64)>,
    /// Sorted busbw ratios, all seeds.
    pub ratios: Vec<f64>,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// The q-quantile of sorted values (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn summarize(runs: &[RunResult]) -> Vec<GangSummary> {
    let mut policies: Vec<_> = runs.iter().map(|r| r.policy).collect();
    policies.dedup();
    policies.sort();
    policies.dedup();
    policies
        .into_iter()
        .map(|p| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.policy == p).collect();
            let recs = || mine.iter().flat_map(|r| r.records.iter());
            let started = || recs().filter(|r| r.gang && r.start_s.is_some());
            let mut ratios: Vec<f64> = started().filter_map(|r| r.ratio).collect();
            ratios.sort_by(f64::total_cmp);
            let n = started().count();
            let pct = |k: usize| if n == 0 { f64::NAN } else { k as f64 / n as f64 * 100.0 };
            let len = mine.iter().map(|r| r.curve.len()).min().unwrap_or(0);
            let curve = (0..len)
                .map(|i| (mine[0].curve[i].0, mean(mine.iter().map(|r| r.curve[i].1))))
                .collect();
            let secs: f64 = mine.iter().map(|r| r.decide_time.as_secs_f64()).sum();
            let decisions: u64 = mine.iter().map(|r| r.decisions).sum();
            GangSummary {
                policy: p.name(),
                seeds: mine.len(),
                gangs_started: n,
                ratio_mean: mean(ratios.iter().copied()),
                ratio_p10: quantile(&ratios, 0.10),
                one_leaf_pct: pct(started().filter(|r| r.one_leaf).count()),
                one_nvl_pct: pct(started().filter(|r| r.one_nvl).count()),
                gang_wait_min: mean(started().filter_map(|r| r.start_s.map(|s| (s - r.arrival_s) / 60.0))),
                bg_wait_min: mean(
                    recs()
                        .filter(|r| !r.gang)
                        .filter_map(|r| r.start_s.map(|s| (s - r.arrival_s) / 60.0)),
                ),
                alloc_pct: mean(mine.iter().map(|r| r.alloc_mean)),
                running_pct: mean(mine.iter().map(|r| r.running_mean)),
                partial_gangs: recs().filter(|r| r.partial).count(),
                evictions: mine.iter().map(|r| r.evictions).sum(),
                not_started: recs().filter(|r| r.start_s.is_none() && !r.never).count(),
                decisions_per_s: if secs > 0.0 { decisions as f64 / secs } else { f64::NAN },
                wait_by_gpus: wait_by_gpus(started()),
                curve,
                ratios,
            }
        })
        .collect()
}

/// Mean wait in minutes per gang size (GPUs), smallest first.
fn wait_by_gpus<'a>(started: impl Iterator<Item = &'a super::sim::JobRecord>) -> Vec<(u32, f64)> {
    let mut by: std::collections::BTreeMap<u32, (f64, usize)> = std::collections::BTreeMap::new();
    for r in started {
        if let Some(s) = r.start_s {
            let e = by.entry(r.gpus).or_insert((0.0, 0));
            e.0 += (s - r.arrival_s) / 60.0;
            e.1 += 1;
        }
    }
    by.into_iter().map(|(g, (sum, n))| (g, sum / n as f64)).collect()
}

/// Mean gang wait (minutes) per gang size, one row per policy: who pays
/// for the waiting.
pub fn wait_table(s: &[GangSummary]) -> String {
    let mut sizes: Vec<u32> = s.iter().flat_map(|x| x.wait_by_gpus.iter().map(|w| w.0)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut out = String::new();
    let _ = write!(out, "{:<13}", "wait min by");
    for g in &sizes {
        let _ = write!(out, " {:>8}", format!("{g} GPUs"));
    }
    let _ = writeln!(out, " {:>8}", "bg");
    let _ = writeln!(out, "{}", "-".repeat(13 + 9 * (sizes.len() + 1)));
    for x in s {
        let _ = write!(out, "{:<13}", x.policy);
        for g in &sizes {
            match x.wait_by_gpus.iter().find(|w| w.0 == *g) {
                Some((_, m)) => {
                    let _ = write!(out, " {m:>8.1}");
                }
                None => {
                    let _ = write!(out, " {:>8}", "");
                }
            }
        }
        let _ = writeln!(out, " {:>8.1}", x.bg_wait_min);
    }
    out
}

pub fn table(s: &[GangSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>5} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>7} {:>8} {:>8} {:>6} {:>6} {:>11}",
        "policy",
        "seeds",
        "gangs",
        "busbw",
        "p10",
        "1-leaf",
        "1-NVL",
        "wait min",
        "bg wait",
        "alloc%",
        "running%",
        "partial",
        "evict",
        "stuck",
        "decisions/s"
    );
    let _ = writeln!(out, "{}", "-".repeat(130));
    for x in s {
        let _ = writeln!(
            out,
            "{:<13} {:>5} {:>6} {:>7.3} {:>7.3} {:>6.1}% {:>6.1}% {:>9.1} {:>8.1} {:>7.2} {:>8.2} {:>8} {:>6} {:>6} {:>11.0}",
            x.policy,
            x.seeds,
            x.gangs_started,
            x.ratio_mean,
            x.ratio_p10,
            x.one_leaf_pct,
            x.one_nvl_pct,
            x.gang_wait_min,
            x.bg_wait_min,
            x.alloc_pct,
            x.running_pct,
            x.partial_gangs,
            x.evictions,
            x.not_started,
            x.decisions_per_s
        );
    }
    out
}

pub fn write_csvs(dir: &Path, runs: &[RunResult], s: &[GangSummary]) -> std::io::Result<()> {
    let mut t = String::from(
        "policy,seeds,gangs_started,busbw_ratio_mean,busbw_ratio_p10,one_leaf_pct,one_nvl_pct,gang_wait_min,bg_wait_min,alloc_pct,running_pct,partial_gangs,evictions,not_started,decisions_per_s\n",
    );
    for x in s {
        let _ = writeln!(
            t,
            "{},{},{},{:.4},{:.4},{:.2},{:.2},{:.2},{:.2},{:.3},{:.3},{},{},{},{:.1}",
            x.policy,
            x.seeds,
            x.gangs_started,
            x.ratio_mean,
            x.ratio_p10,
            x.one_leaf_pct,
            x.one_nvl_pct,
            x.gang_wait_min,
            x.bg_wait_min,
            x.alloc_pct,
            x.running_pct,
            x.partial_gangs,
            x.evictions,
            x.not_started,
            x.decisions_per_s
        );
    }
    std::fs::write(dir.join("gang_summary.csv"), t)?;
    let mut j = String::from(
        "policy,seed,job,gang,gpus,arrival_s,start_s,finish_s,duration_s,limit_s,busbw_ratio,one_leaf,one_nvl,partial,never\n",
    );
    let mut c = String::from("policy,seed,hours,alloc_pct,running_pct\n");
    let mut r = String::from("policy,seed,alloc_pct,running_pct,evictions,makespan_h,recomputes\n");
    for run in runs {
        let p = run.policy.name();
        for (i, x) in run.records.iter().enumerate() {
            let _ = writeln!(
                j,
                "{p},{},{i},{},{},{:.1},{},{},{:.1},{:.1},{},{},{},{},{}",
                run.seed,
                x.gang,
                x.gpus,
                x.arrival_s,
                x.start_s.map_or(String::new(), |s| format!("{s:.1}")),
                x.finish_s.map_or(String::new(), |s| format!("{s:.1}")),
                x.duration_s,
                x.limit_s,
                x.ratio.map_or(String::new(), |v| format!("{v:.4}")),
                x.one_leaf,
                x.one_nvl,
                x.partial,
                x.never
            );
        }
        for (h, a, b) in &run.curve {
            let _ = writeln!(c, "{p},{},{h:.3},{a:.3},{b:.3}", run.seed);
        }
        let _ = writeln!(
            r,
            "{p},{},{:.3},{:.3},{},{:.2},{}",
            run.seed,
            run.alloc_mean,
            run.running_mean,
            run.evictions,
            run.makespan_s / 3600.0,
            run.recomputes
        );
    }
    std::fs::write(dir.join("gang_jobs.csv"), j)?;
    std::fs::write(dir.join("gang_curves.csv"), c)?;
    std::fs::write(dir.join("gang_runs.csv"), r)
}

/// GPU allocation over time, one line per policy (mean over seeds).
pub fn plot_alloc(path: &Path, title: &str, s: &[GangSummary]) -> Result<(), Box<dyn std::error::Error>> {
    let hours = s.iter().filter_map(|x| x.curve.last().map(|c| c.0)).fold(1.0, f64::max);
    let series: Vec<Series> = s
        .iter()
        .map(|x| Series {
            label: format!("{} (mean {:.1}%)", x.policy, x.alloc_pct),
            points: x.curve.clone(),
        })
        .collect();
    let axes = Axes {
        title,
        x_desc: "time (hours)",
        y_desc: "GPUs allocated (% of cluster)",
        x: (0.0, hours),
        y: (0.0, 100.0),
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, axes, &series)
}

/// Empirical CDF of `sorted` as (x(value), share of values at or below),
/// at most about `max_points` of them (the last always kept).
pub fn cdf_points(sorted: &[f64], max_points: usize, x: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let n = sorted.len().max(1) as f64;
    let step = (sorted.len() / max_points.max(1)).max(1);
    sorted
        .iter()
        .enumerate()
        .filter(|(j, _)| j % step == 0 || *j + 1 == sorted.len())
        .map(|(j, &v)| (x(v), (j + 1) as f64 / n))
        .collect()
}

/// CDF of busbw ratios per policy.
pub fn plot_ratio_cdf(path: &Path, title: &str, s: &[GangSummary]) -> Result<(), Box<dyn std::error::Error>> {
    let series: Vec<Series> = s
        .iter()
        .map(|x| Series {
            label: format!("{} (mean {:.3})", x.policy, x.ratio_mean),
            points: cdf_points(&x.ratios, usize::MAX, |r| r.min(1.05)),
        })
        .collect();
    let axes = Axes {
        title,
        x_desc: "estimated busbw ÷ best on an empty cluster",
        y_desc: "share of gangs at or below",
        x: (0.0, 1.05),
        y: (0.0, 1.0),
        legend: SeriesLabelPosition::UpperLeft,
    };
    line_chart(path, axes, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantile() {
        let xs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        assert_eq!(quantile(&xs, 0.10), 0.1);
        assert_eq!(quantile(&xs, 0.5), 0.5);
        assert!(quantile(&[], 0.1).is_nan());
    }

    #[test]
    fn waits_are_averaged_per_gang_size() {
        let rec = |gpus: u32, wait_min: f64| super::super::sim::JobRecord {
            gang: true,
            gpus,
            gpu_share: f64::from(gpus),
            arrival_s: 60.0,
            duration_s: 600.0,
            limit_s: 600.0,
            start_s: Some(60.0 + wait_min * 60.0),
            finish_s: Some(660.0 + wait_min * 60.0),
            ratio: Some(1.0),
            one_leaf: true,
            one_nvl: gpus <= 8,
            partial: false,
            never: false,
        };
        let rs = [rec(512, 300.0), rec(8, 1.0), rec(8, 3.0)];
        assert_eq!(wait_by_gpus(rs.iter()), vec![(8, 2.0), (512, 300.0)]);
    }
}
