//! One watchdog scan on a busy node: 8 GPUs × 48 processes, every process
//! in a pod, shares from 8-way time-slicing. Measures the steady state (the
//! attribution cache warm, as every scan after a process's first is) and a
//! cold scan that reads every `/proc` entry.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use railyard_watchdog::policy::{ContainerKey, Enforcer, PolicyConfig};
use railyard_watchdog::procfs::ProcFs;
use railyard_watchdog::scan::{
    AttributionCache, ContainerDevices, ContainerResolver, GpuProcessInfo, ShareTable, build_snapshot,
};

const GPUS: u32 = 8;
const PER_GPU: u32 = 48;

struct ByUid;
impl ContainerResolver for ByUid {
    fn resolve(&self, pod_uid: &str, _container_id: &str) -> Option<ContainerKey> {
        Some(ContainerKey {
            namespace: "bench".into(),
            pod: pod_uid.into(),
            container: "main".into(),
        })
    }
}

fn setup() -> (PathBuf, Vec<GpuProcessInfo>, Vec<ContainerDevices>, ShareTable) {
    let root = std::env::temp_dir().join(format!("railyard-watchdog-bench-{}", std::process::id()));
    let mut procs = Vec::new();
    let mut pods = Vec::new();
    let mut table = BTreeMap::new();
    for g in 0..GPUS {
        for r in 0..8u32 {
            table.insert(format!("GPU-{g}::{r}"), (format!("GPU-{g}"), 10_000u64));
        }
        for i in 0..PER_GPU {
            let pid = 100_000 + g * PER_GPU + i;
            // Six processes per container, eight containers per GPU.
            let uid = format!("{:08x}-0000-4000-8000-{:012x}", g, i / 6);
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(&dir).expect("bench proc dir");
            let cgroup = format!(
                "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{:064x}.scope\n",
                uid.replace('-', "_"),
                pid
            );
            std::fs::write(dir.join("cgroup"), cgroup).expect("cgroup");
            std::fs::write(
                dir.join("stat"),
                format!("{pid} (python) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {pid} 0 0"),
            )
            .expect("stat");
            procs.push(GpuProcessInfo {
                pid,
                device: format!("GPU-{g}"),
                used_mib: Some(1500),
            });
            if i % 6 == 0 {
                pods.push(ContainerDevices {
                    key: ContainerKey {
                        namespace: "bench".into(),
                        pod: uid,
                        container: "main".into(),
                    },
                    device_ids: vec![format!("GPU-{g}::{}", i / 6)],
                });
            }
        }
    }
    let shares = ShareTable::from_pairs(table);
    (root, procs, pods, shares)
}

fn scan(c: &mut Criterion) {
    let (root, procs, pods, shares) = setup();
    let procfs = ProcFs::new(&root);
    let mut enforcer = Enforcer::new(PolicyConfig::default());
    let mut cache = AttributionCache::default();
    let mut t = 0u64;
    c.bench_function("scan 8 GPUs x 48 processes (warm)", |b| {
        b.iter(|| {
            t += 1;
            let snap = build_snapshot(
                Duration::from_millis(t),
                Some((Duration::ZERO, procs.clone())),
                Some(&pods),
                &shares,
                &procfs,
                &ByUid,
                &mut cache,
            );
            black_box(enforcer.apply(&snap))
        })
    });
    c.bench_function("scan 8 GPUs x 48 processes (cold: reads /proc)", |b| {
        b.iter(|| {
            let mut cold = AttributionCache::default();
            let snap = build_snapshot(
                Duration::ZERO,
                Some((Duration::ZERO, procs.clone())),
                Some(&pods),
                &shares,
                &procfs,
                &ByUid,
                &mut cold,
            );
            black_box(snap)
        })
    });
    let _ = std::fs::remove_dir_all(root);
}

criterion_group!(benches, scan);
criterion_main!(benches);
