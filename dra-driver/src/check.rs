//! `check`: the allocation the scheduler would make for a claim on this
//! node, or the reason none exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::resource::v1 as api;
use railyard_dra::alloc::{AllocatedDevice, Allocator, DeviceId, Outcome, Taken};
use railyard_dra::cel::SelectorCache;
use railyard_dra::claim::{ClaimSpec, DeviceClass};
use serde_json::{Value, json};

use crate::{NodeArgs, node_pool, read, write_stdout};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// ResourceClaim or ResourceClaimTemplate (YAML).
    #[arg(long)]
    claim: PathBuf,
    /// DeviceClass files; Railyard's shipped classes when none is given.
    #[arg(long)]
    class: Vec<PathBuf>,
    /// Claims with status.allocation set, whose devices count as taken.
    #[arg(long)]
    allocated: Vec<PathBuf>,
}

/// Exit codes: 0 allocated, 1 unsatisfiable (or undecided), 2 invalid input.
pub fn run(node: &NodeArgs, args: &CheckArgs) -> ExitCode {
    match check(node, args) {
        Ok((report, ok)) => match write_stdout(&report) {
            Ok(()) if ok => ExitCode::SUCCESS,
            Ok(()) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn yaml_value(path: &Path) -> Result<Value> {
    let v: Value = serde_saphyr::from_str(&read(path)?).with_context(|| format!("{} is not YAML", path.display()))?;
    Ok(v)
}

/// The claim's spec and its config, from a ResourceClaim or a template.
fn read_claim(path: &Path) -> Result<ClaimSpec> {
    let v = yaml_value(path)?;
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let ctx = || format!("{} ({kind})", path.display());
    match kind.as_str() {
        "ResourceClaim" => {
            let c: api::ResourceClaim = serde_path_to_error(v).with_context(ctx)?;
            Ok(ClaimSpec::from_api("spec", &c.spec).with_context(ctx)?)
        }
        "ResourceClaimTemplate" => {
            let t: api::ResourceClaimTemplate = serde_path_to_error(v).with_context(ctx)?;
            Ok(ClaimSpec::from_api("spec.spec", &t.spec.spec).with_context(ctx)?)
        }
        other => bail!(
            "{}: kind {other:?} is not ResourceClaim or ResourceClaimTemplate",
            path.display()
        ),
    }
}

fn serde_path_to_error<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{e}"))
}

fn read_classes(args: &CheckArgs, driver: &str) -> Result<BTreeMap<String, DeviceClass>> {
    let raw: Vec<api::DeviceClass> = if args.class.is_empty() {
        railyard_dra::classes::shipped(driver)
    } else {
        args.class
            .iter()
            .map(|p| serde_path_to_error(yaml_value(p)?).with_context(|| format!("{} (DeviceClass)", p.display())))
            .collect::<Result<_>>()?
    };
    raw.iter()
        .map(|c| {
            let c = DeviceClass::from_api(c)?;
            Ok((c.name.clone(), c))
        })
        .collect()
}

/// Devices of claims that are already allocated.
fn read_allocated(path: &Path, alloc: &Allocator<'_>) -> Result<Vec<AllocatedDevice>> {
    let c: api::ResourceClaim =
        serde_path_to_error(yaml_value(path)?).with_context(|| format!("{} (ResourceClaim)", path.display()))?;
    let Some(results) = c
        .status
        .and_then(|s| s.allocation)
        .and_then(|a| a.devices)
        .and_then(|d| d.results)
    else {
        bail!("{}: status.allocation.devices.results is not set", path.display());
    };
    let mut out = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let id = DeviceId {
            driver: r.driver.clone(),
            pool: r.pool.clone(),
            device: r.device.clone(),
        };
        let mut consumed = BTreeMap::new();
        for (k, q) in r.consumed_capacity.iter().flatten() {
            let v = railyard_dra::quantity::Quantity::parse(&q.0).with_context(|| {
                format!(
                    "{}: status.allocation.devices.results[{i}].consumedCapacity[{k}]",
                    path.display()
                )
            })?;
            consumed.insert(k.clone(), v);
        }
        // A shareable device's result without consumedCapacity takes each
        // capacity's default, as the scheduler would have booked it.
        if let Some((_, d)) = alloc
            .find(&id)
            .filter(|(_, d)| d.allow_multiple_allocations && consumed.is_empty())
        {
            for (k, cap) in &d.capacity {
                if let Ok(v) = railyard_dra::alloc::consumed(k, cap, None) {
                    consumed.insert(k.clone(), v);
                }
            }
        }
        out.push(AllocatedDevice {
            request: r.request.clone(),
            id,
            admin_access: r.admin_access.unwrap_or(false),
            consumed_capacity: consumed,
            share_id: r.share_id.clone(),
        });
    }
    Ok(out)
}

fn check(node: &NodeArgs, args: &CheckArgs) -> Result<(String, bool)> {
    let (pool, topology) = node_pool(node)?;
    let claim = read_claim(&args.claim)?;
    let classes = read_classes(args, &pool.driver)?;
    let pools = [pool];
    let cache = SelectorCache::default();
    let alloc = Allocator::new(&pools, &classes, &cache).with_topology(&pools[0].name, &topology);
    let mut taken = Taken::default();
    for p in &args.allocated {
        let devices = read_allocated(p, &alloc)?;
        alloc.book(&mut taken, &devices);
    }
    let configs = opaque_configs(&claim, &classes, &pools[0].driver)?;
    let outcome = alloc.allocate(&claim, &taken)?;
    let (report, ok) = match outcome {
        Outcome::Allocated(a) => {
            let results: Vec<Value> = a
                .devices
                .iter()
                .map(|d| {
                    let mut r =
                        json!({"request": d.request, "driver": d.id.driver, "pool": d.id.pool, "device": d.id.device});
                    if d.admin_access {
                        r["adminAccess"] = json!(true);
                    }
                    if let Some(share) = &d.share_id {
                        r["shareID"] = json!(share);
                    }
                    if !d.consumed_capacity.is_empty() {
                        r["consumedCapacity"] = d
                            .consumed_capacity
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(v.to_string())))
                            .collect();
                    }
                    r
                })
                .collect();
            let counters: Vec<Value> = a
                .consumed_counters
                .iter()
                .map(|((pool, set), c)| {
                    json!({"pool": pool, "counterSet": set, "counters": c.iter().map(|(k, v)| (k.clone(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>()})
                })
                .collect();
            (
                json!({"allocated": true, "results": results, "consumedCounters": counters, "config": configs}),
                true,
            )
        }
        Outcome::Unsatisfiable { request, reason } => {
            (json!({"allocated": false, "request": request, "reason": reason}), false)
        }
        Outcome::GaveUp { steps } => (
            json!({"allocated": false, "reason": format!("gave up after {steps} candidate tries (the search bound); the claim may still be satisfiable")}),
            false,
        ),
    };
    Ok((serde_saphyr::to_string(&report)?, ok))
}

/// The opaque configs of the classes the claim uses, then of the claim,
/// as `status.allocation.devices.config` lists them; this driver's are
/// parsed strictly so a bad one fails here, as it would at Prepare.
fn opaque_configs(claim: &ClaimSpec, classes: &BTreeMap<String, DeviceClass>, driver: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut check = |path: String,
                     o: &api::OpaqueDeviceConfiguration,
                     source: &str,
                     requests: Option<&Vec<String>>|
     -> Result<()> {
        if o.driver == driver {
            railyard_dra::opaque::parse_config(&path, &o.parameters.0)?;
        }
        let mut v = json!({"source": source, "opaque": {"driver": o.driver, "parameters": o.parameters.0}});
        if let Some(r) = requests.filter(|r| !r.is_empty()) {
            v["requests"] = json!(r);
        }
        out.push(v);
        Ok(())
    };
    let mut used = std::collections::BTreeSet::new();
    for r in &claim.requests {
        for alt in &r.alternatives {
            used.insert(alt.class.clone());
        }
    }
    for name in used {
        let Some(class) = classes.get(&name) else { continue };
        for (i, c) in class.config.iter().enumerate() {
            if let Some(o) = &c.opaque {
                check(
                    format!("deviceclass {name}: spec.config[{i}].opaque.parameters"),
                    o,
                    "FromClass",
                    None,
                )?;
            }
        }
    }
    for (i, c) in claim.config.iter().enumerate() {
        if let Some(o) = &c.opaque {
            check(
                format!("spec.devices.config[{i}].opaque.parameters"),
                o,
                "FromClaim",
                c.requests.as_ref(),
            )?;
        }
    }
    Ok(out)
}
