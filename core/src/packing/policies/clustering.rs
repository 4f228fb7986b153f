//! GPU clustering: keep pods of the same GPU shape (fractional, 1, 2, 4, 8
//! GPUs) together. Nodes hosting only that shape score highest, then nodes
//! hosting it among others, then empty nodes, then nodes with other
//! shapes; within a band, fuller nodes first. Integer scores, random ties,
//! best-fit GPUs.

use super::{Policy, RandomArgMax, feasible};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, Placement, PodRequest, affinity_bit};

#[derive(Debug)]
pub struct GpuClustering {
    rng: SplitMix64,
    pub random_ties: bool,
}

impl GpuClustering {
    pub fn new(seed: u64) -> Self {
        GpuClustering {
            rng: SplitMix64::new(seed),
            random_ties: false,
        }
    }
}

impl Policy for GpuClustering {
    fn name(&self) -> &'static str {
        "clustering"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let tag = affinity_bit(pod);
        let mut best = RandomArgMax::new(self.random_ties);
        for (i, node, gpus) in feasible(cluster, pod) {
            let score = if tag == 0 {
                0
            } else {
                let fullness = 25 * (8000 - node.gpu_idle_milli() as i64) / 8000;
                let band = if node.affinity & tag != 0 {
                    if node.affinity == tag { 75 } else { 50 }
                } else if node.affinity == 0 {
                    25
                } else {
                    0
                };
                fullness + band
            };
            best.offer(&mut self.rng, score, Placement { node: i as u32, gpus });
        }
        best.get()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn joins_its_own_kind() {
        let mut c = cluster(&[(64_000, 8), (64_000, 8), (64_000, 8)]);
        put(&mut c, 0, PodRequest::gpus(0, 0, 2, 1000));
        put(&mut c, 2, PodRequest::gpus(0, 0, 1, 300));
        let mut p = GpuClustering::new(5);
        let share = PodRequest::gpus(0, 0, 1, 500);
        assert!(choices(&mut p, &c, &share, 20).iter().all(|&n| n == 2));
        let two = PodRequest::gpus(0, 0, 2, 1000);
        assert!(choices(&mut p, &c, &two, 20).iter().all(|&n| n == 0));
        // A 4-GPU pod prefers the empty node over nodes with other shapes.
        let four = PodRequest::gpus(0, 0, 4, 1000);
        assert!(choices(&mut p, &c, &four, 20).iter().all(|&n| n == 1));
    }
}
