//! The fabric's data model and the builder both the YAML and the label
//! readers go through.

use std::collections::BTreeMap;

use crate::yaml::ConfigError;

/// One tier of switches. Tier 0 is the leaf tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    /// Speed of one link from the tier below into a switch of this tier, Gb/s
    /// (for tier 0: the node-to-leaf link). `None`: never the bottleneck.
    pub link_gbps: Option<u32>,
    /// Down- to uplink bandwidth ratio of the tier below, as `r` in `r:1`:
    /// traffic that has to climb to this tier gets `1/r` of its bandwidth.
    /// Always 1 for tier 0, since a leaf switch is non-blocking among its ports.
    pub oversubscription: f64,
}

impl Tier {
    pub fn new(name: impl Into<String>) -> Self {
        Tier {
            name: name.into(),
            link_gbps: None,
            oversubscription: 1.0,
        }
    }
}

/// Index of a switch in [`Fabric::switches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SwitchId(pub u32);

/// Index of an NVLink domain in [`Fabric::domains`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub name: String,
    pub tier: usize,
    /// The switch (or logical block) one tier up; `None` at the top.
    pub parent: Option<SwitchId>,
}

/// A multi-node NVLink domain (e.g. a GB200 NVL72 rack, an IMEX clique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvlDomain {
    pub name: String,
    /// Per-GPU NVLink bandwidth across the domain, GB/s one way. `None`: the
    /// GPUs' own NVLink bandwidth from the catalog.
    pub gbps: Option<u32>,
}

/// Where a node's NICs plug into the network: the tier-0 switch(es).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplinks {
    /// Not on the fabric (no labels, or a stand-alone node).
    None,
    /// All NICs on one leaf (or the fabric is described per node, not per rail).
    Shared(SwitchId),
    /// Rail-optimized: the leaf of each rail.
    PerRail(BTreeMap<u32, SwitchId>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Machine profile name (`configs/machines/<name>.yaml`).
    pub machine: String,
    pub domain: Option<DomainId>,
    /// Finer grouping inside the domain (topograph's `sub-domain`, e.g. a rack).
    pub sub_domain: Option<String>,
    pub uplinks: Uplinks,
}

impl Node {
    /// The leaf a NIC on `rail` uses. Shared uplinks serve every rail.
    pub fn leaf(&self, rail: Option<u32>) -> Option<SwitchId> {
        match &self.uplinks {
            Uplinks::None => None,
            Uplinks::Shared(s) => Some(*s),
            Uplinks::PerRail(m) => rail.and_then(|r| m.get(&r).copied()),
        }
    }

    /// The leaf used to group nodes: the shared one, else the lowest rail's.
    pub fn primary_leaf(&self) -> Option<SwitchId> {
        match &self.uplinks {
            Uplinks::None => None,
            Uplinks::Shared(s) => Some(*s),
            Uplinks::PerRail(m) => m.values().next().copied(),
        }
    }
}

/// Nodes that meet at or below one switch of a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup<'a> {
    /// The switch at the grouping tier (or the node's topmost switch when its
    /// chain ends below that tier); `None` for nodes off the fabric.
    pub switch: Option<&'a Switch>,
    pub nodes: Vec<&'a str>,
}

/// The cluster fabric. Nodes, switches and domains are sorted by name (switches
/// by tier, then name), so equal clusters compare equal however they were read.
#[derive(Debug, Clone, PartialEq)]
pub struct Fabric {
    pub(crate) name: String,
    pub(crate) tiers: Vec<Tier>,
    pub(crate) switches: Vec<Switch>,
    pub(crate) domains: Vec<NvlDomain>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) by_name: BTreeMap<String, usize>,
}

impl Fabric {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }
    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }
    pub fn domains(&self) -> &[NvlDomain] {
        &self.domains
    }
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }
    pub fn switch(&self, id: SwitchId) -> &Switch {
        &self.switches[id.0 as usize]
    }
    pub fn domain(&self, id: DomainId) -> &NvlDomain {
        &self.domains[id.0 as usize]
    }

    /// A switch and its ancestors, tier by tier.
    pub fn chain(&self, leaf: SwitchId) -> impl Iterator<Item = SwitchId> + '_ {
        std::iter::successors(Some(leaf), |&s| self.switch(s).parent)
    }

    /// The switch at `tier` above `from`, if its chain reaches that high.
    pub fn ancestor(&self, from: SwitchId, tier: usize) -> Option<SwitchId> {
        self.chain(from).find(|&s| self.switch(s).tier == tier)
    }

    /// The tier where the chains above two leaves first share a switch.
    /// Leaves are all tier 0 and parents exactly one tier up, so walking both
    /// in step compares switches of the same tier: O(tiers).
    pub fn meet(&self, a: SwitchId, b: SwitchId) -> Option<usize> {
        let mut a = Some(a);
        let mut b = Some(b);
        while let (Some(x), Some(y)) = (a, b) {
            if x == y {
                return Some(self.switch(x).tier);
            }
            a = self.switch(x).parent;
            b = self.switch(y).parent;
        }
        None
    }

    /// Lowest tier at which two nodes' networks meet: 0 = a shared leaf, 1 = a
    /// shared spine block, … For rail-optimized nodes, the best rail both have.
    /// `None` when they never meet (different fabrics, or off the fabric).
    pub fn common_tier(&self, a: &str, b: &str) -> Result<Option<usize>, super::FabricError> {
        let na = self
            .node(a)
            .ok_or_else(|| super::FabricError::UnknownNode { node: a.into() })?;
        let nb = self
            .node(b)
            .ok_or_else(|| super::FabricError::UnknownNode { node: b.into() })?;
        Ok(self.node_meet(na, nb))
    }

    pub(crate) fn node_meet(&self, a: &Node, b: &Node) -> Option<usize> {
        use Uplinks::{None as Off, PerRail, Shared};
        match (&a.uplinks, &b.uplinks) {
            (Off, _) | (_, Off) => None,
            (Shared(x), Shared(y)) => self.meet(*x, *y),
            (Shared(x), PerRail(m)) | (PerRail(m), Shared(x)) => m.values().filter_map(|&y| self.meet(*x, y)).min(),
            (PerRail(m), PerRail(n)) => m
                .iter()
                .filter_map(|(r, &x)| n.get(r).and_then(|&y| self.meet(x, y)))
                .min(),
        }
    }

    /// Nodes grouped by their switch at `tier` (by the lowest rail's chain for
    /// rail-optimized nodes; in a scalable unit every rail agrees). Nodes whose
    /// chain ends below `tier` are grouped under their topmost switch. Groups
    /// are sorted by switch id, nodes by name.
    pub fn groups_at_tier(&self, tier: usize) -> Vec<NodeGroup<'_>> {
        let mut groups: BTreeMap<Option<SwitchId>, Vec<&str>> = BTreeMap::new();
        for n in &self.nodes {
            let key = n
                .primary_leaf()
                .and_then(|leaf| self.chain(leaf).take_while(|&s| self.switch(s).tier <= tier).last());
            groups.entry(key).or_default().push(&n.name);
        }
        groups
            .into_iter()
            .map(|(k, nodes)| NodeGroup {
                switch: k.map(|s| self.switch(s)),
                nodes,
            })
            .collect()
    }

    /// Nodes of each NVLink domain, sorted by domain name.
    pub fn domain_groups(&self) -> Vec<(&NvlDomain, Vec<&str>)> {
        let mut out: Vec<(&NvlDomain, Vec<&str>)> = self.domains.iter().map(|d| (d, Vec::new())).collect();
        for n in &self.nodes {
            if let Some(d) = n.domain {
                out[d.0 as usize].1.push(&n.name);
            }
        }
        out
    }
}

/// One switch name in a node's chain, with the config path it came from.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    pub name: String,
    pub at: String,
}

#[derive(Debug, Clone)]
pub(crate) enum DraftChains {
    Shared(Vec<Hop>),
    PerRail(BTreeMap<u32, Vec<Hop>>),
}

/// A node as a reader found it, before switches are interned.
#[derive(Debug, Clone)]
pub(crate) struct NodeDraft {
    pub name: String,
    /// Config path of the node, for errors (`groups[2]`, `dgx-001.labels`).
    pub at: String,
    pub machine: String,
    pub domain: Option<Hop>,
    pub sub_domain: Option<Hop>,
    pub chains: DraftChains,
}

/// Interns switches, checks that the switches form a forest (one parent per
/// switch, parents one tier up) and sorts everything by name.
pub(crate) fn build(
    what: &str,
    name: String,
    tiers: Vec<Tier>,
    domains: Vec<NvlDomain>,
    drafts: Vec<NodeDraft>,
) -> Result<Fabric, ConfigError> {
    for (i, t) in tiers.iter().enumerate() {
        let r = t.oversubscription;
        if !r.is_finite() || r < 1.0 {
            return Err(ConfigError::invalid(
                what,
                format!("tiers[{i}].oversubscription"),
                r,
                "must be a number ≥ 1 (2 means 2:1)",
            ));
        }
        if i == 0 && r != 1.0 {
            return Err(ConfigError::invalid(
                what,
                "tiers[0].oversubscription",
                r,
                "the leaf tier has none; give the ratio on the tier the traffic climbs to",
            ));
        }
        if t.link_gbps == Some(0) {
            return Err(ConfigError::invalid(
                what,
                format!("tiers[{i}].link_gbps"),
                0,
                "must be positive",
            ));
        }
    }
    let mut domain_ids = BTreeMap::new();
    for (i, d) in domains.iter().enumerate() {
        if domain_ids.insert(d.name.clone(), ()).is_some() {
            return Err(ConfigError::invalid(
                what,
                format!("nvlink_domains[{i}].name"),
                &d.name,
                "duplicate NVLink domain",
            ));
        }
        if d.gbps == Some(0) {
            return Err(ConfigError::invalid(
                what,
                format!("nvlink_domains[{i}].gbps"),
                0,
                "must be positive",
            ));
        }
    }

    // (tier, name) → parent name with the path that said so.
    let mut parents: BTreeMap<(usize, String), Option<Hop>> = BTreeMap::new();
    let mut seen_nodes: BTreeMap<&str, &str> = BTreeMap::new();
    for d in &drafts {
        if d.name.is_empty() {
            return Err(ConfigError::invalid(what, &d.at, "", "node name is empty"));
        }
        if let Some(first) = seen_nodes.insert(&d.name, &d.at) {
            return Err(ConfigError::invalid(
                what,
                &d.at,
                &d.name,
                format!("duplicate node (also at {first})"),
            ));
        }
        if let Some(dom) = &d.domain
            && !domain_ids.contains_key(&dom.name)
        {
            return Err(ConfigError::invalid(what, &dom.at, &dom.name, "no such NVLink domain"));
        }
        if let (Some(sub), None) = (&d.sub_domain, &d.domain) {
            return Err(ConfigError::invalid(
                what,
                &sub.at,
                &sub.name,
                "a sub-domain needs an NVLink domain",
            ));
        }
        let chains: Vec<&Vec<Hop>> = match &d.chains {
            DraftChains::Shared(c) => vec![c],
            DraftChains::PerRail(m) => m.values().collect(),
        };
        for chain in chains {
            for (tier, hop) in chain.iter().enumerate() {
                if tier >= tiers.len() {
                    return Err(ConfigError::invalid(
                        what,
                        &hop.at,
                        &hop.name,
                        format!("tier {tier} is not declared (the fabric has {} tiers)", tiers.len()),
                    ));
                }
                if hop.name.is_empty() {
                    return Err(ConfigError::invalid(what, &hop.at, "", "switch name is empty"));
                }
                let up = chain.get(tier + 1).cloned();
                let entry = parents.entry((tier, hop.name.clone())).or_insert(None);
                match (entry.as_ref(), up) {
                    (_, None) => {}
                    (None, Some(up)) => *entry = Some(up),
                    (Some(known), Some(up)) if known.name != up.name => {
                        return Err(ConfigError::invalid(
                            what,
                            &up.at,
                            &up.name,
                            format!(
                                "switch `{}` (tier {tier}) is already under `{}` (from {})",
                                hop.name, known.name, known.at
                            ),
                        ));
                    }
                    (Some(_), Some(_)) => {}
                }
            }
        }
    }

    // Make sure every named parent exists as a switch of its own.
    let uppers: Vec<(usize, String)> = parents
        .iter()
        .filter_map(|((t, _), p)| p.as_ref().map(|p| (t + 1, p.name.clone())))
        .collect();
    for k in uppers {
        parents.entry(k).or_insert(None);
    }
    let ids: BTreeMap<(usize, String), SwitchId> = parents
        .keys()
        .enumerate()
        .map(|(i, k)| (k.clone(), SwitchId(i as u32)))
        .collect();
    let switches: Vec<Switch> = parents
        .iter()
        .map(|((tier, name), p)| Switch {
            name: name.clone(),
            tier: *tier,
            parent: p.as_ref().and_then(|p| ids.get(&(tier + 1, p.name.clone())).copied()),
        })
        .collect();

    let mut domains = domains;
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    let domain_index: BTreeMap<&str, DomainId> = domains
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), DomainId(i as u32)))
        .collect();
    let leaf = |c: &[Hop]| c.first().and_then(|h| ids.get(&(0, h.name.clone())).copied());
    let mut nodes: Vec<Node> = drafts
        .iter()
        .map(|d| Node {
            name: d.name.clone(),
            machine: d.machine.clone(),
            domain: d
                .domain
                .as_ref()
                .and_then(|h| domain_index.get(h.name.as_str()).copied()),
            sub_domain: d.sub_domain.as_ref().map(|h| h.name.clone()),
            uplinks: match &d.chains {
                DraftChains::Shared(c) => leaf(c).map_or(Uplinks::None, Uplinks::Shared),
                DraftChains::PerRail(m) => {
                    let m: BTreeMap<u32, SwitchId> = m.iter().filter_map(|(r, c)| leaf(c).map(|s| (*r, s))).collect();
                    if m.is_empty() {
                        Uplinks::None
                    } else {
                        Uplinks::PerRail(m)
                    }
                }
            },
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    Ok(Fabric {
        name,
        tiers,
        switches,
        domains,
        nodes,
        by_name,
    })
}
