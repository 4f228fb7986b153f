//! The planner's view of a fabric, built once: nodes with their machines,
//! switch groups per tier, NVLink domains, and how many members of a given
//! size a node should take when a gang spans nodes. Plus the free state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{GangError, GangPlan, Level};
use crate::comm::node_share_gbps;
use crate::fabric::{Fabric, MachineLookup, SwitchId};
use crate::topology::{Constraints, NodeTopology};

pub(crate) struct NodeInfo<'a> {
    pub name: &'a str,
    pub topo: &'a NodeTopology,
    /// GPU indices, ascending; bit p of a free mask is `gpus[p]`.
    pub gpus: Vec<u32>,
    /// `span_cap[k-1]`: members of k GPUs this node should take in a gang
    /// that spans nodes (the best per-node share in the cost model; fewer
    /// than fit on PCIe boxes with host contention).
    pub span_cap: Vec<u32>,
}

/// A set of nodes that can hold a gang as one domain, with how to split it.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub level: Level,
    pub nodes: Vec<usize>,
    /// Children are the groups of this tier; `None`: children are nodes.
    pub child_tier: Option<usize>,
}

/// The fabric indexed for planning. Borrowing the fabric and the machine
/// topologies, it is cheap to share across plans.
pub struct GangCluster<'a, M: MachineLookup + ?Sized> {
    pub(crate) fabric: &'a Fabric,
    pub(crate) machines: &'a M,
    pub(crate) nodes: Vec<NodeInfo<'a>>,
    /// `group_of[t][n]`: dense id of node n's switch group at tier t.
    pub(crate) group_of: Vec<Vec<u32>>,
    /// Scopes by level, smallest level first (domains, tier 0, …, cluster).
    pub(crate) scopes: Vec<Scope>,
    by_name: BTreeMap<&'a str, usize>,
}

impl<M: MachineLookup + ?Sized> fmt::Debug for GangCluster<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GangCluster")
            .field("fabric", &self.fabric.name())
            .field("nodes", &self.nodes.len())
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

impl<'a, M: MachineLookup + ?Sized> GangCluster<'a, M> {
    /// Indexes `fabric` with machine topologies from `machines`. Errors name a
    /// node whose machine is missing or that has more than 64 GPUs.
    pub fn new(fabric: &'a Fabric, machines: &'a M) -> Result<Self, GangError> {
        let mut caps: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut nodes = Vec::with_capacity(fabric.nodes().len());
        for n in fabric.nodes() {
            let topo = machines.machine(&n.machine).ok_or_else(|| GangError::UnknownMachine {
                node: n.name.clone(),
                machine: n.machine.clone(),
            })?;
            let gpus = topo.gpu_indices();
            if gpus.len() > 64 {
                return Err(GangError::TooManyGpus {
                    node: n.name.clone(),
                    gpus: gpus.len(),
                });
            }
            let span_cap = match caps.get(n.machine.as_str()) {
                Some(c) => c.clone(),
                None => {
                    let c = span_caps(topo)?;
                    caps.insert(&n.machine, c.clone());
                    c
                }
            };
            nodes.push(NodeInfo {
                name: &n.name,
                topo,
                gpus,
                span_cap,
            });
        }
        let tiers = fabric.tiers().len();
        let mut group_of = Vec::with_capacity(tiers);
        let mut scopes = Vec::new();
        for (d, _) in fabric.domains().iter().enumerate() {
            let members: Vec<usize> = fabric
                .nodes()
                .iter()
                .enumerate()
                .filter(|(_, n)| n.domain.is_some_and(|x| x.0 as usize == d))
                .map(|(i, _)| i)
                .collect();
            if members.len() > 1 {
                scopes.push(Scope {
                    level: Level::NvlDomain,
                    nodes: members,
                    child_tier: None,
                });
            }
        }
        for t in 0..tiers {
            let mut ids: BTreeMap<Option<SwitchId>, u32> = BTreeMap::new();
            let mut of = Vec::with_capacity(nodes.len());
            let mut members: Vec<Vec<usize>> = Vec::new();
            for (i, n) in fabric.nodes().iter().enumerate() {
                let key = n
                    .primary_leaf()
                    .and_then(|leaf| fabric.chain(leaf).take_while(|&s| fabric.switch(s).tier <= t).last());
                let next = ids.len() as u32;
                let id = *ids.entry(key).or_insert(next);
                if id as usize == members.len() {
                    members.push(Vec::new());
                }
                members[id as usize].push(i);
                of.push(id);
            }
            group_of.push(of);
            for m in members {
                scopes.push(Scope {
                    level: Level::Tier(t),
                    nodes: m,
                    child_tier: t.checked_sub(1),
                });
            }
        }
        scopes.push(Scope {
            level: Level::Cluster,
            nodes: (0..nodes.len()).collect(),
            child_tier: tiers.checked_sub(1),
        });
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
        Ok(GangCluster {
            fabric,
            machines,
            nodes,
            group_of,
            scopes,
            by_name,
        })
    }

    pub fn fabric(&self) -> &'a Fabric {
        self.fabric
    }

    pub fn machines(&self) -> &'a M {
        self.machines
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn node_name(&self, index: usize) -> Option<&'a str> {
        self.nodes.get(index).map(|n| n.name)
    }

    /// GPU indices of a node, ascending.
    pub fn node_gpus(&self, index: usize) -> Option<&[u32]> {
        self.nodes.get(index).map(|n| n.gpus.as_slice())
    }

    pub fn total_gpus(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpus.len() as u64).sum()
    }

    /// Dense id of a node's switch group at `tier` (nodes off the fabric share one).
    pub fn group_at(&self, tier: usize, node: usize) -> Option<u32> {
        self.group_of.get(tier).and_then(|g| g.get(node)).copied()
    }

    /// How many members of `k` GPUs the node takes in a gang that spans nodes.
    pub fn span_cap(&self, node: usize, k: u32) -> u32 {
        let Some(n) = self.nodes.get(node) else { return 0 };
        k.checked_sub(1)
            .and_then(|i| n.span_cap.get(i as usize))
            .copied()
            .unwrap_or(0)
    }
}

/// Per member size k: the member count per node whose GPUs give the best
/// per-node share of a multi-node ring (ties to more members).
fn span_caps(topo: &NodeTopology) -> Result<Vec<u32>, GangError> {
    let all: BTreeSet<u32> = topo.gpu_indices().into_iter().collect();
    let n = all.len() as u32;
    let mut caps = Vec::with_capacity(n as usize);
    for k in 1..=n {
        let mut best = (f64::NEG_INFINITY, 0);
        for c in 1..=n / k {
            let gpus = topo.best_gpus((c * k) as usize, &all, &Constraints::default())?;
            let share = node_share_gbps(topo, &gpus);
            if share >= best.0 - 1e-9 {
                best = (share, c);
            }
        }
        caps.push(best.1);
    }
    Ok(caps)
}

/// Which GPUs are free, per node (bit p = the node's p-th GPU, ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeState {
    pub(crate) free: Vec<u64>,
}

impl FreeState {
    /// Every GPU free.
    pub fn all_free<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>) -> Self {
        FreeState {
            free: c.nodes.iter().map(|n| full_mask(n.gpus.len())).collect(),
        }
    }

    pub fn free_count(&self, node: usize) -> u32 {
        self.free.get(node).map_or(0, |m| m.count_ones())
    }

    pub fn total_free(&self) -> u64 {
        self.free.iter().map(|m| u64::from(m.count_ones())).sum()
    }

    /// Free GPU indices of a node, ascending.
    pub fn free_gpus<M: MachineLookup + ?Sized>(&self, c: &GangCluster<'_, M>, node: usize) -> Vec<u32> {
        let (Some(&mask), Some(n)) = (self.free.get(node), c.nodes.get(node)) else {
            return Vec::new();
        };
        n.gpus
            .iter()
            .enumerate()
            .filter(|(p, _)| mask & (1 << p) != 0)
            .map(|(_, &g)| g)
            .collect()
    }

    /// True when every GPU of the node is free.
    pub fn is_clean<M: MachineLookup + ?Sized>(&self, c: &GangCluster<'_, M>, node: usize) -> bool {
        c.nodes
            .get(node)
            .is_some_and(|n| self.free.get(node) == Some(&full_mask(n.gpus.len())))
    }

    pub(crate) fn bits<M: MachineLookup + ?Sized>(
        &self,
        c: &GangCluster<'_, M>,
        node: usize,
        gpus: &[u32],
    ) -> Result<Vec<u64>, GangError> {
        if self.free.len() != c.nodes.len() {
            return Err(GangError::StateSize {
                got: self.free.len(),
                want: c.nodes.len(),
            });
        }
        let n = c.nodes.get(node).ok_or(GangError::NodeIndex {
            index: node,
            nodes: c.nodes.len(),
        })?;
        gpus.iter()
            .map(|&g| {
                n.gpus
                    .binary_search(&g)
                    .map(|p| 1u64 << p)
                    .map_err(|_| GangError::UnknownGpu {
                        node: n.name.to_string(),
                        gpu: g,
                    })
            })
            .collect()
    }

    /// Sets the bits of `gpus` on `node` busy (`busy`) or free, ignoring
    /// GPUs already so and GPUs or nodes that do not exist. For hypothetical
    /// states (reservations, future releases), where no check is wanted.
    pub(crate) fn set<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        node: usize,
        gpus: &[u32],
        busy: bool,
    ) {
        let (Some(n), Some(mask)) = (c.nodes.get(node), self.free.get_mut(node)) else {
            return;
        };
        for g in gpus {
            if let Ok(p) = n.gpus.binary_search(g) {
                if busy {
                    *mask &= !(1u64 << p);
                } else {
                    *mask |= 1u64 << p;
                }
            }
        }
    }

    /// Marks GPUs of a node used. All or nothing: an error changes nothing.
    pub fn take<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        node: usize,
        gpus: &[u32],
    ) -> Result<(), GangError> {
        let bits = self.bits(c, node, gpus)?;
        let mut mask = self.free[node];
        for (b, &g) in bits.iter().zip(gpus) {
            if mask & b == 0 {
                return Err(GangError::GpuNotFree {
                    node: c.nodes[node].name.to_string(),
                    gpu: g,
                });
            }
            mask &= !b;
        }
        self.free[node] = mask;
        Ok(())
    }

    /// Marks GPUs of a node free again. All or nothing.
    pub fn release<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        node: usize,
        gpus: &[u32],
    ) -> Result<(), GangError> {
        let bits = self.bits(c, node, gpus)?;
        let mut mask = self.free[node];
        for (b, &g) in bits.iter().zip(gpus) {
            if mask & b != 0 {
                return Err(GangError::GpuAlreadyFree {
                    node: c.nodes[node].name.to_string(),
                    gpu: g,
                });
            }
            mask |= b;
        }
        self.free[node] = mask;
        Ok(())
    }

    /// Takes every member's GPUs. All or nothing.
    pub fn apply<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        plan: &GangPlan,
    ) -> Result<(), GangError> {
        let mut next = self.clone();
        for m in &plan.members {
            next.take(c, m.node_index, &m.gpus)?;
        }
        *self = next;
        Ok(())
    }

    /// Frees every member's GPUs. All or nothing.
    pub fn unapply<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        plan: &GangPlan,
    ) -> Result<(), GangError> {
        let mut next = self.clone();
        for m in &plan.members {
            next.release(c, m.node_index, &m.gpus)?;
        }
        *self = next;
        Ok(())
    }
}

pub(crate) fn full_mask(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}
