//! mig-parted's `assert`, `export` and `--mode-only`, over an [`Observed`]
//! node: pure, so the CLI and the tests share them.

use std::collections::BTreeMap;

use railyard_core::config::mig_parted::GpuTarget;
use railyard_core::mig::{GpuGoal, MigTarget, WantedInstance};

use crate::observe::Observed;

/// What `assert` found different, one line per GPU; empty = the node matches.
/// As in mig-parted, instances are compared by profile counts (not
/// placements), and `mode_only` compares only the MIG mode.
pub fn assert_mismatches(observed: &Observed, targets: &BTreeMap<u32, GpuTarget>, mode_only: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (gpu, t) in targets {
        let Some(g) = observed.gpu(*gpu) else {
            out.push(format!("GPU {gpu}: not present"));
            continue;
        };
        let on = g.mode.current && g.family.is_some();
        match t {
            GpuTarget::Untouched => {}
            GpuTarget::MigDisabled if on => out.push(format!("GPU {gpu}: MIG is enabled, wanted disabled")),
            GpuTarget::MigDisabled => {}
            GpuTarget::MigEnabled(_) if !on => out.push(format!("GPU {gpu}: MIG is disabled, wanted enabled")),
            GpuTarget::MigEnabled(_) if mode_only => {}
            GpuTarget::MigEnabled(layout) => {
                let mut have: BTreeMap<&str, u32> = BTreeMap::new();
                for i in &g.instances {
                    *have.entry(i.profile).or_default() += 1;
                }
                let want = layout.counts();
                if have != want {
                    out.push(format!("GPU {gpu}: has {}, wanted {}", counts(&have), counts(&want)));
                }
            }
        }
    }
    out
}

fn counts(c: &BTreeMap<&str, u32>) -> String {
    if c.is_empty() {
        return "no instances".into();
    }
    c.iter()
        .map(|(p, n)| format!("{n}x{p}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// `--mode-only`: the MIG modes of `targets`, keeping every current
/// instance where it is.
pub fn mode_only_target(observed: &Observed, targets: &BTreeMap<u32, GpuTarget>) -> MigTarget {
    let mut t = MigTarget::default();
    for (gpu, target) in targets {
        let goal = match target {
            GpuTarget::Untouched => continue,
            GpuTarget::MigDisabled => GpuGoal::Disabled,
            GpuTarget::MigEnabled(_) => GpuGoal::Enabled(
                observed
                    .gpu(*gpu)
                    .map(|g| {
                        g.instances
                            .iter()
                            .map(|i| WantedInstance::at(i.profile, i.placement.start))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        };
        t.gpus.insert(*gpu, goal);
    }
    t
}

/// `export`: the current layout as a mig-parted config named `current`,
/// GPUs with the same mode and counts in one entry, in mig-parted's YAML.
pub fn export_yaml(observed: &Observed) -> String {
    let mut groups: Vec<(bool, BTreeMap<&str, u32>, Vec<u32>)> = Vec::new();
    for g in &observed.gpus {
        let on = g.mode.current && g.family.is_some();
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for i in &g.instances {
            *counts.entry(i.profile).or_default() += 1;
        }
        match groups.iter_mut().find(|(m, c, _)| *m == on && *c == counts) {
            Some((_, _, idx)) => idx.push(g.index),
            None => groups.push((on, counts, vec![g.index])),
        }
    }
    let mut y = String::from("version: v1\nmig-configs:\n  current:\n");
    for (on, counts, idx) in &groups {
        let idx: Vec<String> = idx.iter().map(u32::to_string).collect();
        y.push_str(&format!("  - devices: [{}]\n    mig-enabled: {on}\n", idx.join(", ")));
        if *on {
            if counts.is_empty() {
                y.push_str("    mig-devices: {}\n");
            } else {
                y.push_str("    mig-devices:\n");
                for (p, n) in counts {
                    y.push_str(&format!("      \"{p}\": {n}\n"));
                }
            }
        }
    }
    y
}
