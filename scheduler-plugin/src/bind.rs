//! `bind`: choose the devices, assume them, create the Binding with the
//! decision annotations; undo the assumption when the API refuses.

use std::collections::BTreeMap;

use crate::app::{AppState, BindRequest};
use crate::k8s::{GANG_PLAN_ANNOTATION, GANG_SLOT_ANNOTATION, GPUS_ANNOTATION};
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
        let uid = if args.pod_uid.is_empty() {
            format!("{}/{}", args.pod_namespace, args.pod_name)
        } else {
            args.pod_uid.clone()
        };
        let ask = self.pending.lock().ok().and_then(|p| p.get(&uid).cloned());
        let Some(ask) = ask else {
            return fail(
                &self.metrics,
                format!("pod {uid} was not filtered by this extender; it will be retried"),
            );
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
        let req = BindRequest {
            namespace: if args.pod_namespace.is_empty() {
                "default".into()
            } else {
                args.pod_namespace.clone()
            },
            name: args.pod_name.clone(),
            uid: args.pod_uid.clone(),
            node: args.node.clone(),
            annotations,
        };
        match self.binder.bind(req).await {
            Ok(()) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&uid);
                }
                self.metrics.decision("bind", "bound");
                ExtenderBindingResult::default()
            }
            Err(e) => {
                self.view_mut().unassume(&uid);
                fail(&self.metrics, format!("binding {uid} to {}: {e}", args.node))
            }
        }
    }
}
