//! Dot-product (Tetris, SIGCOMM'14) as the FGD simulator runs it: node free
//! vector `[cpu, gpu]` and pod demand, both normalized by the largest node
//! spec (128 cores, 8 GPUs); the node with the smallest dot product wins
//! (it is left with the least), on integer scores with random tie-breaks.
//! GPUs inside the node are chosen best-fit.

use super::{Policy, RandomArgMax, feasible};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, Placement, PodRequest};

pub(crate) const MAX_SPEC_CPU: f64 = 128_000.0;
pub(crate) const MAX_SPEC_GPU: f64 = 8_000.0;

#[derive(Debug)]
pub struct DotProd {
    rng: SplitMix64,
    pub random_ties: bool,
}

impl DotProd {
    pub fn new(seed: u64) -> Self {
        DotProd {
            rng: SplitMix64::new(seed),
            random_ties: false,
        }
    }
}

pub(crate) fn dot_score(cpu_left: u32, gpu_left: u32, pod: &PodRequest) -> i64 {
    let node = [cpu_left as f64 / MAX_SPEC_CPU, gpu_left as f64 / MAX_SPEC_GPU];
    let req = [
        pod.cpu_milli as f64 / MAX_SPEC_CPU,
        pod.total_gpu_milli() as f64 / MAX_SPEC_GPU,
    ];
    let dot = (node[0] * req[0] + node[1] * req[1]) / 2.0;
    ((1.0 - dot) * 100.0) as i64
}

impl Policy for DotProd {
    fn name(&self) -> &'static str {
        "dotprod"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut best = RandomArgMax::new(self.random_ties);
        for (i, node, gpus) in feasible(cluster, pod) {
            let s = dot_score(node.cpu_left, node.gpu_idle_milli(), pod);
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
    fn prefers_the_node_with_less_left() {
        let mut c = cluster(&[(128_000, 8), (128_000, 8)]);
        for _ in 0..6 {
            put(&mut c, 1, PodRequest::gpus(16_000, 0, 1, 1000));
        }
        let pod = PodRequest::gpus(16_000, 0, 2, 1000);
        let mut p = DotProd::new(3);
        assert!(choices(&mut p, &c, &pod, 20).iter().all(|&n| n == 1));
    }
}
