//! `railyard-mig-manager` run as a process: `plan` on the shipped machine
//! profiles and NVIDIA's example mig-parted config, and `export`, `assert`
//! and `apply` with mig-parted's flags over a simulated machine.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plan(config: &str, busy: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_railyard-mig-manager"));
    cmd.current_dir(repo()).args([
        "plan",
        "--machine",
        "configs/machines/dgx-h100-mig.yaml",
        "-f",
        "configs/mig-parted/config.yaml",
        "-c",
        config,
    ]);
    if let Some(b) = busy {
        cmd.args(["--busy", b]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn steps_on(out: &str, gpu: u32) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with(&format!("GPU {gpu}: "))).collect()
}

#[test]
fn plan_prints_explicit_placements_and_keeps_what_the_target_can_use() {
    // GPU 4 already holds 7x 1g.10gb; GPU 6 a 7g; GPUs 0-3 have MIG off.
    let (code, out, err) = plan("all-1g.10gb", None);
    assert_eq!(code, 0, "{err}");
    assert!(steps_on(&out, 4).is_empty(), "GPU 4 is already there: {out}");
    assert_eq!(steps_on(&out, 0)[0], "GPU 0: enable MIG", "{out}");
    let creates: Vec<&str> = steps_on(&out, 0)
        .into_iter()
        .filter(|l| l.contains("create 1g.10gb@"))
        .collect();
    assert_eq!(creates.len(), 7, "{out}");
    for start in 0..7 {
        assert!(
            creates.iter().any(|l| l.contains(&format!("@{start} "))),
            "start {start}: {out}"
        );
    }
    assert!(
        steps_on(&out, 6).iter().any(|l| l.contains("destroy 7g.80gb@0")),
        "{out}"
    );
}

#[test]
fn a_busy_instance_blocks_the_change_and_is_never_destroyed() {
    let (code, out, _) = plan("all-1g.10gb", Some("6:7g.80gb@0"));
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("destroy 7g.80gb"), "{out}");
    assert!(out.contains("GPU 6: blocked by GPU 6 instance 7g.80gb@0"), "{out}");
    // The other GPUs still get their plan.
    assert!(!steps_on(&out, 0).is_empty(), "{out}");
}

#[test]
fn bad_input_exits_2_naming_the_value() {
    let (code, _, err) = plan("no-such-config", None);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-config"), "{err}");
    let (code, _, err) = plan("all-1g.10gb", Some("6:9g.99gb@0"));
    assert_eq!(code, 2);
    assert!(err.contains("9g.99gb") && err.contains("known:"), "{err}");
    let (code, _, err) = plan("all-1g.10gb", Some("6:1g.10gb@3"));
    assert_eq!(code, 2, "a busy instance that does not exist: {err}");
}

fn mig(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-mig-manager"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const SIM_MIG: [&str; 4] = ["--backend", "sim", "--machine", "configs/machines/dgx-h100-mig.yaml"];

#[test]
fn export_prints_the_current_layout_as_a_mig_parted_config() {
    let (code, out, err) = mig(&[&["export"][..], &SIM_MIG].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("version: v1\nmig-configs:\n  current:\n  - devices: [0, 1, 2, 3]\n    mig-enabled: false\n"),
        "{out}"
    );
    assert!(
        out.contains("  - devices: [4]\n    mig-enabled: true\n    mig-devices:\n      \"1g.10gb\": 7\n"),
        "{out}"
    );
    assert!(
        out.contains("  - devices: [7]\n    mig-enabled: true\n    mig-devices: {}\n"),
        "{out}"
    );
    // And it is a valid mig-parted config.
    railyard_core::config::MigPartedConfig::from_yaml(&out).unwrap();
}

#[test]
fn assert_exits_0_on_a_match_and_1_listing_each_gpu_that_differs() {
    let f = ["-f", "configs/mig-parted/config.yaml"];
    let (code, out, err) = mig(&[
        &["assert", "-c", "all-disabled"][..],
        &f,
        &["--backend", "sim", "--machine", "configs/machines/dgx-h100.yaml"],
    ]
    .concat());
    assert_eq!((code, out.as_str()), (0, "the node matches all-disabled\n"), "{err}");
    let (code, out, _) = mig(&[&["assert", "-c", "all-1g.10gb"][..], &f, &SIM_MIG].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  GPU 0: MIG is disabled, wanted enabled\n"), "{out}");
    assert!(
        out.contains("  GPU 5: has 2x1g.10gb + 1x2g.20gb + 1x3g.40gb, wanted 7x1g.10gb\n"),
        "{out}"
    );
    assert!(!out.contains("GPU 4:"), "GPU 4 matches: {out}");
    // --mode-only: GPUs 4-7 have MIG on.
    let (code, out, _) = mig(&[&["assert", "-c", "all-1g.10gb", "--mode-only"][..], &f, &SIM_MIG].concat());
    assert_eq!(code, 1);
    assert!(
        out.contains("GPU 3: MIG is disabled") && !out.contains("GPU 5:"),
        "{out}"
    );
}

#[test]
fn apply_reaches_the_config_and_waits_when_pod_resources_is_unreadable() {
    let f = ["-f", "configs/mig-parted/config.yaml", "-c", "all-1g.10gb"];
    let (code, out, err) = mig(&[&["apply"][..], &f, &SIM_MIG, &["--ignore-pod-resources"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("applied all-1g.10gb: created "), "{out}");
    assert!(out.contains("GPU 0: MIG on [1g.10gb@0:1, 1g.10gb@1:1"), "{out}");
    // Every step is printed as it is taken.
    assert!(
        err.contains("GPU 0: enable MIG\n") && err.contains("GPU 5: destroy 3g.40gb@4 (4:4)\n"),
        "{err}"
    );
    // Without kubelet, nothing is known about pods: nothing changes.
    let (code, out, _) = mig(&[
        &["apply"][..],
        &f,
        &SIM_MIG,
        &["--pod-resources-socket", "/nonexistent/kubelet.sock"],
    ]
    .concat());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("not fully applied: waiting: PodResources unavailable ("),
        "{out}"
    );
    assert!(out.contains("GPU 0: MIG off"), "{out}");
    // No file: the generated names.
    let (code, out, err) = mig(&[&["apply", "-c", "all-balanced", "--ignore-pod-resources"][..], &SIM_MIG].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("GPU 7: MIG on [1g.10gb@0:1, 1g.10gb@1:1, 2g.20gb@2:2, 3g.40gb@4:4]"),
        "{out}"
    );
}
