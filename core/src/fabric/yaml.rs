//! Cluster YAML (`configs/clusters/*.yaml`).
//!
//! ```yaml
//! name: dgx-h100-pod32
//! description: free text            # optional
//! tiers:                            # tier 0 (leaf) first, then outwards
//!   - name: leaf
//!     link_gbps: 400                # optional: speed of links into this tier, Gb/s
//!   - name: spine
//!     oversubscription: 1           # optional, default 1; r for r:1 on the climb into this tier
//! nvlink_domains:                   # optional: multi-node NVLink domains
//!   - name: nvl72-rack1
//!     gbps: 900                     # optional: per-GPU GB/s; default the GPUs' NVLink
//! groups:                           # nodes, a group at a time
//!   - pattern: "dgx-{i:03}"         # `{i}`, or `{i:N}` zero-padded to N digits ...
//!     first: 1                      # optional, default 0
//!     count: 32
//!     # names: [a, b]               # ... or list the names instead of pattern/count
//!     machine: dgx-h100             # machine profile name
//!     rails: 8                      # optional: rail-optimized, rails 0..8
//!     switches: ["su1-rail{rail}", "spine"]   # tier 0 first; `{rail}` = the rail
//!     nvlink_domain: nvl72-rack1    # optional
//!     sub_domain: tray-a            # optional, only with nvlink_domain
//! ```
//!
//! With `rails`, each rail gets its own chain with `{rail}` replaced; the leaf
//! name must contain `{rail}`, names without it are shared by every rail (a
//! spine block all rail leaves connect to). Without `rails` the node has one
//! chain for all its NICs and `{rail}` is an error. Oversubscription is given
//! on the tier traffic climbs *to* (the spine tier's ratio applies to every
//! path through a spine); the leaf tier has none.

use serde::Deserialize;

use super::model::{self, DraftChains, Hop, NodeDraft, NvlDomain, Tier};
use crate::yaml::{ConfigError, from_yaml};

pub(crate) const WHAT: &str = "cluster fabric";

/// Cap on the nodes a single group may expand to, so a typo in `count` fails
/// fast instead of allocating millions of nodes.
const MAX_GROUP_NODES: u32 = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterYaml {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub tiers: Vec<TierYaml>,
    #[serde(default)]
    pub nvlink_domains: Vec<DomainYaml>,
    pub groups: Vec<GroupYaml>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierYaml {
    pub name: String,
    #[serde(default)]
    pub link_gbps: Option<u32>,
    #[serde(default = "one")]
    pub oversubscription: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainYaml {
    pub name: String,
    #[serde(default)]
    pub gbps: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupYaml {
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub first: u32,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub names: Vec<String>,
    pub machine: String,
    #[serde(default)]
    pub rails: Option<u32>,
    #[serde(default)]
    pub switches: Vec<String>,
    #[serde(default)]
    pub nvlink_domain: Option<String>,
    #[serde(default)]
    pub sub_domain: Option<String>,
}

impl model::Fabric {
    /// Parses and validates a cluster YAML. Errors name the field path and value.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let doc: ClusterYaml = from_yaml(WHAT, text)?;
        Self::from_cluster_yaml(&doc)
    }

    pub fn from_cluster_yaml(doc: &ClusterYaml) -> Result<Self, ConfigError> {
        if doc.tiers.is_empty() {
            return Err(ConfigError::invalid(WHAT, "tiers", "[]", "give at least the leaf tier"));
        }
        let tiers = doc
            .tiers
            .iter()
            .map(|t| Tier {
                name: t.name.clone(),
                link_gbps: t.link_gbps,
                oversubscription: t.oversubscription,
            })
            .collect();
        let domains = doc
            .nvlink_domains
            .iter()
            .map(|d| NvlDomain {
                name: d.name.clone(),
                gbps: d.gbps,
            })
            .collect();
        let mut drafts = Vec::new();
        for (gi, g) in doc.groups.iter().enumerate() {
            expand_group(gi, g, &mut drafts)?;
        }
        model::build(WHAT, doc.name.clone(), tiers, domains, drafts)
    }
}

fn expand_group(gi: usize, g: &GroupYaml, out: &mut Vec<NodeDraft>) -> Result<(), ConfigError> {
    let at = |f: &str| format!("groups[{gi}].{f}");
    let names: Vec<(String, String)> = match (&g.pattern, g.count, g.names.is_empty()) {
        (Some(p), Some(count), true) => {
            if count == 0 || count > MAX_GROUP_NODES {
                return Err(ConfigError::invalid(
                    WHAT,
                    at("count"),
                    count,
                    format!("must be 1..={MAX_GROUP_NODES}"),
                ));
            }
            let last = g
                .first
                .checked_add(count - 1)
                .ok_or_else(|| ConfigError::invalid(WHAT, at("first"), g.first, "first + count overflows"))?;
            (g.first..=last)
                .map(|i| expand_pattern(p, i).map(|n| (n, format!("groups[{gi}] (node {i})"))))
                .collect::<Result<_, _>>()
                .map_err(|reason| ConfigError::invalid(WHAT, at("pattern"), p, reason))?
        }
        (None, None, false) => g
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), format!("groups[{gi}].names[{i}]")))
            .collect(),
        (Some(p), None, _) => return Err(ConfigError::invalid(WHAT, at("pattern"), p, "a pattern needs a count")),
        (None, Some(c), _) => return Err(ConfigError::invalid(WHAT, at("count"), c, "a count needs a pattern")),
        (Some(p), Some(_), false) => {
            return Err(ConfigError::invalid(
                WHAT,
                at("pattern"),
                p,
                "give either pattern and count or names, not both",
            ));
        }
        (None, None, true) => {
            return Err(ConfigError::invalid(
                WHAT,
                at("names"),
                "[]",
                "give names, or pattern and count",
            ));
        }
    };

    let has_rail = |s: &str| s.contains("{rail}");
    let hop = |name: String, k: usize| Hop {
        name,
        at: format!("groups[{gi}].switches[{k}]"),
    };
    let chains = match g.rails {
        Some(rails) => {
            if rails == 0 || rails > 64 {
                return Err(ConfigError::invalid(WHAT, at("rails"), rails, "must be 1..=64"));
            }
            match g.switches.first() {
                Some(leaf) if has_rail(leaf) => {}
                Some(leaf) => {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("switches[0]"),
                        leaf,
                        "with rails, the leaf name must contain `{rail}` (one leaf per rail)",
                    ));
                }
                None => return Err(ConfigError::invalid(WHAT, at("switches"), "[]", "rails need switches")),
            }
            DraftChains::PerRail(
                (0..rails)
                    .map(|r| {
                        let c = g
                            .switches
                            .iter()
                            .enumerate()
                            .map(|(k, s)| hop(s.replace("{rail}", &r.to_string()), k));
                        (r, c.collect())
                    })
                    .collect(),
            )
        }
        None => {
            if let Some((k, s)) = g.switches.iter().enumerate().find(|(_, s)| has_rail(s)) {
                return Err(ConfigError::invalid(
                    WHAT,
                    at(&format!("switches[{k}]")),
                    s,
                    "`{rail}` needs `rails`",
                ));
            }
            DraftChains::Shared(g.switches.iter().enumerate().map(|(k, s)| hop(s.clone(), k)).collect())
        }
    };
    let domain = g.nvlink_domain.clone().map(|name| Hop {
        name,
        at: at("nvlink_domain"),
    });
    let sub_domain = g.sub_domain.clone().map(|name| Hop {
        name,
        at: at("sub_domain"),
    });
    out.extend(names.into_iter().map(|(name, node_at)| NodeDraft {
        name,
        at: node_at,
        machine: g.machine.clone(),
        domain: domain.clone(),
        sub_domain: sub_domain.clone(),
        chains: chains.clone(),
    }));
    Ok(())
}

/// Replaces `{i}` or `{i:N}` (zero-padded to N digits) in `p` with `i`.
fn expand_pattern(p: &str, i: u32) -> Result<String, String> {
    let start = p.find("{i").ok_or("pattern needs `{i}` or `{i:N}`")?;
    let end = start + p[start..].find('}').ok_or("unclosed `{i`")?;
    let spec = &p[start + 2..end];
    let num = match spec.strip_prefix(':') {
        None if spec.is_empty() => i.to_string(),
        Some(w) => {
            let w: usize = w
                .parse()
                .ok()
                .filter(|w| *w <= 12)
                .ok_or_else(|| format!("`{{i{spec}}}`: width must be a number up to 12"))?;
            format!("{i:0w$}")
        }
        None => return Err(format!("`{{i{spec}}}` is not `{{i}}` or `{{i:N}}`")),
    };
    let rest = &p[end + 1..];
    if rest.contains("{i") {
        return Err("only one `{i}` allowed".into());
    }
    Ok(format!("{}{num}{rest}", &p[..start]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(expand_pattern("dgx-{i:03}", 7).as_deref(), Ok("dgx-007"));
        assert_eq!(expand_pattern("n{i}.x", 12).as_deref(), Ok("n12.x"));
        assert!(expand_pattern("node", 1).is_err());
        assert!(expand_pattern("n{i:x}", 1).is_err());
        assert!(expand_pattern("n{i}{i}", 1).is_err());
        assert!(expand_pattern("n{ix}", 1).is_err());
    }
}
