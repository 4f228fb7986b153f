//! GPU packing: fill partly used GPUs first, then free GPUs on nodes
//! already in use, then empty nodes, as the FGD simulator scores it
//! (integer bands, random ties, best-fit GPUs).

use super::{Policy, RandomArgMax, feasible};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, MILLI, Node, Placement, PodRequest};

#[derive(Debug)]
pub struct GpuPacking {
    rng: SplitMix64,
    pub random_ties: bool,
}

impl GpuPacking {
    pub fn new(seed: u64) -> Self {
        GpuPacking {
            rng: SplitMix64::new(seed),
            random_ties: false,
        }
    }
}

pub(crate) fn packing_score(node: &Node, pod: &PodRequest) -> i64 {
    if !pod.wants_gpu() {
        return 0;
    }
    let free = node.free_gpus() as i64;
    if free == node.gpu_count as i64 {
        return (100 / 3 - free).max(free);
    }
    // Take GPUs with the least left first, as the simulator does.
    let mut order: Vec<usize> = (0..node.gpu_count as usize).collect();
    order.sort_by_key(|&i| node.gpu_left[i]);
    let mut need = pod.num_gpu;
    let mut free_used = 0i64;
    let mut left_sum = 0i64;
    for i in order {
        if need == 0 {
            break;
        }
        let left = node.gpu_left[i];
        let fits = if pod.is_share() {
            node.share_fits(i, pod)
        } else {
            left >= pod.gpu_milli
        };
        if fits {
            need -= 1;
            left_sum += left as i64 * 100 / MILLI as i64;
            if left == MILLI {
                free_used += 1;
            }
        }
    }
    if free_used > 0 {
        (50 - free_used).max(33)
    } else {
        (100 - left_sum / 10).max(50)
    }
}

impl Policy for GpuPacking {
    fn name(&self) -> &'static str {
        "packing"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut best = RandomArgMax::new(self.random_ties);
        for (i, node, gpus) in feasible(cluster, pod) {
            best.offer(
                &mut self.rng,
                packing_score(node, pod),
                Placement { node: i as u32, gpus },
            );
        }
        best.get()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn shared_gpu_then_used_node_then_empty_node() {
        let mut c = cluster(&[(64_000, 2), (64_000, 2), (64_000, 2)]);
        put(&mut c, 1, PodRequest::gpus(0, 0, 1, 1000));
        put(&mut c, 2, PodRequest::gpus(0, 0, 1, 500));
        let mut p = GpuPacking::new(9);
        let small = PodRequest::gpus(0, 0, 1, 300);
        assert!(choices(&mut p, &c, &small, 20).iter().all(|&n| n == 2));
        let big = PodRequest::gpus(0, 0, 1, 800);
        // Node 2's shared GPU is too small; node 1 is in use and has a free GPU,
        // node 2 too; both score alike, the empty node 0 scores lower.
        let picks = choices(&mut p, &c, &big, 40);
        assert!(picks.iter().all(|&n| n == 1 || n == 2));
    }
}
