//! The Kubernetes side against a mocked API server (kube's tower-test
//! pattern), every request checked: the Node watch drives config selection
//! (a relabelled node re-advertises), the topology annotation is patched
//! only when it changed, and the watchdog's Events are written on the pod.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use railyard_device_plugin::config::{CONFIG_LABEL, NodeLabels};
use railyard_device_plugin::kubeapi::{
    EVENT_CONTROLLER, FIELD_MANAGER, KubeAnnotator, KubeEventRecorder, KubeNodeLabels,
};
use railyard_device_plugin::topology::{NodeAnnotator, TOPOLOGY_ANNOTATION};
use railyard_gpu::SimBackend;
use railyard_watchdog::events::{EventRecorder, PodEvent, REASON_OVER_SHARE, REASON_SIGNALLED};
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn query(req: &Request<Body>) -> String {
    req.uri().query().unwrap_or_default().to_string()
}

fn node(rv: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "node-a", "resourceVersion": rv, "labels": labels}})
}

fn meta(name: &str, extra: Value) -> Value {
    let mut m = json!({"name": name});
    if let (Value::Object(m), Value::Object(x)) = (&mut m, extra) {
        m.extend(x);
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": m})
}

fn not_found(what: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                "message": format!("{what} not found"), "code": 404}),
    )
}

/// Serves the Node watcher: the first request must be the list of this node
/// (field selector), each watch that follows is answered with the next
/// scripted Node (a one-event stream, after which the watcher watches again
/// from its resourceVersion); once the script ends, watches are held open.
async fn serve_node_watch(mut handle: Handle, initial: Value, mut script: mpsc::Receiver<Value>) {
    let (req, send) = handle.next_request().await.expect("list");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/api/v1/nodes");
    let q = query(&req);
    assert!(q.contains("fieldSelector=metadata.name%3Dnode-a"), "{q}");
    assert!(!q.contains("watch=true"), "{q}");
    let rv = initial["metadata"]["resourceVersion"].clone();
    send.send_response(respond(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": rv}, "items": [initial]}),
    ));
    let mut last_rv = rv.as_str().unwrap().to_string();
    let mut held = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        assert_eq!(req.uri().path(), "/api/v1/nodes");
        let q = query(&req);
        assert!(q.contains("watch=true"), "{q}");
        assert!(q.contains("fieldSelector=metadata.name%3Dnode-a"), "{q}");
        assert!(q.contains(&format!("resourceVersion={last_rv}")), "{q}");
        match script.recv().await {
            Some(n) => {
                last_rv = n["metadata"]["resourceVersion"].as_str().unwrap().to_string();
                let mut line = serde_json::to_vec(&json!({"type": "MODIFIED", "object": n})).unwrap();
                line.push(b'\n');
                send.send_response(
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/json")
                        .body(Body::from(line))
                        .unwrap(),
                );
            }
            None => held.push(send),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_label_watch_switches_the_named_config_and_re_advertises() {
    let (client, handle) = mock();
    let (script, script_rx) = mpsc::channel(4);
    let server = tokio::spawn(serve_node_watch(
        handle,
        node("10", json!({"kubernetes.io/hostname": "node-a"})),
        script_rx,
    ));
    let labels = KubeNodeLabels::start(client, "node-a").await.unwrap();
    assert_eq!(labels.get("kubernetes.io/hostname").unwrap().as_deref(), Some("node-a"));
    assert_eq!(labels.get(CONFIG_LABEL).unwrap(), None);

    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let api = Api {
        labels: Some(Arc::new(labels)),
        annotator: None,
        pods: None,
    };
    let env = start_with(Arc::new(sim), Some(m), "version: v1\n", api, |o, tmp| {
        let dir = tmp.join("configs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("whole.yaml"), "version: v1\n").unwrap();
        std::fs::write(dir.join("sliced.yaml"), dp_config("time-slicing-4")).unwrap();
        o.config_file = None;
        o.config_dir = Some(dir);
        o.default_config = Some("whole".into());
        // No polling after the first check: only the watch can switch it.
        o.config_poll_ms = 3_600_000;
    })
    .await;
    env.devices("nvidia.com/gpu", 4).await;
    assert_eq!(env.plugin.status().config.as_deref(), Some("whole"));

    // The node is labelled: the watch delivers it and the plugin re-advertises.
    script
        .send(node(
            "11",
            json!({"kubernetes.io/hostname": "node-a", CONFIG_LABEL: "sliced"}),
        ))
        .await
        .unwrap();
    env.devices("nvidia.com/gpu.shared", 16).await;
    let st = env
        .plugin
        .wait_status(T, |s| s.config.as_deref() == Some("sliced"))
        .await
        .unwrap();
    assert_eq!(st.resources, ["nvidia.com/gpu.shared"]);
    env.kubelet
        .wait_for(T, |p| (!p["nvidia.com/gpu"].connected).then_some(()))
        .await
        .unwrap();

    // The label goes: back to the default config.
    script
        .send(node("12", json!({"kubernetes.io/hostname": "node-a"})))
        .await
        .unwrap();
    env.plugin
        .wait_status(T, |s| s.config.as_deref() == Some("whole"))
        .await
        .unwrap();
    env.kubelet
        .wait_for(T, |p| {
            let g = p.get("nvidia.com/gpu")?;
            (g.connected && g.registrations == 2 && g.devices.len() == 4).then_some(())
        })
        .await
        .unwrap();
    assert_eq!(env.plugin.status().applied, 3);
    assert!(
        env.metrics_text()
            .contains("config_reloads_total{result=\"applied\"} 2")
    );
    env.plugin.shutdown();
    env.task.await.unwrap();
    drop(script);
    server.abort();
}

/// Checks a GET of the node's metadata and answers it with `annotations`.
async fn expect_node_get(handle: &mut Handle, annotations: Value) {
    let (req, send) = handle.next_request().await.expect("GET node");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/api/v1/nodes/node-a");
    let accept = req.headers()["accept"].to_str().unwrap().to_string();
    assert!(accept.contains("as=PartialObjectMetadata"), "{accept}");
    send.send_response(respond(
        StatusCode::OK,
        &meta("node-a", json!({"annotations": annotations})),
    ));
}

/// Checks the merge patch of the annotation and answers it.
async fn expect_annotation_patch(handle: &mut Handle) -> String {
    let (req, send) = handle.next_request().await.expect("PATCH node");
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), "/api/v1/nodes/node-a");
    let q = query(&req);
    let params: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
    assert_eq!(params, [format!("fieldManager={FIELD_MANAGER}")]);
    assert_eq!(req.headers()["content-type"], "application/merge-patch+json");
    let body = body_json(req).await;
    let annotations = body["metadata"]["annotations"].as_object().unwrap().clone();
    assert_eq!(body.as_object().unwrap().len(), 1, "only metadata: {body}");
    assert_eq!(
        body["metadata"].as_object().unwrap().len(),
        1,
        "only annotations: {body}"
    );
    assert_eq!(annotations.len(), 1, "{body}");
    let value = annotations[TOPOLOGY_ANNOTATION].as_str().unwrap().to_string();
    send.send_response(respond(
        StatusCode::OK,
        &meta("node-a", json!({"annotations": {TOPOLOGY_ANNOTATION: value}})),
    ));
    value
}

#[tokio::test]
async fn annotation_is_patched_only_when_it_changed() {
    let (client, mut handle) = mock();
    let annotator = KubeAnnotator::new(client, "node-a");
    let server = tokio::spawn(async move {
        // Not there yet: patched.
        expect_node_get(&mut handle, json!({"other": "x"})).await;
        assert_eq!(expect_annotation_patch(&mut handle).await, "{\"v\":1}");
        // Already the value: no patch.
        expect_node_get(&mut handle, json!({TOPOLOGY_ANNOTATION: "{\"v\":1}"})).await;
        // A different value: patched.
        expect_node_get(&mut handle, json!({TOPOLOGY_ANNOTATION: "{\"v\":1}"})).await;
        assert_eq!(expect_annotation_patch(&mut handle).await, "{\"v\":2}");
        // A refused read surfaces as an error, and nothing is patched.
        let (_, send) = handle.next_request().await.expect("GET node");
        send.send_response(not_found("nodes \"node-a\""));
        // No request after that: every client is gone.
        assert!(handle.next_request().await.is_none());
    });
    assert!(annotator.write(TOPOLOGY_ANNOTATION, "{\"v\":1}").await.unwrap());
    assert!(!annotator.write(TOPOLOGY_ANNOTATION, "{\"v\":1}").await.unwrap());
    annotator.annotate(TOPOLOGY_ANNOTATION, "{\"v\":2}").await.unwrap();
    let e = annotator.annotate(TOPOLOGY_ANNOTATION, "{\"v\":3}").await.unwrap_err();
    assert!(e.contains("node-a") && e.contains("not found"), "{e}");
    drop(annotator);
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_publishes_its_topology_on_the_node() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        expect_node_get(&mut handle, json!({})).await;
        let value = expect_annotation_patch(&mut handle).await;
        // Every client dropped after shutdown, and no second write.
        assert!(handle.next_request().await.is_none());
        value
    });
    let m = machine("a100-pcie-4x");
    let api = Api {
        labels: None,
        annotator: Some(Arc::new(KubeAnnotator::new(client, "node-a"))),
        pods: None,
    };
    let env = start_with(
        Arc::new(SimBackend::new(m.clone())),
        Some(m),
        "version: v1\n",
        api,
        |_, _| {},
    )
    .await;
    env.devices("nvidia.com/gpu", 4).await;
    env.plugin.shutdown();
    let common::Env { task, .. } = env;
    task.await.unwrap();
    let value = server.await.unwrap();
    let profile: railyard_core::machine::MachineProfile = serde_json::from_str(&value).unwrap();
    assert_eq!(profile.gpus.len(), 4);
    assert!(!value.contains('\n'), "compact JSON");
}

fn over_share_event() -> PodEvent {
    PodEvent {
        namespace: "ml".into(),
        pod: "train-0".into(),
        container: "trainer".into(),
        warning: true,
        reason: REASON_OVER_SHARE,
        message: "container trainer uses 12288 MiB of GPU memory on GPU-1234::0, over its share of 10240 MiB \
                  for 5.0s; sending SIGTERM to its processes on the device"
            .into(),
    }
}

/// Checks an Event POST for `pod` in namespace `ml` and answers it.
async fn expect_event(handle: &mut Handle, pod: &str) -> Value {
    let (req, send) = handle.next_request().await.expect("POST event");
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), "/apis/events.k8s.io/v1/namespaces/ml/events");
    assert_eq!(req.headers()["content-type"], "application/json");
    let body = body_json(req).await;
    assert_eq!(body["apiVersion"], "events.k8s.io/v1");
    assert_eq!(body["kind"], "Event");
    assert_eq!(body["metadata"]["namespace"], "ml");
    assert!(
        body["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{pod}.")),
        "{body}"
    );
    assert!(body["eventTime"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reportingController"], EVENT_CONTROLLER);
    assert_eq!(body["reportingInstance"], "node-a");
    assert_eq!(body["regarding"]["apiVersion"], "v1");
    assert_eq!(body["regarding"]["kind"], "Pod");
    assert_eq!(body["regarding"]["namespace"], "ml");
    assert_eq!(body["regarding"]["name"], pod);
    send.send_response(respond(StatusCode::CREATED, &body));
    body
}

#[tokio::test]
async fn watchdog_events_are_written_on_the_pod() {
    let (client, mut handle) = mock();
    let (recorder, task) = KubeEventRecorder::spawn(client, "node-a");
    let server = tokio::spawn(async move {
        // The pod's UID first, so `kubectl describe pod` finds the Event.
        let (req, send) = handle.next_request().await.expect("GET pod");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/ml/pods/train-0");
        assert!(
            req.headers()["accept"]
                .to_str()
                .unwrap()
                .contains("as=PartialObjectMetadata")
        );
        send.send_response(respond(
            StatusCode::OK,
            &meta("train-0", json!({"namespace": "ml", "uid": "uid-0"})),
        ));
        let ev = expect_event(&mut handle, "train-0").await;
        assert_eq!(ev["reason"], REASON_OVER_SHARE);
        assert_eq!(ev["action"], "CheckGPUMemoryShare");
        assert_eq!(ev["regarding"]["uid"], "uid-0");
        assert_eq!(ev["regarding"]["fieldPath"], "spec.containers{trainer}");
        let note = ev["note"].as_str().unwrap();
        for part in ["GPU-1234::0", "12288 MiB", "10240 MiB", "SIGTERM"] {
            assert!(note.contains(part), "{note}");
        }
        assert_eq!(ev.get("series"), None);

        // A pod already gone: the Event is still written, without a UID.
        let (req, send) = handle.next_request().await.expect("GET pod");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/ml/pods/train-1");
        send.send_response(not_found("pods \"train-1\""));
        let ev = expect_event(&mut handle, "train-1").await;
        assert_eq!(ev["reason"], REASON_SIGNALLED);
        assert_eq!(ev["action"], "SignalProcesses");
        assert_eq!(ev["regarding"].get("uid"), None);
        assert!(handle.next_request().await.is_none());
    });
    recorder.record(over_share_event());
    recorder.record(PodEvent {
        pod: "train-1".into(),
        reason: REASON_SIGNALLED,
        message: "sent SIGTERM to processes [4242] of container trainer on GPU-1234::0 (12288 MiB used, \
                  share 10240 MiB): over its share for the grace period"
            .into(),
        ..over_share_event()
    });
    // The writer ends once every recorder is dropped and the queue is drained.
    drop(recorder);
    task.await.unwrap();
    server.await.unwrap();
}
