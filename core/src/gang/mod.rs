//! The gang planner: places a distributed-training job (N members × k GPUs)
//! all at once or not at all.
//!
//! Goals, in order: the gang fits entirely (at least its minimum member
//! count) or waits; the highest estimated all-reduce bandwidth
//! ([`crate::comm`]): one node, else one NVLink domain, else one leaf group,
//! else the fewest spine crossings, rails aligned, GPUs NIC- and
//! NUMA-aligned via [`crate::topology::NodeTopology::best_gpus`];
//! consecutive ranks adjacent (member i is rank i, nodes in tree order); and
//! the least damage to the free space left for the next gangs (a fragmented
//! domain or node before a clean one, best fit over domains).
//!
//! The search is greedy over the switch tree, not exhaustive: per scope
//! (node, NVLink domain, switch group at each tier, cluster) one selection
//! that uses the fewest children (largest first, the last one best-fit), a
//! few scopes per level scored with the cost model. Cost is O(tiers × nodes)
//! plus a handful of cost-model evaluations.
//!
//! Build a [`GangCluster`] once per fabric; plan against a [`FreeState`].
//! [`GangCluster::plan_around`] plans the rest of a gang some of whose
//! members already run (a reservation that expired half filled): they stay,
//! the new members go where the whole gang estimates best.

mod cluster;
mod plan;
mod reserve;
mod select;

#[cfg(test)]
mod tests;

pub use cluster::{FreeState, GangCluster};
pub use reserve::{Release, Reservation, ReserveDepth, Timeline, WaitRule};

use std::fmt;

use crate::comm::{CommError, CommEstimate};
use crate::fabric::Fabric;
use crate::topology::TopologyError;

/// A topology level a gang can be required or preferred to stay within,
/// smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// One node.
    Node,
    /// One NVLink domain: a multi-node domain, or one node for nodes outside
    /// any (their NVLink ends at the node).
    NvlDomain,
    /// Under one switch of this tier (0 = one leaf group / scalable unit).
    Tier(usize),
    /// Anywhere.
    Cluster,
}

impl Level {
    fn order(self) -> usize {
        match self {
            Level::Node => 0,
            Level::NvlDomain => 1,
            Level::Tier(t) => t.saturating_add(2),
            Level::Cluster => usize::MAX,
        }
    }

    /// True when `self` is no larger than `other`.
    pub fn within(self, other: Level) -> bool {
        self.order() <= other.order()
    }

    /// Parses `node`/`hostname`, `nvlink`/`nvl-domain`, `cluster`, a tier's
    /// name in `fabric` (`leaf`, `spine`, …) or `tier-N`.
    pub fn parse(fabric: &Fabric, s: &str) -> Result<Level, GangError> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "node" | "hostname" | "host" => return Ok(Level::Node),
            "nvlink" | "nvl-domain" | "nvlink-domain" | "domain" => return Ok(Level::NvlDomain),
            "cluster" | "any" => return Ok(Level::Cluster),
            _ => {}
        }
        if let Some(i) = fabric.tiers().iter().position(|t| t.name.eq_ignore_ascii_case(&lower)) {
            return Ok(Level::Tier(i));
        }
        if let Some(n) = lower.strip_prefix("tier-").and_then(|n| n.parse::<usize>().ok())
            && n < fabric.tiers().len()
        {
            return Ok(Level::Tier(n));
        }
        Err(GangError::UnknownLevel { level: s.to_string() })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Node => f.write_str("node"),
            Level::NvlDomain => f.write_str("NVLink domain"),
            Level::Tier(t) => write!(f, "tier {t}"),
            Level::Cluster => f.write_str("cluster"),
        }
    }
}

/// A gang: `members` pods of `gpus_per_member` whole GPUs each, member i
/// being rank i.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gang {
    pub members: u32,
    pub gpus_per_member: u32,
    /// The gang may start with this many members (PodGroup `minMember`);
    /// the planner places as many as fit up to `members`.
    pub min_members: u32,
    /// All members must be inside one domain of this level.
    pub required: Option<Level>,
    /// Stay inside one domain of this level when possible.
    pub preferred: Option<Level>,
}

impl Gang {
    /// `members` × `gpus_per_member`, all required, no level constraint.
    pub fn new(members: u32, gpus_per_member: u32) -> Self {
        Gang {
            members,
            gpus_per_member,
            min_members: members,
            required: None,
            preferred: None,
        }
    }

    pub fn gpus(&self) -> u64 {
        u64::from(self.members) * u64::from(self.gpus_per_member)
    }
}

/// One member's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPlacement {
    /// Index of the node in [`crate::fabric::Fabric::nodes`].
    pub node_index: usize,
    pub node: String,
    /// GPU indices on that node, ascending.
    pub gpus: Vec<u32>,
}

/// Where the gang goes.
#[derive(Debug, Clone, PartialEq)]
pub struct GangPlan {
    /// In rank order.
    pub members: Vec<MemberPlacement>,
    pub estimate: CommEstimate,
    /// The smallest level whose one domain holds every member.
    pub scope: Level,
    pub nodes: usize,
}

/// Why a gang cannot be placed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoFitReason {
    #[error("a member needs {gpus_per_member} GPUs but the largest node has {largest_node}")]
    MemberTooBig { gpus_per_member: u32, largest_node: u32 },
    #[error("needs {need} free GPUs, the cluster has {free}")]
    NotEnoughFree { need: u64, free: u64 },
    #[error("the free GPUs hold only {fit} of the {need} members (a member must fit on one node)")]
    Fragmented { need: u32, fit: u32 },
    #[error("no single {level} holds {need} members now (at most {best})")]
    NoDomain { level: Level, need: u32, best: u32 },
    #[error("the {placed} members already placed span more than one {level}")]
    PlacedApart { level: Level, placed: u32 },
    #[error("no {level} holding the {placed} placed members has room for {need} more now (at most {best})")]
    NoRoomNearPlaced {
        level: Level,
        placed: u32,
        need: u32,
        best: u32,
    },
}

/// A gang that waits: why, and whether it would fit on an empty cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFit {
    pub reason: NoFitReason,
    pub fits_empty: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Place(GangPlan),
    Wait(NoFit),
}

/// Whether a gang should start on the best placement available now or keep
/// waiting for one closer to what it would get on an empty cluster (Slurm's
/// `--switches=N@max-time` idea): take it when it reaches `accept_ratio` of
/// the empty-cluster bus bandwidth, or once the gang has waited `max_wait_s`.
/// Waiting trades queueing delay for a faster job; a job whose all-reduce
/// runs at half speed can lose far more than a short wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patience {
    pub accept_ratio: f64,
    pub max_wait_s: f64,
}

impl Patience {
    pub fn accept(&self, busbw_gbps: f64, best_gbps: f64, waited_s: f64) -> bool {
        let ratio = if best_gbps.is_infinite() || best_gbps <= 0.0 {
            1.0
        } else {
            busbw_gbps / best_gbps
        };
        ratio >= self.accept_ratio || waited_s >= self.max_wait_s
    }
}

/// Invalid input. Each variant names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GangError {
    #[error("a gang needs at least one member")]
    NoMembers,
    #[error("a member must ask for at least one GPU")]
    NoGpusPerMember,
    #[error("min_members {min} is above members {members}")]
    MinAboveMembers { min: u32, members: u32 },
    #[error("min_members must be at least 1")]
    NoMinMembers,
    #[error("{placed} members are already placed of the gang's {members}; none is left to plan")]
    AllPlaced { placed: u32, members: u32 },
    #[error("unknown topology level {level:?}")]
    UnknownLevel { level: String },
    #[error("node `{node}`: no machine profile `{machine}`")]
    UnknownMachine { node: String, machine: String },
    #[error("node `{node}` has {gpus} GPUs; the planner handles at most 64 per node")]
    TooManyGpus { node: String, gpus: usize },
    #[error("no node `{node}` in the cluster")]
    UnknownNode { node: String },
    #[error("node index {index} is out of range ({nodes} nodes)")]
    NodeIndex { index: usize, nodes: usize },
    #[error("node `{node}`: no GPU {gpu}")]
    UnknownGpu { node: String, gpu: u32 },
    #[error("node `{node}`: GPU {gpu} is not free")]
    GpuNotFree { node: String, gpu: u32 },
    #[error("node `{node}`: GPU {gpu} is already free")]
    GpuAlreadyFree { node: String, gpu: u32 },
    #[error("free state has {got} nodes, the cluster {want}")]
    StateSize { got: usize, want: usize },
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Comm(#[from] CommError),
}
