//! Which shared replica ids each container holds, from the kubelet's
//! PodResources `List` (PROTOCOLS §9).

use std::path::PathBuf;
use std::time::Duration;

use railyard_kubelet_api::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;
use railyard_kubelet_api::podresources::v1::{ListPodResourcesRequest, ListPodResourcesResponse};
use railyard_kubelet_api::unix;
use tonic::transport::Channel;

use crate::policy::ContainerKey;
use crate::scan::{ContainerDevices, ShareTable};

/// Kubelet answers may be large on busy nodes; clients usually allow 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The containers holding shared replicas: per container, the ids it holds
/// under the shared resources. Containers with none are left out.
pub fn container_devices(resp: &ListPodResourcesResponse, shares: &ShareTable) -> Vec<ContainerDevices> {
    let mut out = Vec::new();
    for pod in &resp.pod_resources {
        for c in &pod.containers {
            let device_ids: Vec<String> = c
                .devices
                .iter()
                .filter(|d| shares.covers_resource(&d.resource_name))
                .flat_map(|d| d.device_ids.iter())
                .filter(|id| shares.get(id).is_some())
                .cloned()
                .collect();
            if !device_ids.is_empty() {
                out.push(ContainerDevices {
                    key: ContainerKey {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: c.name.clone(),
                    },
                    device_ids,
                });
            }
        }
    }
    out
}

/// A client of kubelet's PodResources socket that reconnects after errors.
#[derive(Debug)]
pub struct PodResourcesClient {
    path: PathBuf,
    timeout: Duration,
    channel: Option<Channel>,
}

impl PodResourcesClient {
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        PodResourcesClient {
            path: path.into(),
            timeout,
            channel: None,
        }
    }

    /// `List`, within the timeout. Any failure drops the connection, so the
    /// next call dials again (kubelet restarts recreate the socket).
    pub async fn list(&mut self) -> Result<ListPodResourcesResponse, String> {
        let r = tokio::time::timeout(self.timeout, self.try_list()).await;
        let r = r.unwrap_or_else(|_| Err(format!("PodResources List timed out after {:?}", self.timeout)));
        if r.is_err() {
            self.channel = None;
        }
        r
    }

    async fn try_list(&mut self) -> Result<ListPodResourcesResponse, String> {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => {
                let c = unix::dial(&self.path).await.map_err(|e| e.to_string())?;
                self.channel = Some(c.clone());
                c
            }
        };
        PodResourcesListerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .list(ListPodResourcesRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("PodResources List: {:?}: {}", s.code(), s.message()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use railyard_kubelet_api::podresources::v1 as pr;

    use super::*;

    fn table() -> ShareTable {
        ShareTable::from_pairs(BTreeMap::from([
            ("GPU-0::0".to_string(), ("GPU-0".to_string(), 4096)),
            ("GPU-0::1".to_string(), ("GPU-0".to_string(), 4096)),
        ]))
    }

    fn devs(resource: &str, ids: &[&str]) -> pr::ContainerDevices {
        pr::ContainerDevices {
            resource_name: resource.into(),
            device_ids: ids.iter().map(|s| s.to_string()).collect(),
            topology: None,
        }
    }

    #[test]
    fn keeps_containers_with_shared_ids_only() {
        let resp = pr::ListPodResourcesResponse {
            pod_resources: vec![pr::PodResources {
                name: "p".into(),
                namespace: "ns".into(),
                containers: vec![
                    pr::ContainerResources {
                        name: "a".into(),
                        devices: vec![
                            devs("nvidia.com/gpu.shared", &["GPU-0::0"]),
                            devs("example.com/nic", &["eth1"]),
                        ],
                        ..Default::default()
                    },
                    pr::ContainerResources {
                        name: "sidecar".into(),
                        ..Default::default()
                    },
                    pr::ContainerResources {
                        name: "whole".into(),
                        devices: vec![devs("nvidia.com/gpu", &["GPU-1"])],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        };
        let got = container_devices(&resp, &table());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key.container, "a");
        assert_eq!(got[0].device_ids, ["GPU-0::0"]);
    }
}
