//! GPU fragmentation as the FGD paper (Weng et al., ATC'23) defines it.
//!
//! For a task shape `t`, a node's idle GPU milli is a fragment when `t`
//! cannot use it: all of it if the node cannot host `t` at all (too little
//! CPU, wrong model, not enough GPU, or `t` asks for no GPU), otherwise the
//! idle milli on GPUs too small for `t`. A node's fragmentation is the
//! expectation over the workload's typical task distribution; the cluster's
//! fragmentation ratio is the fragmented share of all idle GPU milli.
//! Memory is not part of the paper's measure and is left out here too.

use std::collections::HashMap;

use super::state::{MILLI, ModelMask, Node, PodRequest};

/// One typical task shape and its popularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskType {
    pub cpu_milli: u32,
    /// 0 unless the distribution was built with memory.
    pub memory_mib: u32,
    pub num_gpu: u8,
    pub gpu_milli: u16,
    pub gpu_spec: ModelMask,
    pub weight: f64,
}

/// Tasks sharing a GPU shape; their CPU requests sorted ascending with the
/// cumulative weight, so "weight of tasks whose CPU fits" is a binary search.
#[derive(Debug, Clone)]
struct Group {
    num_gpu: u8,
    gpu_milli: u16,
    gpu_spec: ModelMask,
    /// `(cpu, memory, weight)` of each task in the group.
    tasks: Vec<(u32, u32, f64)>,
    total: f64,
}

/// How [`TaskDistribution::with_options`] builds the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistOptions {
    /// Share of pods (by count) the most popular shapes must cover.
    pub popularity: f64,
    pub include_cpu_only: bool,
    /// Weight a shape by its GPU request instead of its pod count (CPU-only
    /// shapes weigh as a tenth of a GPU).
    pub weight_by_gpu: bool,
    /// Shapes carry memory; a node short of memory cannot host them.
    pub with_memory: bool,
}

impl DistOptions {
    /// The FGD paper's setting.
    pub const PAPER: DistOptions = DistOptions {
        popularity: 0.95,
        include_cpu_only: true,
        weight_by_gpu: false,
        with_memory: false,
    };
}

/// The workload's typical tasks, as the FGD simulator builds them: shapes
/// `(cpu, gpu_milli, num_gpu, gpu_spec)` counted over the pod list, most
/// popular first, cut once they cover `popularity` of all pods, renormalized.
#[derive(Debug, Clone)]
pub struct TaskDistribution {
    types: Vec<TaskType>,
    cpu_only: f64,
    groups: Vec<Group>,
}

impl TaskDistribution {
    /// `popularity` in (0, 1]; the paper's experiments use 0.95 with CPU-only
    /// pods included.
    pub fn from_requests<'a>(
        pods: impl IntoIterator<Item = &'a PodRequest>,
        popularity: f64,
        include_cpu_only: bool,
    ) -> Self {
        Self::with_options(
            pods,
            DistOptions {
                popularity,
                include_cpu_only,
                weight_by_gpu: false,
                with_memory: false,
            },
        )
    }

    pub fn with_options<'a>(pods: impl IntoIterator<Item = &'a PodRequest>, o: DistOptions) -> Self {
        let (popularity, include_cpu_only) = (o.popularity, o.include_cpu_only);
        let mut counts: HashMap<(u32, u32, u16, u8, ModelMask), u64> = HashMap::new();
        let mut total = 0u64;
        for p in pods {
            if !include_cpu_only && !p.wants_gpu() {
                continue;
            }
            let mem = if o.with_memory { p.memory_mib } else { 0 };
            let key = if p.wants_gpu() {
                (p.cpu_milli, mem, p.gpu_milli, p.num_gpu, p.gpu_spec)
            } else {
                (p.cpu_milli, mem, 0, 0, ModelMask::ANY)
            };
            *counts.entry(key).or_default() += 1;
            total += 1;
        }
        let mut shapes: Vec<_> = counts.into_iter().collect();
        // Most popular first; ties in key order so the cut is deterministic.
        shapes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let want = popularity.clamp(0.0, 1.0) * total as f64;
        let mut kept = Vec::new();
        let mut cum = 0u64;
        for (key, n) in shapes {
            if (cum as f64) >= want && !kept.is_empty() {
                break;
            }
            cum += n;
            kept.push((key, n));
        }
        let types = kept
            .into_iter()
            .map(|((cpu_milli, memory_mib, gpu_milli, num_gpu, gpu_spec), n)| {
                let per = if !o.weight_by_gpu {
                    1.0
                } else if num_gpu == 0 {
                    0.1
                } else {
                    num_gpu as f64 * gpu_milli as f64 / MILLI as f64
                };
                TaskType {
                    cpu_milli,
                    memory_mib,
                    num_gpu,
                    gpu_milli,
                    gpu_spec,
                    weight: n as f64 * per,
                }
            })
            .collect();
        Self::from_types(types)
    }

    /// From explicit shapes; weights are normalized to sum to 1.
    pub fn from_types(mut types: Vec<TaskType>) -> Self {
        let sum: f64 = types.iter().map(|t| t.weight).sum();
        if sum > 0.0 {
            for t in &mut types {
                t.weight /= sum;
            }
        }
        Self::from_weighted_types(types)
    }

    /// From explicit shapes with their weights as given (not normalized):
    /// a class's mix in [`ConstrainedMix`](super::constraints::ConstrainedMix)
    /// weighs tasks by arrivals per unit of the class's capacity.
    pub fn from_weighted_types(types: Vec<TaskType>) -> Self {
        let mut cpu_only = 0.0;
        let mut groups: Vec<Group> = Vec::new();
        let mut sorted = types.clone();
        sorted.sort_by_key(|t| t.cpu_milli);
        for t in &sorted {
            if t.num_gpu == 0 || t.gpu_milli == 0 {
                cpu_only += t.weight;
                continue;
            }
            let g = match groups
                .iter_mut()
                .position(|g| g.num_gpu == t.num_gpu && g.gpu_milli == t.gpu_milli && g.gpu_spec == t.gpu_spec)
            {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group {
                        num_gpu: t.num_gpu,
                        gpu_milli: t.gpu_milli,
                        gpu_spec: t.gpu_spec,
                        tasks: Vec::new(),
                        total: 0.0,
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            g.total += t.weight;
            g.tasks.push((t.cpu_milli, t.memory_mib, t.weight));
        }
        TaskDistribution {
            types,
            cpu_only,
            groups,
        }
    }

    pub fn types(&self) -> &[TaskType] {
        &self.types
    }

    /// Expected fragmented GPU milli of `node` under this distribution.
    pub fn node_frag(&self, node: &Node) -> f64 {
        let idle = node.gpu_idle_milli() as f64;
        if idle == 0.0 {
            return 0.0;
        }
        let mut frag = self.cpu_only * idle;
        for g in &self.groups {
            // Weight of this group's tasks whose CPU and memory fit the node.
            let fit_w: f64 = g
                .tasks
                .iter()
                .filter(|&&(c, m, _)| c <= node.cpu_left && m <= node.mem_left)
                .map(|t| t.2)
                .sum();
            if fit_w == 0.0 || !g.gpu_spec.allows(node.model) {
                frag += g.total * idle;
                continue;
            }
            frag += (g.total - fit_w) * idle + fit_w * group_gpu_frag(node, g.num_gpu, g.gpu_milli, idle);
        }
        frag
    }

    /// Fragmented and idle GPU milli over the cluster.
    pub fn cluster_frag(&self, nodes: &[Node]) -> (f64, f64) {
        nodes.iter().fold((0.0, 0.0), |(f, i), n| {
            (f + self.node_frag(n), i + n.gpu_idle_milli() as f64)
        })
    }
}

/// Idle milli a task of `num_gpu × gpu_milli` cannot use on `node`, given
/// that CPU and model fit.
fn group_gpu_frag(node: &Node, num_gpu: u8, gpu_milli: u16, idle: f64) -> f64 {
    let gpus = node.gpus();
    if num_gpu == 1 && gpu_milli < MILLI {
        // GPUs too small for the task are fragments; if none is big enough
        // that is every idle GPU, as the definition wants.
        let mut f = 0u32;
        match &node.mig {
            None => {
                for &l in gpus {
                    if l < gpu_milli {
                        f += l as u32;
                    }
                }
            }
            Some(mig) => {
                for (i, &l) in gpus.iter().enumerate() {
                    if !mig[i].fits_milli(gpu_milli) {
                        f += l as u32;
                    }
                }
            }
        }
        f as f64
    } else {
        let mut free = 0u8;
        let mut partial = 0u32;
        for &l in gpus {
            if l == MILLI {
                free += 1;
            } else {
                partial += l as u32;
            }
        }
        if free >= num_gpu { partial as f64 } else { idle }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::state::{ModelId, NodeSpec};

    fn node(cpu: u32, gpus: &[u16]) -> Node {
        let mut n = Node::new(&NodeSpec {
            name: "n".into(),
            cpu_milli: cpu,
            memory_mib: 1 << 20,
            gpus: gpus.len() as u8,
            model: Some(ModelId(0)),
        });
        n.gpu_left[..gpus.len()].copy_from_slice(gpus);
        n
    }

    fn t(cpu: u32, num_gpu: u8, gpu_milli: u16, weight: f64) -> TaskType {
        TaskType {
            cpu_milli: cpu,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: ModelMask::ANY,
            weight,
        }
    }

    #[test]
    fn single_share_task() {
        // Tasks want 500 milli: the 300-left GPU is a fragment, the 600 one is not.
        let d = TaskDistribution::from_types(vec![t(1000, 1, 500, 1.0)]);
        assert_eq!(d.node_frag(&node(8000, &[300, 600, 0])), 300.0);
        // Too little CPU: everything idle is a fragment.
        assert_eq!(d.node_frag(&node(500, &[300, 600, 0])), 900.0);
    }

    #[test]
    fn mixed_distribution_by_hand() {
        // 50% want 2 whole GPUs, 25% want 0.5 GPU, 25% are CPU-only.
        let d = TaskDistribution::from_types(vec![t(0, 2, 1000, 2.0), t(0, 1, 500, 1.0), t(0, 0, 0, 1.0)]);
        // GPUs left: 1000, 1000, 400. Idle 2400.
        // 2-GPU task: fits on the two free GPUs; the 400 is a fragment -> 400.
        // 0.5 task: 400 < 500 is a fragment -> 400.
        // CPU-only: all 2400.
        let n = node(8000, &[1000, 1000, 400]);
        let want = 0.5 * 400.0 + 0.25 * 400.0 + 0.25 * 2400.0;
        assert!((d.node_frag(&n) - want).abs() < 1e-9);
        // One free GPU only: the 2-GPU task cannot run, all 1400 idle is a fragment.
        let n = node(8000, &[1000, 0, 400]);
        let want = 0.5 * 1400.0 + 0.25 * 400.0 + 0.25 * 1400.0;
        assert!((d.node_frag(&n) - want).abs() < 1e-9);
    }

    #[test]
    fn popularity_cut_and_cluster_ratio() {
        let pods: Vec<PodRequest> = std::iter::repeat_n(PodRequest::gpus(1000, 1, 1, 500), 6)
            .chain(std::iter::repeat_n(PodRequest::gpus(1000, 1, 1, 1000), 3))
            .chain(std::iter::once(PodRequest::gpus(2000, 1, 1, 200)))
            .collect();
        let d = TaskDistribution::from_requests(&pods, 0.85, true);
        assert_eq!(d.types().len(), 2);
        assert!((d.types()[0].weight - 6.0 / 9.0).abs() < 1e-12);
        let nodes = [node(8000, &[300, 1000]), node(8000, &[0, 0])];
        let (frag, idle) = d.cluster_frag(&nodes);
        // 500-task: 300 is a fragment. 1-GPU task: 300 is a fragment too.
        assert!((frag - 300.0).abs() < 1e-9);
        assert_eq!(idle, 1300.0);
    }
}
