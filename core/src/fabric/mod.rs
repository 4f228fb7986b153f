//! The cluster fabric: which nodes share a leaf switch, a spine block or a
//! multi-node NVLink domain, and what two GPUs anywhere in the cluster can
//! expect from the path between them.
//!
//! A [`Fabric`] is built from a cluster YAML ([`Fabric::from_yaml`], schema in
//! [`yaml`]) or from Kubernetes node labels ([`Fabric::from_labels`], label
//! conventions in [`labels`]); both go through the same builder, so the same
//! cluster described either way gives an equal `Fabric`.
//!
//! Switches form a forest: tier 0 is the leaf a node's NIC plugs into, each
//! tier above has one parent per switch. In rail-optimized designs (DGX
//! SuperPOD) a node has one leaf per rail and GPU *i* reaches the network
//! through the leaf of its nearest NIC's rail. Machine profiles are not stored
//! here: queries take a [`MachineLookup`] so that the fabric stays I/O-free and
//! can be shared by the extender, the device plugin and the simulator.

mod distance;
pub mod labels;
mod model;
pub mod yaml;

#[cfg(test)]
mod tests;

pub use distance::{Distance, GpuRef, MachineLookup, NodeLink, Route};
pub use labels::{LabelOptions, LabelScheme};
pub use model::{DomainId, Fabric, Node, NodeGroup, NvlDomain, Switch, SwitchId, Tier, Uplinks};

/// A query named something the fabric or the machine profiles do not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FabricError {
    #[error("no node `{node}` in the fabric")]
    UnknownNode { node: String },
    #[error("node `{node}`: no machine profile `{machine}`")]
    UnknownMachine { node: String, machine: String },
    #[error("node `{node}` (machine `{machine}`): no GPU with index {gpu}")]
    UnknownGpu { node: String, machine: String, gpu: u32 },
    /// A rail-optimized node has no leaf for the rail a GPU's NIC is on.
    #[error("node `{node}`: GPU {gpu} uses NIC `{nic}` on rail {rail:?}, but the node has no uplink for that rail")]
    NoUplinkForRail {
        node: String,
        gpu: u32,
        nic: String,
        rail: Option<u32>,
    },
}
