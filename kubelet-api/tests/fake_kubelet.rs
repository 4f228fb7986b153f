//! The fake kubelet against a minimal device plugin over real unix sockets,
//! and the fake PodResources server against a real client.
#![allow(clippy::unwrap_used)] // test helpers: a failure should panic loudly

use std::pin::Pin;
use std::time::Duration;

use railyard_kubelet_api::deviceplugin::v1beta1::device_plugin_server::{DevicePlugin, DevicePluginServer};
use railyard_kubelet_api::deviceplugin::v1beta1::registration_client::RegistrationClient;
use railyard_kubelet_api::deviceplugin::v1beta1::*;
use railyard_kubelet_api::fake::{FakeKubelet, FakePodResources, TempDir};
use railyard_kubelet_api::podresources::v1 as pr;
use railyard_kubelet_api::unix;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const T: Duration = Duration::from_secs(10);

struct Plugin {
    devices: watch::Receiver<Vec<Device>>,
}

type Lw = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Plugin {
    async fn get_device_plugin_options(&self, _: Request<Empty>) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions::default()))
    }
    type ListAndWatchStream = Lw;
    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<Lw>, Status> {
        let mut rx = self.devices.clone();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let devices = rx.borrow_and_update().clone();
                if tx.send(Ok(ListAndWatchResponse { devices })).await.is_err() || rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            out,
        ))))
    }
    async fn get_preferred_allocation(
        &self,
        r: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        // Prefers the last devices: shows the fake uses the answer.
        let c = &r.get_ref().container_requests[0];
        let mut ids = c.available_device_i_ds.clone();
        ids.reverse();
        ids.truncate(c.allocation_size as usize);
        Ok(Response::new(PreferredAllocationResponse {
            container_responses: vec![ContainerPreferredAllocationResponse { device_i_ds: ids }],
        }))
    }
    async fn allocate(&self, r: Request<AllocateRequest>) -> Result<Response<AllocateResponse>, Status> {
        let container_responses = r
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| ContainerAllocateResponse {
                envs: [("IDS".to_string(), c.devices_ids.join(","))].into(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(AllocateResponse { container_responses }))
    }
    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

fn dev(id: &str, healthy: bool) -> Device {
    Device {
        id: id.into(),
        health: if healthy { HEALTHY } else { UNHEALTHY }.into(),
        topology: None,
    }
}

fn serve_plugin(k: &FakeKubelet, name: &str, devices: watch::Receiver<Vec<Device>>) {
    let listener = unix::bind(&k.dir().join(name)).unwrap();
    let router = Server::builder().add_service(DevicePluginServer::new(Plugin { devices }));
    tokio::spawn(unix::serve(router, listener, std::future::pending()));
}

async fn register(k: &FakeKubelet, req: RegisterRequest) -> Result<(), Status> {
    let mut c = RegistrationClient::new(unix::dial(k.socket()).await.unwrap());
    c.register(req).await.map(|_| ())
}

fn req(version: &str, endpoint: &str, resource: &str) -> RegisterRequest {
    RegisterRequest {
        version: version.into(),
        endpoint: endpoint.into(),
        resource_name: resource.into(),
        options: Some(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_watches_admits_and_restarts() {
    let mut k = FakeKubelet::start().await.unwrap();
    let (tx, rx) = watch::channel(vec![dev("a", true), dev("b", true), dev("c", true)]);
    serve_plugin(&k, "x.sock", rx);

    let e = register(&k, req("v1alpha", "x.sock", "example.com/x"))
        .await
        .unwrap_err();
    assert!(e.message().contains("not supported"), "{e}");
    let e = register(&k, req(VERSION, "x.sock", "cpu")).await.unwrap_err();
    assert!(e.message().contains("invalid extended resource name"), "{e}");
    let e = register(&k, req(VERSION, "x.sock", "kubernetes.io/x"))
        .await
        .unwrap_err();
    assert!(e.message().contains("invalid extended resource name"), "{e}");
    let e = register(&k, req(VERSION, "missing.sock", "example.com/x"))
        .await
        .unwrap_err();
    assert!(e.message().contains("failed to dial"), "{e}");
    assert!(k.resources().is_empty());

    register(&k, req(VERSION, "x.sock", "example.com/x")).await.unwrap();
    let d = k.wait_devices("example.com/x", T, |d| d.len() == 3).await.unwrap();
    assert_eq!(d[0].id, "a");

    tx.send_replace(vec![dev("a", true), dev("b", false), dev("c", true)]);
    k.wait_devices("example.com/x", T, |d| d[1].health == UNHEALTHY)
        .await
        .unwrap();

    let a = k.admit("example.com/x", 1, &[]).await.unwrap();
    assert_eq!(a.preferred.as_deref(), Some(&["c".to_string()][..]));
    assert_eq!(a.devices, vec!["c"]);
    assert_eq!(a.response.envs["IDS"], "c");
    let e = k.admit("example.com/x", 2, &[]).await.unwrap_err();
    assert!(e.to_string().contains("2 requested, 1 healthy and free"), "{e}");
    k.release("example.com/x", &a.devices);

    std::fs::write(k.dir().join("kubelet_internal_checkpoint"), "{}").unwrap();
    k.restart().await.unwrap();
    assert_eq!(k.boots(), 2);
    assert!(!k.dir().join("x.sock").exists(), "restart removes plugin sockets");
    assert!(k.dir().join("kubelet_internal_checkpoint").exists());
    assert!(k.socket().exists());
    assert!(!k.plugin("example.com/x").unwrap().connected);

    serve_plugin(&k, "x.sock", tx.subscribe());
    register(&k, req(VERSION, "x.sock", "example.com/x")).await.unwrap();
    let p = k.wait_registrations("example.com/x", 2, T).await.unwrap();
    assert_eq!(p.devices.len(), 3);
}

#[tokio::test]
async fn pod_resources_list_get_allocatable() {
    let dir = TempDir::new("railyard-podres-test").unwrap();
    let path = dir.path().join("pod-resources/kubelet.sock");
    let fake = FakePodResources::start(&path).unwrap();
    fake.set_pods(vec![pr::PodResources {
        name: "p".into(),
        namespace: "ns".into(),
        containers: vec![pr::ContainerResources {
            name: "c".into(),
            devices: vec![pr::ContainerDevices {
                resource_name: "nvidia.com/gpu".into(),
                device_ids: vec!["GPU-1".into()],
                topology: None,
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let mut c = pr::pod_resources_lister_client::PodResourcesListerClient::new(unix::dial(&path).await.unwrap());
    let l = c.list(pr::ListPodResourcesRequest {}).await.unwrap().into_inner();
    assert_eq!(l.pod_resources[0].containers[0].devices[0].device_ids, ["GPU-1"]);
    let g = c
        .get(pr::GetPodResourcesRequest {
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.pod_resources.unwrap().name, "p");
    let e = c
        .get(pr::GetPodResourcesRequest {
            pod_name: "q".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unknown);
    fake.disable_get(true);
    let e = c
        .get(pr::GetPodResourcesRequest {
            pod_name: "p".into(),
            pod_namespace: "ns".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("disabled"));
    c.get_allocatable_resources(pr::AllocatableResourcesRequest {})
        .await
        .unwrap();
    assert_eq!(fake.calls(), 5);
}

#[test]
fn grpc_paths_match_protocols() {
    // Full method names, as PROTOCOLS.md §1–3, §9 state them.
    use railyard_kubelet_api::deviceplugin::v1beta1::{device_plugin_server, registration_server};
    use railyard_kubelet_api::dra::{health::v1alpha1 as h, v1, v1beta1};
    use railyard_kubelet_api::pluginregistration::v1 as reg;
    use tonic::server::NamedService;
    assert_eq!(
        <registration_server::RegistrationServer<()> as NamedService>::NAME,
        "v1beta1.Registration"
    );
    assert_eq!(
        <device_plugin_server::DevicePluginServer<()> as NamedService>::NAME,
        "v1beta1.DevicePlugin"
    );
    assert_eq!(
        <reg::registration_server::RegistrationServer<()> as NamedService>::NAME,
        "pluginregistration.Registration"
    );
    assert_eq!(
        <v1::dra_plugin_server::DraPluginServer<()> as NamedService>::NAME,
        "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    );
    assert_eq!(
        <v1beta1::dra_plugin_server::DraPluginServer<()> as NamedService>::NAME,
        "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin"
    );
    assert_eq!(
        <h::dra_resource_health_server::DraResourceHealthServer<()> as NamedService>::NAME,
        "v1alpha1.DRAResourceHealth"
    );
    assert_eq!(
        <pr::pod_resources_lister_server::PodResourcesListerServer<()> as NamedService>::NAME,
        "v1.PodResourcesLister"
    );
}

#[test]
fn field_numbers_on_the_wire() {
    use prost::Message;
    // ContainerAllocateResponse.cdi_devices is #5 (tag 5<<3|2 = 0x2a),
    // Device.topology #3 (0x1a), NUMANode.ID #1 as varint (0x08).
    let r = ContainerAllocateResponse {
        cdi_devices: vec![CdiDevice { name: "x".into() }],
        ..Default::default()
    };
    assert_eq!(r.encode_to_vec(), [0x2a, 3, 0x0a, 1, b'x']);
    let d = Device {
        id: String::new(),
        health: String::new(),
        topology: Some(TopologyInfo {
            nodes: vec![NumaNode { id: 1 }],
        }),
    };
    assert_eq!(d.encode_to_vec(), [0x1a, 4, 0x0a, 2, 0x08, 1]);
    let p = ContainerPreferredAllocationRequest {
        available_device_i_ds: vec![],
        must_include_device_i_ds: vec!["m".into()],
        allocation_size: 2,
    };
    assert_eq!(p.encode_to_vec(), [0x12, 1, b'm', 0x18, 2]);
}

#[tokio::test]
async fn cri_list_containers_with_filters() {
    use railyard_kubelet_api::cri::runtime::v1 as cri;
    use railyard_kubelet_api::fake::{FakeRuntimeService, kube_container};
    let dir = TempDir::new("railyard-cri-test").unwrap();
    let path = dir.path().join("containerd/containerd.sock");
    let fake = FakeRuntimeService::start(&path).unwrap();
    fake.set_containers(vec![
        kube_container("a".repeat(64).as_str(), "ml", "infer-0", "uid-0", "main"),
        kube_container("b".repeat(64).as_str(), "ml", "infer-1", "uid-1", "main"),
    ]);
    let mut c = cri::runtime_service_client::RuntimeServiceClient::new(unix::dial(&path).await.unwrap());
    let all = c
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.containers.len(), 2);
    assert_eq!(all.containers[1].labels[cri::POD_NAME_LABEL], "infer-1");
    let one = c
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: "a".repeat(64),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.containers.len(), 1);
    assert_eq!(one.containers[0].metadata.as_ref().unwrap().name, "main");
    fake.set_unavailable(true);
    let e = c
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert_eq!(fake.calls(), 3);
}

#[test]
fn cri_names_and_field_numbers() {
    use prost::Message;
    use railyard_kubelet_api::cri::runtime::v1 as cri;
    use tonic::server::NamedService;
    // k8s.io/cri-api runtime/v1: service runtime.v1.RuntimeService.
    assert_eq!(
        <cri::runtime_service_server::RuntimeServiceServer<()> as NamedService>::NAME,
        "runtime.v1.RuntimeService"
    );
    // Container: id #1 (0x0a), metadata #3 (0x1a) with name #1, state #6 as
    // varint (0x30), labels #8 (0x42) as map entries {1: key, 2: value}.
    let c = cri::Container {
        id: "i".into(),
        pod_sandbox_id: String::new(),
        metadata: Some(cri::ContainerMetadata {
            name: "n".into(),
            attempt: 0,
        }),
        state: cri::ContainerState::ContainerRunning as i32,
        labels: [("k".to_string(), "v".to_string())].into(),
    };
    assert_eq!(
        c.encode_to_vec(),
        [
            0x0a, 1, b'i', 0x1a, 3, 0x0a, 1, b'n', 0x30, 1, 0x42, 6, 0x0a, 1, b'k', 0x12, 1, b'v'
        ]
    );
    // ListContainersResponse.containers #1; ListContainersRequest.filter #1;
    // ContainerFilter.label_selector #4 (0x22).
    let f = cri::ListContainersRequest {
        filter: Some(cri::ContainerFilter {
            label_selector: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }),
    };
    assert_eq!(f.encode_to_vec(), [0x0a, 8, 0x22, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
}
