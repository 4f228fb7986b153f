//! The `DevicePlugin` gRPC service of one resource. Every call reads the
//! resource's current [`Snapshot`] from its `watch` channel, which the
//! manager replaces on config changes and health events.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use railyard_core::allocation::{ReplicaPolicy, check_allocate, preferred_allocation};
use railyard_core::resources::AdvertisedResource;
use railyard_core::topology::NodeTopology;
use railyard_kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePlugin;
use railyard_kubelet_api::deviceplugin::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device, DevicePluginOptions, Empty,
    HEALTHY, ListAndWatchResponse, NumaNode, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, TopologyInfo, UNHEALTHY,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::edits::{Settings, container_response};
use crate::follow::Follower;
use crate::metrics::{Metrics, labels};

/// One resource as it is served right now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub resource: AdvertisedResource,
    /// Unhealthy devices (GPU or MIG UUIDs): they and their replicas are
    /// reported `Unhealthy`.
    pub unhealthy: BTreeSet<String>,
    pub settings: Arc<Settings>,
    pub topology: Option<Arc<NodeTopology>>,
    pub policy: ReplicaPolicy,
}

impl Snapshot {
    /// The `ListAndWatch` device list.
    pub fn devices(&self) -> Vec<Device> {
        self.resource
            .devices
            .iter()
            .map(|d| Device {
                id: d.id.clone(),
                health: if self.unhealthy.contains(&d.device.id) {
                    UNHEALTHY
                } else {
                    HEALTHY
                }
                .into(),
                topology: d.device.numa_node.map(|n| TopologyInfo {
                    nodes: vec![NumaNode { id: n as i64 }],
                }),
            })
            .collect()
    }
}

pub fn options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

#[derive(Debug, Clone)]
pub struct PluginService {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Becomes true when the server stops: open `ListAndWatch` streams end.
    pub stopping: watch::Receiver<bool>,
    pub metrics: Metrics,
    /// The extender's decisions (API access on): followed when a call
    /// matches one pending pod, and the allocation written back.
    pub decisions: Option<Arc<Follower>>,
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(&self, _: Request<Empty>) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<DeviceStream>, Status> {
        let mut snapshot = self.snapshot.clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut last: Option<Vec<Device>> = None;
            loop {
                let devices = snapshot.borrow_and_update().devices();
                if last.as_ref() != Some(&devices) {
                    let msg = ListAndWatchResponse {
                        devices: devices.clone(),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    last = Some(devices);
                }
                tokio::select! {
                    changed = snapshot.changed() => if changed.is_err() { return },
                    _ = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let snap = self.snapshot.borrow().clone();
        let mut container_responses = Vec::new();
        for c in &request.get_ref().container_requests {
            let size = usize::try_from(c.allocation_size)
                .map_err(|_| Status::invalid_argument(format!("allocation_size {} < 0", c.allocation_size)))?;
            // The record, when it can be followed; anything else (or no
            // record) leaves the call to the plugin's own rule below.
            if let Some(f) = &self.decisions
                && let Some(ids) = f
                    .preferred(
                        &snap.resource,
                        &c.available_device_i_ds,
                        &c.must_include_device_i_ds,
                        size,
                    )
                    .await
            {
                container_responses.push(ContainerPreferredAllocationResponse { device_i_ds: ids });
                continue;
            }
            let ids = preferred_allocation(
                &snap.resource,
                snap.topology.as_deref(),
                &c.available_device_i_ds,
                &c.must_include_device_i_ds,
                size,
                snap.policy,
            )
            .map_err(|e| {
                self.metrics
                    .allocation_errors
                    .get_or_create(&labels(&[
                        ("resource", &snap.resource.name),
                        ("call", "GetPreferredAllocation"),
                    ]))
                    .inc();
                tracing::warn!(resource = %snap.resource.name, error = %e, "GetPreferredAllocation refused");
                Status::invalid_argument(e.to_string())
            })?;
            container_responses.push(ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(PreferredAllocationResponse { container_responses }))
    }

    async fn allocate(&self, request: Request<AllocateRequest>) -> Result<Response<AllocateResponse>, Status> {
        let snap = self.snapshot.borrow().clone();
        let mut container_responses = Vec::new();
        for c in &request.get_ref().container_requests {
            let devices = check_allocate(&snap.resource, &c.devices_ids).map_err(|e| {
                self.metrics
                    .allocation_errors
                    .get_or_create(&labels(&[("resource", &snap.resource.name), ("call", "Allocate")]))
                    .inc();
                tracing::warn!(resource = %snap.resource.name, error = %e, "Allocate refused");
                Status::invalid_argument(e.to_string())
            })?;
            container_responses.push(container_response(&snap.settings, &snap.resource, &devices));
        }
        // kubelet allocates one container per call; the pod it is for is
        // matched (and its write-back queued) before the next admission.
        if let (Some(f), [c]) = (&self.decisions, request.get_ref().container_requests.as_slice()) {
            f.allocated(&snap.resource, &c.devices_ids).await;
        }
        self.metrics
            .allocations
            .get_or_create(&labels(&[("resource", &snap.resource.name)]))
            .inc_by(container_responses.len() as u64);
        tracing::info!(resource = %snap.resource.name, containers = container_responses.len(), "allocated");
        Ok(Response::new(AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
