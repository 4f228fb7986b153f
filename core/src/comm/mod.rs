//! The communication cost model: the all-reduce bus bandwidth a placement
//! can expect, estimated from link bandwidths — NVLink inside a node or an
//! NVLink domain, NIC rails across nodes (divided by oversubscription when
//! traffic climbs above the leaves), PCIe and cross-socket links inside
//! PCIe-only nodes, and host contention where network traffic is staged
//! through host memory. It is how placements are compared: by the gang
//! planner, in tests and in the bench. Constants and their sources are in
//! [`calibration`].
//!
//! It predicts ordering, not the percent: two placements' estimates say
//! which is better and roughly by how much.

pub mod calibration;
mod estimate;

#[cfg(test)]
pub(crate) mod tests;

pub use estimate::{Algorithm, Bottleneck, CommEstimate, estimate, node_share_gbps};

use crate::fabric::FabricError;

/// Why a placement could not be estimated. Each variant names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommError {
    #[error("a placement needs at least one rank")]
    NoRanks,
    #[error("no node `{node}` in the fabric")]
    UnknownNode { node: String },
    #[error("node `{node}`: no machine profile `{machine}`")]
    UnknownMachine { node: String, machine: String },
    #[error("node `{node}`: no GPU with index {gpu}")]
    UnknownGpu { node: String, gpu: u32 },
    #[error("node `{node}`: GPU {gpu} holds more than one rank")]
    DuplicateGpu { node: String, gpu: u32 },
    #[error(transparent)]
    Fabric(#[from] FabricError),
}
