//! Which GPU products a pod may land on: its `nodeSelector` and required
//! node affinity on `nvidia.com/gpu.product`, the label GPU feature
//! discovery sets. The extender does not filter by them (kube-scheduler
//! already did); the packing model needs them to weigh constrained demand
//! (see `packing::constraints`). Matching follows Kubernetes: terms are
//! ORed, a term's expressions ANDed with the nodeSelector, `NotIn` and
//! `DoesNotExist` match a node without the label.

use std::collections::BTreeSet;

use super::ask::GPU_PRODUCT_LABEL;
use crate::packing::{ModelMask, ModelTable};

/// Most selector terms and product values read from one pod. A pod over
/// these is treated as unconstrained: only the packing mix loses it, and
/// kube-scheduler still enforces it.
pub const MAX_PRODUCT_TERMS: usize = 32;
pub const MAX_PRODUCT_VALUES: usize = 256;

/// One node-selector requirement as the API spells it.
#[derive(Debug, Clone, Copy)]
pub struct Requirement<'a> {
    pub key: &'a str,
    pub operator: &'a str,
    pub values: &'a [String],
}

/// The products one selector term allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
struct Term {
    /// `In` (and the nodeSelector): the product must be in each set.
    within: Vec<BTreeSet<String>>,
    /// `NotIn`: never these.
    outside: BTreeSet<String>,
    /// `Exists` (true) / `DoesNotExist` (false).
    labelled: Option<bool>,
    /// Contradictory (`Exists` and `DoesNotExist`): matches nothing.
    never: bool,
}

impl Term {
    fn allows(&self, product: Option<&str>) -> bool {
        if self.never {
            return false;
        }
        match product {
            None => self.within.is_empty() && self.labelled != Some(true),
            Some(p) => {
                self.labelled != Some(false) && !self.outside.contains(p) && self.within.iter().all(|s| s.contains(p))
            }
        }
    }
}

/// The GPU products a pod's node constraints allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GpuProducts {
    /// `None`: any product. Otherwise the ORed terms that constrain it.
    terms: Option<Vec<Term>>,
}

impl GpuProducts {
    /// Any product.
    pub const ANY: GpuProducts = GpuProducts { terms: None };

    /// From a pod's `spec.nodeSelector` entry for the product label and its
    /// required node affinity terms (each a list of `matchExpressions`).
    pub fn from_pod<'a>(
        node_selector: Option<&'a str>,
        terms: impl IntoIterator<Item = impl IntoIterator<Item = Requirement<'a>>>,
    ) -> GpuProducts {
        let base = || {
            let mut t = Term::default();
            if let Some(v) = node_selector {
                t.within.push(BTreeSet::from([v.to_string()]));
            }
            t
        };
        let mut out = Vec::new();
        let (mut any_term, mut values) = (false, 0usize);
        for reqs in terms {
            any_term = true;
            let mut t = base();
            for r in reqs.into_iter().filter(|r| r.key == GPU_PRODUCT_LABEL) {
                values += r.values.len();
                if out.len() >= MAX_PRODUCT_TERMS || values > MAX_PRODUCT_VALUES {
                    return GpuProducts::ANY;
                }
                let set = || r.values.iter().cloned().collect::<BTreeSet<_>>();
                match r.operator {
                    "In" => t.within.push(set()),
                    "NotIn" => t.outside.extend(set()),
                    "Exists" => t.never |= t.labelled.replace(true) == Some(false),
                    "DoesNotExist" => t.never |= t.labelled.replace(false) == Some(true),
                    // Gt/Lt parse the value as an integer: no product is one.
                    _ => t.never = true,
                }
            }
            if t == Term::default() {
                // A term that does not constrain the product: any product.
                return GpuProducts::ANY;
            }
            out.push(t);
        }
        if !any_term {
            let t = base();
            if t == Term::default() {
                return GpuProducts::ANY;
            }
            out.push(t);
        }
        GpuProducts { terms: Some(out) }
    }

    pub fn is_any(&self) -> bool {
        self.terms.is_none()
    }

    /// Whether a node labelled `product` (`None`: unlabelled) matches.
    pub fn allows(&self, product: Option<&str>) -> bool {
        self.terms
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t.allows(product)))
    }

    /// The packing model's constraint over the products interned in
    /// `models`: [`ModelMask::ANY`] when every one is allowed (the model
    /// cannot tell "any" from "all of them", and it places the same), a
    /// mask no model satisfies when none is.
    pub fn mask(&self, models: &ModelTable) -> ModelMask {
        if self.is_any() {
            return ModelMask::ANY;
        }
        let all = models.all();
        let mut bits = 0u64;
        for i in 0..models.len() {
            let id = crate::packing::ModelId(i as u8);
            if self.allows(Some(models.name(id))) {
                bits |= 1u64 << i;
            }
        }
        match bits {
            b if b == all.0 => ModelMask::ANY,
            0 => ModelMask(1u64 << 63),
            b => ModelMask(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(op: &'a str, values: &'a [String]) -> Requirement<'a> {
        Requirement {
            key: GPU_PRODUCT_LABEL,
            operator: op,
            values,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const NONE: [[Requirement<'static>; 0]; 0] = [];

    #[test]
    fn node_selector_and_affinity_follow_kubernetes_matching() {
        let p = GpuProducts::from_pod(Some("Tesla-T4"), NONE);
        assert!(p.allows(Some("Tesla-T4")) && !p.allows(Some("A100")) && !p.allows(None));

        let (t4, v) = (s(&["Tesla-T4"]), s(&["V100-16", "V100-32"]));
        // Two terms ORed.
        let p = GpuProducts::from_pod(None, [vec![req("In", &t4)], vec![req("In", &v)]]);
        assert!(p.allows(Some("Tesla-T4")) && p.allows(Some("V100-32")) && !p.allows(Some("A100")));
        // NotIn matches an unlabelled node, as in Kubernetes.
        let p = GpuProducts::from_pod(None, [vec![req("NotIn", &t4)]]);
        assert!(!p.allows(Some("Tesla-T4")) && p.allows(Some("A100")) && p.allows(None));
        // The nodeSelector is ANDed into every term.
        let p = GpuProducts::from_pod(Some("V100-16"), [vec![req("In", &v)], vec![req("NotIn", &t4)]]);
        assert!(p.allows(Some("V100-16")) && !p.allows(Some("V100-32")));
        // A term on other labels only leaves the product free.
        let zone = Requirement {
            key: "topology.kubernetes.io/zone",
            operator: "In",
            values: &t4,
        };
        assert!(GpuProducts::from_pod(None, [vec![zone]]).is_any());
        assert!(GpuProducts::from_pod(None, [vec![req("In", &t4)], vec![zone]]).is_any());
        // Contradictions and Gt on a product match nothing.
        let p = GpuProducts::from_pod(None, [vec![req("Exists", &[]), req("DoesNotExist", &[])]]);
        assert!(!p.allows(Some("A100")) && !p.allows(None));
        assert!(!GpuProducts::from_pod(None, [vec![req("Gt", &s(&["3"]))]]).allows(Some("3")));
    }

    #[test]
    fn masks_over_the_interned_models() {
        let mut t = ModelTable::default();
        let t4 = t.intern("Tesla-T4").expect("intern");
        let a100 = t.intern("A100").expect("intern");
        let only = s(&["Tesla-T4"]);
        let p = GpuProducts::from_pod(None, [vec![req("In", &only)]]);
        assert_eq!(p.mask(&t), ModelMask(1 << t4.0));
        // Allowing every model is the same as no constraint.
        let both = s(&["Tesla-T4", "A100"]);
        assert_eq!(
            GpuProducts::from_pod(None, [vec![req("In", &both)]]).mask(&t),
            ModelMask::ANY
        );
        // None allowed: a mask no model satisfies.
        let m = GpuProducts::from_pod(Some("H100"), NONE).mask(&t);
        assert!(!m.allows(Some(t4)) && !m.allows(Some(a100)));
    }

    #[test]
    fn oversized_selectors_are_unconstrained() {
        let many: Vec<String> = (0..=MAX_PRODUCT_VALUES).map(|i| format!("m{i}")).collect();
        assert!(GpuProducts::from_pod(None, [vec![req("In", &many)]]).is_any());
        let one = s(&["T4"]);
        let terms: Vec<Vec<Requirement>> = (0..=MAX_PRODUCT_TERMS).map(|_| vec![req("In", &one)]).collect();
        assert!(GpuProducts::from_pod(None, terms).is_any());
    }
}
