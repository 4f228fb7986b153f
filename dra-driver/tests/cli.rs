//! The offline commands as a user runs them: real process, real files.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_railyard-dra-driver"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn dry_run_prints_resource_slices_that_parse() {
    for version in ["1.34", "1.35", "1.36"] {
        let (code, out, err) = run(&[
            "--dry-run",
            "--machine",
            "configs/machines/dgx-h100-mig.yaml",
            "--server-version",
            version,
        ]);
        assert_eq!(code, 0, "{err}");
        let mut slices = 0;
        for v in serde_saphyr::from_multiple::<serde_json::Value>(&out).unwrap() {
            assert_eq!(v["apiVersion"].as_str(), Some("resource.k8s.io/v1"));
            assert_eq!(v["kind"].as_str(), Some("ResourceSlice"));
            let s: k8s_openapi::api::resource::v1::ResourceSlice = serde_json::from_value(v).unwrap();
            assert_eq!(s.spec.driver, "gpu.nvidia.com");
            slices += 1;
        }
        assert!(slices >= 2, "{version}: {slices}");
    }
}

#[test]
fn check_exit_codes_are_allocated_unsatisfiable_invalid() {
    let (code, out, err) = run(&[
        "check",
        "--machine",
        "configs/machines/dgx-h100.yaml",
        "--claim",
        "configs/dra/claims/h100-by-product.yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("allocated: true") && out.contains("device: gpu-0"),
        "{out}"
    );
    let (code, out, _) = run(&[
        "check",
        "--machine",
        "configs/machines/t4-2x.yaml",
        "--claim",
        "configs/dra/claims/h100-by-product.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("allocated: false") && out.contains("request: gpu"),
        "{out}"
    );
    let (code, _, err) = run(&[
        "check",
        "--machine",
        "configs/machines/t4-2x.yaml",
        "--claim",
        "Cargo.toml",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("Cargo.toml"), "{err}");
    let (code, _, err) = run(&[
        "--dry-run",
        "--machine",
        "configs/machines/t4-2x.yaml",
        "--server-version",
        "2.0",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_counts_already_allocated_claims() {
    let dir = std::env::temp_dir().join(format!("railyard-dra-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec![
        "check",
        "--machine",
        "configs/machines/dgx-h100.yaml",
        "--claim",
        "configs/dra/claims/h100-by-product.yaml",
    ];
    let mut files = Vec::new();
    for i in 0..8 {
        let f = dir.join(format!("a{i}.yaml"));
        std::fs::write(
            &f,
            format!(
                "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {{name: a{i}, namespace: default}}\nspec: {{}}\nstatus:\n  allocation:\n    devices:\n      results:\n      - {{request: gpu, driver: gpu.nvidia.com, pool: dgx-h100, device: gpu-{i}}}\n"
            ),
        )
        .unwrap();
        files.push(f.to_string_lossy().into_owned());
    }
    for f in &files[..7] {
        args.extend(["--allocated", f.as_str()]);
    }
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("device: gpu-7"), "{out}");
    args.extend(["--allocated", files[7].as_str()]);
    let (code, out, _) = run(&args);
    assert_eq!(code, 1);
    assert!(out.contains("allocated to other claims"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_parses_nvidia_opaque_configs_strictly() {
    let (code, out, err) = run(&[
        "check",
        "--machine",
        "configs/machines/dgx-h100.yaml",
        "--claim",
        "configs/dra/claims/gpu-mps.yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("source: FromClaim") && out.contains("strategy: MPS"),
        "{out}"
    );
    let bad = std::env::temp_dir().join(format!("railyard-dra-bad-{}.yaml", std::process::id()));
    let text = std::fs::read_to_string(repo().join("configs/dra/claims/gpu-mps.yaml")).unwrap();
    std::fs::write(
        &bad,
        text.replace(
            "defaultActiveThreadPercentage: 50",
            "defaultActiveThreadPercentage: 150",
        ),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "check",
        "--machine",
        "configs/machines/dgx-h100.yaml",
        "--claim",
        bad.to_str().unwrap(),
    ]);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(code, 2);
    assert!(
        err.contains("spec.devices.config[0].opaque.parameters.sharing.mpsConfig.defaultActiveThreadPercentage")
            && err.contains("150"),
        "{err}"
    );
}

#[test]
fn check_reports_a_share_id_and_the_consumed_memory_of_a_shared_gpu() {
    let base = [
        "check",
        "--machine",
        "configs/machines/dgx-h100.yaml",
        "--config",
        "configs/dra/shared.yaml",
        "--claim",
        "configs/dra/claims/shared-10gi.yaml",
    ];
    let (code, out, err) = run(&base);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    let r = &v["results"][0];
    assert_eq!(r["consumedCapacity"]["memory"], "10Gi", "{out}");
    let first = r["shareID"]
        .as_str()
        .unwrap_or_else(|| panic!("no shareID: {out}"))
        .to_owned();
    // That share, as the API returns it, is taken: the next one differs.
    let f = std::env::temp_dir().join(format!("railyard-dra-share-{}.yaml", std::process::id()));
    std::fs::write(
        &f,
        format!(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {{name: s0, namespace: default}}\nspec: {{}}\nstatus:\n  allocation:\n    devices:\n      results:\n      - {{request: {req}, driver: gpu.nvidia.com, pool: dgx-h100, device: {dev}, shareID: {first}, consumedCapacity: {{memory: 10Gi}}}}\n",
            req = r["request"].as_str().unwrap(),
            dev = r["device"].as_str().unwrap(),
        ),
    )
    .unwrap();
    let mut args = base.to_vec();
    let path = f.to_string_lossy().into_owned();
    args.extend(["--allocated", path.as_str()]);
    let (code, out, err) = run(&args);
    std::fs::remove_file(&f).unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    let second = v["results"][0]["shareID"].as_str().unwrap();
    assert_eq!(
        v["results"][0]["device"], r["device"],
        "the same GPU packs the next share"
    );
    assert_ne!(second, first, "{out}");
}
