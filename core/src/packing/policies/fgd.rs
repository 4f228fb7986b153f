//! Fragmentation Gradient Descent (Weng et al., ATC'23): place the pod where
//! the node's expected fragmentation under the typical task distribution
//! grows least. Inside a node a fractional pod goes to the GPU with the
//! smallest growth. Scored as the simulator does — `sigmoid(Δ/1000)·100`
//! truncated to an integer, ties to the first node — so results compare
//! with the paper's.

use std::sync::Arc;

use super::{Policy, RandomArgMax};
use crate::packing::fragmentation::TaskDistribution;
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, GpuMask, MAX_GPUS, Node, Placement, PodRequest};

#[derive(Debug)]
pub struct Fgd {
    rng: SplitMix64,
    pub random_ties: bool,
    tasks: Arc<TaskDistribution>,
    cache: FragCache,
}

impl Fgd {
    pub fn new(seed: u64, tasks: Arc<TaskDistribution>) -> Self {
        Fgd {
            rng: SplitMix64::new(seed),
            random_ties: false,
            tasks,
            cache: FragCache::default(),
        }
    }
}

/// Each node's current fragmentation, recomputed only when its version moves.
#[derive(Debug, Default)]
pub(crate) struct FragCache {
    entries: Vec<(u32, f64)>,
}

impl FragCache {
    /// Node `i`'s fragmentation as `frag` measures it; callers that change
    /// the measure [`FragCache::clear`] first.
    pub(crate) fn get(&mut self, cluster: &Cluster, i: usize, frag: impl Fn(&Node) -> f64) -> f64 {
        if self.entries.len() != cluster.len() {
            self.entries = cluster
                .nodes
                .iter()
                .zip(&cluster.versions)
                .map(|(n, &v)| (v, frag(n)))
                .collect();
        }
        let (v, f) = &mut self.entries[i];
        if *v != cluster.versions[i] {
            *v = cluster.versions[i];
            *f = frag(&cluster.nodes[i]);
        }
        *f
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// For each distinct candidate GPU set on `node` (fractional pods: each
/// fitting GPU, skipping GPUs in the same state as one already tried;
/// others: the default GPUs) calls `f(gpus, node_after, frag_after)`.
pub(crate) fn for_each_option(
    tasks: &TaskDistribution,
    node: &Node,
    pod: &PodRequest,
    mut f: impl FnMut(GpuMask, &Node, f64),
) {
    let mut try_gpus = |gpus: GpuMask| {
        let mut next = *node;
        if next.apply(pod, gpus).is_ok() {
            f(gpus, &next, tasks.node_frag(&next));
        }
    };
    if pod.is_share() {
        let mut seen = [(u16::MAX, u32::MAX); MAX_GPUS];
        let mut n_seen = 0;
        for i in 0..node.gpu_count as usize {
            if !node.share_fits(i, pod) {
                continue;
            }
            let key = (node.gpu_left[i], node.mig.map_or(0, |m| mig_key(&m[i])));
            if seen[..n_seen].contains(&key) {
                continue;
            }
            seen[n_seen] = key;
            n_seen += 1;
            try_gpus(1 << i);
        }
    } else if let Some(gpus) = node.default_gpus(pod) {
        try_gpus(gpus);
    }
}

fn mig_key(g: &crate::packing::mig::MigGpu) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    g.hash(&mut h);
    h.finish() as u32
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Policy for Fgd {
    fn name(&self) -> &'static str {
        "fgd"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut best = RandomArgMax::new(self.random_ties);
        for (i, node) in cluster.nodes.iter().enumerate() {
            if !node.fits(pod) {
                continue;
            }
            let tasks = &self.tasks;
            let before = self.cache.get(cluster, i, |n| tasks.node_frag(n));
            // Best GPU inside the node: highest integer score, first on ties.
            let mut node_best: Option<(i64, GpuMask)> = None;
            for_each_option(&self.tasks, node, pod, |gpus, _, after| {
                let s = (sigmoid((before - after) / 1000.0) * 100.0) as i64;
                if node_best.is_none_or(|(b, _)| s > b) {
                    node_best = Some((s, gpus));
                }
            });
            if let Some((s, gpus)) = node_best {
                best.offer(&mut self.rng, s, Placement { node: i as u32, gpus });
            }
        }
        best.get()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn keeps_whole_gpus_for_whole_gpu_tasks() {
        // Workload: half 0.5-GPU, half 1-GPU tasks. Node 0 has a GPU with 500
        // left; putting the new 0.5 pod there creates no fragment, while an
        // empty node would lose a whole GPU for the 1-GPU tasks.
        let mut c = cluster(&[(64_000, 2), (64_000, 2)]);
        put(&mut c, 0, PodRequest::gpus(0, 0, 1, 500));
        let t = tasks(&[PodRequest::gpus(0, 0, 1, 500), PodRequest::gpus(0, 0, 1, 1000)]);
        let mut p = Fgd::new(1, t);
        let pod = PodRequest::gpus(0, 0, 1, 500);
        for _ in 0..10 {
            assert_eq!(p.place(&c, &pod), Some(Placement { node: 0, gpus: 0b01 }));
        }
    }

    #[test]
    fn avoids_leaving_a_stranded_sliver() {
        // Tasks all want 600 milli. A 600 pod on the GPU with 700 left would
        // strand 100; on the free GPU of node 1 it strands 400 of a GPU that
        // could take... nothing else either. FGD picks the smaller growth.
        let mut c = cluster(&[(64_000, 1), (64_000, 1)]);
        put(&mut c, 0, PodRequest::gpus(0, 0, 1, 300));
        let t = tasks(&[PodRequest::gpus(0, 0, 1, 600)]);
        let mut p = Fgd::new(1, t);
        let pod = PodRequest::gpus(0, 0, 1, 600);
        assert_eq!(p.place(&c, &pod).map(|p| p.node), Some(0));
    }
}
