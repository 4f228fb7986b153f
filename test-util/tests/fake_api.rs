//! The fake API server against an unmodified kube client: what a component
//! relies on behaves as the real API server does.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::ResourceSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;
use railyard_test_util::FakeApiServer;
use railyard_test_util::fake_api::ResourceType;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

fn pod(name: &str, labels: Value, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node},
    }))
    .unwrap()
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn create_get_and_validation_as_the_api_server() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
    let made = pods
        .create(&PostParams::default(), &pod("a", json!({}), None))
        .await
        .unwrap();
    let meta = &made.metadata;
    assert!(meta.uid.is_some() && meta.resource_version.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(pods.get("a").await.unwrap().metadata.uid, meta.uid);
    // The same name again, and a pod the typed schema rejects.
    assert_eq!(
        code(
            pods.create(&PostParams::default(), &pod("a", json!({}), None))
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        server.client().unwrap(),
        "default",
        &kube::api::ApiResource::erase::<Pod>(&()),
    );
    let no_spec: kube::api::DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}, "spec": {"containers": "x"}}),
    )
    .unwrap();
    let (status, reason) = code(raw.create(&PostParams::default(), &no_spec).await.unwrap_err());
    assert_eq!((status, reason.as_str()), (422, "Invalid"));
    // generateName gets a unique name.
    let mut g = pod("", json!({}), None);
    g.metadata.name = None;
    g.metadata.generate_name = Some("train-".into());
    let a = pods.create(&PostParams::default(), &g).await.unwrap();
    let b = pods.create(&PostParams::default(), &g).await.unwrap();
    let (an, bn) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(
        an.starts_with("train-") && bn.starts_with("train-") && an != bn,
        "{an} {bn}"
    );
    assert_eq!(code(pods.get("missing").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn list_with_label_and_field_selectors_and_pages() {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (i, node) in ["n1", "n2", "n1", "n2", "n1"].iter().enumerate() {
        let labels = json!({"app": if i % 2 == 0 { "web" } else { "db" }, "idx": i.to_string()});
        pods.create(&PostParams::default(), &pod(&format!("p{i}"), labels, Some(node)))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| -> Vec<String> {
        l.items.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    };
    let all: Api<Pod> = Api::all(client.clone());
    let on_n1 = all
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(names(on_n1), ["p0", "p2", "p4"]);
    let web_not_4 = pods
        .list(&ListParams::default().labels("app=web,idx notin (4)"))
        .await
        .unwrap();
    assert_eq!(names(web_not_4), ["p0", "p2"]);
    let both = pods
        .list(&ListParams::default().labels("app=db").fields("spec.nodeName!=n1"))
        .await
        .unwrap();
    assert_eq!(names(both), ["p1", "p3"]);
    let bad = pods
        .list(&ListParams::default().fields("spec.image=x"))
        .await
        .unwrap_err();
    assert_eq!(code(bad).0, 400);
    // Pages of two, followed by their continue tokens.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    loop {
        let page = pods.list(&lp).await.unwrap();
        let next = page.metadata.continue_.clone();
        seen.extend(names(page));
        match next {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"]);
}

#[tokio::test]
async fn updates_are_checked_against_the_resource_version() {
    let server = FakeApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.client().unwrap());
    let node: Node =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})).unwrap();
    let v1 = nodes.create(&PostParams::default(), &node).await.unwrap();
    let mut changed = v1.clone();
    changed.metadata.labels = Some([("a".to_owned(), "1".to_owned())].into());
    let v2 = nodes.replace("n1", &PostParams::default(), &changed).await.unwrap();
    assert_ne!(v2.metadata.resource_version, v1.metadata.resource_version);
    // A label change is not a spec change; an unschedulable flag is.
    assert_eq!(v2.metadata.generation, Some(1));
    let (status, reason) = code(nodes.replace("n1", &PostParams::default(), &changed).await.unwrap_err());
    assert_eq!((status, reason.as_str()), (409, "Conflict"));
    let mut cordon = v2.clone();
    cordon.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
        unschedulable: Some(true),
        ..Default::default()
    });
    let v3 = nodes.replace("n1", &PostParams::default(), &cordon).await.unwrap();
    assert_eq!(v3.metadata.generation, Some(2));
}

#[tokio::test]
async fn merge_json_and_apply_patches_and_the_status_subresource() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
    pods.create(&PostParams::default(), &pod("a", json!({"x": "1", "y": "2"}), None))
        .await
        .unwrap();
    let merged = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": null, "z": "3"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.metadata.labels.unwrap(),
        [("y".to_owned(), "2".to_owned()), ("z".to_owned(), "3".to_owned())].into()
    );
    // JSON patch (kube's typed helper needs its jsonpatch feature; the wire
    // format is the same).
    let client = server.client().unwrap();
    let json_patch = |ops: Value| {
        http::Request::patch("/api/v1/namespaces/default/pods/a")
            .header("content-type", "application/json-patch+json")
            .body(serde_json::to_vec(&ops).unwrap())
            .unwrap()
    };
    let patched: Pod = client
        .request(json_patch(json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
            {"op": "test", "path": "/metadata/labels/y", "value": "2"}
        ])))
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["k"], "v");
    let failing = client
        .request::<Pod>(json_patch(
            json!([{"op": "test", "path": "/metadata/labels/y", "value": "9"}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(code(failing).0, 422);
    // Server-side apply: a second manager's change to an owned field conflicts until forced.
    let apply = |labels: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": labels}});
    let pp = PatchParams::apply("one");
    pods.patch("a", &pp, &Patch::Apply(apply(json!({"owned": "1"}))))
        .await
        .unwrap();
    let err = pods
        .patch(
            "a",
            &PatchParams::apply("two"),
            &Patch::Apply(apply(json!({"owned": "2"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err).0, 409);
    let forced = pods
        .patch(
            "a",
            &PatchParams::apply("two").force(),
            &Patch::Apply(apply(json!({"owned": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.metadata.labels.unwrap()["owned"], "2");
    // Apply creates a missing object.
    let created = pods
        .patch(
            "fresh",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fresh"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    // Status: written only through its subresource.
    let status = json!({"status": {"phase": "Running"}});
    let ignored = pods
        .patch("a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(ignored.status.and_then(|s| s.phase).is_none());
    let running = pods
        .patch_status("a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn delete_honours_finalizers_and_binding_sets_the_node_once() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
    let mut held = pod("held", json!({}), None);
    held.metadata.finalizers = Some(vec!["railyard.dev/test".into()]);
    pods.create(&PostParams::default(), &held).await.unwrap();
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("held").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(pods.get("held").await.unwrap_err()).0, 404);
    // Binding.
    pods.create(&PostParams::default(), &pod("b", json!({}), None))
        .await
        .unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b", "annotations": {"railyard.dev/gpus": "0,1"}}, "target": {"kind": "Node", "name": "n7"}});
    pods.create_subresource::<Value, Value>("binding", "b", &PostParams::default(), &binding)
        .await
        .unwrap();
    assert_eq!(
        pods.get("b").await.unwrap().spec.unwrap().node_name.as_deref(),
        Some("n7")
    );
    let again = pods
        .create_subresource::<Value, Value>("binding", "b", &PostParams::default(), &binding)
        .await
        .unwrap_err();
    assert_eq!(code(again).0, 409);
}

#[tokio::test]
async fn watch_from_a_resource_version_with_bookmarks_and_410_after_compaction() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
    let a = pods
        .create(&PostParams::default(), &pod("a", json!({}), None))
        .await
        .unwrap();
    let from = a.metadata.resource_version.unwrap();
    pods.create(&PostParams::default(), &pod("b", json!({}), None))
        .await
        .unwrap();
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = Box::pin(
        pods.watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &from,
        )
        .await
        .unwrap(),
    );
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("b")));
    assert!(matches!(next().await, WatchEvent::Deleted(p) if p.metadata.name.as_deref() == Some("a")));
    server.bookmark();
    assert!(matches!(next().await, WatchEvent::Bookmark(_)));
    pods.create(&PostParams::default(), &pod("c", json!({}), None))
        .await
        .unwrap();
    assert!(matches!(next().await, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("c")));
    // After a compaction the old revision is gone.
    server.compact();
    let mut stale = Box::pin(pods.watch(&WatchParams::default(), &from).await.unwrap());
    let ev = tokio::time::timeout(Duration::from_secs(10), stale.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Error(e) if e.code == 410), "expired");
}

#[tokio::test]
async fn kube_runtime_watcher_lists_watches_and_recovers_from_closed_and_expired_watches() {
    use kube::runtime::watcher::{self, Event};
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a", json!({}), Some("n1")))
        .await
        .unwrap();
    let cfg = watcher::Config::default().fields("spec.nodeName=n1");
    let mut stream = Box::pin(watcher::watcher(Api::<Pod>::all(client), cfg));
    let mut names = async |want: &str| loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Event::Apply(p) | Event::InitApply(p) = ev
            && p.metadata.name.as_deref() == Some(want)
        {
            return;
        }
    };
    names("a").await;
    pods.create(&PostParams::default(), &pod("elsewhere", json!({}), Some("n2")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", json!({}), Some("n1")))
        .await
        .unwrap();
    names("b").await;
    server.close_watches();
    pods.create(&PostParams::default(), &pod("c", json!({}), Some("n1")))
        .await
        .unwrap();
    names("c").await;
    server.compact();
    server.close_watches();
    pods.create(&PostParams::default(), &pod("d", json!({}), Some("n1")))
        .await
        .unwrap();
    names("d").await;
}

#[tokio::test]
async fn discovery_serves_the_configured_groups_and_custom_resources() {
    let server = FakeApiServer::builder()
        .custom(ResourceType::custom(
            "scheduling.x-k8s.io",
            "v1alpha1",
            "PodGroup",
            "podgroups",
            true,
        ))
        .without_group("coordination.k8s.io")
        .server_version(1, 35)
        .start()
        .await
        .unwrap();
    let client = server.client().unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "35"));
    let d = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = d.groups().map(|g| g.name().to_owned()).collect();
    assert!(groups.iter().any(|g| g == "resource.k8s.io"), "{groups:?}");
    assert!(groups.iter().any(|g| g == "scheduling.x-k8s.io"), "{groups:?}");
    assert!(!groups.iter().any(|g| g == "coordination.k8s.io"), "{groups:?}");
    // A custom resource goes through the same write path.
    let (ar, _) = d
        .groups()
        .find(|g| g.name() == "scheduling.x-k8s.io")
        .unwrap()
        .recommended_kind("PodGroup")
        .unwrap();
    let pgs: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let pg: kube::api::DynamicObject = serde_json::from_value(
        json!({"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup", "metadata": {"name": "g"}, "spec": {"minMember": 4}}),
    )
    .unwrap();
    pgs.create(&PostParams::default(), &pg).await.unwrap();
    assert_eq!(server.list("scheduling.x-k8s.io/v1alpha1", "PodGroup").len(), 1);
    // ResourceSlices are typed and selectable by node.
    let slices: Api<ResourceSlice> = Api::all(client);
    let slice: ResourceSlice = serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "n1-gpu"},
        "spec": {"driver": "gpu.nvidia.com", "nodeName": "n1", "pool": {"name": "n1", "generation": 1, "resourceSliceCount": 1}, "devices": []},
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let on = slices
        .list(&ListParams::default().fields("spec.nodeName=n1,spec.driver=gpu.nvidia.com"))
        .await
        .unwrap();
    assert_eq!(on.items.len(), 1);
    let _ = ObjectMeta::default();
}

#[tokio::test]
async fn injected_failures_and_the_request_log() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
    server.fail_next("POST", "/pods", 500, 1);
    assert_eq!(
        code(
            pods.create(&PostParams::default(), &pod("a", json!({}), None))
                .await
                .unwrap_err()
        )
        .0,
        500
    );
    pods.create(&PostParams::default(), &pod("a", json!({}), None))
        .await
        .unwrap();
    let posts: Vec<_> = server.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].path, "/api/v1/namespaces/default/pods");
    assert_eq!(posts[1].body.as_ref().unwrap()["metadata"]["name"], "a");
    // Seeding and reading state directly.
    server
        .create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}}))
        .unwrap();
    assert_eq!(
        server.get("v1", "Node", "", "n1").unwrap()["metadata"]["labels"]["a"],
        "b"
    );
}
