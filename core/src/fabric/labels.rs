//! Reading the fabric from Kubernetes node labels (PROTOCOLS §10).
//!
//! [`LabelScheme::Auto`] reads, per node, the first of these that is present:
//! - topograph v1: `fabric.topograph.run/tier-N` (tier 0 nearest the node, any
//!   number of tiers, no gaps);
//! - topograph's unreleased main: `network.topology.nvidia.com/tier-N`;
//! - topograph ≤ v0.5: `network.topology.nvidia.com/{leaf,spine,core}`.
//!
//! The NVLink domain is `accelerator.topograph.run/domain` (sub-domain
//! `accelerator.topograph.run/sub-domain`), else `xclr.topology.nvidia.com/domain`
//! (`…/sub-domain`), else `network.topology.nvidia.com/accelerator`, else
//! NVIDIA's `nvidia.com/gpu.clique` (`<ClusterUUID>.<CliqueID>`, checked).
//!
//! [`LabelScheme::Levels`] takes label keys coarsest first, as in a Kueue TAS
//! `Topology`; `kubernetes.io/hostname` may be the last level and is skipped
//! (it is the node itself).
//!
//! Labels carry one switch per tier, so rail-optimized pods are read with
//! [`LabelOptions::rails`]: the tier-0 value names the scalable unit's leaf
//! group and rail `r` gets leaf `<value>-rail<r>`, as the cluster YAML spells
//! `"<value>-rail{rail}"`.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{self, DraftChains, Fabric, Hop, NodeDraft, NvlDomain, Tier};
use crate::yaml::ConfigError;

const WHAT: &str = "node labels";

pub const TOPOGRAPH_TIER_PREFIX: &str = "fabric.topograph.run/tier-";
pub const TOPOGRAPH_DOMAIN: &str = "accelerator.topograph.run/domain";
pub const TOPOGRAPH_SUB_DOMAIN: &str = "accelerator.topograph.run/sub-domain";
pub const NEXT_TIER_PREFIX: &str = "network.topology.nvidia.com/tier-";
pub const NEXT_DOMAIN: &str = "xclr.topology.nvidia.com/domain";
pub const NEXT_SUB_DOMAIN: &str = "xclr.topology.nvidia.com/sub-domain";
pub const LEGACY_ACCELERATOR: &str = "network.topology.nvidia.com/accelerator";
pub const LEGACY_TIERS: [&str; 3] = [
    "network.topology.nvidia.com/leaf",
    "network.topology.nvidia.com/spine",
    "network.topology.nvidia.com/core",
];
pub const GPU_CLIQUE: &str = "nvidia.com/gpu.clique";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// Which labels hold the switch chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LabelScheme {
    /// topograph v1, then topograph main, then topograph ≤ v0.5, per node.
    #[default]
    Auto,
    /// Label keys coarsest first (Kueue TAS `spec.levels[].nodeLabel`).
    Levels(Vec<String>),
}

/// What labels do not say.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelOptions {
    /// Name of the resulting fabric.
    pub name: String,
    pub scheme: LabelScheme,
    /// Tier descriptions, tier 0 first. Tiers the labels use beyond these get
    /// `tier-N`, no link cap, 1:1.
    pub tiers: Vec<Tier>,
    /// Rail-optimized: split the tier-0 value into one leaf per rail `0..rails`.
    pub rails: Option<u32>,
    /// Label holding the node's machine profile name, if any.
    pub machine_label: Option<String>,
    /// Machine profile for nodes without `machine_label`.
    pub default_machine: Option<String>,
    /// Per-GPU bandwidth of every NVLink domain found (see [`NvlDomain::gbps`]).
    pub domain_gbps: Option<u32>,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            name: "cluster".into(),
            scheme: LabelScheme::Auto,
            tiers: Vec::new(),
            rails: None,
            machine_label: None,
            default_machine: None,
            domain_gbps: None,
        }
    }
}

type Labels = BTreeMap<String, String>;

/// A node's tiers nearest first: the label key read and its value, if set.
type LabelChain = Vec<(String, Option<Hop>)>;

impl Fabric {
    /// Builds the fabric from each node's labels (node name → labels).
    pub fn from_labels(nodes: &BTreeMap<String, Labels>, opts: &LabelOptions) -> Result<Self, ConfigError> {
        Self::read_labels(nodes, opts, false).map(|(f, _)| f)
    }

    /// As [`Fabric::from_labels`], but a node whose own labels do not parse
    /// (a typo in one tier label, a malformed clique) joins without topology
    /// — only its machine — and is returned with its error, instead of
    /// failing the whole read: one mislabelled node must not take the
    /// topology away from every other node. Errors between nodes (the same
    /// switch at two tiers) and in `opts` still fail.
    pub fn from_labels_lenient(
        nodes: &BTreeMap<String, Labels>,
        opts: &LabelOptions,
    ) -> Result<(Self, Vec<(String, ConfigError)>), ConfigError> {
        Self::read_labels(nodes, opts, true)
    }

    fn read_labels(
        nodes: &BTreeMap<String, Labels>,
        opts: &LabelOptions,
        lenient: bool,
    ) -> Result<(Self, Vec<(String, ConfigError)>), ConfigError> {
        if let LabelScheme::Levels(levels) = &opts.scheme {
            check_levels(levels)?;
        }
        if opts.rails.is_some_and(|r| r == 0 || r > 64) {
            return Err(ConfigError::invalid(
                WHAT,
                "options.rails",
                opts.rails.unwrap_or(0),
                "must be 1..=64",
            ));
        }
        let mut drafts = Vec::with_capacity(nodes.len());
        let mut domains = BTreeSet::new();
        let mut depth = 0;
        let mut skipped = Vec::new();
        for (node, labels) in nodes {
            let d = match draft(node, labels, opts) {
                Ok(d) => d,
                Err(e) if lenient => {
                    let machine_only: Labels = opts
                        .machine_label
                        .as_ref()
                        .and_then(|k| labels.get_key_value(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .into_iter()
                        .collect();
                    skipped.push((node.clone(), e));
                    draft(node, &machine_only, opts)?
                }
                Err(e) => return Err(e),
            };
            if let Some(dom) = &d.domain {
                domains.insert(dom.name.clone());
            }
            depth = depth.max(match &d.chains {
                DraftChains::Shared(c) => c.len(),
                DraftChains::PerRail(m) => m.values().map(Vec::len).max().unwrap_or(0),
            });
            drafts.push(d);
        }
        let mut tiers = opts.tiers.clone();
        for t in tiers.len()..depth {
            tiers.push(Tier::new(format!("tier-{t}")));
        }
        let domains = domains
            .into_iter()
            .map(|name| NvlDomain {
                name,
                gbps: opts.domain_gbps,
            })
            .collect();
        Ok((model::build(WHAT, opts.name.clone(), tiers, domains, drafts)?, skipped))
    }
}

fn check_levels(levels: &[String]) -> Result<(), ConfigError> {
    if levels.is_empty() || levels.len() > 16 {
        return Err(ConfigError::invalid(
            WHAT,
            "levels",
            levels.len(),
            "Kueue allows 1 to 16 levels",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, l) in levels.iter().enumerate() {
        if !seen.insert(l) {
            return Err(ConfigError::invalid(WHAT, format!("levels[{i}]"), l, "duplicate level"));
        }
        if l == HOSTNAME && i + 1 != levels.len() {
            return Err(ConfigError::invalid(
                WHAT,
                format!("levels[{i}]"),
                l,
                "the hostname can only be the last level",
            ));
        }
    }
    Ok(())
}

fn at(node: &str, key: &str) -> String {
    format!("{node}.labels[{key}]")
}

/// A non-empty label value with its path.
fn get(node: &str, labels: &Labels, key: &str) -> Option<Hop> {
    labels.get(key).filter(|v| !v.is_empty()).map(|v| Hop {
        name: v.clone(),
        at: at(node, key),
    })
}

fn draft(node: &str, labels: &Labels, opts: &LabelOptions) -> Result<NodeDraft, ConfigError> {
    let chain = match &opts.scheme {
        LabelScheme::Levels(levels) => levels
            .iter()
            .rev()
            .filter(|k| k.as_str() != HOSTNAME)
            .map(|k| (k.clone(), get(node, labels, k)))
            .collect(),
        LabelScheme::Auto => {
            if let Some(c) = numbered(node, labels, TOPOGRAPH_TIER_PREFIX)? {
                c
            } else if let Some(c) = numbered(node, labels, NEXT_TIER_PREFIX)? {
                c
            } else {
                LEGACY_TIERS
                    .iter()
                    .map(|k| (k.to_string(), get(node, labels, k)))
                    .collect()
            }
        }
    };
    let chain = no_gaps(node, chain)?;

    let domain = [TOPOGRAPH_DOMAIN, NEXT_DOMAIN, LEGACY_ACCELERATOR]
        .iter()
        .find_map(|k| get(node, labels, k));
    let domain = match domain {
        Some(d) => Some(d),
        None => get(node, labels, GPU_CLIQUE).map(check_clique).transpose()?,
    };
    let sub_domain = [TOPOGRAPH_SUB_DOMAIN, NEXT_SUB_DOMAIN]
        .iter()
        .find_map(|k| get(node, labels, k));

    let machine = opts
        .machine_label
        .as_ref()
        .and_then(|k| labels.get(k))
        .filter(|v| !v.is_empty())
        .or(opts.default_machine.as_ref())
        .cloned()
        .ok_or_else(|| {
            let key = opts.machine_label.as_deref().unwrap_or("(none)");
            ConfigError::invalid(
                WHAT,
                format!("{node}.labels"),
                key,
                "no machine label on the node and no default machine",
            )
        })?;

    let chains = match opts.rails {
        Some(rails) if !chain.is_empty() => DraftChains::PerRail(
            (0..rails)
                .map(|r| {
                    let mut c = chain.clone();
                    c[0].name = format!("{}-rail{r}", c[0].name);
                    (r, c)
                })
                .collect(),
        ),
        _ => DraftChains::Shared(chain),
    };
    Ok(NodeDraft {
        name: node.to_string(),
        at: format!("{node}.labels"),
        machine,
        domain,
        sub_domain,
        chains,
    })
}

/// `prefix<N>` labels in tier order, or `None` if the node has none.
fn numbered(node: &str, labels: &Labels, prefix: &str) -> Result<Option<LabelChain>, ConfigError> {
    let mut tiers: BTreeMap<usize, (String, Option<Hop>)> = BTreeMap::new();
    for (k, v) in labels
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
    {
        let n = &k[prefix.len()..];
        // Plain decimal only: `tier-01` would be a second spelling of tier 1.
        let tier: usize = n
            .parse()
            .ok()
            .filter(|t: &usize| t.to_string() == n && *t < 64)
            .ok_or_else(|| ConfigError::invalid(WHAT, at(node, k), v, "tier must be a number 0..64"))?;
        tiers.insert(tier, (k.clone(), get(node, labels, k)));
    }
    if tiers.is_empty() {
        return Ok(None);
    }
    let top = tiers.keys().next_back().copied().unwrap_or(0);
    Ok(Some(
        (0..=top)
            .map(|t| tiers.remove(&t).unwrap_or_else(|| (format!("{prefix}{t}"), None)))
            .collect(),
    ))
}

/// Tier values nearest the node first; trailing absent tiers are dropped, an
/// absent tier below a present one is an error.
fn no_gaps(node: &str, chain: LabelChain) -> Result<Vec<Hop>, ConfigError> {
    let len = chain.iter().rposition(|(_, h)| h.is_some()).map_or(0, |i| i + 1);
    let mut out = Vec::with_capacity(len);
    for (i, (key, hop)) in chain.into_iter().take(len).enumerate() {
        match hop {
            Some(h) => out.push(h),
            None => {
                return Err(ConfigError::invalid(
                    WHAT,
                    at(node, &key),
                    "",
                    format!("tier {i} is missing while a higher tier is set"),
                ));
            }
        }
    }
    Ok(out)
}

/// `<ClusterUUID>.<CliqueID>`: canonical UUID text, a dot, a decimal id.
fn check_clique(h: Hop) -> Result<Hop, ConfigError> {
    let ok = h.name.rsplit_once('.').is_some_and(|(uuid, id)| {
        let canonical = uuid.len() == 36
            && uuid.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        canonical && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    });
    if ok {
        Ok(h)
    } else {
        Err(ConfigError::invalid(
            WHAT,
            &h.at,
            &h.name,
            "expected <ClusterUUID>.<CliqueID>",
        ))
    }
}
