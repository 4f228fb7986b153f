//! Kube-scheduler's default scoring: NodeResourcesFit with LeastAllocated
//! plus NodeResourcesBalancedAllocation, over CPU and memory (the default
//! scoring resources; it does not see fractional GPUs), weight 1 each,
//! integer scores, random ties. Fractional pods get the first GPU that fits,
//! as a device plugin without a preference would give.

use super::{Policy, RandomArgMax};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, Placement, PodRequest};

#[derive(Debug)]
pub struct KubeDefault {
    rng: SplitMix64,
    pub random_ties: bool,
}

impl KubeDefault {
    pub fn new(seed: u64) -> Self {
        KubeDefault {
            rng: SplitMix64::new(seed),
            random_ties: false,
        }
    }
}

/// LeastAllocated + BalancedAllocation for requested fractions after placing.
pub(crate) fn kube_score(cpu_cap: u32, cpu_used: u32, mem_cap: u32, mem_used: u32) -> i64 {
    let frac = |used: u32, cap: u32| if cap == 0 { 1.0 } else { used as f64 / cap as f64 };
    let (c, m) = (frac(cpu_used, cpu_cap).min(1.0), frac(mem_used, mem_cap).min(1.0));
    let least = (((1.0 - c) * 100.0) as i64 + ((1.0 - m) * 100.0) as i64) / 2;
    // Standard deviation of the two fractions is |c - m| / 2.
    let balanced = ((1.0 - (c - m).abs() / 2.0) * 100.0) as i64;
    least + balanced
}

impl Policy for KubeDefault {
    fn name(&self) -> &'static str {
        "kube-default"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut best = RandomArgMax::new(self.random_ties);
        for (i, node) in cluster.nodes.iter().enumerate() {
            if !node.fits(pod) {
                continue;
            }
            let gpus = if pod.is_share() {
                match (0..node.gpu_count as usize).find(|&g| node.share_fits(g, pod)) {
                    Some(g) => 1 << g,
                    None => continue,
                }
            } else {
                match node.default_gpus(pod) {
                    Some(g) => g,
                    None => continue,
                }
            };
            let s = kube_score(
                node.cpu_cap,
                node.cpu_cap - node.cpu_left + pod.cpu_milli,
                node.mem_cap,
                node.mem_cap - node.mem_left + pod.memory_mib,
            );
            best.offer(&mut self.rng, s, Placement { node: i as u32, gpus });
        }
        best.get()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn spreads_to_the_least_allocated_node() {
        let mut c = cluster(&[(64_000, 2), (64_000, 2)]);
        put(
            &mut c,
            0,
            PodRequest {
                cpu_milli: 32_000,
                memory_mib: 1 << 19,
                ..PodRequest::gpus(0, 0, 1, 100)
            },
        );
        let mut p = KubeDefault::new(4);
        let pod = PodRequest {
            cpu_milli: 4_000,
            memory_mib: 1 << 16,
            ..PodRequest::gpus(0, 0, 1, 100)
        };
        assert!(choices(&mut p, &c, &pod, 20).iter().all(|&n| n == 1));
    }

    #[test]
    fn balanced_prefers_even_use() {
        // Same least-allocated sum, but one is balanced.
        assert!(kube_score(100, 50, 100, 50) > kube_score(100, 90, 100, 10));
    }
}
