//! Best-fit: the node left with the least free CPU and GPU after placing,
//! `Σ w·(free − request)/max_spec` over CPU and GPU with equal weights,
//! as integer scores normalized to 0..=100 with random ties; GPUs inside
//! the node best-fit.

use super::dotprod::{MAX_SPEC_CPU, MAX_SPEC_GPU};
use super::{Policy, RandomArgMax, feasible, normalize};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, Placement, PodRequest};

#[derive(Debug)]
pub struct BestFit {
    rng: SplitMix64,
    pub random_ties: bool,
    scores: Vec<(i64, Placement)>,
}

impl BestFit {
    pub fn new(seed: u64) -> Self {
        BestFit {
            rng: SplitMix64::new(seed),
            random_ties: false,
            scores: Vec::new(),
        }
    }
}

impl Policy for BestFit {
    fn name(&self) -> &'static str {
        "bestfit"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        self.scores.clear();
        for (i, node, gpus) in feasible(cluster, pod) {
            let cpu = (node.cpu_left - pod.cpu_milli) as f64 / MAX_SPEC_CPU;
            let gpu = (node.gpu_idle_milli() as f64 - pod.total_gpu_milli() as f64) / MAX_SPEC_GPU;
            let left = 0.5 * cpu + 0.5 * gpu;
            self.scores
                .push((((1.0 - left) * 100.0) as i64, Placement { node: i as u32, gpus }));
        }
        normalize(&mut self.scores);
        let mut best = RandomArgMax::new(self.random_ties);
        for &(s, p) in &self.scores {
            best.offer(&mut self.rng, s, p);
        }
        best.get()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn tightest_node_wins() {
        let mut c = cluster(&[(64_000, 8), (64_000, 8), (64_000, 8)]);
        for _ in 0..5 {
            put(&mut c, 2, PodRequest::gpus(8_000, 0, 1, 1000));
        }
        put(&mut c, 0, PodRequest::gpus(8_000, 0, 1, 1000));
        let mut p = BestFit::new(2);
        let pod = PodRequest::gpus(4_000, 0, 2, 1000);
        assert!(choices(&mut p, &c, &pod, 20).iter().all(|&n| n == 2));
    }
}
