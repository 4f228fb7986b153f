//! Node and cluster state in milli-GPU units, and the requests placed on it.
//!
//! A GPU is 1000 milli. A pod with `num_gpu == 1 && gpu_milli < 1000` shares
//! one GPU; any other GPU pod takes `num_gpu` whole GPUs of one node. CPU
//! (millicores) and memory (MiB) must fit too.

use super::mig::MigGpu;

/// One whole GPU in milli-GPU.
pub const MILLI: u16 = 1000;
/// Most GPUs one node may have; GPU sets are [`GpuMask`]s of this width.
pub const MAX_GPUS: usize = 16;

/// A set of GPUs on one node: bit `i` is GPU `i`.
pub type GpuMask = u16;

/// Index of a GPU model in a [`ModelTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u8);

/// A set of GPU models; the empty set means "any model".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ModelMask(pub u64);

impl ModelMask {
    pub const ANY: ModelMask = ModelMask(0);

    pub fn allows(self, model: Option<ModelId>) -> bool {
        match model {
            _ if self.0 == 0 => true,
            Some(m) => self.0 & (1u64 << m.0) != 0,
            None => false,
        }
    }
}

/// Interns GPU model names (`G2`, `T4`, ...) so nodes and requests compare
/// models by a small integer.
#[derive(Debug, Clone, Default)]
pub struct ModelTable {
    names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("more than 64 distinct GPU models")]
    TooMany,
}

impl ModelTable {
    pub fn intern(&mut self, name: &str) -> Result<ModelId, ModelError> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(ModelId(i as u8));
        }
        if self.names.len() >= 64 {
            return Err(ModelError::TooMany);
        }
        self.names.push(name.to_string());
        Ok(ModelId((self.names.len() - 1) as u8))
    }

    pub fn get(&self, name: &str) -> Option<ModelId> {
        self.names.iter().position(|n| n == name).map(|i| ModelId(i as u8))
    }

    pub fn name(&self, id: ModelId) -> &str {
        self.names.get(id.0 as usize).map(String::as_str).unwrap_or("?")
    }

    /// The mask of the `|`-separated models in `spec`; models no node has are
    /// ignored, so a spec naming only unknown models matches nothing.
    pub fn mask(&self, spec: &str) -> ModelMask {
        let spec = spec.trim();
        if spec.is_empty() {
            return ModelMask::ANY;
        }
        let mut bits = 0u64;
        let mut named = false;
        for part in spec.split('|').map(str::trim).filter(|p| !p.is_empty()) {
            named = true;
            if let Some(id) = self.get(part) {
                bits |= 1u64 << id.0;
            }
        }
        match (named, bits) {
            (false, _) => ModelMask::ANY,
            // Non-empty but unknown: a mask no model id can satisfy.
            (true, 0) => ModelMask(1u64 << 63),
            (true, b) => ModelMask(b),
        }
    }

    /// Every interned model (an empty table: [`ModelMask::ANY`]); the mask
    /// of a `NotIn` selector is `ModelMask(all().0 & !mask(excluded).0)`.
    pub fn all(&self) -> ModelMask {
        ModelMask(match self.names.len() {
            0 => 0,
            n => u64::MAX >> (64 - n),
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What a pod asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodRequest {
    pub cpu_milli: u32,
    pub memory_mib: u32,
    pub num_gpu: u8,
    /// Per-GPU share, 1..=1000 when `num_gpu > 0`.
    pub gpu_milli: u16,
    pub gpu_spec: ModelMask,
}

impl PodRequest {
    pub fn cpu_only(cpu_milli: u32, memory_mib: u32) -> Self {
        PodRequest {
            cpu_milli,
            memory_mib,
            num_gpu: 0,
            gpu_milli: 0,
            gpu_spec: ModelMask::ANY,
        }
    }

    pub fn gpus(cpu_milli: u32, memory_mib: u32, num_gpu: u8, gpu_milli: u16) -> Self {
        PodRequest {
            cpu_milli,
            memory_mib,
            num_gpu,
            gpu_milli,
            gpu_spec: ModelMask::ANY,
        }
    }

    /// A fractional pod: shares one GPU.
    pub fn is_share(&self) -> bool {
        self.num_gpu == 1 && self.gpu_milli < MILLI
    }

    pub fn wants_gpu(&self) -> bool {
        self.num_gpu > 0 && self.gpu_milli > 0
    }

    /// GPU request in milli-GPU, summed over its GPUs.
    pub fn total_gpu_milli(&self) -> u64 {
        if self.wants_gpu() {
            self.num_gpu as u64 * self.gpu_milli as u64
        } else {
            0
        }
    }
}

/// Static description of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub cpu_milli: u32,
    pub memory_mib: u32,
    pub gpus: u8,
    pub model: Option<ModelId>,
}

/// Where a pod goes: a node and the GPUs it uses there (bit `i` = GPU `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub node: u32,
    pub gpus: GpuMask,
}

/// Live state of one node. `Copy`, so policies can try a placement on a
/// scratch copy.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub cpu_cap: u32,
    pub mem_cap: u32,
    pub cpu_left: u32,
    pub mem_left: u32,
    pub gpu_count: u8,
    pub model: Option<ModelId>,
    /// Milli-GPU left per GPU; entries past `gpu_count` are 0.
    pub gpu_left: [u16; MAX_GPUS],
    /// GPU shapes hosted here, as [`affinity_bit`] bits (GPU clustering).
    pub affinity: u8,
    /// Pods placed here.
    pub pods: u32,
    /// MIG state per GPU when the node is partitioned with MIG.
    pub mig: Option<[MigGpu; MAX_GPUS]>,
}

/// The clustering tag of a request: share, 1, 2, 4, 8 or other whole-GPU counts.
pub fn affinity_bit(pod: &PodRequest) -> u8 {
    if !pod.wants_gpu() {
        return 0;
    }
    if pod.is_share() {
        return 1;
    }
    match pod.num_gpu {
        1 => 2,
        2 => 4,
        4 => 8,
        8 => 16,
        _ => 32,
    }
}

impl Node {
    pub fn new(spec: &NodeSpec) -> Self {
        let n = (spec.gpus as usize).min(MAX_GPUS);
        let mut gpu_left = [0u16; MAX_GPUS];
        gpu_left[..n].fill(MILLI);
        Node {
            cpu_cap: spec.cpu_milli,
            mem_cap: spec.memory_mib,
            cpu_left: spec.cpu_milli,
            mem_left: spec.memory_mib,
            gpu_count: n as u8,
            model: spec.model,
            gpu_left,
            affinity: 0,
            pods: 0,
            mig: None,
        }
    }

    /// Partitions every GPU with MIG (all must be idle).
    pub fn enable_mig(&mut self) {
        self.mig = Some([MigGpu::default(); MAX_GPUS]);
    }

    pub fn gpus(&self) -> &[u16] {
        &self.gpu_left[..self.gpu_count as usize]
    }

    pub fn gpu_idle_milli(&self) -> u32 {
        self.gpus().iter().map(|&g| g as u32).sum()
    }

    pub fn free_gpus(&self) -> u32 {
        self.gpus().iter().filter(|&&g| g == MILLI).count() as u32
    }

    pub fn free_mask(&self) -> GpuMask {
        let mut m: GpuMask = 0;
        for (i, &g) in self.gpus().iter().enumerate() {
            if g == MILLI {
                m |= 1 << i;
            }
        }
        m
    }

    /// Whether GPU `i` can host the fractional `pod` (MIG-aware).
    pub fn share_fits(&self, i: usize, pod: &PodRequest) -> bool {
        match &self.mig {
            Some(mig) => mig[i].fits_milli(pod.gpu_milli),
            None => self.gpu_left[i] >= pod.gpu_milli,
        }
    }

    /// Milli-GPU left on GPU `i` after the fractional `pod` lands there.
    pub fn share_after(&self, i: usize, pod: &PodRequest) -> u16 {
        match &self.mig {
            Some(mig) => mig[i].left_after_milli(pod.gpu_milli),
            None => self.gpu_left[i] - pod.gpu_milli,
        }
    }

    /// CPU, memory and GPU model fit, ignoring GPUs.
    pub fn host_fits(&self, pod: &PodRequest) -> bool {
        self.cpu_left >= pod.cpu_milli
            && self.mem_left >= pod.memory_mib
            && (!pod.wants_gpu() || (self.gpu_count > 0 && pod.gpu_spec.allows(self.model)))
    }

    /// Whether the pod fits this node at all.
    pub fn fits(&self, pod: &PodRequest) -> bool {
        if !self.host_fits(pod) {
            return false;
        }
        if !pod.wants_gpu() {
            return true;
        }
        if pod.is_share() {
            (0..self.gpu_count as usize).any(|i| self.share_fits(i, pod))
        } else {
            self.free_gpus() >= pod.num_gpu as u32
        }
    }

    /// GPUs a whole-GPU pod takes: the first free ones.
    pub fn first_free(&self, n: u8) -> Option<GpuMask> {
        let mut mask: GpuMask = 0;
        let mut need = n;
        for (i, &g) in self.gpus().iter().enumerate() {
            if need == 0 {
                break;
            }
            if g == MILLI {
                mask |= 1 << i;
                need -= 1;
            }
        }
        (need == 0).then_some(mask)
    }

    /// The fitting GPU with the least milli left (lowest index on ties).
    pub fn best_fit_gpu(&self, pod: &PodRequest) -> Option<usize> {
        (0..self.gpu_count as usize)
            .filter(|&i| self.share_fits(i, pod))
            .min_by_key(|&i| (self.gpu_left[i], i))
    }

    /// The default GPU choice: best-fit for fractional pods, first free GPUs
    /// for whole-GPU pods, none for CPU-only pods.
    pub fn default_gpus(&self, pod: &PodRequest) -> Option<GpuMask> {
        if !pod.wants_gpu() {
            Some(0)
        } else if pod.is_share() {
            self.best_fit_gpu(pod).map(|i| 1 << i)
        } else {
            self.first_free(pod.num_gpu)
        }
    }

    /// Applies a placement's resource use; checks that it fits.
    pub fn apply(&mut self, pod: &PodRequest, gpus: GpuMask) -> Result<(), PlaceError> {
        if !self.host_fits(pod) {
            return Err(PlaceError::DoesNotFit);
        }
        if pod.wants_gpu() {
            let want = if pod.is_share() { 1 } else { pod.num_gpu as u32 };
            if gpus.count_ones() != want || (gpus as u32) >> self.gpu_count != 0 {
                return Err(PlaceError::BadGpus);
            }
            if pod.is_share() {
                let i = gpus.trailing_zeros() as usize;
                if !self.share_fits(i, pod) {
                    return Err(PlaceError::DoesNotFit);
                }
                self.gpu_left[i] = match &mut self.mig {
                    Some(mig) => mig[i].add_milli(pod.gpu_milli).ok_or(PlaceError::DoesNotFit)?,
                    None => self.gpu_left[i] - pod.gpu_milli,
                };
            } else {
                if gpus & !self.free_mask() != 0 {
                    return Err(PlaceError::DoesNotFit);
                }
                for i in 0..self.gpu_count as usize {
                    if gpus & (1 << i) != 0 {
                        self.gpu_left[i] = 0;
                        if let Some(mig) = &mut self.mig {
                            mig[i].take_whole();
                        }
                    }
                }
            }
        } else if gpus != 0 {
            return Err(PlaceError::BadGpus);
        }
        self.cpu_left -= pod.cpu_milli;
        self.mem_left -= pod.memory_mib;
        self.affinity |= affinity_bit(pod);
        self.pods += 1;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("node index out of range")]
    NoSuchNode,
    #[error("the pod does not fit there")]
    DoesNotFit,
    #[error("GPU set does not match the request")]
    BadGpus,
}

/// All nodes, with per-node versions so policies can cache per-node work.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Bumped each time a node changes.
    pub versions: Vec<u32>,
    pub gpu_capacity_milli: u64,
    pub gpu_allocated_milli: u64,
}

impl Cluster {
    pub fn new(specs: &[NodeSpec]) -> Self {
        let nodes: Vec<Node> = specs.iter().map(Node::new).collect();
        let gpu_capacity_milli = nodes.iter().map(|n| n.gpu_count as u64 * MILLI as u64).sum();
        Cluster {
            versions: vec![0; nodes.len()],
            nodes,
            gpu_capacity_milli,
            gpu_allocated_milli: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn apply(&mut self, pod: &PodRequest, p: Placement) -> Result<(), PlaceError> {
        let node = self.nodes.get_mut(p.node as usize).ok_or(PlaceError::NoSuchNode)?;
        node.apply(pod, p.gpus)?;
        self.versions[p.node as usize] = self.versions[p.node as usize].wrapping_add(1);
        self.gpu_allocated_milli += pod.total_gpu_milli();
        Ok(())
    }

    /// Allocated share of GPU capacity, 0..=1.
    pub fn allocation_ratio(&self) -> f64 {
        if self.gpu_capacity_milli == 0 {
            0.0
        } else {
            self.gpu_allocated_milli as f64 / self.gpu_capacity_milli as f64
        }
    }

    pub fn gpu_idle_milli(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpu_idle_milli() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu: u32, mem: u32, gpus: u8) -> NodeSpec {
        NodeSpec {
            name: "n".into(),
            cpu_milli: cpu,
            memory_mib: mem,
            gpus,
            model: Some(ModelId(0)),
        }
    }

    #[test]
    fn share_pods_pack_one_gpu() {
        let mut n = Node::new(&spec(8000, 1000, 2));
        let p = PodRequest::gpus(1000, 100, 1, 400);
        n.apply(&p, 0b01).unwrap();
        n.apply(&p, 0b01).unwrap();
        assert_eq!(n.gpus(), &[200, 1000]);
        assert!(!n.share_fits(0, &p));
        assert_eq!(n.best_fit_gpu(&p), Some(1));
        assert_eq!(n.apply(&p, 0b01), Err(PlaceError::DoesNotFit));
        assert_eq!(n.cpu_left, 6000);
        assert_eq!(n.free_gpus(), 1);
    }

    #[test]
    fn whole_gpu_pods_need_free_gpus() {
        let mut n = Node::new(&spec(8000, 1000, 4));
        n.apply(&PodRequest::gpus(0, 0, 1, 100), 0b0010).unwrap();
        let two = PodRequest::gpus(0, 0, 2, 1000);
        assert_eq!(n.first_free(2), Some(0b0101));
        assert_eq!(n.apply(&two, 0b0011), Err(PlaceError::DoesNotFit));
        n.apply(&two, 0b0101).unwrap();
        assert_eq!(n.gpus(), &[0, 900, 0, 1000]);
        assert!(!n.fits(&two));
        assert_eq!(n.apply(&two, 0b1), Err(PlaceError::BadGpus));
    }

    #[test]
    fn sixteen_gpu_nodes() {
        let mut n = Node::new(&spec(64_000, 1000, 16));
        assert_eq!(n.free_mask(), 0xffff);
        n.apply(&PodRequest::gpus(0, 0, 1, 300), 1 << 15).unwrap();
        let eight = PodRequest::gpus(0, 0, 8, 1000);
        assert_eq!(n.default_gpus(&eight), Some(0x00ff));
        n.apply(&eight, 0x00ff).unwrap();
        // The share goes best-fit to GPU 15; 7 whole GPUs are left.
        assert_eq!(n.default_gpus(&PodRequest::gpus(0, 0, 1, 500)), Some(1 << 15));
        assert_eq!(n.first_free(7), Some(0x7f00));
        assert!(!n.fits(&PodRequest::gpus(0, 0, 8, 1000)));
        assert_eq!(n.gpu_idle_milli(), 7700);
    }

    #[test]
    fn cpu_memory_and_model_must_fit() {
        let n = Node::new(&spec(4000, 1000, 1));
        assert!(!n.fits(&PodRequest::gpus(5000, 0, 1, 100)));
        assert!(!n.fits(&PodRequest::gpus(0, 2000, 1, 100)));
        assert!(n.fits(&PodRequest::cpu_only(4000, 1000)));
        let mut other = PodRequest::gpus(0, 0, 1, 100);
        other.gpu_spec = ModelMask(0b10);
        assert!(!n.fits(&other));
        other.gpu_spec = ModelMask(0b11);
        assert!(n.fits(&other));
    }

    #[test]
    fn model_masks() {
        let mut t = ModelTable::default();
        let g1 = t.intern("G1").unwrap();
        let t4 = t.intern("T4").unwrap();
        assert_eq!(t.intern("G1").unwrap(), g1);
        assert!(t.mask("").allows(Some(g1)));
        assert!(t.mask("T4|V100").allows(Some(t4)));
        assert!(!t.mask("T4|V100").allows(Some(g1)));
        assert!(!t.mask("V100").allows(Some(g1)));
        assert!(!t.mask("T4").allows(None));
        assert_eq!(t.all(), ModelMask(0b11));
        assert_eq!(ModelTable::default().all(), ModelMask::ANY);
        let not_t4 = ModelMask(t.all().0 & !t.mask("T4").0);
        assert!(not_t4.allows(Some(g1)) && !not_t4.allows(Some(t4)));
    }

    #[test]
    fn cluster_tracks_allocation() {
        let mut c = Cluster::new(&[spec(8000, 1000, 2), spec(8000, 1000, 2)]);
        assert_eq!(c.gpu_capacity_milli, 4000);
        c.apply(&PodRequest::gpus(0, 0, 1, 500), Placement { node: 1, gpus: 0b10 })
            .unwrap();
        assert_eq!(c.versions, vec![0, 1]);
        assert!((c.allocation_ratio() - 0.125).abs() < 1e-12);
        assert_eq!(c.gpu_idle_milli(), 3500);
        assert_eq!(
            c.apply(&PodRequest::cpu_only(0, 0), Placement { node: 2, gpus: 0 }),
            Err(PlaceError::NoSuchNode)
        );
    }
}
