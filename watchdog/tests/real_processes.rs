//! Real child processes (`sleep`) under a fake proc root laid out like real
//! cgroup paths: the container over its share is signalled after the grace
//! period and its processes really die; neighbours, host processes and
//! unattributable ones survive; a reused PID is not signalled.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use railyard_core::config::DevicePluginConfig;
use railyard_core::resources::{GpuInventory, advertised_resources};
use railyard_watchdog::policy::{ContainerKey, Enforcer, PolicyConfig};
use railyard_watchdog::procfs::ProcFs;
use railyard_watchdog::scan::{
    AttributionCache, ContainerDevices, ContainerResolver, GpuProcessInfo, ShareTable, build_snapshot, execute,
};
use railyard_watchdog::signal::{Sig, SignalOutcome};

const POD_A: &str = "1f6b8c2a-3d4e-4f50-9a1b-2c3d4e5f6a7b";
const POD_B: &str = "9e8d7c6b-5a49-4838-a726-150f1e2d3c4b";

fn cid(n: u8) -> String {
    format!("{:064x}", n as u128 * 0x1111_1111_1111)
}

struct Resolver;
impl ContainerResolver for Resolver {
    fn resolve(&self, pod_uid: &str, container_id: &str) -> Option<ContainerKey> {
        let pod = match pod_uid {
            POD_A => "infer-a",
            POD_B => "infer-b",
            _ => return None,
        };
        (container_id == cid(1) || container_id == cid(2)).then(|| ContainerKey {
            namespace: "ml".into(),
            pod: pod.into(),
            container: "main".into(),
        })
    }
}

fn key(pod: &str) -> ContainerKey {
    ContainerKey {
        namespace: "ml".into(),
        pod: pod.into(),
        container: "main".into(),
    }
}

fn sleeper() -> Child {
    Command::new("sleep").arg("600").spawn().unwrap()
}

/// Lays out `<root>/<pid>/{cgroup,stat}` as the real /proc would show it.
fn fake_proc(root: &Path, pid: u32, cgroup: &str, stat_override: Option<String>) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    let stat = stat_override.unwrap_or_else(|| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap());
    std::fs::write(dir.join("stat"), stat).unwrap();
}

fn pod_cgroup(uid: &str, container: &str) -> String {
    let uid_ = uid.replace('-', "_");
    format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{container}.scope\n"
    )
}

fn alive(c: &mut Child) -> bool {
    c.try_wait().unwrap().is_none()
}

#[test]
fn offender_is_terminated_and_everyone_else_survives() {
    let root = tempdir();
    // GPU-0 time-sliced 4 ways on a 16 GiB card: 4096 MiB per replica.
    let gpus = [GpuInventory {
        index: 0,
        uuid: "GPU-0".into(),
        memory_mib: 16384,
        numa_node: Some(0),
        mig_enabled: false,
        mig_devices: vec![],
    }];
    let cfg = DevicePluginConfig::from_yaml(
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
    )
    .unwrap();
    let shares = ShareTable::from_resources(&advertised_resources(&gpus, &cfg).unwrap());
    let pods = vec![
        ContainerDevices {
            key: key("infer-a"),
            device_ids: vec!["GPU-0::0".into()],
        },
        ContainerDevices {
            key: key("infer-b"),
            device_ids: vec!["GPU-0::1".into()],
        },
    ];

    let (mut a1, mut a2, mut b1, mut host, mut stray) = (sleeper(), sleeper(), sleeper(), sleeper(), sleeper());
    fake_proc(&root, a1.id(), &pod_cgroup(POD_A, &cid(1)), None);
    fake_proc(&root, a2.id(), &pod_cgroup(POD_A, &cid(1)), None);
    fake_proc(&root, b1.id(), &pod_cgroup(POD_B, &cid(2)), None);
    fake_proc(&root, host.id(), "0::/system.slice/ollama.service\n", None);
    // In a pod cgroup but no container the resolver knows.
    fake_proc(
        &root,
        stray.id(),
        &pod_cgroup("00000000-0000-0000-0000-000000000000", &cid(9)),
        None,
    );

    let gpu_procs = vec![
        GpuProcessInfo {
            pid: a1.id(),
            device: "GPU-0".into(),
            used_mib: Some(3000),
        },
        GpuProcessInfo {
            pid: a2.id(),
            device: "GPU-0".into(),
            used_mib: Some(2000),
        },
        GpuProcessInfo {
            pid: b1.id(),
            device: "GPU-0".into(),
            used_mib: Some(4000),
        },
        GpuProcessInfo {
            pid: host.id(),
            device: "GPU-0".into(),
            used_mib: Some(9000),
        },
        GpuProcessInfo {
            pid: stray.id(),
            device: "GPU-0".into(),
            used_mib: Some(9000),
        },
    ];
    let procfs = ProcFs::new(&root);
    let mut enforcer = Enforcer::new(PolicyConfig::default());
    let mut cache = AttributionCache::default();
    let mut scan = |e: &mut Enforcer, secs: u64| {
        let snap = build_snapshot(
            Duration::from_secs(secs),
            Some((Duration::ZERO, gpu_procs.clone())),
            Some(&pods),
            &shares,
            &procfs,
            &Resolver,
            &mut cache,
        );
        let report = e.apply(&snap);
        execute(&report, &procfs)
    };

    assert!(scan(&mut enforcer, 0).is_empty(), "grace period");
    let sent = scan(&mut enforcer, 5);
    let targets: Vec<(u32, Sig, SignalOutcome)> = sent
        .iter()
        .map(|(a, o)| match a {
            railyard_watchdog::policy::Action::Signal { pid, sig, .. } => (*pid, *sig, o.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            (a1.id(), Sig::Term, SignalOutcome::Sent),
            (a2.id(), Sig::Term, SignalOutcome::Sent)
        ]
    );
    // The offender's processes really terminate.
    a1.wait().unwrap();
    a2.wait().unwrap();
    assert!(alive(&mut b1) && alive(&mut host) && alive(&mut stray));
    for c in [&mut b1, &mut host, &mut stray] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn a_reused_pid_is_not_signalled() {
    let root = tempdir();
    let mut victim = sleeper();
    let real = std::fs::read_to_string(format!("/proc/{}/stat", victim.id())).unwrap();
    fake_proc(&root, victim.id(), &pod_cgroup(POD_A, &cid(1)), None);
    let procfs = ProcFs::new(&root);
    let measured = procfs.start_time(victim.id()).unwrap();
    // The PID now names a process that started later.
    let fields: Vec<&str> = real.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let mut later: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    later[19] = (measured + 500).to_string();
    let reused = format!("{}) {}", real.rsplit_once(')').unwrap().0, later.join(" "));
    fake_proc(&root, victim.id(), &pod_cgroup(POD_A, &cid(1)), Some(reused));
    let outcome = railyard_watchdog::signal::signal_checked(&procfs, victim.id(), measured, Sig::Kill);
    assert_eq!(
        outcome,
        SignalOutcome::PidReused {
            expected: measured,
            found: measured + 500
        }
    );
    assert!(alive(&mut victim));
    victim.kill().unwrap();
    victim.wait().unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "railyard-watchdog-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
