//! The fake DRA kubelet against a minimal DRA plugin over real unix sockets.
#![allow(clippy::unwrap_used)] // test helpers: a failure should panic loudly

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use railyard_kubelet_api::dra::health::v1alpha1 as health;
use railyard_kubelet_api::dra::{v1, v1beta1};
use railyard_kubelet_api::fake::{ClaimRef, DraMethod, DraVersion, FakeDraKubelet};
use railyard_kubelet_api::pluginregistration::v1::registration_server::{Registration, RegistrationServer};
use railyard_kubelet_api::pluginregistration::v1::{
    DRA_PLUGIN, InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use railyard_kubelet_api::unix;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const T: Duration = Duration::from_secs(10);

/// What the in-test plugin saw.
#[derive(Default)]
struct Seen {
    /// Every `NotifyRegistrationStatus`.
    statuses: Vec<RegistrationStatus>,
    /// `(version, method, claim uids)` per DRA call served.
    dra: Vec<(&'static str, &'static str, Vec<String>)>,
}

#[derive(Clone)]
struct Plugin {
    info: PluginInfo,
    /// Claim uids the plugin leaves out of its answers.
    skip: BTreeSet<String>,
    seen: Arc<Mutex<Seen>>,
    notified: watch::Sender<usize>,
}

#[tonic::async_trait]
impl Registration for Plugin {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }
    async fn notify_registration_status(
        &self,
        r: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let n = {
            let mut s = self.seen.lock().unwrap();
            s.statuses.push(r.into_inner());
            s.statuses.len()
        };
        self.notified.send_replace(n);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

impl Plugin {
    fn log(&self, version: &'static str, method: &'static str, uids: Vec<String>) {
        self.seen.lock().unwrap().dra.push((version, method, uids));
    }
}

#[tonic::async_trait]
impl v1::dra_plugin_server::DraPlugin for Plugin {
    async fn node_prepare_resources(
        &self,
        r: Request<v1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1::NodePrepareResourcesResponse>, Status> {
        let claims = r.into_inner().claims;
        self.log("v1", "prepare", claims.iter().map(|c| c.uid.clone()).collect());
        let claims = claims
            .into_iter()
            .filter(|c| !self.skip.contains(&c.uid))
            .map(|c| {
                let error = if c.name == "bad" {
                    "no such device".into()
                } else {
                    String::new()
                };
                let device = v1::Device {
                    request_names: vec!["gpu".into()],
                    pool_name: "node-a".into(),
                    device_name: format!("dev-{}", c.name),
                    cdi_device_ids: vec![format!("example.com/gpu={}", c.uid)],
                    share_id: Some(format!("share-{}", c.uid)),
                };
                (
                    c.uid,
                    v1::NodePrepareResourceResponse {
                        devices: vec![device],
                        error,
                    },
                )
            })
            .collect();
        Ok(Response::new(v1::NodePrepareResourcesResponse { claims }))
    }
    async fn node_unprepare_resources(
        &self,
        r: Request<v1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1::NodeUnprepareResourcesResponse>, Status> {
        let claims = r.into_inner().claims;
        self.log("v1", "unprepare", claims.iter().map(|c| c.uid.clone()).collect());
        let claims = claims
            .into_iter()
            .filter(|c| !self.skip.contains(&c.uid))
            .map(|c| (c.uid, v1::NodeUnprepareResourceResponse { error: String::new() }))
            .collect();
        Ok(Response::new(v1::NodeUnprepareResourcesResponse { claims }))
    }
}

#[tonic::async_trait]
impl v1beta1::dra_plugin_server::DraPlugin for Plugin {
    async fn node_prepare_resources(
        &self,
        r: Request<v1beta1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodePrepareResourcesResponse>, Status> {
        let claims = r.into_inner().claims;
        self.log("v1beta1", "prepare", claims.iter().map(|c| c.uid.clone()).collect());
        let claims = claims
            .into_iter()
            .filter(|c| !self.skip.contains(&c.uid))
            .map(|c| {
                let device = v1beta1::Device {
                    request_names: vec!["gpu".into()],
                    pool_name: "node-a".into(),
                    device_name: format!("dev-{}", c.name),
                    cdi_device_ids: vec![format!("example.com/gpu={}", c.uid)],
                };
                (
                    c.uid,
                    v1beta1::NodePrepareResourceResponse {
                        devices: vec![device],
                        error: String::new(),
                    },
                )
            })
            .collect();
        Ok(Response::new(v1beta1::NodePrepareResourcesResponse { claims }))
    }
    async fn node_unprepare_resources(
        &self,
        r: Request<v1beta1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodeUnprepareResourcesResponse>, Status> {
        let claims = r.into_inner().claims;
        self.log("v1beta1", "unprepare", claims.iter().map(|c| c.uid.clone()).collect());
        let claims = claims
            .into_iter()
            .filter(|c| !self.skip.contains(&c.uid))
            .map(|c| (c.uid, v1beta1::NodeUnprepareResourceResponse { error: String::new() }))
            .collect();
        Ok(Response::new(v1beta1::NodeUnprepareResourcesResponse { claims }))
    }
}

type Health =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<health::NodeWatchResourcesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl health::dra_resource_health_server::DraResourceHealth for Plugin {
    type NodeWatchResourcesStream = Health;
    async fn node_watch_resources(
        &self,
        _: Request<health::NodeWatchResourcesRequest>,
    ) -> Result<Response<Health>, Status> {
        let device = health::DeviceHealth {
            device: Some(health::DeviceIdentifier {
                pool_name: "node-a".into(),
                device_name: "dev-x".into(),
            }),
            health: health::HealthStatus::Healthy as i32,
            ..Default::default()
        };
        let msg = health::NodeWatchResourcesResponse { devices: vec![device] };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(msg)))))
    }
}

/// A running in-test DRA driver.
struct Driver {
    plugin: Plugin,
    notified: watch::Receiver<usize>,
    registry_socket: PathBuf,
    endpoint: PathBuf,
}

impl Driver {
    /// Serves the DRA services on `plugins/<name>/dra.sock` (v1 and/or
    /// v1beta1, per `versions`), then `Registration` on
    /// `plugins_registry/<name>-reg.sock`.
    fn start(k: &FakeDraKubelet, plugin_type: &str, name: &str, versions: &[&str], skip: &[&str]) -> Driver {
        let endpoint = k.plugins_dir().join(name).join("dra.sock");
        let registry_socket = k.registry_dir().join(format!("{name}-reg.sock"));
        let (tx, notified) = watch::channel(0);
        let plugin = Plugin {
            info: PluginInfo {
                r#type: plugin_type.into(),
                name: name.into(),
                endpoint: endpoint.to_string_lossy().into_owned(),
                supported_versions: versions.iter().map(|v| v.to_string()).collect(),
            },
            skip: skip.iter().map(|s| s.to_string()).collect(),
            seen: Arc::default(),
            notified: tx,
        };
        let d = Driver {
            plugin,
            notified,
            registry_socket,
            endpoint,
        };
        d.serve();
        d
    }

    /// (Re)creates both sockets, as a plugin does when it (re)starts.
    fn serve(&self) {
        let offers = |v: &str| self.plugin.info.supported_versions.iter().any(|s| s == v);
        let router = Server::builder()
            .add_optional_service(
                offers(v1::SERVICE_NAME).then(|| v1::dra_plugin_server::DraPluginServer::new(self.plugin.clone())),
            )
            .add_optional_service(
                offers(health::SERVICE_NAME)
                    .then(|| health::dra_resource_health_server::DraResourceHealthServer::new(self.plugin.clone())),
            )
            .add_optional_service(
                offers(v1beta1::SERVICE_NAME)
                    .then(|| v1beta1::dra_plugin_server::DraPluginServer::new(self.plugin.clone())),
            );
        let listener = unix::bind(&self.endpoint).unwrap();
        tokio::spawn(unix::serve(router, listener, std::future::pending()));
        let listener = unix::bind(&self.registry_socket).unwrap();
        let router = Server::builder().add_service(RegistrationServer::new(self.plugin.clone()));
        tokio::spawn(unix::serve(router, listener, std::future::pending()));
    }

    /// Waits until the plugin has received `n` registration statuses.
    async fn statuses(&mut self, n: usize) -> Vec<RegistrationStatus> {
        tokio::time::timeout(T, self.notified.wait_for(|c| *c >= n))
            .await
            .unwrap()
            .unwrap();
        let s = self.plugin.seen.lock().unwrap();
        s.statuses.clone()
    }

    fn dra_calls(&self) -> Vec<(&'static str, &'static str, Vec<String>)> {
        self.plugin.seen.lock().unwrap().dra.clone()
    }
}

const BOTH: &[&str] = &[v1beta1::SERVICE_NAME, v1::SERVICE_NAME];

fn claims(names: &[&str]) -> Vec<ClaimRef> {
    names
        .iter()
        .map(|n| ClaimRef::new("default", n, &format!("uid-{n}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_a_dra_plugin_and_notifies_it() {
    let k = FakeDraKubelet::start().await.unwrap();
    let mut d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    let p = k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    assert_eq!(p.endpoint, d.endpoint);
    assert_eq!(p.registry_socket, d.registry_socket);
    assert_eq!(p.registrations, 1);
    let statuses = d.statuses(1).await;
    assert!(statuses[0].plugin_registered, "{:?}", statuses[0].error);
    assert_eq!(statuses[0].error, "");
    let r = k.registrations();
    assert_eq!(r.len(), 1);
    assert!(r[0].accepted());
    assert_eq!(r[0].name, "gpu.example.com");
    assert_eq!(r[0].supported_versions, BOTH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_registrations_and_tells_the_plugin() {
    let k = FakeDraKubelet::start().await.unwrap();
    let mut bad_type = Driver::start(&k, "DevicePlugin", "a.example.com", BOTH, &[]);
    let mut bad_version = Driver::start(&k, DRA_PLUGIN, "b.example.com", &["v2.DRAPlugin"], &[]);
    let s = bad_type.statuses(1).await;
    assert!(!s[0].plugin_registered);
    assert!(s[0].error.contains("DevicePlugin"), "{}", s[0].error);
    let s = bad_version.statuses(1).await;
    assert!(!s[0].plugin_registered);
    assert!(s[0].error.contains("versions"), "{}", s[0].error);
    let attempts = k.wait_attempts(2, T).await.unwrap();
    assert!(attempts.iter().all(|a| !a.accepted()), "{attempts:?}");
    assert!(k.plugins().is_empty());
    assert!(k.plugin("a.example.com").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefers_v1_and_falls_back_to_v1beta1() {
    let k = FakeDraKubelet::start().await.unwrap();
    let both = Driver::start(&k, DRA_PLUGIN, "both.example.com", BOTH, &[]);
    let old = Driver::start(&k, DRA_PLUGIN, "old.example.com", &[v1beta1::SERVICE_NAME], &[]);
    let p = k.wait_registered("both.example.com", 1, T).await.unwrap();
    assert_eq!(p.version, DraVersion::V1);
    let p = k.wait_registered("old.example.com", 1, T).await.unwrap();
    assert_eq!(p.version, DraVersion::V1beta1);

    let c = claims(&["x"]);
    let r = k.prepare("both.example.com", &c).await.unwrap();
    let devs = r["uid-x"].as_ref().unwrap();
    assert_eq!(devs[0].share_id.as_deref(), Some("share-uid-x"));
    let r = k.prepare("old.example.com", &c).await.unwrap();
    let devs = r["uid-x"].as_ref().unwrap();
    assert_eq!(devs[0].device_name, "dev-x");
    assert_eq!(devs[0].share_id, None);

    assert_eq!(both.dra_calls()[0].0, "v1");
    assert_eq!(old.dra_calls()[0].0, "v1beta1");
    let versions: Vec<&str> = k.calls().iter().map(|c| c.version).collect();
    assert_eq!(versions, [v1::SERVICE_NAME, v1beta1::SERVICE_NAME]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_and_unprepare_round_trip() {
    let k = FakeDraKubelet::start().await.unwrap();
    let d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    let c = claims(&["a", "b", "bad"]);
    let r = k.prepare("gpu.example.com", &c).await.unwrap();
    assert_eq!(r.len(), 3);
    let a = r["uid-a"].as_ref().unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].request_names, ["gpu"]);
    assert_eq!(a[0].pool_name, "node-a");
    assert_eq!(a[0].device_name, "dev-a");
    assert_eq!(a[0].cdi_device_ids, ["example.com/gpu=uid-a"]);
    assert!(r["uid-b"].is_ok());
    assert_eq!(r["uid-bad"].as_ref().unwrap_err(), "no such device");

    let r = k.unprepare("gpu.example.com", &c[..2]).await.unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.values().all(|r| r.is_ok()), "{r:?}");
    // A repeated prepare is a new call, as kubelet's retries are.
    k.prepare("gpu.example.com", &c[..1]).await.unwrap();

    let calls = k.calls();
    let methods: Vec<DraMethod> = calls.iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        [
            DraMethod::NodePrepareResources,
            DraMethod::NodeUnprepareResources,
            DraMethod::NodePrepareResources
        ]
    );
    assert_eq!(calls[0].claim_uids, ["uid-a", "uid-b", "uid-bad"]);
    assert_eq!(calls[1].claim_uids, ["uid-a", "uid-b"]);
    assert_eq!(d.dra_calls().len(), 3);

    let e = k.prepare("nobody.example.com", &c).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_missing_from_the_answer_is_an_error_for_that_claim() {
    let k = FakeDraKubelet::start().await.unwrap();
    let _d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &["uid-b"]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    let c = claims(&["a", "b"]);
    let r = k.prepare("gpu.example.com", &c).await.unwrap();
    assert!(r["uid-a"].is_ok());
    assert_eq!(
        r["uid-b"].as_ref().unwrap_err(),
        "plugin did not return a result for claim uid-b"
    );
    let r = k.unprepare("gpu.example.com", &c).await.unwrap();
    assert!(r["uid-a"].is_ok());
    assert_eq!(
        r["uid-b"].as_ref().unwrap_err(),
        "plugin did not return a result for claim uid-b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_re_registers_existing_sockets() {
    let k = FakeDraKubelet::start().await.unwrap();
    let mut d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    k.restart().await;
    assert_eq!(k.boots(), 2);
    let p = k.wait_registered("gpu.example.com", 2, T).await.unwrap();
    assert_eq!(p.registrations, 2);
    let s = d.statuses(2).await;
    assert!(s.iter().all(|s| s.plugin_registered));
    assert_eq!(k.registrations().iter().filter(|a| a.accepted()).count(), 2);
    // Still usable after the restart.
    let r = k.prepare("gpu.example.com", &claims(&["a"])).await.unwrap();
    assert!(r["uid-a"].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_wiping_sockets_removes_them_until_the_plugin_recreates_them() {
    let k = FakeDraKubelet::start().await.unwrap();
    let d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    assert!(d.registry_socket.exists() && d.endpoint.exists());
    k.restart_wiping_sockets().await.unwrap();
    assert!(!d.registry_socket.exists());
    assert!(!d.endpoint.exists());
    assert!(k.plugin("gpu.example.com").is_none());
    let e = k.prepare("gpu.example.com", &claims(&["a"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // The plugin notices and serves again: a new registration.
    d.serve();
    let p = k.wait_registered("gpu.example.com", 2, T).await.unwrap();
    assert_eq!(p.registrations, 2);
    let r = k.prepare("gpu.example.com", &claims(&["a"])).await.unwrap();
    assert!(r["uid-a"].is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_socket_is_a_new_registration() {
    let k = FakeDraKubelet::start().await.unwrap();
    let d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    d.serve(); // re-binds both sockets: new inodes
    let p = k.wait_registered("gpu.example.com", 2, T).await.unwrap();
    assert_eq!(p.registrations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resources_needs_the_health_service() {
    let k = FakeDraKubelet::start().await.unwrap();
    let _d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", BOTH, &[]);
    k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    let e = k.watch_resources("gpu.example.com").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resources_passes_the_health_stream_through() {
    let k = FakeDraKubelet::start().await.unwrap();
    let versions = [v1::SERVICE_NAME, health::SERVICE_NAME];
    let _d = Driver::start(&k, DRA_PLUGIN, "gpu.example.com", &versions, &[]);
    let p = k.wait_registered("gpu.example.com", 1, T).await.unwrap();
    assert!(p.has_health());
    let mut stream = k.watch_resources("gpu.example.com").await.unwrap();
    let msg = tokio::time::timeout(T, stream.next()).await.unwrap().unwrap().unwrap();
    let d = &msg.devices[0];
    assert_eq!(d.device.as_ref().unwrap().device_name, "dev-x");
    assert_eq!(d.health, health::HealthStatus::Healthy as i32);
    assert_eq!(k.calls()[0].method, DraMethod::NodeWatchResources);
}
