//! `railyard-mig-manager plan` run as a process, on the shipped machine
//! profiles and NVIDIA's example mig-parted config.
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
