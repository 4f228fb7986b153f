//! Job completion time, what users of a training cluster judge it by:
//! JCT = wait + run (the run lengthened by a slow placement), per size
//! class and overall, the JCT slowdown (JCT ÷ the run at full bandwidth
//! with no wait), useful GPU-hours and the goal check for Railyard.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use super::report::{GangSummary, cdf_points, quantile};
use super::sim::{JobRecord, RunResult};
use crate::report::{Axes, Series, line_chart};

/// A size class: a gang of that many GPUs, or the background pods
/// (single-GPU and fractional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Gang(u32),
    Background,
}

impl Class {
    pub fn of(r: &JobRecord) -> Class {
        if r.gang { Class::Gang(r.gpus) } else { Class::Background }
    }
    pub fn label(self) -> String {
        match self {
            Class::Gang(g) => format!("{g} GPUs"),
            Class::Background => "bg".to_string(),
        }
    }
}

/// JCT statistics of one class (or of all jobs), pooled over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct JctStats {
    pub jobs: usize,
    pub mean_min: f64,
    pub p50_min: f64,
    pub p95_min: f64,
    /// Mean of JCT ÷ duration at full bandwidth.
    pub slowdown_mean: f64,
    /// Mean per seed: GPU-hours inside the arrival window that did the
    /// jobs' work (held by running jobs, divided by their run slowdown).
    pub useful_gpu_h: f64,
}

/// JCT of a finished job, seconds.
pub fn jct_s(r: &JobRecord) -> Option<f64> {
    r.finish_s.map(|f| f - r.arrival_s)
}

/// GPU-hours of `r`'s work done inside `[0, window_s]`: its GPUs times
/// the time it ran inside the window, times the share of the run that was
/// work (duration ÷ run; below 1 when a slow placement stretched it).
pub fn useful_gpu_h(r: &JobRecord, window_s: f64) -> f64 {
    let (Some(s), Some(f)) = (r.start_s, r.finish_s) else {
        return 0.0;
    };
    let run = f - s;
    if run <= 0.0 {
        return 0.0;
    }
    let inside = (f.min(window_s) - s.min(window_s)).max(0.0);
    r.gpu_share * inside * (r.duration_s / run).min(1.0) / 3600.0
}

/// Statistics over `recs` (each with its run's window), `seeds` runs.
pub fn stats<'a>(recs: impl Iterator<Item = (&'a JobRecord, f64)>, seeds: usize) -> JctStats {
    let mut jct = Vec::new();
    let mut slow = 0.0;
    let mut useful = 0.0;
    for (r, window) in recs {
        useful += useful_gpu_h(r, window);
        if let Some(j) = jct_s(r) {
            jct.push(j / 60.0);
            slow += j / r.duration_s;
        }
    }
    jct.sort_by(f64::total_cmp);
    let n = jct.len();
    let mean = |x: f64| if n == 0 { f64::NAN } else { x / n as f64 };
    JctStats {
        jobs: n,
        mean_min: mean(jct.iter().sum()),
        p50_min: quantile(&jct, 0.5),
        p95_min: quantile(&jct, 0.95),
        slowdown_mean: mean(slow),
        useful_gpu_h: useful / seeds.max(1) as f64,
    }
}

/// Per policy, over seeds.
#[derive(Debug, Clone)]
pub struct JctSummary {
    pub policy: &'static str,
    pub classes: BTreeMap<Class, JctStats>,
    pub overall: JctStats,
    /// Σ GPUs × JCT ÷ Σ GPUs, minutes (fractional pods by their share).
    pub gpu_weighted_min: f64,
    /// Mean over seeds: when the last job of the arrival window finished.
    pub last_finish_h: f64,
    /// Useful GPU-hours ÷ (GPUs × window), %, mean over seeds.
    pub useful_pct: f64,
    /// Jobs whose run outlasted their limit (slowed by their placement).
    pub overruns: usize,
    pub recomputes: u64,
    /// Sorted JCT slowdowns of every finished job, all seeds.
    pub slowdowns: Vec<f64>,
}

pub fn summarize(runs: &[RunResult], capacity_gpus: u64) -> Vec<JctSummary> {
    let mut policies: Vec<_> = runs.iter().map(|r| r.policy).collect();
    policies.sort();
    policies.dedup();
    policies
        .into_iter()
        .map(|p| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.policy == p).collect();
            let seeds = mine.len();
            let recs = || mine.iter().flat_map(|r| r.records.iter().map(move |x| (x, r.window_s)));
            let mut classes: BTreeMap<Class, Vec<(&JobRecord, f64)>> = BTreeMap::new();
            for (x, w) in recs() {
                classes.entry(Class::of(x)).or_default().push((x, w));
            }
            let classes = classes
                .into_iter()
                .map(|(c, v)| (c, stats(v.into_iter(), seeds)))
                .collect();
            let (mut wsum, mut gsum) = (0.0, 0.0);
            for (x, _) in recs() {
                if let Some(j) = jct_s(x) {
                    wsum += x.gpu_share * j / 60.0;
                    gsum += x.gpu_share;
                }
            }
            let mut slowdowns: Vec<f64> = recs().filter_map(|(x, _)| jct_s(x).map(|j| j / x.duration_s)).collect();
            slowdowns.sort_by(f64::total_cmp);
            let per_seed = |f: &dyn Fn(&RunResult) -> f64| mine.iter().map(|r| f(r)).sum::<f64>() / seeds.max(1) as f64;
            let overall = stats(recs(), seeds);
            JctSummary {
                policy: p.name(),
                useful_pct: per_seed(&|r| {
                    let u: f64 = r.records.iter().map(|x| useful_gpu_h(x, r.window_s)).sum();
                    let cap = capacity_gpus as f64 * r.window_s / 3600.0;
                    if cap > 0.0 { u / cap * 100.0 } else { f64::NAN }
                }),
                last_finish_h: per_seed(&|r| r.makespan_s / 3600.0),
                overruns: recs()
                    .filter(|(x, _)| matches!((x.start_s, x.finish_s), (Some(s), Some(f)) if f - s > x.limit_s + 1e-6))
                    .count(),
                recomputes: mine.iter().map(|r| r.recomputes).sum(),
                gpu_weighted_min: if gsum > 0.0 { wsum / gsum } else { f64::NAN },
                overall,
                classes,
                slowdowns,
            }
        })
        .collect()
}

fn all_classes(s: &[JctSummary]) -> Vec<Class> {
    let mut c: Vec<Class> = s.iter().flat_map(|x| x.classes.keys().copied()).collect();
    c.sort();
    c.dedup();
    c
}

/// One row per policy: mean JCT (minutes) per class, then overall.
pub fn class_table(s: &[JctSummary], what: &str, f: fn(&JctStats) -> f64) -> String {
    let classes = all_classes(s);
    let mut out = String::new();
    let _ = write!(out, "{what:<13}");
    for c in &classes {
        let _ = write!(out, " {:>9}", c.label());
    }
    let _ = writeln!(out, " {:>9}", "all");
    let _ = writeln!(out, "{}", "-".repeat(13 + 10 * (classes.len() + 1)));
    for x in s {
        let _ = write!(out, "{:<13}", x.policy);
        for c in &classes {
            match x.classes.get(c) {
                Some(st) => {
                    let _ = write!(out, " {:>9.1}", f(st));
                }
                None => {
                    let _ = write!(out, " {:>9}", "");
                }
            }
        }
        let _ = writeln!(out, " {:>9.1}", f(&x.overall));
    }
    out
}

/// Overall JCT figures, one row per policy.
pub fn table(s: &[JctSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>9} {:>9} {:>9} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
        "JCT", "mean min", "p50", "p95", "slowdown", "GPU-w min", "useful%", "useful kGPUh", "last h", "overruns"
    );
    let _ = writeln!(out, "{}", "-".repeat(103));
    for x in s {
        let o = &x.overall;
        let _ = writeln!(
            out,
            "{:<13} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>10.1} {:>8.2} {:>12.1} {:>8.1} {:>9}",
            x.policy,
            o.mean_min,
            o.p50_min,
            o.p95_min,
            o.slowdown_mean,
            x.gpu_weighted_min,
            x.useful_pct,
            o.useful_gpu_h / 1000.0,
            x.last_finish_h,
            x.overruns
        );
    }
    out
}

/// The goal for `railyard` against every other policy present:
/// lower mean JCT in every class, no partial gangs, mean busbw ≥ 0.95,
/// useful allocation no lower than the best baseline's.
pub fn goal(j: &[JctSummary], g: &[GangSummary]) -> String {
    let mut out = String::new();
    let Some(ry) = j.iter().find(|x| x.policy == "railyard") else {
        return out;
    };
    let base: Vec<&JctSummary> = j.iter().filter(|x| x.policy != "railyard").collect();
    if base.is_empty() {
        return out;
    }
    let _ = writeln!(out, "goal (railyard against the best baseline):");
    for c in all_classes(j) {
        let Some(mine) = ry.classes.get(&c) else { continue };
        let best = base
            .iter()
            .filter_map(|b| b.classes.get(&c).map(|s| (b.policy, s.mean_min)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((who, m)) = best {
            let _ = writeln!(
                out,
                "  mean JCT {:>8}: {:>8.1} vs {:>8.1} ({who}) {}",
                c.label(),
                mine.mean_min,
                m,
                if mine.mean_min < m { "met" } else { "NOT met" }
            );
        }
    }
    if let Some(gs) = g.iter().find(|x| x.policy == "railyard") {
        let _ = writeln!(
            out,
            "  partial gangs: {} {}",
            gs.partial_gangs,
            if gs.partial_gangs == 0 { "met" } else { "NOT met" }
        );
        let _ = writeln!(
            out,
            "  busbw ratio: {:.3} {}",
            gs.ratio_mean,
            if gs.ratio_mean >= 0.95 { "met" } else { "NOT met" }
        );
    }
    let best_useful = base.iter().map(|b| b.useful_pct).fold(f64::NAN, f64::max);
    let _ = writeln!(
        out,
        "  useful allocation: {:.2}% vs best baseline {:.2}% {}",
        ry.useful_pct,
        best_useful,
        if ry.useful_pct >= best_useful { "met" } else { "NOT met" }
    );
    out
}

pub fn write_csv(dir: &Path, s: &[JctSummary]) -> std::io::Result<()> {
    let mut t = String::from("policy,class,jobs,jct_mean_min,jct_p50_min,jct_p95_min,slowdown_mean,useful_gpu_h\n");
    for x in s {
        let rows = x
            .classes
            .iter()
            .map(|(c, st)| (c.label(), st))
            .chain(std::iter::once(("all".to_string(), &x.overall)));
        for (label, st) in rows {
            let _ = writeln!(
                t,
                "{},{label},{},{:.2},{:.2},{:.2},{:.4},{:.1}",
                x.policy, st.jobs, st.mean_min, st.p50_min, st.p95_min, st.slowdown_mean, st.useful_gpu_h
            );
        }
    }
    std::fs::write(dir.join("gang_jct.csv"), t)
}

/// CDF of JCT slowdown per policy, on a log₁₀ axis (1 = no wait, full
/// bandwidth; kube-default's waits reach the hundreds).
pub fn plot_slowdown_cdf(path: &Path, title: &str, s: &[JctSummary]) -> Result<(), Box<dyn std::error::Error>> {
    let top = 3.0;
    let series: Vec<Series> = s
        .iter()
        .map(|x| Series {
            label: format!("{} (mean {:.2})", x.policy, x.overall.slowdown_mean),
            // One point per 0.1% of jobs is enough for an SVG.
            points: cdf_points(&x.slowdowns, 1000, |v| v.max(1.0).log10().min(top)),
        })
        .collect();
    let axes = Axes {
        title,
        x_desc: "log10(JCT ÷ duration at full bandwidth)",
        y_desc: "share of jobs at or below",
        x: (0.0, top),
        y: (0.0, 1.0),
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, axes, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(gang: bool, gpus: u32, arrival: f64, start: f64, duration: f64, run: f64) -> JobRecord {
        JobRecord {
            gang,
            gpus,
            gpu_share: f64::from(gpus),
            arrival_s: arrival,
            duration_s: duration,
            limit_s: duration,
            start_s: Some(start),
            finish_s: Some(start + run),
            ratio: Some(1.0),
            one_leaf: true,
            one_nvl: true,
            partial: false,
            never: false,
        }
    }

    #[test]
    fn jct_statistics_are_wait_plus_run_per_class() {
        // Three 8-GPU gangs: JCT 10, 20, 90 min; one background pod.
        let rs = [
            rec(true, 8, 0.0, 0.0, 600.0, 600.0),
            rec(true, 8, 0.0, 600.0, 600.0, 600.0),
            rec(true, 8, 600.0, 1200.0, 3600.0, 4800.0),
            rec(false, 1, 0.0, 0.0, 60.0, 60.0),
        ];
        let gangs = stats(rs[..3].iter().map(|r| (r, 1e9)), 1);
        assert_eq!(gangs.jobs, 3);
        assert!((gangs.mean_min - 40.0).abs() < 1e-9, "{}", gangs.mean_min);
        assert_eq!(gangs.p50_min, 20.0);
        assert_eq!(gangs.p95_min, 90.0);
        // Slowdowns 1, 2, 5400 / 3600 = 1.5.
        assert!((gangs.slowdown_mean - 1.5).abs() < 1e-9, "{}", gangs.slowdown_mean);
        // Useful GPU-hours: 8 × (600 + 600 + 4800 × 3600/4800) s.
        assert!((gangs.useful_gpu_h - 8.0 * 4800.0 / 3600.0).abs() < 1e-9);
        // A window ending at 1,800 s keeps 600 s of the slowed job's run.
        let cut = useful_gpu_h(&rs[2], 1800.0);
        assert!((cut - 8.0 * 600.0 * 0.75 / 3600.0).abs() < 1e-9, "{cut}");
        assert_eq!(Class::of(&rs[3]), Class::Background);
        assert_eq!(Class::of(&rs[0]), Class::Gang(8));
        // Not started: no JCT, no useful time.
        let mut stuck = rs[0].clone();
        stuck.start_s = None;
        stuck.finish_s = None;
        assert_eq!(jct_s(&stuck), None);
        assert_eq!(stats(std::iter::once((&stuck, 1e9)), 1).jobs, 0);
    }
}
