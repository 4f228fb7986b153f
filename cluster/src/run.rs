//! Runs the script through a [`Cluster`] and reports what was placed where
//! and why, and a summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::cluster::{Cluster, fleet};
use crate::scheduler::Outcome;
use crate::script::{NAMESPACE, POD_GROUP_LABEL, Step, script};

/// Longest a step may take to settle.
const SETTLE: Duration = Duration::from_secs(60);
/// Quiet passes after which a step is settled.
const QUIET_PASSES: u64 = 3;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub nodes: usize,
    pub machines: PathBuf,
}

/// Devices of one resource on one node: allocated / healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub node: String,
    pub resource: String,
    pub allocated: usize,
    pub total: usize,
}

/// What the run ended with.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Pods created by the script.
    pub submitted: usize,
    /// Pods bound to a node, in order (pod, node).
    pub placed: Vec<(String, String)>,
    /// Pods still pending at the end, with kube-scheduler's message.
    pub pending: Vec<(String, String)>,
    /// Pods the kubelet rejected, with its reason.
    pub failed: Vec<(String, String)>,
    /// Gangs with some but not all members bound at a step's end.
    pub partial_gangs: Vec<String>,
    pub usage: Vec<Usage>,
}

fn is_bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty())
}

fn key_of(pod: &Value) -> String {
    format!("{NAMESPACE}/{}", pod["metadata"]["name"].as_str().unwrap_or_default())
}

/// kube-scheduler's message for a pod it could not place.
fn why_pending<'a>(outcomes: &'a BTreeMap<String, Outcome>, key: &str) -> Option<&'a str> {
    match outcomes.get(key) {
        Some(Outcome::Unschedulable(m) | Outcome::Error(m)) => Some(m),
        _ => None,
    }
}

/// Whether some pod is bound but its kubelet has not written a phase yet.
fn admitting(c: &Cluster) -> bool {
    c.api
        .list("v1", "Pod")
        .iter()
        .any(|p| is_bound(p) && p["status"]["phase"].as_str().unwrap_or("Pending") == "Pending")
}

/// Waits until the step's effects are over: every bound pod admitted, and
/// [`QUIET_PASSES`] scheduling passes in a row that bound nothing.
async fn settle(c: &Cluster) -> Result<()> {
    loop {
        c.wait_until(SETTLE, "every bound pod admitted by its kubelet", |c| !admitting(c))
            .await?;
        let before = c.scheduler.placements().len();
        c.passes(QUIET_PASSES).await?;
        if c.scheduler.placements().len() == before && !admitting(c) {
            return Ok(());
        }
    }
}

fn members_by_gang(pods: &[Value]) -> BTreeMap<String, (usize, usize)> {
    let mut g: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in pods {
        if let Some(job) = p["metadata"]["labels"][POD_GROUP_LABEL].as_str() {
            let e = g.entry(job.to_string()).or_default();
            e.0 += 1;
            if is_bound(p) {
                e.1 += 1;
            }
        }
    }
    g
}

/// One placement line: node, devices, CDI ids and why.
fn describe(c: &Cluster, key: &str, node: &str, score: i64, passed: usize) -> String {
    let name = key.split_once('/').map_or(key, |(_, n)| n);
    let pod = c.pod(NAMESPACE, name).unwrap_or(Value::Null);
    let ann = &pod["metadata"]["annotations"];
    let mut line = format!("  {key} -> {node}");
    let admission = c.node(node).and_then(|n| n.admissions.get(key));
    match ann["railyard.dev/allocated-gpus"].as_str() {
        Some(g) => {
            let _ = write!(line, "  GPUs {g}");
        }
        None => {
            let ids: Vec<String> = admission
                .iter()
                .flat_map(|a| a.devices.iter().flat_map(|(_, _, ids)| ids.clone()))
                .collect();
            if !ids.is_empty() {
                let _ = write!(line, "  devices {}", ids.join(","));
            }
        }
    }
    if let Some(a) = &admission
        && !a.cdi_devices.is_empty()
    {
        // Eight 60-character names would hide the rest of the line.
        match a.cdi_devices.as_slice() {
            [one] => {
                let _ = write!(line, "  CDI {one}");
            }
            [first, rest @ ..] => {
                let _ = write!(line, "  CDI {first} +{} more", rest.len());
            }
            [] => {}
        }
    }
    let why = match ann["railyard.dev/gang-slot"].as_str() {
        Some(slot) => format!(
            "gang {} slot {slot}",
            pod["metadata"]["labels"][POD_GROUP_LABEL].as_str().unwrap_or("?")
        ),
        None => format!("best score {score} of {passed} node(s) the extender passed"),
    };
    let _ = write!(line, "  ({why})");
    line
}

/// Runs the script on a fresh cluster of `opts.nodes` nodes; `out` gets
/// the report as it happens.
pub async fn run(opts: &RunOptions, out: &mut dyn std::io::Write) -> Result<Summary> {
    let specs = fleet(&opts.machines, opts.nodes)?;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &specs {
        *kinds.entry(s.machine.name.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}x {k}")).collect();
    writeln!(out, "cluster: {} nodes ({})", specs.len(), kinds.join(", "))?;
    let c = Cluster::start(specs).await?;
    writeln!(
        out,
        "every device plugin registered, every Node advertises its GPUs, the extender has their topology\n"
    )?;
    let mut summary = Summary::default();
    let mut shown = 0;
    for (i, step) in script(&c.nodes.iter().map(|n| n.spec.clone()).collect::<Vec<_>>())
        .iter()
        .enumerate()
    {
        writeln!(out, "step {}: {}", i + 1, step.title())?;
        match step {
            Step::Submit { objects, .. } => {
                for o in objects {
                    c.create(o.clone())?;
                    if o["kind"] == "Pod" {
                        summary.submitted += 1;
                    }
                }
            }
            Step::Finish { pods, .. } => {
                for p in pods {
                    c.finish_pod(NAMESPACE, p).await?;
                }
            }
        }
        settle(&c).await?;
        let placements = c.scheduler.placements();
        for p in &placements[shown..] {
            writeln!(out, "{}", describe(&c, &p.pod, &p.node, p.score, p.passed))?;
        }
        shown = placements.len();
        let pods = c.api.list("v1", "Pod");
        for (gang, (members, bound)) in members_by_gang(&pods) {
            if bound > 0 && bound < members {
                summary
                    .partial_gangs
                    .push(format!("{NAMESPACE}/{gang} at step {}", i + 1));
            }
        }
        let outcomes = c.scheduler.outcomes();
        for p in pods.iter().filter(|p| !is_bound(p)) {
            let key = key_of(p);
            if let Some(msg) = why_pending(&outcomes, &key) {
                writeln!(out, "  {key} pending: {msg}")?;
            }
        }
        writeln!(out)?;
    }
    for p in c.scheduler.placements() {
        summary.placed.push((p.pod, p.node));
    }
    let outcomes = c.scheduler.outcomes();
    for p in c.api.list("v1", "Pod") {
        let key = key_of(&p);
        if p["status"]["phase"] == "Failed" {
            let why = format!(
                "{}: {}",
                p["status"]["reason"].as_str().unwrap_or_default(),
                p["status"]["message"].as_str().unwrap_or_default()
            );
            summary.failed.push((key, why));
        } else if !is_bound(&p) {
            let why = why_pending(&outcomes, &key).unwrap_or("not tried yet").to_string();
            summary.pending.push((key, why));
        }
    }
    for n in &c.nodes {
        for r in n.kubelet.resources() {
            if let Some(p) = n.kubelet.plugin(&r) {
                summary.usage.push(Usage {
                    node: n.name().to_string(),
                    resource: r,
                    allocated: p.allocated.len(),
                    total: p.healthy().len(),
                });
            }
        }
    }
    write!(out, "{}", report(&summary))?;
    Ok(summary)
}

/// The summary as printed.
pub fn report(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "summary");
    let _ = writeln!(o, "  pods submitted: {}", s.submitted);
    let _ = writeln!(o, "  bindings: {} (pods of finished jobs included)", s.placed.len());
    let _ = writeln!(o, "  pending at the end: {}", s.pending.len());
    for (p, why) in &s.pending {
        let _ = writeln!(o, "    {p}: {why}");
    }
    let _ = writeln!(o, "  rejected by a kubelet: {}", s.failed.len());
    for (p, why) in &s.failed {
        let _ = writeln!(o, "    {p}: {why}");
    }
    let _ = writeln!(o, "  partially placed gangs: {}", s.partial_gangs.len());
    for g in &s.partial_gangs {
        let _ = writeln!(o, "    {g}");
    }
    let mut by_resource: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for u in &s.usage {
        let e = by_resource.entry(u.resource.as_str()).or_default();
        e.0 += u.allocated;
        e.1 += u.total;
    }
    let _ = writeln!(o, "  device allocation at the end (allocated / healthy):");
    for (r, (a, t)) in by_resource {
        let pct = if t == 0 { 0.0 } else { 100.0 * a as f64 / t as f64 };
        let _ = writeln!(o, "    {r}: {a} / {t} ({pct:.0}%)");
    }
    o
}
