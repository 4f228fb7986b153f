#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Pod;
use railyard_core::config::DevicePluginConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::resources::{advertised_resources, inventory};
use railyard_kubelet_api::podresources::v1 as pr;

use super::*;

fn pod(name: &str, containers: &[(&str, &str, u32)], record: Option<&str>) -> Pod {
    let cs: Vec<serde_json::Value> = containers
        .iter()
        .map(|(c, r, n)| serde_json::json!({"name": c, "resources": {"limits": {*r: n.to_string()}}}))
        .collect();
    let mut annotations = serde_json::Map::new();
    if let Some(r) = record {
        annotations.insert(DECISION_ANNOTATION.into(), r.into());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "annotations": annotations},
        "spec": {"nodeName": "node-a", "containers": cs},
        "status": {"phase": "Pending"},
    }))
    .unwrap()
}

fn state(pods: &[Pod]) -> PodDecisions {
    let mut s = PodDecisions::default();
    s.apply_event(watcher::Event::Init);
    for p in pods {
        s.apply_event(watcher::Event::InitApply(p.clone()));
    }
    s.apply_event(watcher::Event::InitDone);
    s
}

fn served() -> BTreeSet<String> {
    ["nvidia.com/gpu".to_string()].into()
}

const GPU: &str = "nvidia.com/gpu";

#[test]
fn records_parse_bounded() {
    assert_eq!(parse_gpus("4, 5,6,7"), Ok(vec![4, 5, 6, 7]));
    assert!(parse_gpus("1,1").is_err());
    assert!(parse_gpus("").is_err());
    assert!(parse_gpus("-1").is_err());
    assert!(parse_gpus(&"1,".repeat(600)).is_err());
    assert!(parse_gpus(&(0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",")).is_err());
    assert_eq!(format_gpus([3, 1, 3, 0]), "0,1,3");
}

#[test]
fn entries_skip_finished_deleted_and_cpu_only_pods() {
    let p = pod("a", &[("main", GPU, 4)], Some("4,5,6,7"));
    let e = entry_of(&p).unwrap();
    assert_eq!(e.record, Record::Gpus(vec![4, 5, 6, 7]));
    assert_eq!(
        e.requests,
        [GpuRequest {
            container: "main".into(),
            resource: GPU.into(),
            count: 4
        }]
    );
    assert!(!e.started);
    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert!(entry_of(&done).is_none());
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    assert!(entry_of(&deleting).is_none());
    assert!(entry_of(&pod("cpu", &[("main", "cpu", 4)], None)).is_none());
    let mut running = p.clone();
    running.status.as_mut().unwrap().phase = Some("Running".into());
    assert!(entry_of(&running).unwrap().started);
    let bad = entry_of(&pod("b", &[("main", GPU, 1)], Some("zero"))).unwrap();
    assert_eq!(bad.record, Record::Invalid);
}

#[test]
fn one_candidate_matches_two_are_ambiguous_consumed_ones_do_not_count() {
    let mut s = state(&[
        pod("a", &[("main", GPU, 4)], Some("4,5,6,7")),
        pod("b", &[("main", GPU, 4)], Some("0,1,2,3")),
        pod("c", &[("main", GPU, 2)], Some("0,1")),
        pod("d", &[("main", GPU, 1), ("side", GPU, 1)], Some("0,1")),
    ]);
    assert_eq!(s.match_call(GPU, 4, &served(), None).unwrap_err(), Fallback::Ambiguous);
    assert_eq!(s.match_call(GPU, 2, &served(), None).unwrap().name, "c");
    assert_eq!(
        s.match_call(GPU, 1, &served(), None).unwrap_err(),
        Fallback::MultiContainer
    );
    assert_eq!(s.match_call(GPU, 8, &served(), None).unwrap_err(), Fallback::NoRecord);
    s.consume("uid-a");
    assert_eq!(s.match_call(GPU, 4, &served(), None).unwrap().name, "b");
    // The watch delivering the pod again does not undo the consumption.
    s.apply_event(watcher::Event::Apply(pod("a", &[("main", GPU, 4)], Some("4,5,6,7"))));
    assert_eq!(s.match_call(GPU, 4, &served(), None).unwrap().name, "b");
    // Deleted: gone.
    s.apply_event(watcher::Event::Delete(pod("b", &[("main", GPU, 4)], None)));
    assert_eq!(s.match_call(GPU, 4, &served(), None).unwrap_err(), Fallback::NoRecord);
}

/// (pod, its devices of one resource when it has any).
type Listed<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);

fn listed(pods: &[Listed<'_>]) -> KubeletView {
    KubeletView::from_list(&pr::ListPodResourcesResponse {
        pod_resources: pods
            .iter()
            .map(|(name, dev)| pr::PodResources {
                name: name.to_string(),
                namespace: "ns".into(),
                containers: vec![pr::ContainerResources {
                    name: "main".into(),
                    devices: dev
                        .iter()
                        .map(|(r, ids)| pr::ContainerDevices {
                            resource_name: r.to_string(),
                            device_ids: ids.iter().map(|s| s.to_string()).collect(),
                            topology: None,
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    })
}

#[test]
fn kubelet_view_names_the_pod_being_admitted() {
    let s = state(&[
        pod("a", &[("main", GPU, 4)], Some("4,5,6,7")),
        pod("b", &[("main", GPU, 4)], Some("0,1,2,3")),
        pod("nr", &[("main", GPU, 4)], None),
    ]);
    // Only b is listed without devices: kubelet is admitting b.
    let v = listed(&[("a", Some((GPU, &["GPU-4"]))), ("b", None)]);
    assert_eq!(s.match_call(GPU, 4, &served(), Some(&v)).unwrap().name, "b");
    // kubelet knows none of them yet (the watch is ahead): nothing matches.
    assert_eq!(
        s.match_call(GPU, 4, &served(), Some(&listed(&[]))).unwrap_err(),
        Fallback::NoRecord
    );
    // A pod without a record being admitted is matched (and then not followed).
    let v = listed(&[("nr", None)]);
    assert_eq!(
        s.match_call(GPU, 4, &served(), Some(&v)).unwrap().record,
        Record::Absent
    );
}

fn resource(cfg: &str) -> AdvertisedResource {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/machines/dgx-h100.yaml"
    ))
    .unwrap();
    let m = MachineProfile::from_yaml(&text).unwrap();
    let cfg = DevicePluginConfig::from_yaml(cfg).unwrap();
    advertised_resources(&inventory(&m, &Default::default()), &cfg)
        .unwrap()
        .remove(0)
}

#[test]
fn recorded_ids_whole_and_replicas() {
    let r = resource("version: v1\n");
    let ids: Vec<String> = r.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(recorded_ids(&r, &[4, 5, 6, 7], &ids, &[], 4).unwrap(), ids[4..8]);
    assert_eq!(
        recorded_ids(&r, &[4, 5, 6], &ids, &[], 4).unwrap_err(),
        Fallback::InvalidRecord
    );
    // GPU 5 taken.
    let avail: Vec<String> = ids.iter().filter(|i| *i != &ids[5]).cloned().collect();
    assert_eq!(
        recorded_ids(&r, &[4, 5, 6, 7], &avail, &[], 4).unwrap_err(),
        Fallback::Stale
    );
    // A must-include id off the record.
    assert_eq!(
        recorded_ids(&r, &[4, 5, 6, 7], &ids, &ids[..1], 4).unwrap_err(),
        Fallback::Stale
    );
    assert_eq!(recorded_ids(&r, &[4, 5, 6, 7], &ids, &ids[4..5], 4).unwrap(), ids[4..8]);

    let shared = resource(
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
    );
    let ids: Vec<String> = shared.devices.iter().map(|d| d.id.clone()).collect();
    let got = recorded_ids(&shared, &[3], &ids, &[], 2).unwrap();
    assert!(
        got.iter()
            .all(|i| shared.devices.iter().any(|d| &d.id == i && d.device.gpu == 3)),
        "{got:?}"
    );
    assert_eq!(
        recorded_ids(&shared, &[3, 4], &ids, &[], 1).unwrap_err(),
        Fallback::InvalidRecord
    );
    let none_on_3: Vec<String> = shared
        .devices
        .iter()
        .filter(|d| d.device.gpu != 3)
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(
        recorded_ids(&shared, &[3], &none_on_3, &[], 1).unwrap_err(),
        Fallback::Stale
    );
}

#[test]
fn reconciliation_writes_what_kubelet_lists_and_consumes_it() {
    let r = resource("version: v1\n");
    let map = DeviceMap::new(
        std::slice::from_ref(&r),
        r.devices.iter().map(|d| (d.id.clone(), d.device.gpu)),
    );
    let uuid = |i: usize| r.devices[i].id.as_str();
    let mut s = state(&[
        pod("a", &[("main", GPU, 2)], Some("0,1")),
        pod("b", &[("main", GPU, 2)], Some("2,3")),
    ]);
    let v = listed(&[
        ("a", Some((GPU, &[uuid(3), uuid(2)]))),
        ("b", None),
        ("gone", Some((GPU, &[uuid(7)]))),
    ]);
    let w = reconcile(&mut s, &v, &map);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].name.as_str(), w[0].value.as_str(), w[0].source),
        ("a", "2,3", "reconcile")
    );
    assert!(s.is_consumed("uid-a") && !s.is_consumed("uid-b"));
    // Replica ids of another config map through the GPU UUID.
    assert_eq!(map.gpu_of(&format!("{}::3", uuid(6))), Some(6));
    assert_eq!(map.gpu_of("MIG-x"), None);
}
