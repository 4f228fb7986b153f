//! The whole system end to end: the real device plugin on every simulated
//! node against its own fake kubelet, the real extender over HTTP, the
//! kube-scheduler loop, on one stateful fake API server.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use railyard_cluster::Cluster;
use railyard_cluster::cluster::fleet;
use railyard_cluster::node::NodeSpec;
use railyard_cluster::scheduler::Outcome;
use railyard_cluster::script::{NAMESPACE, gang, pod};

/// Generous: tests wait for events, never for a fixed time.
const T: Duration = Duration::from_secs(60);

fn machines() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines")
}

/// `n` nodes of one profile, the fleet's naming and labels.
fn nodes_of(profile: &str, n: usize) -> Vec<NodeSpec> {
    let all = fleet(&machines(), 5 * n).unwrap();
    let mut out: Vec<NodeSpec> = all.into_iter().filter(|s| s.machine.name == profile).take(n).collect();
    assert_eq!(out.len(), n, "profile {profile}");
    for (i, s) in out.iter_mut().enumerate() {
        s.name = format!("{profile}-{i}");
        s.labels.insert("kubernetes.io/hostname".into(), s.name.clone());
        s.labels
            .insert("fabric.topograph.run/tier-0".into(), format!("leaf-{}", i / 4));
    }
    out
}

/// Runs scheduling passes (each binding at most what `budget` allows now)
/// until `budget` says 0, re-running after each change in the API.
async fn drive(c: &Cluster, what: &str, budget: impl Fn(&Cluster) -> usize) {
    let mut changes = c.api.changes();
    let poll = async {
        loop {
            let b = budget(c);
            if b == 0 {
                return;
            }
            c.scheduler.pass_limited(b).await.unwrap();
            if budget(c) == 0 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
        }
    };
    assert!(tokio::time::timeout(T, poll).await.is_ok(), "never: {what}");
}

fn running(c: &Cluster, name: &str) -> bool {
    c.phase(NAMESPACE, name).as_deref() == Some("Running")
}

fn node_of(c: &Cluster, name: &str) -> String {
    c.pod(NAMESPACE, name).unwrap()["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn bound(c: &Cluster, name: &str) -> bool {
    !node_of(c, name).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_gpu_pod_and_a_mig_pod_are_placed_and_allocated_with_their_cdi_ids() {
    let mut specs = nodes_of("t4-2x", 1);
    specs.extend(nodes_of("dgx-h100-mig", 1));
    let c = Cluster::start(specs).await.unwrap();
    c.create(pod("notebook", &[("nvidia.com/gpu.shared", 1)], &[], None))
        .unwrap();
    c.create(pod("infer", &[("nvidia.com/mig-1g.10gb", 1)], &[], None))
        .unwrap();
    c.wait_until(T, "both pods running", |c| {
        running(c, "notebook") && running(c, "infer")
    })
    .await
    .unwrap();

    assert_eq!(node_of(&c, "notebook"), "t4-2x-0");
    assert_eq!(node_of(&c, "infer"), "dgx-h100-mig-0");
    for (name, node, resource) in [
        ("notebook", "t4-2x-0", "nvidia.com/gpu.shared"),
        ("infer", "dgx-h100-mig-0", "nvidia.com/mig-1g.10gb"),
    ] {
        let n = c.node(node).unwrap();
        let a = n.admissions.get(&format!("{NAMESPACE}/{name}")).unwrap();
        assert_eq!(a.failed, None);
        assert_eq!(a.devices.len(), 1, "{a:?}");
        let (container, res, ids) = &a.devices[0];
        assert_eq!((container.as_str(), res.as_str(), ids.len()), ("main", resource, 1));
        // The runtime gets the device by CDI name, and the plugin's CDI
        // spec on the node defines that name.
        let device = ids[0].split("::").next().unwrap();
        assert_eq!(a.cdi_devices, vec![format!("railyard.dev/gpu={device}")], "{a:?}");
        let specs: String = std::fs::read_dir(n.cdi_dir())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(specs.contains(device), "{name}: {device} is in no CDI spec on {node}");
        // PodResources reports it, as kubelet's does.
        assert_eq!(n.kubelet.plugin(resource).unwrap().allocated.len(), 1);
    }
    // The MIG device is one of the MIG node's 1g.10gb instances.
    let mig = c.node("dgx-h100-mig-0").unwrap();
    let devices = mig.kubelet.plugin("nvidia.com/mig-1g.10gb").unwrap().devices;
    let id = &c
        .node("dgx-h100-mig-0")
        .unwrap()
        .admissions
        .get("ml/infer")
        .unwrap()
        .devices[0]
        .2[0];
    assert!(devices.iter().any(|d| &d.id == id && id.starts_with("MIG-")), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_node_gang_is_placed_all_or_nothing_and_admitted_by_every_kubelet() {
    let c = Cluster::start(nodes_of("dgx-h100", 5)).await.unwrap();
    // One GPU taken on two nodes: three whole nodes are left.
    for (name, node) in [("blocker-0", "dgx-h100-0"), ("blocker-1", "dgx-h100-1")] {
        c.create(pod(
            name,
            &[("nvidia.com/gpu", 1)],
            &[],
            Some(("kubernetes.io/hostname", node)),
        ))
        .unwrap();
    }
    c.wait_until(T, "the blockers running", |c| {
        running(c, "blocker-0") && running(c, "blocker-1")
    })
    .await
    .unwrap();
    let objects = gang("train", 4, 8, None);
    // The PodGroup, then the members in no particular order.
    for i in [0usize, 3, 1, 4, 2] {
        c.create(objects[i].clone()).unwrap();
    }
    let members = ["train-0", "train-1", "train-2", "train-3"];
    c.wait_until(T, "every member told why it waits", |c| {
        members.iter().all(|m| {
            let p = c.pod(NAMESPACE, m).unwrap();
            p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", c.scheduler.outcomes()));
    // More passes: the gang does not fit whole, so no member is bound.
    c.passes(3).await.unwrap();
    for m in members {
        assert!(!bound(&c, m), "{m} was bound while its gang cannot fit");
        let msg = c.pod(NAMESPACE, m).unwrap()["status"]["conditions"][0]["message"].clone();
        assert!(
            msg.as_str().unwrap().starts_with("0/5 nodes are available"),
            "{m}: {msg}"
        );
    }
    // One blocker ends: four whole nodes, and the whole gang is placed,
    // each member on its own node.
    c.delete_pod(NAMESPACE, "blocker-0").unwrap();
    c.wait_until(T, "every member running", |c| members.iter().all(|m| running(c, m)))
        .await
        .unwrap();
    let nodes: BTreeSet<String> = members.iter().map(|m| node_of(&c, m)).collect();
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert!(!nodes.contains("dgx-h100-1"), "{nodes:?}");
    for m in members {
        let node = node_of(&c, m);
        let n = c.node(&node).unwrap();
        let a = n.admissions.get(&format!("{NAMESPACE}/{m}")).unwrap();
        assert_eq!(a.devices[0].2.len(), 8, "{m} on {node}: {a:?}");
        assert_eq!(n.kubelet.plugin("nvidia.com/gpu").unwrap().allocated.len(), 8);
        // The plugin allocated what the extender decided, and wrote it back.
        let p = c.pod(NAMESPACE, m).unwrap();
        assert_eq!(
            p["metadata"]["annotations"]["railyard.dev/gpus"], "0,1,2,3,4,5,6,7",
            "{m}"
        );
        c.wait_until(T, "the allocation written back", |c| {
            c.pod(NAMESPACE, m).unwrap()["metadata"]["annotations"]["railyard.dev/allocated-gpus"] == "0,1,2,3,4,5,6,7"
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extender_restarted_mid_gang_recovers_the_plan_from_the_api() {
    let mut c = Cluster::start_manual(nodes_of("dgx-h100", 6)).await.unwrap();
    for o in gang("train", 4, 8, None) {
        c.create(o).unwrap();
    }
    // kube-scheduler binds two members, then the extender dies.
    drive(&c, "two members bound", |c| 2 - c.scheduler.placements().len().min(2)).await;
    let plan = c.extender.state().view().reservation("ml/train").unwrap().plan.clone();
    let placed: Vec<(String, String)> = c.scheduler.placements().into_iter().map(|p| (p.pod, p.node)).collect();
    assert_eq!(placed.len(), 2);
    c.restart_extender().await.unwrap();
    c.wait_until(T, "the new extender lists the cluster", |c| c.extender.ready())
        .await
        .unwrap();
    // The new process knows only the API: it rebuilds the reservation from
    // the bound members' recorded plan and holds the rest of it.
    c.wait_until(T, "the reservation rebuilt", |c| {
        c.extender.state().view().reservation("ml/train").is_some()
    })
    .await
    .unwrap_or_else(|e| {
        let pods: Vec<_> = (0..4).map(|i| c.pod(NAMESPACE, &format!("train-{i}"))).collect();
        panic!("{e}: {pods:#?}")
    });
    assert_eq!(c.extender.state().view().reservation("ml/train").unwrap().plan, plan);
    drive(&c, "every member bound", |c| {
        if (0..4).all(|i| bound(c, &format!("train-{i}"))) {
            0
        } else {
            usize::MAX
        }
    })
    .await;
    for (i, slot) in plan.slots.iter().enumerate() {
        assert_eq!(
            node_of(&c, &format!("train-{i}")),
            slot.node,
            "member {i} follows the plan"
        );
    }
    for (pod, node) in &placed {
        let name = pod.split_once('/').unwrap().1;
        assert_eq!(&node_of(&c, name), node);
    }
    c.wait_until(T, "every member running", |c| {
        (0..4).all(|i| running(c, &format!("train-{i}")))
    })
    .await
    .unwrap();
    // No outcome was an error: the restart cost the gang nothing.
    assert!(
        c.scheduler
            .outcomes()
            .values()
            .all(|o| matches!(o, Outcome::Bound { .. })),
        "{:?}",
        c.scheduler.outcomes()
    );
}

/// A node's `nvidia.com/mig.config` label changed: the real MIG manager
/// changes the layout (keeping the instance a running pod holds), the device
/// plugin re-advertises through the layout file without a restart, and a
/// pod that needed the new devices is scheduled and admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mig_config_label_change_is_applied_re_advertised_and_scheduled() {
    let c = Cluster::start(nodes_of("dgx-h100-mig", 1)).await.unwrap();
    let node = "dgx-h100-mig-0";
    // 9 × 1g.10gb today (GPU 4: seven, GPU 5: two): one runs, ten do not fit.
    c.create(pod("infer", &[("nvidia.com/mig-1g.10gb", 1)], &[], None))
        .unwrap();
    c.wait_until(T, "infer running", |c| running(c, "infer")).await.unwrap();
    c.create(pod("sweep", &[("nvidia.com/mig-1g.10gb", 10)], &[], None))
        .unwrap();
    c.passes(3).await.unwrap();
    assert!(!bound(&c, "sweep"), "10 × 1g.10gb cannot fit before the change");
    let held = c.node(node).unwrap().admissions.get("ml/infer").unwrap().devices[0].2[0].clone();

    let mut n = c.api.get("v1", "Node", "", node).unwrap();
    n["metadata"]["labels"]["nvidia.com/mig.config"] = serde_json::json!("all-1g.10gb");
    c.api.put(n).unwrap();
    c.wait_until(T, "mig.config.state success", |c| {
        c.api.get("v1", "Node", "", node).unwrap()["metadata"]["labels"]["nvidia.com/mig.config.state"] == "success"
    })
    .await
    .unwrap();
    // The plugin advertises all 56 without a restart; the scheduler places the sweep.
    drive(&c, "sweep bound", |c| usize::from(!bound(c, "sweep"))).await;
    c.wait_until(T, "sweep running", |c| running(c, "sweep")).await.unwrap();
    let mig = c.node(node).unwrap();
    assert_eq!(mig.kubelet.plugin("nvidia.com/mig-1g.10gb").unwrap().devices.len(), 56);
    let infer_still = mig.kubelet.plugin("nvidia.com/mig-1g.10gb").unwrap().devices;
    assert!(
        infer_still.iter().any(|d| d.id == held),
        "the running pod's instance {held} was kept"
    );
    assert!(running(&c, "infer"));
}
