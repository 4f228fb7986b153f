//! Command-line flags and their environment variables. Names follow NVIDIA's
//! k8s-device-plugin where it has the same setting (`--mig-strategy` /
//! `MIG_STRATEGY`, …); flags and environment variables override the config
//! file's `flags:` section, as in NVIDIA's plugin (flag > env > file >
//! default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use railyard_core::allocation::ReplicaPolicy;
use railyard_core::config::device_plugin::{DeviceIdStrategy, MigStrategy};
use railyard_watchdog::WatchdogConfig;
use railyard_watchdog::policy::{Mode, PolicyConfig};

/// Railyard's Kubernetes device plugin: advertises GPUs, MIG devices and
/// shared replicas to kubelet, as NVIDIA's k8s-device-plugin does.
#[derive(Debug, Clone, Parser)]
#[command(name = "railyard-device-plugin", version)]
pub struct Options {
    /// NVIDIA device plugin config file (`version: v1`).
    #[arg(long, env = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Directory of named configs (a mounted ConfigMap: one file per name,
    /// `.yaml`/`.yml` optional); the node label `nvidia.com/device-plugin.config`
    /// picks one, else `--default-config`.
    #[arg(long, env = "CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,

    /// Named config used when the node has no `nvidia.com/device-plugin.config` label.
    #[arg(long, env = "DEFAULT_CONFIG")]
    pub default_config: Option<String>,

    /// The value of the node label `nvidia.com/device-plugin.config`, when it
    /// is passed in directly (no API access).
    #[arg(long, env = "NODE_CONFIG_LABEL")]
    pub node_config_label: Option<String>,

    /// File of node labels, `key="value"` (or `key=value`) per line, as a
    /// downward-API volume or a label-sync sidecar writes it. Re-read on
    /// every config check, so relabelling the node switches configs.
    #[arg(long, env = "NODE_LABELS_FILE")]
    pub node_labels_file: Option<PathBuf>,

    #[arg(long, env = "MIG_STRATEGY")]
    pub mig_strategy: Option<MigStrategy>,

    /// Exit when the GPUs cannot be enumerated at start (else serve nothing and retry).
    #[arg(long, env = "FAIL_ON_INIT_ERROR", num_args = 0..=1, default_missing_value = "true")]
    pub fail_on_init_error: Option<bool>,

    /// One or more of envvar, volume-mounts, cdi-annotations, cdi-cri (comma-separated).
    #[arg(long, env = "DEVICE_LIST_STRATEGY", value_delimiter = ',')]
    pub device_list_strategy: Option<Vec<String>>,

    /// uuid or index: how devices are named to the container runtime.
    #[arg(long, env = "DEVICE_ID_STRATEGY", value_parser = parse_id_strategy)]
    pub device_id_strategy: Option<DeviceIdStrategy>,

    /// Also return the device nodes in `Allocate` (for runtimes without the NVIDIA hook).
    #[arg(long, env = "PASS_DEVICE_SPECS", num_args = 0..=1, default_missing_value = "true")]
    pub pass_device_specs: Option<bool>,

    /// Root of the driver installation on the host (`/` or e.g. `/run/nvidia/driver`).
    #[arg(long, env = "NVIDIA_DRIVER_ROOT")]
    pub nvidia_driver_root: Option<String>,

    /// Root under which `/dev/nvidia*` are found on the host (defaults to the driver root).
    #[arg(long, env = "NVIDIA_DEV_ROOT")]
    pub nvidia_dev_root: Option<String>,

    /// Host directory of the MPS control daemons (MPS sharing).
    #[arg(long, env = "MPS_ROOT")]
    pub mps_root: Option<String>,

    /// Prefix of CDI annotations (`cdi-annotations` strategy).
    #[arg(long, env = "CDI_ANNOTATION_PREFIX")]
    pub cdi_annotation_prefix: Option<String>,

    /// kubelet's device-plugin directory: kubelet.sock and the plugin sockets.
    #[arg(long, env = "DEVICE_PLUGIN_DIR", default_value = "/var/lib/kubelet/device-plugins")]
    pub device_plugin_dir: PathBuf,

    /// Where CDI spec files are written (CDI strategies).
    #[arg(long, env = "CDI_DIR", default_value = "/var/run/cdi")]
    pub cdi_dir: PathBuf,

    /// CDI kind (`vendor/class`) of the generated spec.
    #[arg(long, env = "CDI_KIND", default_value = "railyard.dev/gpu")]
    pub cdi_kind: String,

    /// How GetPreferredAllocation picks shared replicas.
    #[arg(long, env = "REPLICA_POLICY", default_value_t = ReplicaPolicy::Distributed)]
    pub replica_policy: ReplicaPolicy,

    /// Where the GPUs come from: NVML, or a simulated machine (`--machine`).
    #[arg(long, value_enum, env = "GPU_BACKEND", default_value_t = Backend::Nvml)]
    pub backend: Backend,

    /// libnvidia-ml.so to load (default: the system's).
    #[arg(long, env = "NVML_LIBRARY")]
    pub nvml_library: Option<PathBuf>,

    /// Machine profile (configs/machines/*.yaml): the simulated machine with
    /// `--backend sim` and `--dry-run`, and the node topology for preferred
    /// allocation in any mode (else it is derived from the inventory).
    #[arg(long, env = "MACHINE_PROFILE")]
    pub machine: Option<PathBuf>,

    /// mig-parted config applied to the machine in `--dry-run` (and to a
    /// simulated backend at start), with `--mig-config-name`.
    #[arg(long)]
    pub mig_config: Option<PathBuf>,

    #[arg(long, requires = "mig_config")]
    pub mig_config_name: Option<String>,

    /// Print the resources that would be advertised and exit.
    #[arg(long)]
    pub dry_run: bool,

    /// Serve /metrics and /healthz here; empty disables.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9401")]
    pub metrics_addr: Option<String>,

    /// Publish the node's GPU topology as the node annotation
    /// `railyard.dev/gpu-topology`: patched on the Node with API access
    /// (`--kube-api`), a logged no-op without it.
    #[arg(long, env = "PUBLISH_TOPOLOGY", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub publish_topology: bool,

    /// Kubernetes API access: `auto` (on inside a pod, where
    /// `KUBERNETES_SERVICE_HOST` is set), `on` (KUBECONFIG or in-cluster
    /// config) or `off`. With it the plugin watches its Node's labels (named
    /// configs), patches the topology annotation and writes the watchdog's
    /// pod Events; it needs `--node-name`.
    #[arg(long, value_enum, env = "KUBE_API", default_value_t = KubeApi::Auto)]
    pub kube_api: KubeApi,

    /// This node's name: the Node watched and annotated, and the Events'
    /// reporting instance (downward API `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Follow the extender's device decisions (`railyard.dev/gpus`) in
    /// `GetPreferredAllocation` when a call matches exactly one pending pod
    /// (needs API access). Off: the plugin's own rule for every call; the
    /// allocated GPUs are still written back.
    #[arg(long, env = "FOLLOW_DECISIONS", num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub follow_decisions: bool,

    /// How often kubelet's PodResources is compared with the pods'
    /// `railyard.dev/allocated-gpus` write-backs (API access only).
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,

    /// How often the config (file, named configs, node labels) and the MIG
    /// layout file are checked, in ms. Keep it at most 1000 so a MIG layout
    /// change is advertised within 2 s.
    #[arg(long, env = "CONFIG_POLL_MS", default_value_t = 1000)]
    pub config_poll_ms: u64,

    /// File the MIG manager replaces (temp file + rename) after every MIG
    /// layout change; any change of its content, or its appearing, makes the
    /// plugin re-read the inventory and re-advertise, with no restart (see
    /// `mig_notify`). Default `<device-plugin-dir>/railyard-mig-layout`;
    /// empty disables.
    #[arg(long, env = "MIG_LAYOUT_FILE")]
    pub mig_layout_file: Option<String>,

    /// How often sockets are checked for a kubelet restart, in ms.
    #[arg(long, env = "SOCKET_POLL_MS", default_value_t = 100)]
    pub socket_poll_ms: u64,

    /// GPU memory watchdog for shared replicas: `enforce` (signal containers
    /// over their share), `warn` (log, Event and metrics only) or `off`.
    #[arg(long, env = "WATCHDOG_MODE", default_value = "enforce")]
    pub watchdog_mode: Mode,

    /// How long a container may stay over its memory share before it is
    /// reported (and, in `enforce`, sent SIGTERM). `500ms`, `5s`, `1m`.
    #[arg(long, env = "WATCHDOG_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub watchdog_grace: Duration,

    /// Between SIGTERM and SIGKILL.
    #[arg(long, env = "WATCHDOG_KILL_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub watchdog_kill_grace: Duration,

    /// Between watchdog scans.
    #[arg(long, env = "WATCHDOG_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub watchdog_interval: Duration,

    /// GPU process data older than this (a slow or hung NVML) is not acted on.
    #[arg(long, env = "WATCHDOG_MAX_STALENESS", default_value = "10s", value_parser = parse_duration)]
    pub watchdog_max_staleness: Duration,

    /// Kubelet's PodResources socket.
    #[arg(
        long,
        env = "POD_RESOURCES_SOCKET",
        default_value = "/var/lib/kubelet/pod-resources/kubelet.sock"
    )]
    pub pod_resources_socket: PathBuf,

    /// The container runtime's CRI socket (default: containerd's
    /// `/run/containerd/containerd.sock`, else CRI-O's `/var/run/crio/crio.sock`).
    #[arg(long, env = "CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,

    /// The host's `/proc` (the plugin needs `hostPID`): processes for the
    /// watchdog and `driver/nvidia-caps/mig-minors`; a stand-in for tests.
    #[arg(long, env = "PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// `500ms`, `5s`, `2m`, or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}; use e.g. 500ms, 5s, 1m"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration {s:?}: must be a non-negative number"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn parse_id_strategy(s: &str) -> Result<DeviceIdStrategy, String> {
    match s {
        "uuid" => Ok(DeviceIdStrategy::Uuid),
        "index" => Ok(DeviceIdStrategy::Index),
        _ => Err(format!("unknown device id strategy {s:?}; valid: uuid, index")),
    }
}

/// `--kube-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubeApi {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Nvml,
    Sim,
}

impl Options {
    /// Options with every default, for tests and embedding: equivalent to
    /// running with no flags and no environment.
    pub fn defaults() -> Options {
        Options::parse_from(["railyard-device-plugin"])
    }

    /// The watchdog's settings from the flags.
    pub fn watchdog(&self) -> WatchdogConfig {
        WatchdogConfig {
            policy: PolicyConfig {
                mode: self.watchdog_mode,
                grace: self.watchdog_grace,
                kill_grace: self.watchdog_kill_grace,
                max_staleness: self.watchdog_max_staleness,
            },
            interval: self.watchdog_interval,
            pod_resources_socket: self.pod_resources_socket.clone(),
            cri_socket: self.cri_socket.clone(),
            proc_root: self.proc_root.clone(),
            ..WatchdogConfig::default()
        }
    }

    /// The MIG layout notify file (`--mig-layout-file`); `None`: disabled.
    pub fn mig_layout_path(&self) -> Option<PathBuf> {
        match self.mig_layout_file.as_deref() {
            None => Some(self.device_plugin_dir.join(crate::mig_notify::DEFAULT_FILE_NAME)),
            Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
        }
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        match self.metrics_addr.as_deref() {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|e| format!("--metrics-addr {a:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_and_watchdog_flags() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        let o = Options::try_parse_from([
            "railyard-device-plugin",
            "--watchdog-mode",
            "warn",
            "--watchdog-grace",
            "2s",
            "--cri-socket",
            "/var/run/crio/crio.sock",
        ])
        .unwrap();
        let w = o.watchdog();
        assert_eq!(w.policy.mode, Mode::Warn);
        assert_eq!(w.policy.grace, Duration::from_secs(2));
        assert_eq!(w.policy.kill_grace, Duration::from_secs(10));
        assert_eq!(w.interval, Duration::from_secs(1));
        assert_eq!(w.cri_socket.unwrap(), PathBuf::from("/var/run/crio/crio.sock"));
        assert!(Options::try_parse_from(["railyard-device-plugin", "--watchdog-mode", "kill"]).is_err());
    }

    #[test]
    fn mig_layout_file_defaults_to_the_device_plugin_dir_and_empty_disables() {
        let o = Options::defaults();
        assert_eq!(
            o.mig_layout_path().unwrap(),
            PathBuf::from("/var/lib/kubelet/device-plugins/railyard-mig-layout")
        );
        assert!(
            o.config_poll_ms <= 1000,
            "the 2 s bound on MIG layout changes needs polls of at most 1 s"
        );
        let o = Options::try_parse_from(["railyard-device-plugin", "--device-plugin-dir", "/dp"]).unwrap();
        assert_eq!(o.mig_layout_path().unwrap(), PathBuf::from("/dp/railyard-mig-layout"));
        let o = Options::try_parse_from(["railyard-device-plugin", "--mig-layout-file", "/run/x"]).unwrap();
        assert_eq!(o.mig_layout_path().unwrap(), PathBuf::from("/run/x"));
        let o = Options::try_parse_from(["railyard-device-plugin", "--mig-layout-file="]).unwrap();
        assert_eq!(o.mig_layout_path(), None);
    }
}
