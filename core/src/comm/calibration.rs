//! The constants that turn link bandwidths into all-reduce bus bandwidth.
//!
//! Bus bandwidth (busbw) is nccl-tests' figure: algorithm bandwidth × 2(n−1)/n
//! for all-reduce, which for a bandwidth-bound ring equals the bottleneck
//! link's throughput. The model multiplies link bandwidths (GB/s one way, from
//! the topology and fabric) by these efficiencies; each is chosen so that the
//! model lands inside a published measurement, named next to it.

/// Ring over NVLink (NVSwitch or direct links): the fraction of per-GPU
/// NVLink bandwidth a bandwidth-bound ring reaches. 0.85 × 450 GB/s ≈ 382 GB/s
/// on H100, which keeps the intra-node legs of a multi-node H100 ring just
/// above the network bound below, as the measured 370–385 GB/s multi-node
/// ring busbw requires (the NICs, not NVLink, are the measured bottleneck).
pub const NVLINK_RING_EFFICIENCY: f64 = 0.85;

/// NVLink SHARP (NVLS, NVSwitch gen 3, Hopper and later): reductions happen in
/// the switch. nccl-tests `all_reduce_perf` on one 8 × H100 SXM NVSwitch node
/// reports ≈ 450–480 GB/s busbw at large messages; 1.04 × 450 GB/s = 468 GB/s.
pub const NVLS_EFFICIENCY: f64 = 1.04;

/// Network legs: the fraction of NIC line rate a ring reaches. 8 × 400 Gb/s
/// rails = 400 GB/s per node; nccl-tests ring all-reduce across DGX H100 nodes
/// reports ≈ 370–385 GB/s busbw, i.e. 0.925–0.96. 0.94 × 400 = 376 GB/s.
pub const NET_EFFICIENCY: f64 = 0.94;

/// NCCL's (double binary) tree relative to the ring at large messages: the
/// tree wins on latency, not bandwidth, so it is a little below the ring when
/// the ring is well formed. It does not depend on rank order, so it is what a
/// job gets when its ranks zig-zag between nodes.
pub const TREE_EFFICIENCY: f64 = 0.95;

/// Ring legs through host PCIe (no NVLink between the two GPUs): P2P through
/// root complexes and CPUs reaches less of the link rate than NVLink does.
pub const PCIE_RING_EFFICIENCY: f64 = 0.80;

/// Host contention on PCIe-only nodes (no NVSwitch, GPUs and NICs not under a
/// common PCIe switch, so no GPUDirect RDMA and every network byte is staged
/// through host memory, while each GPU also streams its input from it). CERN
/// measured on 4 × A100-PCIe nodes that multi-node training with 3 of the 4
/// GPUs per node ran faster and more consistently than with all 4, and traced
/// it to host/PCIe contention. The model lets a host serve this many GPUs of
/// one multi-node job before contention sets in …
pub const HOST_CONTENTION_FREE_GPUS: u32 = 3;

/// … and then slows every leg of that node by this much per extra GPU
/// (factor 1 / (1 + 0.35·extra), 0.74 at 4 GPUs). CERN published the effect,
/// not a bus bandwidth: the size of this term is chosen, not fitted, large
/// enough that 3 GPUs per node beat 4 (the direction they measured) but not
/// so large that 1–2 GPUs per node (fewer NICs in use) would win.
pub const HOST_CONTENTION_PER_GPU: f64 = 0.35;

/// The host-contention factor for `gpus` GPUs of one multi-node job on a
/// node that stages its traffic through the host.
pub fn host_contention(gpus: u32) -> f64 {
    let extra = gpus.saturating_sub(HOST_CONTENTION_FREE_GPUS);
    1.0 / (1.0 + HOST_CONTENTION_PER_GPU * f64::from(extra))
}
