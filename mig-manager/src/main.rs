//! `railyard-mig-manager`: the node agent (`run`), mig-parted's `apply`,
//! `assert` and `export` with its flags, and `plan`, which prints the steps
//! for a machine profile without a GPU.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use prometheus_client::registry::Registry;
use railyard_core::config::{MigPartedConfig, generated_config};
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{GpuMigState, InstanceRef, MigInstance, MigTarget, plan};
use railyard_gpu::{GpuBackend, NvmlBackend, NvmlConfig, SimBackend};
use railyard_mig_manager::agent::{Agent, AgentConfig};
use railyard_mig_manager::observe::Observed;
use railyard_mig_manager::reconcile::{self, Outcome, PodResources};
use railyard_mig_manager::{http, metrics, parted};
use railyard_watchdog::podresources::PodResourcesClient;

#[derive(Debug, Parser)]
#[command(name = "railyard-mig-manager", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The real GPUs through NVML.
    Nvml,
    /// A simulated machine from `--machine` (for trying the agent out).
    Sim,
}

#[derive(Debug, Args)]
struct BackendArgs {
    #[arg(long, value_enum, default_value = "nvml", env = "RAILYARD_BACKEND")]
    backend: BackendKind,
    /// Machine profile (configs/machines/*.yaml) for `--backend sim`.
    #[arg(long)]
    machine: Option<PathBuf>,
    /// `libnvidia-ml.so.1` to load instead of the system's.
    #[arg(long, env = "NVML_LIBRARY")]
    nvml_library: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// mig-parted config file; without one, the GPU operator's generated
    /// names (all-disabled, all-enabled, all-<profile>, all-balanced).
    #[arg(short = 'f', long = "config-file", env = "CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// The config to apply.
    #[arg(short = 'c', long = "selected-config", env = "SELECTED_CONFIG")]
    selected: String,
    /// Only set the MIG mode; leave the instances as they are.
    #[arg(long)]
    mode_only: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The node agent: reconciles the layout named by the Node's
    /// nvidia.com/mig.config label (or railyard.dev/mig-layout annotation),
    /// never destroying an instance in use.
    Run(RunArgs),
    /// Applies a config now (as `nvidia-mig-parted apply`), without
    /// destroying instances in use: exit 0 when reached, 1 when busy
    /// instances block it, 2 on errors.
    Apply {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        backend: BackendArgs,
        /// kubelet's PodResources socket, for the instances pods hold.
        #[arg(long, default_value = "/var/lib/kubelet/pod-resources/kubelet.sock")]
        pod_resources_socket: PathBuf,
        /// Do not ask kubelet (a host without one); running processes still count.
        #[arg(long)]
        ignore_pod_resources: bool,
    },
    /// Exit 0 when the GPUs match the config (as `nvidia-mig-parted
    /// assert`: profile counts, not placements), 1 when they do not.
    Assert {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Prints the current layout as a mig-parted config named `current`.
    Export {
        #[command(flatten)]
        backend: BackendArgs,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output_file: Option<PathBuf>,
    },
    /// Print the steps that move the machine's current MIG layout to a
    /// config of a mig-parted file: exit 0 when the target is reached, 1
    /// when busy instances block it (the steps then reach the closest
    /// layout), 2 on invalid input.
    Plan {
        /// Machine profile (YAML) whose GPUs and current instances are
        /// planned for.
        #[arg(long)]
        machine: PathBuf,
        /// mig-parted config file, as for `nvidia-mig-parted apply -f`.
        #[arg(short = 'f', long = "config-file")]
        config_file: PathBuf,
        /// The config to reach, as for `nvidia-mig-parted apply -c`.
        #[arg(short = 'c', long = "selected-config")]
        selected: String,
        /// Instances in use, which are never destroyed:
        /// `GPU:PROFILE@START`, comma-separated (e.g. `2:1g.10gb@3`).
        #[arg(long, value_delimiter = ',')]
        busy: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// This node's name (downward API spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// mig-parted config file (the mounted ConfigMap); without one, the GPU
    /// operator's generated names.
    #[arg(short = 'f', long = "config-file", env = "CONFIG_FILE")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
    #[arg(long, default_value = "/var/lib/kubelet/pod-resources/kubelet.sock")]
    pod_resources_socket: PathBuf,
    /// DRA driver whose claims on this node's pool hold GPUs.
    #[arg(long, default_value = "gpu.nvidia.com")]
    dra_driver: String,
    /// File the device plugin watches to re-read MIG devices; "" to not write it.
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins/railyard-mig-layout")]
    layout_file: PathBuf,
    /// Next run after a blocked one (`5s`, `500ms`, `2m`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    retry_interval: Duration,
    /// Re-check after a success.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    resync_interval: Duration,
    /// Failed runs back off up to this.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    max_backoff: Duration,
    /// Command that reboots the node when an Ampere MIG mode change needs it
    /// (e.g. "systemctl reboot"); without it such a change is `failed`.
    #[arg(long, env = "REBOOT_COMMAND")]
    reboot_command: Option<String>,
    /// `/metrics` and `/healthz`; "" to disable.
    #[arg(long, default_value = "0.0.0.0:9402")]
    http_listen: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s, 500ms or 2m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    })
}

fn backend(a: &BackendArgs) -> Result<Arc<dyn GpuBackend>> {
    Ok(match a.backend {
        BackendKind::Sim => {
            let Some(path) = &a.machine else {
                bail!("--backend sim needs --machine <profile.yaml>")
            };
            let m = MachineProfile::from_yaml(&read(path)?)
                .with_context(|| format!("machine profile {}", path.display()))?;
            Arc::new(SimBackend::new(m))
        }
        BackendKind::Nvml => Arc::new(
            NvmlBackend::new(NvmlConfig {
                lib_path: a.nvml_library.clone(),
                ..NvmlConfig::default()
            })
            .context("initialising NVML")?,
        ),
    })
}

fn load_config(path: Option<&Path>, observed: &Observed) -> Result<MigPartedConfig> {
    match path {
        Some(p) => MigPartedConfig::from_yaml(&read(p)?).with_context(|| format!("mig-parted config {}", p.display())),
        None => Ok(generated_config(&observed.config_gpus())),
    }
}

async fn run_apply(c: &ConfigArgs, b: &BackendArgs, socket: &Path, ignore: bool) -> Result<bool> {
    let backend = backend(b)?;
    let observed = Observed::read(backend.as_ref()).await.context("reading the GPUs")?;
    let config = load_config(c.config_file.as_deref(), &observed)?;
    let targets = config.targets_for(&c.selected, &observed.config_gpus())?;
    let target = if c.mode_only {
        parted::mode_only_target(&observed, &targets)
    } else {
        MigTarget::from_mig_parted(&targets)
    };
    let mut client = PodResourcesClient::new(socket, Duration::from_secs(10));
    let mut pr = if ignore {
        PodResources::Ignored
    } else {
        PodResources::Kubelet {
            client: &mut client,
            dra_driver: "gpu.nvidia.com",
            pool: "",
        }
    };
    let report = reconcile::run(backend.as_ref(), &target, &mut pr, &mut |step| {
        eprintln!("{step}");
        std::ops::ControlFlow::Continue(())
    })
    .await;
    let after = Observed::read(backend.as_ref())
        .await
        .map(|o| o.describe())
        .unwrap_or_default();
    match report.outcome {
        Outcome::Success => {
            write_stdout(&format!(
                "applied {}: created {}, destroyed {}; now {after}\n",
                c.selected, report.created, report.destroyed
            ))?;
            Ok(true)
        }
        Outcome::Waiting { reason } => {
            write_stdout(&format!("not fully applied: {reason}; now {after}\n"))?;
            Ok(false)
        }
        Outcome::ResetRequired { reason, .. } => bail!("{reason}; reboot the node to finish"),
        Outcome::Failed { reason } => bail!("{reason}"),
    }
}

async fn run_assert(c: &ConfigArgs, b: &BackendArgs) -> Result<bool> {
    let backend = backend(b)?;
    let observed = Observed::read(backend.as_ref()).await.context("reading the GPUs")?;
    let config = load_config(c.config_file.as_deref(), &observed)?;
    let targets = config.targets_for(&c.selected, &observed.config_gpus())?;
    let bad = parted::assert_mismatches(&observed, &targets, c.mode_only);
    if bad.is_empty() {
        write_stdout(&format!("the node matches {}\n", c.selected))?;
        return Ok(true);
    }
    write_stdout(&format!(
        "the node does not match {}:\n  {}\n",
        c.selected,
        bad.join("\n  ")
    ))?;
    Ok(false)
}

async fn run_export(b: &BackendArgs, out: Option<&Path>) -> Result<bool> {
    let backend = backend(b)?;
    let observed = Observed::read(backend.as_ref()).await.context("reading the GPUs")?;
    let yaml = parted::export_yaml(&observed);
    match out {
        Some(p) => std::fs::write(p, yaml).with_context(|| format!("writing {}", p.display()))?,
        None => write_stdout(&yaml)?,
    }
    Ok(true)
}

async fn run_agent(a: &RunArgs) -> Result<bool> {
    let backend = backend(&a.backend)?;
    let config = kube::Config::infer()
        .await
        .context("Kubernetes client config (in-cluster or KUBECONFIG)")?;
    let client = kube::Client::try_from(config).context("Kubernetes client")?;
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let (health_tx, health_rx) = tokio::sync::watch::channel(http::Health::default());
    if !a.http_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&a.http_listen)
            .await
            .with_context(|| format!("--http-listen {}", a.http_listen))?;
        let app = http::app(Arc::new(registry), health_rx);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    let cfg = AgentConfig {
        node: a.node_name.clone(),
        config_file: a.config_file.clone(),
        pod_resources_socket: a.pod_resources_socket.clone(),
        pod_resources_timeout: Duration::from_secs(10),
        dra_driver: a.dra_driver.clone(),
        layout_file: (!a.layout_file.as_os_str().is_empty()).then(|| a.layout_file.clone()),
        retry_interval: a.retry_interval,
        resync_interval: a.resync_interval,
        max_backoff: a.max_backoff,
        reboot_command: a
            .reboot_command
            .as_deref()
            .map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|c| !c.is_empty()),
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let _ = shutdown_tx.send(true);
        }
    });
    Agent::new(cfg, backend, client, metrics, health_tx)
        .run(shutdown_rx)
        .await;
    Ok(true)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `GPU:PROFILE@START` on the machine's GPUs.
fn parse_busy(text: &str, gpus: &[GpuMigState]) -> Result<InstanceRef> {
    let bad = |why: &str| anyhow::anyhow!("--busy {text:?}: {why}; expected GPU:PROFILE@START, e.g. 2:1g.10gb@3");
    let (gpu, rest) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let (profile, start) = rest.split_once('@').ok_or_else(|| bad("no '@'"))?;
    let gpu: u32 = gpu.trim().parse().map_err(|_| bad("the GPU is not an index"))?;
    let start: u8 = start.trim().parse().map_err(|_| bad("the start is not a number"))?;
    let state = gpus
        .iter()
        .find(|g| g.index == gpu)
        .ok_or_else(|| bad("no such GPU on this machine"))?;
    let family = state.family.ok_or_else(|| bad("that GPU is not MIG-capable"))?;
    let p = family.profile_by_name(profile).ok_or_else(|| {
        let known: Vec<&str> = family.profiles().map(|p| p.name).collect();
        bad(&format!("unknown profile for this model (known: {})", known.join(", ")))
    })?;
    Ok(InstanceRef {
        gpu,
        instance: MigInstance::at(p.kind, start),
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing stdout"),
    }
}

fn run_plan(machine: &Path, config_file: &Path, selected: &str, busy: &[String]) -> Result<bool> {
    let profile =
        MachineProfile::from_yaml(&read(machine)?).with_context(|| format!("machine profile {}", machine.display()))?;
    let config = MigPartedConfig::from_yaml(&read(config_file)?)
        .with_context(|| format!("mig-parted config {}", config_file.display()))?;
    let targets = config.targets(selected, &profile)?;
    let current = GpuMigState::from_machine(&profile)?;
    let busy: Vec<InstanceRef> = busy
        .iter()
        .filter(|b| !b.trim().is_empty())
        .map(|b| parse_busy(b, &current))
        .collect::<Result<_>>()?;
    let p = plan(&current, &busy, &MigTarget::from_mig_parted(&targets))?;
    let text = if p.steps().next().is_none() && !p.is_blocked() {
        format!("nothing to do: the machine already has {selected}\n")
    } else {
        p.to_string()
    };
    write_stdout(&text)?;
    Ok(!p.is_blocked())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = rt.block_on(async {
        match &cli.command {
            Command::Run(a) => run_agent(a).await,
            Command::Apply {
                config,
                backend,
                pod_resources_socket,
                ignore_pod_resources,
            } => run_apply(config, backend, pod_resources_socket, *ignore_pod_resources).await,
            Command::Assert { config, backend } => run_assert(config, backend).await,
            Command::Export { backend, output_file } => run_export(backend, output_file.as_deref()).await,
            Command::Plan {
                machine,
                config_file,
                selected,
                busy,
            } => run_plan(machine, config_file, selected, busy),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn busy_entries_name_what_is_wrong() {
        let gpus = vec![super::GpuMigState::new(0, None, false, Vec::new())];
        for (text, why) in [
            ("0-1g.10gb@3", "no ':'"),
            ("0:1g.10gb", "no '@'"),
            ("x:1g.10gb@0", "not an index"),
            ("9:1g.10gb@0", "no such GPU"),
            ("0:1g.10gb@0", "not MIG-capable"),
        ] {
            let err = super::parse_busy(text, &gpus).expect_err(text).to_string();
            assert!(err.contains(why) && err.contains(text), "{err}");
        }
    }
}
