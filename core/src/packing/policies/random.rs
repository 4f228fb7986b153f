//! Random-fit: a uniformly random feasible node, and for a fractional pod a
//! random GPU on it that fits.

use super::{Policy, feasible};
use crate::packing::rng::SplitMix64;
use crate::packing::state::{Cluster, GpuMask, Placement, PodRequest};

#[derive(Debug)]
pub struct RandomFit {
    rng: SplitMix64,
}

impl RandomFit {
    pub fn new(seed: u64) -> Self {
        RandomFit {
            rng: SplitMix64::new(seed),
        }
    }
}

impl Policy for RandomFit {
    fn name(&self) -> &'static str {
        "random"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut chosen: Option<(usize, GpuMask)> = None;
        let mut seen = 0u64;
        for (i, node, gpus) in feasible(cluster, pod) {
            seen += 1;
            if self.rng.below(seen) == 0 {
                chosen = Some((i, gpus));
                let _ = node;
            }
        }
        let (i, mut gpus) = chosen?;
        if pod.is_share() {
            let node = &cluster.nodes[i];
            let fitting: Vec<usize> = (0..node.gpu_count as usize)
                .filter(|&g| node.share_fits(g, pod))
                .collect();
            let g = fitting[self.rng.below(fitting.len() as u64) as usize];
            gpus = 1 << g;
        }
        Some(Placement { node: i as u32, gpus })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn only_feasible_nodes_and_all_of_them() {
        let mut c = cluster(&[(8000, 1), (8000, 1), (8000, 1)]);
        put(&mut c, 1, PodRequest::gpus(0, 0, 1, 800));
        let pod = PodRequest::gpus(0, 0, 1, 500);
        let mut p = RandomFit::new(1);
        let picks = choices(&mut p, &c, &pod, 200);
        assert!(!picks.contains(&1));
        assert!(picks.contains(&0) && picks.contains(&2));
        assert_eq!(p.place(&c, &PodRequest::gpus(0, 0, 2, 1000)), None);
    }
}
