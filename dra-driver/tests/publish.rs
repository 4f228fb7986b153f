//! The ResourceSlice publisher against the stateful fake API server: what
//! it writes, in which order, and what it leaves alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::resource::v1::ResourceSlice;
use railyard_core::machine::MachineProfile;
use railyard_dra::api::pool_to_slices;
use railyard_dra::config::DraConfig;
use railyard_dra::device::{Pool, Taint, TaintEffect};
use railyard_dra::inventory::build_pool;
use railyard_dra::slices::ServerVersion;
use railyard_dra_driver::publish::{self, Outcome, PublishError, Publisher};
use railyard_test_util::fake_api::{FakeApiServer, RequestRecord};
use serde_json::Value;

const V1: &str = "resource.k8s.io/v1";
const KIND: &str = "ResourceSlice";
const NODE: &str = "node-a";

fn pool_of(machine: &str, node: &str) -> Pool {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/machines")
        .join(machine);
    let profile = MachineProfile::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    build_pool(&profile, &DraConfig::default(), node).unwrap()
}

fn pool() -> Pool {
    pool_of("dgx-h100-mig.yaml", NODE)
}

/// A pool that publishes fast, for the loops.
fn small_pool() -> Pool {
    pool_of("t4-2x.yaml", NODE)
}

async fn fake(minor: u32) -> FakeApiServer {
    FakeApiServer::builder().server_version(1, minor).start().await.unwrap()
}

async fn publisher(fake: &FakeApiServer) -> Publisher {
    let client = fake.client().unwrap();
    let version = publish::discover_version(&client).await.unwrap();
    Publisher::new(client, NODE, &pool().driver, version)
}

fn stored(fake: &FakeApiServer) -> Vec<ResourceSlice> {
    fake.list(V1, KIND)
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

fn ours(fake: &FakeApiServer) -> Vec<ResourceSlice> {
    stored(fake)
        .into_iter()
        .filter(|s| s.spec.node_name.as_deref() == Some(NODE) && s.spec.driver == pool().driver)
        .collect()
}

fn name(s: &ResourceSlice) -> String {
    s.metadata.name.clone().unwrap()
}

fn writes(reqs: &[RequestRecord]) -> Vec<&RequestRecord> {
    reqs.iter().filter(|r| r.method != "GET").collect()
}

/// The stored slices are exactly `pool` at `generation`, spec for spec.
fn assert_published(fake: &FakeApiServer, pool: &Pool, version: ServerVersion, generation: i64) {
    let mut want = pool_to_slices(pool, version, generation).unwrap();
    want.sort_by_key(name);
    let mut got = ours(fake);
    got.sort_by_key(name);
    assert_eq!(
        got.iter().map(name).collect::<Vec<_>>(),
        want.iter().map(name).collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            serde_json::to_value(&g.spec).unwrap(),
            serde_json::to_value(&w.spec).unwrap(),
            "{}",
            name(g)
        );
    }
}

/// A smaller pool: only the first device (and the counter sets it may
/// consume), so the layout needs fewer slices.
fn shrunk(pool: &Pool) -> Pool {
    let mut p = pool.clone();
    p.devices.truncate(1);
    p
}

fn tainted(pool: &Pool) -> Pool {
    let mut p = pool.clone();
    p.devices[0].taints.push(Taint {
        key: "gpu.nvidia.com/xid".into(),
        value: Some("79".into()),
        effect: TaintEffect::NoSchedule,
    });
    p
}

async fn wait_for(fake: &FakeApiServer, what: &str, cond: impl Fn(&[ResourceSlice]) -> bool) {
    let mut changes = fake.changes();
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if cond(&ours(fake)) {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await;
    assert!(done.is_ok(), "gave up waiting for {what}: {:#?}", ours(fake));
}

#[tokio::test]
async fn first_publish_creates_every_slice_at_generation_1() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    assert_eq!(p.version(), ServerVersion::V1_35);
    let pool = pool();
    let want = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap();
    assert!(want.len() > 1, "the profile should need several slices");

    let out = p.reconcile(&pool).await.unwrap();
    assert_eq!(
        out,
        Outcome::Published {
            generation: 1,
            created: want.len(),
            updated: 0,
            deleted: 0
        }
    );
    assert_published(&fake, &pool, ServerVersion::V1_35, 1);
    for s in ours(&fake) {
        assert_eq!(s.spec.node_name.as_deref(), Some(NODE));
        assert_eq!(s.spec.pool.name, NODE);
        assert_eq!(s.spec.pool.generation, 1);
        assert_eq!(s.spec.pool.resource_slice_count, want.len() as i64);
    }
    // Listed with this node's and driver's field selectors.
    let list = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/resourceslices"))
        .unwrap();
    assert!(list.query.contains("fieldSelector"), "{list:?}");
    assert!(
        list.query.contains(NODE) && list.query.contains(&pool.driver),
        "{list:?}"
    );

    let stats = p.stats().snapshot();
    assert!(stats.ready);
    assert_eq!(stats.last_generation, 1);
    assert_eq!(stats.published, want.len() as u64);
    assert_eq!(stats.republish_errors, 0);
}

#[tokio::test]
async fn same_pool_again_writes_nothing() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    p.reconcile(&pool).await.unwrap();
    let before = fake.requests().len();
    let rv = fake.resource_version();

    assert_eq!(p.reconcile(&pool).await.unwrap(), Outcome::Unchanged { generation: 1 });
    assert_eq!(p.reconcile(&pool).await.unwrap(), Outcome::Unchanged { generation: 1 });
    let reqs = fake.requests();
    assert!(writes(&reqs[before..]).is_empty(), "{:#?}", &reqs[before..]);
    assert_eq!(fake.resource_version(), rv);
    assert_published(&fake, &pool, ServerVersion::V1_35, 1);
}

#[tokio::test]
async fn changed_pool_bumps_generation_and_writes_before_deleting() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    p.reconcile(&pool).await.unwrap();
    let small = shrunk(&pool);
    let n_small = pool_to_slices(&small, ServerVersion::V1_35, 1).unwrap().len();
    let n_full = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len();
    assert!(n_small < n_full, "{n_small} vs {n_full}");
    let before = fake.requests().len();

    let out = p.reconcile(&small).await.unwrap();
    assert_eq!(
        out,
        Outcome::Published {
            generation: 2,
            created: 0,
            updated: n_small,
            deleted: n_full - n_small
        }
    );
    assert_published(&fake, &small, ServerVersion::V1_35, 2);

    let reqs = fake.requests();
    let w = writes(&reqs[before..]);
    let first_delete = w.iter().position(|r| r.method == "DELETE").unwrap();
    assert!(
        w[..first_delete]
            .iter()
            .all(|r| r.method == "PUT" || r.method == "POST"),
        "{w:#?}"
    );
    assert_eq!(first_delete, n_small);
    assert!(w[first_delete..].iter().all(|r| r.method == "DELETE"), "{w:#?}");
    assert_eq!(w.len() - first_delete, n_full - n_small);
    // Every write carried the new generation.
    for r in &w[..first_delete] {
        assert_eq!(r.body.as_ref().unwrap()["spec"]["pool"]["generation"], 2);
    }

    // Growing back bumps again and creates what was deleted.
    let out = p.reconcile(&pool).await.unwrap();
    assert_eq!(
        out,
        Outcome::Published {
            generation: 3,
            created: n_full - n_small,
            updated: n_small,
            deleted: 0
        }
    );
    assert_published(&fake, &pool, ServerVersion::V1_35, 3);
    assert_eq!(p.stats().snapshot().last_generation, 3);
}

#[tokio::test]
async fn a_taint_updates_the_slices_in_place() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    p.reconcile(&pool).await.unwrap();
    let before = fake.requests().len();

    let t = tainted(&pool);
    let out = p.reconcile(&t).await.unwrap();
    assert_eq!(out.generation(), 2);
    assert_published(&fake, &t, ServerVersion::V1_35, 2);
    let reqs = fake.requests();
    assert!(
        writes(&reqs[before..]).iter().all(|r| r.method == "PUT"),
        "{:#?}",
        &reqs[before..]
    );
    let taints: Vec<_> = ours(&fake)
        .iter()
        .flat_map(|s| s.spec.devices.iter().flatten())
        .flat_map(|d| d.taints.iter().flatten())
        .map(|t| (t.key.clone(), t.value.clone(), t.effect.clone()))
        .collect();
    assert_eq!(
        taints,
        vec![(
            "gpu.nvidia.com/xid".to_owned(),
            Some("79".to_owned()),
            "NoSchedule".to_owned()
        )]
    );

    // Recovery removes the taint again.
    assert_eq!(p.reconcile(&pool).await.unwrap().generation(), 3);
    assert_published(&fake, &pool, ServerVersion::V1_35, 3);
}

#[tokio::test]
async fn slices_of_other_nodes_and_drivers_are_untouched() {
    let fake = fake(35).await;
    let pool = pool();
    let other_node = pool_of("t4-2x.yaml", "node-b");
    let mut other_driver = pool_of("t4-2x.yaml", NODE);
    other_driver.driver = "other.example.com".into();
    let mut seeded = Vec::new();
    for s in pool_to_slices(&other_node, ServerVersion::V1_35, 7)
        .unwrap()
        .into_iter()
        .chain(pool_to_slices(&other_driver, ServerVersion::V1_35, 4).unwrap())
    {
        seeded.push(fake.create(serde_json::to_value(&s).unwrap()).unwrap());
    }
    let p = publisher(&fake).await;
    p.reconcile(&pool).await.unwrap();
    p.reconcile(&shrunk(&pool)).await.unwrap();
    p.reconcile(&tainted(&pool)).await.unwrap();

    for s in &seeded {
        let n = s["metadata"]["name"].as_str().unwrap();
        let now = fake.get(V1, KIND, "", n).unwrap();
        assert_eq!(&now, s, "{n} changed");
        assert!(
            fake.requests()
                .iter()
                .all(|r| r.method == "GET" || !r.path.ends_with(&format!("/{n}"))),
            "{n} written"
        );
    }
    assert_published(&fake, &tainted(&pool), ServerVersion::V1_35, 3);
}

#[tokio::test]
async fn slices_deleted_behind_its_back_are_restored() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    p.reconcile(&pool).await.unwrap();

    // One slice lost: the pool is incomplete, so it is republished whole.
    let lost = name(&ours(&fake)[0]);
    fake.delete(V1, KIND, "", &lost).unwrap();
    assert_eq!(p.reconcile(&pool).await.unwrap().generation(), 2);
    assert_published(&fake, &pool, ServerVersion::V1_35, 2);

    // All lost, as kubelet does at its start: created anew, and the
    // generation still goes up past the last one this process published.
    for s in ours(&fake) {
        fake.delete(V1, KIND, "", &name(&s)).unwrap();
    }
    assert!(ours(&fake).is_empty());
    let out = p.reconcile(&pool).await.unwrap();
    let n = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len();
    assert_eq!(
        out,
        Outcome::Published {
            generation: 3,
            created: n,
            updated: 0,
            deleted: 0
        }
    );
    assert_published(&fake, &pool, ServerVersion::V1_35, 3);
}

#[tokio::test]
async fn layout_follows_the_server_version() {
    let pool = pool();
    let mut layouts = Vec::new();
    for (minor, version) in [(34, ServerVersion::V1_34), (35, ServerVersion::V1_35)] {
        let fake = fake(minor).await;
        let p = publisher(&fake).await;
        assert_eq!(p.version(), version);
        p.reconcile(&pool).await.unwrap();
        assert_published(&fake, &pool, version, 1);
        let mut got = ours(&fake);
        got.sort_by_key(name);
        layouts.push(
            got.iter()
                .map(|s| serde_json::to_value(&s.spec).unwrap())
                .collect::<Vec<Value>>(),
        );
        // From 1.35 the counter sets live alone, before 1.35 beside devices.
        let mixed = got
            .iter()
            .any(|s| s.spec.shared_counters.is_some() && s.spec.devices.is_some());
        assert_eq!(mixed, version == ServerVersion::V1_34, "{version}");
    }
    assert_ne!(layouts[0], layouts[1]);
}

#[tokio::test]
async fn a_conflict_relists_and_retries() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    fake.fail_next("POST", "resourceslices", 409, 1);

    let out = p.reconcile(&pool).await.unwrap();
    // The retry re-listed and republished the whole pool.
    let reqs = fake.requests();
    let lists = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/resourceslices"))
        .count();
    assert_eq!(lists, 2, "{reqs:#?}");
    assert_published(&fake, &pool, ServerVersion::V1_35, out.generation());
    assert_eq!(p.stats().snapshot().republish_errors, 0);

    // A conflict on an update (stale resourceVersion) is retried the same way.
    let t = tainted(&pool);
    fake.fail_next("PUT", "resourceslices", 409, 2);
    let out = p.reconcile(&t).await.unwrap();
    assert_published(&fake, &t, ServerVersion::V1_35, out.generation());
}

#[tokio::test]
async fn conflicts_give_up_after_bounded_tries() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    fake.fail_next("POST", "resourceslices", 409, 1000);

    let err = p.reconcile(&pool).await.unwrap_err();
    let first = name(&pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap()[0]);
    match &err {
        PublishError::Conflict { slice, tries, .. } => {
            assert_eq!(*tries, publish::CONFLICT_TRIES);
            assert_eq!(slice, &first);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&first) && msg.contains("409"), "{msg}");
    let posts = fake.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, publish::CONFLICT_TRIES as usize);
    let stats = p.stats().snapshot();
    assert!(!stats.ready);
    assert_eq!(stats.republish_errors, 1);
}

#[tokio::test]
async fn a_server_error_is_reported_with_the_slice_and_nothing_is_deleted() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = pool();
    p.reconcile(&pool).await.unwrap();
    let small = shrunk(&pool);
    let victim = name(&pool_to_slices(&small, ServerVersion::V1_35, 1).unwrap()[0]);
    fake.fail_next("PUT", &victim, 500, 1);
    let before = fake.requests().len();

    let err = p.reconcile(&small).await.unwrap_err();
    match &err {
        PublishError::Write { op, slice, .. } => {
            assert_eq!(*op, "update");
            assert_eq!(slice, &victim);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&victim) && msg.contains("injected failure 500"), "{msg}");
    // No retry inside the reconcile, and the old pool is still whole.
    let reqs = fake.requests();
    assert!(
        writes(&reqs[before..]).iter().all(|r| r.method != "DELETE"),
        "{:#?}",
        &reqs[before..]
    );
    assert_eq!(
        ours(&fake).len(),
        pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len()
    );
    let stats = p.stats().snapshot();
    assert_eq!(stats.republish_errors, 1);
    assert_eq!(stats.last_generation, 1);

    // The next reconcile repairs it.
    let out = p.reconcile(&small).await.unwrap();
    assert_published(&fake, &small, ServerVersion::V1_35, out.generation());
}

#[tokio::test]
async fn a_pool_of_another_node_is_refused() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let err = p.reconcile(&pool_of("t4-2x.yaml", "node-b")).await.unwrap_err();
    assert!(matches!(err, PublishError::WrongPool { .. }), "{err:?}");
    assert!(writes(&fake.requests()).is_empty());
}

#[tokio::test]
async fn discovery_picks_the_version() {
    for (minor, want) in [
        (33, ServerVersion::V1_34),
        (34, ServerVersion::V1_34),
        (35, ServerVersion::V1_35),
        (36, ServerVersion::V1_36),
        (40, ServerVersion::V1_36),
    ] {
        let fake = fake(minor).await;
        let got = publish::discover_version(&fake.client().unwrap()).await.unwrap();
        assert_eq!(got, want, "1.{minor}");
    }
}

#[tokio::test]
async fn run_publishes_on_start_on_change_and_on_resync() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let stats = p.stats();
    let pool = small_pool();
    let n = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len();
    let (tx, rx) = tokio::sync::watch::channel(pool.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(publish::run(p, rx, Duration::from_millis(50), async {
        let _ = stopped.await;
    }));

    wait_for(&fake, "generation 1", |s| {
        s.len() == n && s.iter().all(|s| s.spec.pool.generation == 1)
    })
    .await;

    let t = tainted(&pool);
    tx.send(t.clone()).unwrap();
    wait_for(&fake, "generation 2", |s| {
        s.len() == n && s.iter().all(|s| s.spec.pool.generation == 2)
    })
    .await;
    assert_published(&fake, &t, ServerVersion::V1_35, 2);

    // Kubelet deletes the node's slices at its start; the resync repairs it.
    for s in ours(&fake) {
        fake.delete(V1, KIND, "", &name(&s)).unwrap();
    }
    wait_for(&fake, "restored slices", |s| s.len() == n).await;
    wait_for(&fake, "the whole pool", |s| {
        s.len() == n && s.iter().all(|x| x.spec.pool.generation == s[0].spec.pool.generation)
    })
    .await;

    stop.send(()).unwrap();
    task.await.unwrap();
    let s = stats.snapshot();
    assert!(s.ready);
    assert_eq!(s.republish_errors, 0);
}

#[tokio::test]
async fn run_retries_a_failed_publish() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let stats = p.stats();
    let pool = small_pool();
    let n = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len();
    fake.fail_next("POST", "resourceslices", 500, 2);
    let (_tx, rx) = tokio::sync::watch::channel(pool.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A long resync: only the backoff can bring the retries.
    let task = tokio::spawn(publish::run(p, rx, Duration::from_secs(3600), async {
        let _ = stopped.await;
    }));

    wait_for(&fake, "the published pool", |s| s.len() == n).await;
    stop.send(()).unwrap();
    task.await.unwrap();
    let s = stats.snapshot();
    assert_eq!(s.republish_errors, 2);
    assert!(s.ready);
    assert_published(&fake, &pool, ServerVersion::V1_35, s.last_generation);
}

#[tokio::test]
async fn run_keeps_publishing_after_the_sender_is_gone() {
    let fake = fake(35).await;
    let p = publisher(&fake).await;
    let pool = small_pool();
    let n = pool_to_slices(&pool, ServerVersion::V1_35, 1).unwrap().len();
    let (tx, rx) = tokio::sync::watch::channel(pool.clone());
    drop(tx);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(publish::run(p, rx, Duration::from_millis(50), async {
        let _ = stopped.await;
    }));
    wait_for(&fake, "first publish", |s| s.len() == n).await;
    for s in ours(&fake) {
        fake.delete(V1, KIND, "", &name(&s)).unwrap();
    }
    wait_for(&fake, "restored slices", |s| s.len() == n).await;
    stop.send(()).unwrap();
    task.await.unwrap();
}
