//! `railyard-bench cluster` as a new user runs it: the binary, the shipped
//! machine profiles, and the report it prints.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-bench"))
        .arg("cluster")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_scripted_mix_runs_through_the_whole_stack_and_reports_where_and_why() {
    // Ten nodes: two of each shipped profile, so two 8-GPU nodes of one
    // product carry the gangs.
    let (ok, out, err) = run(&["--nodes", "10"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.starts_with("cluster: 10 nodes (2x a100-pcie-4x, 2x dgx-a100"),
        "{out}"
    );
    // The first gang is placed whole, each member on its own node, with the
    // GPUs the plugin allocated and the CDI ids the runtime gets.
    let members: Vec<&str> = out.lines().filter(|l| l.contains("(gang llm-pretrain slot")).collect();
    assert_eq!(members.len(), 2, "{out}");
    for m in &members {
        assert!(m.contains("GPUs 0,1,2,3,4,5,6,7  CDI railyard.dev/gpu=GPU-"), "{m}");
    }
    // The second gang waits whole while the first runs, then is placed when
    // it finishes.
    let step3 = out.split("step 3:").nth(1).unwrap().split("step 4:").next().unwrap();
    assert!(!step3.contains("(gang llm-sft"), "{step3}");
    assert!(
        step3.contains("ml/llm-sft-0 pending: 0/10 nodes are available"),
        "{step3}"
    );
    let step4 = out.split("step 4:").nth(1).unwrap();
    assert_eq!(step4.matches("(gang llm-sft slot").count(), 2, "{step4}");
    // Shared-GPU and MIG pods got their devices.
    assert!(out.matches("ml/notebook-").count() >= 3, "{out}");
    assert!(out.contains("ml/infer-1 -> ") && out.contains("devices MIG-"), "{out}");
    // The pod no node holds is reported with kube-scheduler's reason.
    assert!(
        out.contains("ml/too-big: 0/10 nodes are available: 10 Insufficient nvidia.com/gpu."),
        "{out}"
    );
    assert!(out.contains("partially placed gangs: 0"), "{out}");
    assert!(out.contains("pending at the end: 1\n"), "{out}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn bad_arguments_are_refused_with_the_flag_and_value() {
    let (ok, _, err) = run(&["--nodes", "0"]);
    assert!(!ok);
    assert!(err.contains("--nodes 0"), "{err}");
    let (ok, _, err) = run(&["--machines", "no/such/dir"]);
    assert!(!ok);
    assert!(err.contains("--machines no/such/dir"), "{err}");
}
