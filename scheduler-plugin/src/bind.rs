//! `bind`: choose the devices, assume them, create the Binding with the
//! decision annotations; undo the assumption when the API refuses.
//!
//! A pod this extender did not filter (it restarted between kube-scheduler's
//! filter and bind, or another replica filtered it) is read from the API
//! and, if it is a gang member, matched to its slot as filter would have.

use std::collections::BTreeMap;

use railyard_core::extender::{GangFilter, PodAsk};

use crate::app::{AppState, BindRequest};
use crate::decision::{Decision, SIGNATURE_ANNOTATION};
use crate::k8s::{self, GANG_PLAN_ANNOTATION, GANG_SLOT_ANNOTATION, GPUS_ANNOTATION};
use crate::metrics::Metrics;
use crate::wire::{ExtenderBindingArgs, ExtenderBindingResult};

impl AppState {
    /// `bind`: choose devices, assume, create the Binding; undo on failure.
    pub async fn bind(&self, args: ExtenderBindingArgs) -> ExtenderBindingResult {
        let fail = |m: &Metrics, e: String| {
            m.decision("bind", "bind_failed");
            ExtenderBindingResult { error: e }
        };
        if args.pod_name.is_empty() || args.node.is_empty() {
            return fail(&self.metrics, "PodName and Node are required".into());
        }
        // The same defaults as filter (`k8s::pod_uid`), so both find one entry.
        let namespace = if args.pod_namespace.is_empty() {
            "default".to_string()
        } else {
            args.pod_namespace.clone()
        };
        let uid = if args.pod_uid.is_empty() {
            format!("{namespace}/{}", args.pod_name)
        } else {
            args.pod_uid.clone()
        };
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&uid)
            .cloned();
        let (uid, ask) = match pending {
            Some(ask) => (uid, ask),
            None => match self.unfiltered(&namespace, &args).await {
                Ok(found) => found,
                Err(e) => return fail(&self.metrics, e),
            },
        };
        let assumed = self.view_mut().assume(&uid, &ask, &args.node);
        let assumed = match assumed {
            Ok(a) => a,
            Err(e) => return fail(&self.metrics, e.to_string()),
        };
        let mut annotations = BTreeMap::new();
        if !assumed.gpus.is_empty() {
            let gpus: Vec<String> = assumed.gpus.iter().map(u32::to_string).collect();
            annotations.insert(GPUS_ANNOTATION.to_string(), gpus.join(","));
        }
        if let Some((plan, slot)) = &assumed.plan {
            annotations.insert(
                GANG_PLAN_ANNOTATION.to_string(),
                serde_json::to_string(plan).unwrap_or_default(),
            );
            annotations.insert(GANG_SLOT_ANNOTATION.to_string(), slot.to_string());
        }
        if !annotations.is_empty() {
            // The watch trusts a recorded plan only with this: see
            // `decision` for what it covers and why.
            let get = |k: &str| annotations.get(k).map_or("", String::as_str);
            let signature = self.decision_key().sign(&Decision {
                uid: &uid,
                node: &args.node,
                gpus: get(GPUS_ANNOTATION),
                plan: get(GANG_PLAN_ANNOTATION),
                slot: get(GANG_SLOT_ANNOTATION),
            });
            annotations.insert(SIGNATURE_ANNOTATION.to_string(), signature);
        }
        let req = BindRequest {
            namespace,
            name: args.pod_name.clone(),
            uid: args.pod_uid.clone(),
            node: args.node.clone(),
            annotations,
        };
        match self.binder.bind(req).await {
            Ok(()) => {
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&uid);
                self.metrics.decision("bind", "bound");
                ExtenderBindingResult::default()
            }
            Err(e) => {
                self.view_mut().unassume(&uid);
                fail(&self.metrics, format!("binding {uid} to {}: {e}", args.node))
            }
        }
    }

    /// The view UID and ask of a pod this extender did not filter, read from
    /// the API. A gang member claims its slot (planning the gang if no
    /// reservation exists), as filter would have; a node other than the
    /// slot's is refused so kube-scheduler retries and filter sends the pod
    /// to its slot, instead of binding it outside the gang's plan.
    async fn unfiltered(&self, namespace: &str, args: &ExtenderBindingArgs) -> Result<(String, PodAsk), String> {
        let name = &args.pod_name;
        let pod = self
            .binder
            .get_pod(namespace, name)
            .await
            .map_err(|e| {
                format!("pod {namespace}/{name} was not filtered by this extender and reading it failed: {e}")
            })?
            .ok_or_else(|| format!("pod {namespace}/{name} no longer exists; not binding it"))?;
        let found_uid = pod.metadata.uid.as_deref().unwrap_or("");
        if !args.pod_uid.is_empty() && found_uid != args.pod_uid {
            return Err(format!(
                "pod {namespace}/{name} now has UID {found_uid:?}, not {:?} (deleted and recreated); not binding it",
                args.pod_uid
            ));
        }
        self.placeable(&pod)?;
        // The pod's real UID, the one the pod watch will report it under.
        let uid = k8s::pod_uid(&pod);
        let ask = k8s::pod_ask(&pod).map_err(|e| format!("pod {namespace}/{name}: {e}"))?;
        let member = {
            let index = self.gangs.read().unwrap_or_else(|e| e.into_inner());
            k8s::gang_member(&pod, &ask, &index)
        };
        let member = member.map_err(|wait| format!("pod {namespace}/{name}: {wait}"))?;
        let Some((spec, rank)) = member else {
            return Ok((uid, ask));
        };
        let now = self.now();
        let decided = self.view_mut().gang_filter(&spec, &uid, rank, now);
        match decided {
            Err(e) => Err(format!("gang {}: {e}", spec.id)),
            Ok(GangFilter::Plain) => Ok((uid, ask)),
            Ok(GangFilter::Slot { node, slot }) if node != args.node => Err(format!(
                "gang {} member slot {slot} of pod {namespace}/{name} is reserved on {node}, not {}; \
                 the pod will be retried",
                spec.id, args.node
            )),
            Ok(GangFilter::Slot { .. }) => Ok((uid, ask)),
            Ok(GangFilter::Wait(reason) | GangFilter::Never(reason)) => Err(format!("gang {}: {reason}", spec.id)),
        }
    }
}
