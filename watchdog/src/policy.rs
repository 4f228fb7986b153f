//! The enforcement rules as a pure state machine. Each scan the caller builds
//! a [`Snapshot`] (GPU processes with their owners, the shares from
//! PodResources, its own clock) and [`Enforcer::apply`] returns what to do.
//!
//! Per (container, device) with a share: over the share for `grace` →
//! violation (log + Kubernetes Event) and, in `enforce` mode, SIGTERM to the
//! container's processes on that device; still there `kill_grace` later →
//! SIGKILL. Never acted on: host or unattributed processes, containers within
//! their share, devices the container has no share on (whole GPUs and MIG
//! devices are isolated by hardware), missing or stale GPU data, or when
//! PodResources is unavailable.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::signal::Sig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Signal offenders.
    #[default]
    Enforce,
    /// Report violations only.
    Warn,
    /// Do nothing.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "warn" => Ok(Mode::Warn),
            "off" => Ok(Mode::Off),
            _ => Err(format!("unknown watchdog mode {s:?}; valid: enforce, warn, off")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// How long a container may stay over its share before it is acted on.
    pub grace: Duration,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// GPU data older than this counts as stale.
    pub max_staleness: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Enforce,
            grace: Duration::from_secs(5),
            kill_grace: Duration::from_secs(10),
            max_staleness: Duration::from_secs(10),
        }
    }
}

/// A container as PodResources names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerKey {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Host,
    Unattributed,
    Container(ContainerKey),
}

/// One GPU process as measured this scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    pub pid: u32,
    /// Clock ticks since boot; with `pid`, identifies the process.
    pub start_time: u64,
    /// Physical GPU or MIG device UUID the memory is on.
    pub device: String,
    /// `None` when NVML cannot report it.
    pub used_mib: Option<u64>,
    pub owner: Owner,
}

/// Everything one scan saw.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The caller's monotonic clock.
    pub now: Duration,
    /// Age of the GPU process data; `None` when it could not be read.
    pub gpu_data_age: Option<Duration>,
    /// Memory share per (container, device UUID), summed over the replicas the
    /// container holds on that device; `None` when PodResources is unavailable.
    pub shares: Option<BTreeMap<(ContainerKey, String), u64>>,
    pub processes: Vec<ProcessSample>,
}

/// Usage of one container on one device against its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub key: ContainerKey,
    pub device: String,
    pub usage_mib: u64,
    pub share_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Over the share for the whole grace period: log and record an Event.
    Violation {
        usage: Usage,
        over_for: Duration,
        mode: Mode,
    },
    /// Signal one of the container's processes on the device.
    Signal {
        usage: Usage,
        pid: u32,
        start_time: u64,
        sig: Sig,
    },
}

/// Why a scan took no action at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    ModeOff,
    GpuDataMissing,
    GpuDataStale,
    PodResourcesUnavailable,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub actions: Vec<Action>,
    /// Every (container, device) with a share and known usage.
    pub usage: Vec<Usage>,
    pub skipped: Option<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Episode {
    Over {
        since: Duration,
    },
    /// Warn mode: reported, nothing more until usage drops.
    Reported,
    Terminating {
        termed_at: Duration,
        pids: Vec<(u32, u64)>,
    },
    /// SIGKILL sent; a new episode may start `kill_grace` later.
    Killed {
        at: Duration,
    },
}

/// Holds the per-(container, device) episodes between scans.
#[derive(Debug, Clone, Default)]
pub struct Enforcer {
    cfg: PolicyConfig,
    episodes: BTreeMap<(ContainerKey, String), Episode>,
}

impl Enforcer {
    pub fn new(cfg: PolicyConfig) -> Self {
        Enforcer {
            cfg,
            episodes: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    pub fn apply(&mut self, snap: &Snapshot) -> Report {
        let skipped = match (&snap.gpu_data_age, &snap.shares) {
            _ if self.cfg.mode == Mode::Off => Some(Skipped::ModeOff),
            (None, _) => Some(Skipped::GpuDataMissing),
            (Some(age), _) if *age > self.cfg.max_staleness => Some(Skipped::GpuDataStale),
            (_, None) => Some(Skipped::PodResourcesUnavailable),
            _ => None,
        };
        let Some(shares) = snap.shares.as_ref().filter(|_| skipped.is_none()) else {
            // A violation must be seen in continuous, trustworthy data.
            self.episodes.clear();
            return Report {
                skipped,
                ..Report::default()
            };
        };

        let mut report = Report::default();
        let mut seen = Vec::new();
        for ((key, device), &share_mib) in shares {
            let mine: Vec<&ProcessSample> = snap
                .processes
                .iter()
                .filter(|p| &p.device == device && matches!(&p.owner, Owner::Container(k) if k == key))
                .collect();
            // One unknown reading makes the sum unknown: do not guess.
            let Some(usage_mib) = mine.iter().map(|p| p.used_mib).sum::<Option<u64>>() else {
                continue;
            };
            let usage = Usage {
                key: key.clone(),
                device: device.clone(),
                usage_mib,
                share_mib,
            };
            report.usage.push(usage.clone());
            let id = (key.clone(), device.clone());
            if usage_mib <= share_mib {
                continue;
            }
            seen.push(id.clone());
            let next = match self.episodes.get(&id).cloned() {
                None => Episode::Over { since: snap.now },
                Some(Episode::Over { since }) if snap.now.saturating_sub(since) >= self.cfg.grace => {
                    let over_for = snap.now.saturating_sub(since);
                    report.actions.push(Action::Violation {
                        usage: usage.clone(),
                        over_for,
                        mode: self.cfg.mode,
                    });
                    if self.cfg.mode == Mode::Warn {
                        Episode::Reported
                    } else {
                        let pids: Vec<(u32, u64)> = mine.iter().map(|p| (p.pid, p.start_time)).collect();
                        for &(pid, start_time) in &pids {
                            report.actions.push(Action::Signal {
                                usage: usage.clone(),
                                pid,
                                start_time,
                                sig: Sig::Term,
                            });
                        }
                        Episode::Terminating {
                            termed_at: snap.now,
                            pids,
                        }
                    }
                }
                Some(Episode::Terminating { termed_at, pids })
                    if snap.now.saturating_sub(termed_at) >= self.cfg.kill_grace =>
                {
                    // Only the processes that were warned and are still here.
                    for &(pid, start_time) in &pids {
                        if mine.iter().any(|p| p.pid == pid && p.start_time == start_time) {
                            report.actions.push(Action::Signal {
                                usage: usage.clone(),
                                pid,
                                start_time,
                                sig: Sig::Kill,
                            });
                        }
                    }
                    Episode::Killed { at: snap.now }
                }
                Some(Episode::Killed { at }) if snap.now.saturating_sub(at) >= self.cfg.kill_grace => {
                    Episode::Over { since: snap.now }
                }
                Some(e) => e,
            };
            self.episodes.insert(id, next);
        }
        // Episodes end when usage drops, the share goes away or data is unknown.
        self.episodes.retain(|id, _| seen.contains(id));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> ContainerKey {
        ContainerKey {
            namespace: "ml".into(),
            pod: "infer-0".into(),
            container: c.into(),
        }
    }

    fn proc_(pid: u32, c: Option<&str>, device: &str, used: Option<u64>) -> ProcessSample {
        ProcessSample {
            pid,
            start_time: 1000 + pid as u64,
            device: device.into(),
            used_mib: used,
            owner: c.map_or(Owner::Host, |c| Owner::Container(key(c))),
        }
    }

    fn snap(secs: u64, processes: Vec<ProcessSample>) -> Snapshot {
        let shares = BTreeMap::from([((key("a"), "GPU-0".into()), 4096), ((key("b"), "GPU-0".into()), 4096)]);
        Snapshot {
            now: Duration::from_secs(secs),
            gpu_data_age: Some(Duration::ZERO),
            shares: Some(shares),
            processes,
        }
    }

    fn cfg(mode: Mode) -> PolicyConfig {
        PolicyConfig {
            mode,
            grace: Duration::from_secs(5),
            kill_grace: Duration::from_secs(10),
            ..PolicyConfig::default()
        }
    }

    fn signals(r: &Report) -> Vec<(u32, Sig)> {
        r.actions
            .iter()
            .filter_map(|a| match a {
                Action::Signal { pid, sig, .. } => Some((*pid, *sig)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn over_share_after_grace_gets_term_then_kill_and_neighbours_are_spared() {
        let mut e = Enforcer::new(cfg(Mode::Enforce));
        let procs = || {
            vec![
                proc_(10, Some("a"), "GPU-0", Some(3000)),
                proc_(11, Some("a"), "GPU-0", Some(2000)),
                proc_(20, Some("b"), "GPU-0", Some(4000)),
            ]
        };
        assert!(e.apply(&snap(0, procs())).actions.is_empty(), "grace starts");
        assert!(e.apply(&snap(4, procs())).actions.is_empty(), "still in grace");
        let r = e.apply(&snap(5, procs()));
        assert!(
            matches!(&r.actions[0], Action::Violation { usage, .. } if usage.usage_mib == 5000 && usage.share_mib == 4096 && usage.key == key("a"))
        );
        assert_eq!(signals(&r), vec![(10, Sig::Term), (11, Sig::Term)]);
        assert!(e.apply(&snap(14, procs())).actions.is_empty(), "kill grace");
        // pid 11 exited after SIGTERM; only 10 is still there.
        let r = e.apply(&snap(
            15,
            vec![
                proc_(10, Some("a"), "GPU-0", Some(5000)),
                proc_(20, Some("b"), "GPU-0", Some(4000)),
            ],
        ));
        assert_eq!(signals(&r), vec![(10, Sig::Kill)]);
    }

    #[test]
    fn dropping_below_the_share_resets_the_grace() {
        let mut e = Enforcer::new(cfg(Mode::Enforce));
        e.apply(&snap(0, vec![proc_(10, Some("a"), "GPU-0", Some(5000))]));
        e.apply(&snap(4, vec![proc_(10, Some("a"), "GPU-0", Some(1000))]));
        assert!(
            e.apply(&snap(6, vec![proc_(10, Some("a"), "GPU-0", Some(5000))]))
                .actions
                .is_empty()
        );
        assert!(
            e.apply(&snap(10, vec![proc_(10, Some("a"), "GPU-0", Some(5000))]))
                .actions
                .is_empty()
        );
        assert_eq!(
            signals(&e.apply(&snap(11, vec![proc_(10, Some("a"), "GPU-0", Some(5000))]))),
            vec![(10, Sig::Term)]
        );
    }

    #[test]
    fn warn_mode_reports_once_and_never_signals() {
        let mut e = Enforcer::new(cfg(Mode::Warn));
        let p = || vec![proc_(10, Some("a"), "GPU-0", Some(5000))];
        e.apply(&snap(0, p()));
        let r = e.apply(&snap(5, p()));
        assert!(matches!(
            r.actions.as_slice(),
            [Action::Violation { mode: Mode::Warn, .. }]
        ));
        assert!(e.apply(&snap(30, p())).actions.is_empty());
    }

    #[test]
    fn never_acts_on_host_unattributed_unshared_or_unknown() {
        let mut e = Enforcer::new(cfg(Mode::Enforce));
        let mut unattributed = proc_(30, None, "GPU-0", Some(80_000));
        unattributed.owner = Owner::Unattributed;
        let procs = vec![
            proc_(1, None, "GPU-0", Some(80_000)),
            unattributed,
            // Container a on a device it holds no share of (a whole GPU).
            proc_(40, Some("a"), "GPU-1", Some(80_000)),
            // Container b's memory cannot be read.
            proc_(50, Some("b"), "GPU-0", None),
            proc_(51, Some("b"), "GPU-0", Some(9000)),
        ];
        for t in [0, 5, 20, 40] {
            assert!(e.apply(&snap(t, procs.clone())).actions.is_empty(), "t={t}");
        }
    }

    #[test]
    fn stale_or_missing_data_and_pod_resources_outage_do_nothing_and_reset() {
        let mut e = Enforcer::new(cfg(Mode::Enforce));
        let p = || vec![proc_(10, Some("a"), "GPU-0", Some(5000))];
        e.apply(&snap(0, p()));
        let mut stale = snap(5, p());
        stale.gpu_data_age = Some(Duration::from_secs(60));
        assert_eq!(e.apply(&stale).skipped, Some(Skipped::GpuDataStale));
        let mut missing = snap(6, p());
        missing.gpu_data_age = None;
        assert_eq!(e.apply(&missing).skipped, Some(Skipped::GpuDataMissing));
        let mut outage = snap(7, p());
        outage.shares = None;
        let r = e.apply(&outage);
        assert_eq!(
            (r.skipped, r.actions.len()),
            (Some(Skipped::PodResourcesUnavailable), 0)
        );
        // The grace starts again once data is back.
        assert!(e.apply(&snap(8, p())).actions.is_empty());
        assert!(!e.apply(&snap(13, p())).actions.is_empty());
    }

    #[test]
    fn off_mode_does_nothing() {
        let mut e = Enforcer::new(cfg(Mode::Off));
        for t in [0, 10, 100] {
            let r = e.apply(&snap(t, vec![proc_(10, Some("a"), "GPU-0", Some(50_000))]));
            assert_eq!((r.actions.len(), r.skipped), (0, Some(Skipped::ModeOff)));
        }
    }

    #[test]
    fn modes_parse_with_clear_errors() {
        assert_eq!("warn".parse::<Mode>(), Ok(Mode::Warn));
        assert_eq!(
            "kill".parse::<Mode>().unwrap_err(),
            "unknown watchdog mode \"kill\"; valid: enforce, warn, off"
        );
    }
}
