//! Workload variants generated from any pod list, seeded and reproducible:
//! GPU-model constraints (`--gpu-spec-share`) and the other families of the
//! FGD paper's workloads (share of CPU-only pods, share of GPU request from
//! shared-GPU pods, share from multi-GPU pods). Our own construction, not
//! the trace authors' variants (those are not shipped here).

use railyard_core::packing::{MILLI, ModelId, ModelTable, NodeSpec, SplitMix64};

use crate::trace::TracePod;

/// How single-model constraints are spread over the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecWeight {
    /// In proportion to each model's GPUs in the cluster.
    Gpus,
    /// In proportion to each model's nodes (favours small-node models such
    /// as 2-GPU `T4` nodes over 8-GPU ones; a held-out distribution).
    Nodes,
}

/// Options for [`constrain`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpecOptions {
    /// Share of GPU pods given a model constraint, 0..=1.
    pub share: f64,
    pub seed: u64,
    pub weight: SpecWeight,
    /// Share of constrained pods whose constraint is a set of several models.
    pub multi: f64,
    /// Weight of a multi-GPU pod against a 1-GPU pod when choosing which
    /// pods are constrained (constraints fall almost only on 1-GPU pods).
    pub multi_gpu_weight: f64,
}

impl SpecOptions {
    pub fn new(share: f64, seed: u64) -> Self {
        SpecOptions {
            share,
            seed,
            weight: SpecWeight::Gpus,
            multi: 0.1,
            multi_gpu_weight: 0.02,
        }
    }
}

/// Models, their weights, and for each model the nodes' largest GPU count,
/// CPU and memory (a constraint only names models that can host the pod).
struct ModelInfo {
    id: ModelId,
    weight: f64,
    nodes: Vec<(u8, u32, u32)>,
}

fn model_info(nodes: &[NodeSpec], weight: SpecWeight) -> Vec<ModelInfo> {
    let mut out: Vec<ModelInfo> = Vec::new();
    for n in nodes {
        let Some(m) = n.model.filter(|_| n.gpus > 0) else {
            continue;
        };
        let i = match out.iter().position(|x| x.id == m) {
            Some(i) => i,
            None => {
                out.push(ModelInfo {
                    id: m,
                    weight: 0.0,
                    nodes: Vec::new(),
                });
                out.len() - 1
            }
        };
        out[i].weight += match weight {
            SpecWeight::Gpus => n.gpus as f64,
            SpecWeight::Nodes => 1.0,
        };
        out[i].nodes.push((n.gpus, n.cpu_milli, n.memory_mib));
    }
    out.sort_by_key(|m| m.id);
    out
}

fn hosts(m: &ModelInfo, p: &TracePod) -> bool {
    m.nodes
        .iter()
        .any(|&(g, c, mem)| g >= p.num_gpu && c >= p.cpu_milli && mem >= p.memory_mib)
}

/// Index drawn in proportion to `w` (all zero: none).
fn weighted(rng: &mut SplitMix64, w: &[f64]) -> Option<usize> {
    let total: f64 = w.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (i, &v) in w.iter().enumerate() {
        if x < v {
            return Some(i);
        }
        x -= v;
    }
    w.iter().rposition(|&v| v > 0.0)
}

/// Gives `opts.share` of the GPU pods (those without a constraint yet) a
/// `gpu_spec`: a single model drawn in proportion to `opts.weight` among the
/// models that can host the pod, or, for `opts.multi` of them, one of a few
/// multi-model sets (2, 2, 3 and 5 models, drawn once per seed by the square
/// roots of the weights) that can. Pods are picked without replacement, 1-GPU pods
/// (whole and shared) `1 / multi_gpu_weight` times likelier than multi-GPU
/// ones. Returns how many pods were constrained.
pub fn constrain(pods: &mut [TracePod], nodes: &[NodeSpec], models: &ModelTable, opts: &SpecOptions) -> usize {
    let info = model_info(nodes, opts.weight);
    if info.is_empty() || opts.share <= 0.0 {
        return 0;
    }
    let mut rng = SplitMix64::new(opts.seed ^ 0x6770_7573_7065_6321);
    // The seed's catalog of multi-model sets, drawn by the square root of
    // the weights so that sets without the largest model occur too.
    let set_weights: Vec<f64> = info.iter().map(|m| m.weight.sqrt()).collect();
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for size in [2usize, 2, 3, 5] {
        if size > info.len() {
            continue;
        }
        let mut w = set_weights.clone();
        let mut set = Vec::new();
        while set.len() < size {
            let Some(i) = weighted(&mut rng, &w) else { break };
            w[i] = 0.0;
            set.push(i);
        }
        set.sort_unstable();
        if set.len() == size && !sets.contains(&set) {
            sets.push(set);
        }
    }
    // Efraimidis–Spirakis keys: the k largest `u^(1/w)` are a weighted
    // sample without replacement.
    let mut keyed: Vec<(f64, usize)> = pods
        .iter()
        .enumerate()
        .filter(|(_, p)| p.num_gpu > 0 && p.gpu_spec.is_empty())
        .map(|(i, p)| {
            let w = if p.num_gpu == 1 { 1.0 } else { opts.multi_gpu_weight };
            let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (u.powf(1.0 / w.max(1e-9)), i)
        })
        .collect();
    let gpu_pods = pods.iter().filter(|p| p.num_gpu > 0).count();
    let k = ((opts.share.min(1.0) * gpu_pods as f64).round() as usize).min(keyed.len());
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut done = 0;
    for &(_, i) in &keyed[..k] {
        let p = &pods[i];
        let use_set = !sets.is_empty() && ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < opts.multi;
        let spec: Vec<usize> = if use_set {
            let fit: Vec<f64> = sets
                .iter()
                .map(|s| {
                    if s.iter().any(|&m| hosts(&info[m], p)) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            match weighted(&mut rng, &fit) {
                Some(s) => sets[s].clone(),
                None => continue,
            }
        } else {
            let w: Vec<f64> = info.iter().map(|m| if hosts(m, p) { m.weight } else { 0.0 }).collect();
            match weighted(&mut rng, &w) {
                Some(m) => vec![m],
                None => continue,
            }
        };
        let names: Vec<&str> = spec.iter().map(|&m| models.name(info[m].id)).collect();
        pods[i].gpu_spec = names.join("|");
        done += 1;
    }
    done
}

/// Target shares for [`reshape`]; `None` leaves that share as it is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Family {
    /// Share of pods that are CPU-only (upstream `cpuXYZ`: XY.Z%).
    pub cpu_pods: Option<f64>,
    /// Share of the GPU request from shared-GPU pods (upstream `gpushareXX`).
    pub share_gpu: Option<f64>,
    /// Share of the GPU request from multi-GPU pods (upstream `multigpuXX`).
    pub multi_gpu: Option<f64>,
}

/// Which pods a step replaces or copies.
type Pick = fn(&TracePod) -> bool;

fn is_share(p: &TracePod) -> bool {
    p.num_gpu == 1 && p.gpu_milli < MILLI
}

fn gpu_milli(p: &TracePod) -> u64 {
    p.num_gpu as u64 * p.gpu_milli as u64
}

/// A random pod of the original list matching `pred` (a copy).
fn draw(rng: &mut SplitMix64, from: &[TracePod], pred: impl Fn(&TracePod) -> bool) -> Option<TracePod> {
    let pool: Vec<&TracePod> = from.iter().filter(|p| pred(p)).collect();
    (!pool.is_empty()).then(|| pool[rng.below(pool.len() as u64) as usize].clone())
}

/// Reshapes a pod list towards the family's target shares by copying pods
/// of the original list (seeded): multi-GPU share by adding copies of its
/// multi-GPU pods (or removing them), shared-GPU share by replacing
/// whole-GPU pods with copies of its shared pods (or the reverse), CPU-only
/// share by adding or removing CPU-only pods. Applied in that order, each
/// step to the previous one's result. A share the list has no pods for is
/// left as it is.
pub fn reshape(pods: &[TracePod], family: &Family, seed: u64) -> Vec<TracePod> {
    let orig = pods;
    let mut rng = SplitMix64::new(seed ^ 0x6661_6d69_6c79);
    let mut out = pods.to_vec();
    if let Some(target) = family.multi_gpu {
        let target = target.clamp(0.0, 0.99);
        let share = |v: &[TracePod]| {
            let all: u64 = v.iter().map(gpu_milli).sum();
            let multi: u64 = v.iter().filter(|p| p.num_gpu > 1).map(gpu_milli).sum();
            multi as f64 / all.max(1) as f64
        };
        while share(&out) < target {
            match draw(&mut rng, orig, |p| p.num_gpu > 1) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        while share(&out) > target {
            let idx: Vec<usize> = (0..out.len()).filter(|&i| out[i].num_gpu > 1).collect();
            if idx.is_empty() {
                break;
            }
            out.swap_remove(idx[rng.below(idx.len() as u64) as usize]);
        }
    }
    if let Some(target) = family.share_gpu {
        let target = target.clamp(0.0, 1.0);
        let share = |v: &[TracePod]| {
            let all: u64 = v.iter().map(gpu_milli).sum();
            let s: u64 = v.iter().filter(|p| is_share(p)).map(gpu_milli).sum();
            s as f64 / all.max(1) as f64
        };
        // Replace one pod at a time; stop at the target or when nothing is
        // left to replace.
        loop {
            let now = share(&out);
            let (from, to): (Pick, Pick) = if now < target {
                (|p| p.num_gpu > 0 && !is_share(p), is_share)
            } else if now > target {
                (is_share, |p| p.num_gpu == 1 && !is_share(p))
            } else {
                break;
            };
            let idx: Vec<usize> = (0..out.len()).filter(|&i| from(&out[i])).collect();
            let Some(new) = draw(&mut rng, orig, to) else { break };
            if idx.is_empty() {
                break;
            }
            let i = idx[rng.below(idx.len() as u64) as usize];
            out[i] = new;
            let after = share(&out);
            if (now < target && after >= target) || (now > target && after <= target) {
                break;
            }
        }
    }
    if let Some(target) = family.cpu_pods {
        let target = target.clamp(0.0, 0.95);
        let share = |v: &[TracePod]| v.iter().filter(|p| p.num_gpu == 0).count() as f64 / v.len().max(1) as f64;
        while share(&out) < target {
            match draw(&mut rng, orig, |p| p.num_gpu == 0) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        while share(&out) > target {
            let idx: Vec<usize> = (0..out.len()).filter(|&i| out[i].num_gpu == 0).collect();
            if idx.is_empty() {
                break;
            }
            out.swap_remove(idx[rng.below(idx.len() as u64) as usize]);
        }
    }
    out
}

/// The pod list as CSV in the 11-column openb layout (times left 0).
pub fn to_csv(pods: &[TracePod]) -> String {
    let mut s = String::from(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n",
    );
    for (i, p) in pods.iter().enumerate() {
        s.push_str(&format!(
            "openb-pod-{i:04},{},{},{},{},{},LS,Running,0,0,0\n",
            p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_milli, p.gpu_spec
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{parse_nodes, parse_pods};

    fn cluster() -> (Vec<NodeSpec>, ModelTable) {
        let text = "sn,cpu_milli,memory_mib,gpu,model
a,96000,393216,8,G2
b,96000,393216,8,G2
c,104000,393216,2,T4
d,16000,65536,2,P100
e,96000,393216,8,V100M32
";
        parse_nodes(text).unwrap()
    }

    fn pods(n: usize) -> Vec<TracePod> {
        (0..n)
            .map(|i| TracePod {
                name: format!("p{i}"),
                line: i + 2,
                cpu_milli: if i % 7 == 0 { 32_000 } else { 4000 },
                memory_mib: 1024,
                num_gpu: match i % 10 {
                    0 => 0,
                    1 => 8,
                    _ => 1,
                },
                gpu_milli: if i % 3 == 0 { 500 } else { 1000 },
                gpu_spec: String::new(),
            })
            .map(|mut p| {
                if p.num_gpu != 1 {
                    p.gpu_milli = if p.num_gpu == 0 { 0 } else { 1000 };
                }
                p
            })
            .collect()
    }

    #[test]
    fn constraints_hit_the_share_and_are_seeded() {
        let (nodes, models) = cluster();
        let mut a = pods(2000);
        let n = constrain(&mut a, &nodes, &models, &SpecOptions::new(0.2, 7));
        let gpu = a.iter().filter(|p| p.num_gpu > 0).count();
        assert!((n as f64 - 0.2 * gpu as f64).abs() <= 2.0, "{n} of {gpu}");
        let mut b = pods(2000);
        constrain(&mut b, &nodes, &models, &SpecOptions::new(0.2, 7));
        assert_eq!(a, b);
        let mut c = pods(2000);
        constrain(&mut c, &nodes, &models, &SpecOptions::new(0.2, 8));
        assert_ne!(a, c);
        // Almost only 1-GPU pods; never CPU-only ones; every spec can host
        // its pod (the 32-core P100 pods and 8-GPU T4 pods do not exist).
        let spec: Vec<&TracePod> = a.iter().filter(|p| !p.gpu_spec.is_empty()).collect();
        assert!(spec.iter().all(|p| p.num_gpu > 0));
        assert!(spec.iter().filter(|p| p.num_gpu > 1).count() * 20 < spec.len());
        for p in &spec {
            let ok = p.gpu_spec.split('|').any(|m| {
                nodes
                    .iter()
                    .any(|n| n.model == models.get(m) && n.gpus >= p.num_gpu && n.cpu_milli >= p.cpu_milli)
            });
            assert!(ok, "{p:?}");
        }
        // Single models mostly, in proportion to GPUs: G2 (16 of 28 GPUs)
        // most often; some sets.
        let g2 = spec.iter().filter(|p| p.gpu_spec == "G2").count();
        let sets = spec.iter().filter(|p| p.gpu_spec.contains('|')).count();
        assert!(g2 * 3 > spec.len(), "{g2} of {}", spec.len());
        assert!(sets > 0 && sets * 5 < spec.len(), "{sets}");
    }

    #[test]
    fn reshape_hits_family_targets() {
        let base = pods(1000);
        let f = |v: &[TracePod]| {
            let all: u64 = v.iter().map(gpu_milli).sum();
            (
                v.iter().filter(|p| p.num_gpu == 0).count() as f64 / v.len() as f64,
                v.iter().filter(|p| is_share(p)).map(gpu_milli).sum::<u64>() as f64 / all as f64,
                v.iter().filter(|p| p.num_gpu > 1).map(gpu_milli).sum::<u64>() as f64 / all as f64,
            )
        };
        let out = reshape(
            &base,
            &Family {
                cpu_pods: Some(0.25),
                ..Family::default()
            },
            1,
        );
        assert!((f(&out).0 - 0.25).abs() < 0.01);
        let out = reshape(
            &base,
            &Family {
                share_gpu: Some(0.6),
                ..Family::default()
            },
            1,
        );
        assert!((f(&out).1 - 0.6).abs() < 0.02, "{:?}", f(&out));
        let out = reshape(
            &base,
            &Family {
                multi_gpu: Some(0.2),
                ..Family::default()
            },
            1,
        );
        assert!((f(&out).2 - 0.2).abs() < 0.03, "{:?}", f(&out));
        assert_eq!(
            out,
            reshape(
                &base,
                &Family {
                    multi_gpu: Some(0.2),
                    ..Family::default()
                },
                1
            )
        );
        // The CSV round-trips.
        let back = parse_pods(&to_csv(&out)).unwrap();
        assert_eq!(back.len(), out.len());
        assert_eq!(back[3].num_gpu, out[3].num_gpu);
    }
}
