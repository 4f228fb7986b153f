//! Summaries over seeds, the stdout table, CSV files and SVG plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use railyard_core::packing::{ModelId, ModelMask, ModelTable};

use crate::replay::RunResult;

/// One finished run.
#[derive(Debug, Clone)]
pub struct Run {
    pub trace: String,
    pub policy: &'static str,
    pub seed: u64,
    pub result: RunResult,
}

/// Mean and sample standard deviation.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The FGD paper's cached results (unallocated GPU % at arrived = 100%,
/// mean of 10 seeds), for the traces shipped in `bench/data`.
pub fn published(trace: &str, policy: &str) -> Option<f64> {
    let row: [f64; 6] = match trace {
        "default" => [13.70, 9.38, 8.35, 8.22, 7.14, 4.77],
        "gpushare100" => [21.10, 18.02, 17.78, 17.87, 15.38, 13.36],
        "multigpu50" => [18.72, 5.27, 4.31, 3.94, 4.38, 2.91],
        _ => return None,
    };
    let i = ["random", "dotprod", "clustering", "packing", "bestfit", "fgd"]
        .iter()
        .position(|p| *p == policy)?;
    Some(row[i])
}

/// Per trace and policy, over seeds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub trace: String,
    pub policy: &'static str,
    pub seeds: usize,
    pub unalloc_mean: f64,
    pub unalloc_sd: f64,
    pub frag_mean: f64,
    pub alloc130_mean: f64,
    pub decisions_per_s: f64,
    pub mean_curve: Vec<f64>,
}

pub fn summarize(runs: &[Run]) -> Vec<Summary> {
    let mut keys: Vec<(String, &'static str)> = Vec::new();
    for r in runs {
        if !keys.iter().any(|(t, p)| *t == r.trace && *p == r.policy) {
            keys.push((r.trace.clone(), r.policy));
        }
    }
    keys.into_iter()
        .map(|(trace, policy)| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.trace == trace && r.policy == policy).collect();
            let un: Vec<f64> = mine.iter().map(|r| r.result.unallocated_at(100)).collect();
            let (unalloc_mean, unalloc_sd) = mean_sd(&un);
            let frag: Vec<f64> = mine.iter().map(|r| r.result.frag_at(100)).collect();
            let a130: Vec<f64> = mine.iter().map(|r| r.result.alloc_at(130)).collect();
            let decisions: u64 = mine.iter().map(|r| r.result.decisions).sum();
            let secs: f64 = mine.iter().map(|r| r.result.decide_time.as_secs_f64()).sum();
            let len = mine.iter().map(|r| r.result.alloc.len()).min().unwrap_or(0);
            let mean_curve = (0..len)
                .map(|i| mine.iter().map(|r| r.result.alloc[i]).sum::<f64>() / mine.len() as f64)
                .collect();
            Summary {
                trace,
                policy,
                seeds: mine.len(),
                unalloc_mean,
                unalloc_sd,
                frag_mean: mean_sd(&frag).0,
                alloc130_mean: mean_sd(&a130).0,
                decisions_per_s: if secs > 0.0 { decisions as f64 / secs } else { f64::NAN },
                mean_curve,
            }
        })
        .collect()
}

pub fn table(summaries: &[Summary]) -> String {
    let mut s = String::new();
    // Generated variants have long labels; the shipped traces keep 18.
    let w = summaries.iter().map(|x| x.trace.len()).max().unwrap_or(0).max(18);
    let _ = writeln!(
        s,
        "{:<w$} {:<13} {:>5} {:>16} {:>8} {:>9} {:>12} {:>10}",
        "trace", "policy", "seeds", "unallocated %", "frag %", "alloc@130", "decisions/s", "paper"
    );
    let _ = writeln!(s, "{}", "-".repeat(80 + w));
    let mut last = "";
    for x in summaries {
        if !last.is_empty() && last != x.trace {
            let _ = writeln!(s);
        }
        last = &x.trace;
        let paper = published(&x.trace, x.policy).map_or("-".to_string(), |p| format!("{p:.2}"));
        let _ = writeln!(
            s,
            "{:<w$} {:<13} {:>5} {:>9.2} ± {:<4.2} {:>8.2} {:>9.2} {:>12.0} {:>10}",
            x.trace,
            x.policy,
            x.seeds,
            x.unalloc_mean,
            x.unalloc_sd,
            x.frag_mean,
            x.alloc130_mean,
            x.decisions_per_s,
            paper
        );
    }
    s
}

pub fn write_csvs(dir: &Path, runs: &[Run], summaries: &[Summary]) -> std::io::Result<()> {
    let mut s = String::from(
        "trace,policy,seed,unallocated_pct,frag_ratio_pct,alloc_at_130_pct,placed,failed,decisions,decide_seconds\n",
    );
    for r in runs {
        let x = &r.result;
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.4},{:.4},{},{},{},{:.6}",
            r.trace,
            r.policy,
            r.seed,
            x.unallocated_at(100),
            x.frag_at(100),
            x.alloc_at(130),
            x.placed,
            x.failed,
            x.decisions,
            x.decide_time.as_secs_f64()
        );
    }
    std::fs::write(dir.join("runs.csv"), s)?;

    let mut s = String::from(
        "trace,policy,seeds,unallocated_pct_mean,unallocated_pct_sd,frag_ratio_pct_mean,alloc_at_130_pct_mean,decisions_per_s,published_unallocated_pct\n",
    );
    for x in summaries {
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.1},{}",
            x.trace,
            x.policy,
            x.seeds,
            x.unalloc_mean,
            x.unalloc_sd,
            x.frag_mean,
            x.alloc130_mean,
            x.decisions_per_s,
            published(&x.trace, x.policy).map_or(String::new(), |p| format!("{p:.2}"))
        );
    }
    std::fs::write(dir.join("summary.csv"), s)?;

    let mut s = String::from("trace,policy,seed,arrived_pct,alloc_pct,frag_ratio_pct\n");
    for r in runs {
        for (i, (a, f)) in r.result.alloc.iter().zip(&r.result.frag).enumerate() {
            let _ = writeln!(s, "{},{},{},{},{:.4},{:.4}", r.trace, r.policy, r.seed, i, a, f);
        }
    }
    std::fs::write(dir.join("curves.csv"), s)
}

/// A constraint's models, `|`-separated; `-` for none.
pub fn spec_label(spec: ModelMask, models: &ModelTable) -> String {
    if spec == ModelMask::ANY {
        return "-".into();
    }
    (0..64u8)
        .filter(|b| spec.0 & (1u64 << b) != 0)
        .map(|b| {
            if (b as usize) < models.len() {
                models.name(ModelId(b)).to_string()
            } else {
                "?".into()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Per trace and policy, means over seeds at arrived = 100%: each GPU
/// model's allocation (and the part held by unconstrained pods), then each
/// constraint's arrived pods and GPU request, failed pods, failed GPU
/// request as a share of cluster capacity and of the constraint's request.
pub fn by_model_table(runs: &[Run], models: &ModelTable) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<22} {:<10} {:<10} {:>6} {:>8} {:>13} {:>9}",
        "trace", "policy", "model", "GPUs", "alloc %", "unconstr. %", "idle GPUs"
    );
    let _ = writeln!(s, "{}", "-".repeat(84));
    // The runs of each (trace, policy), in first-seen order.
    let mut groups: Vec<(&str, &'static str, Vec<&Run>)> = Vec::new();
    for r in runs {
        match groups.iter_mut().find(|(t, p, _)| *t == r.trace && *p == r.policy) {
            Some((_, _, mine)) => mine.push(r),
            None => groups.push((&r.trace, r.policy, vec![r])),
        }
    }
    for (trace, policy, mine) in &groups {
        let n = mine.len().max(1) as f64;
        let Some(first) = mine.first() else { continue };
        for (i, m) in first.result.models.iter().enumerate() {
            let alloc: f64 = mine.iter().map(|r| r.result.models[i].allocated as f64).sum::<f64>() / n;
            let unc: f64 = mine
                .iter()
                .map(|r| r.result.models[i].unconstrained as f64)
                .sum::<f64>()
                / n;
            let cap = m.capacity as f64;
            let name = m.model.map_or("-".to_string(), |id| models.name(id).to_string());
            let _ = writeln!(
                s,
                "{:<22} {:<10} {:<10} {:>6} {:>8.2} {:>13.2} {:>9.1}",
                trace,
                policy,
                name,
                m.capacity / 1000,
                100.0 * alloc / cap,
                100.0 * unc / cap,
                (cap - alloc) / 1000.0
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<22} {:<10} {:<28} {:>9} {:>8} {:>9} {:>10} {:>9}",
        "trace", "policy", "gpu_spec", "pods", "GPUs", "failed", "failed %", "of spec %"
    );
    let _ = writeln!(s, "{}", "-".repeat(112));
    for (trace, policy, mine) in &groups {
        let n = mine.len().max(1) as f64;
        let mut specs: Vec<ModelMask> = mine
            .iter()
            .flat_map(|r| r.result.specs.iter().map(|x| x.spec))
            .collect();
        specs.sort();
        specs.dedup();
        for spec in specs {
            let get = |f: fn(&crate::replay::SpecStat) -> u64| {
                mine.iter()
                    .flat_map(|r| r.result.specs.iter().filter(|x| x.spec == spec))
                    .map(|x| f(x) as f64)
                    .sum::<f64>()
                    / n
            };
            let cap = mine[0].result.models.iter().map(|m| m.capacity).sum::<u64>().max(1) as f64;
            let milli = get(|x| x.milli);
            let failed_milli = get(|x| x.failed_milli);
            let _ = writeln!(
                s,
                "{:<22} {:<10} {:<28} {:>9.1} {:>8.1} {:>9.1} {:>10.2} {:>9.2}",
                trace,
                policy,
                spec_label(spec, models),
                get(|x| x.pods),
                milli / 1000.0,
                get(|x| x.failed_pods),
                100.0 * failed_milli / cap,
                100.0 * failed_milli / milli.max(1.0)
            );
        }
    }
    s
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 23, 23),
];

/// One labelled line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Axes and placement of a line chart; ranges are `(min, max)`.
#[derive(Debug)]
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub legend: SeriesLabelPosition,
}

/// Writes an SVG line chart, one colour per series: the one plotting routine
/// every bench report uses.
pub fn line_chart(path: &Path, axes: Axes<'_>, series: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(axes.x.0..axes.x.1, axes.y.0..axes.y.1)?;
    chart.configure_mesh().x_desc(axes.x_desc).y_desc(axes.y_desc).draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(axes.legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Mean allocation vs arrived request, one line per policy; `x`/`y` are the
/// axis ranges in percent.
pub fn plot(
    path: &Path,
    title: &str,
    summaries: &[&Summary],
    x: (f64, f64),
    y: (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let series: Vec<Series> = summaries
        .iter()
        .map(|s| Series {
            label: format!("{} ({:.2}% unallocated)", s.policy, s.unalloc_mean),
            points: s
                .mean_curve
                .iter()
                .enumerate()
                .map(|(a, &v)| (a as f64, v))
                .filter(|(a, _)| *a >= x.0 && *a <= x.1)
                .collect(),
        })
        .collect();
    let axes = Axes {
        title,
        x_desc: "arrived GPU request (% of capacity)",
        y_desc: "GPU allocation (% of capacity)",
        x,
        y,
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, axes, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn published_lookup() {
        assert_eq!(published("default", "fgd"), Some(4.77));
        assert_eq!(published("default", "railyard"), None);
        assert_eq!(published("other", "fgd"), None);
    }
}
