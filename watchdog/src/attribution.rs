//! From `/proc/<pid>/cgroup` to the pod and container a process belongs to,
//! for cgroup v1 and v2, the systemd and cgroupfs drivers, and containerd,
//! CRI-O and Docker container ids (PROTOCOLS §9).

/// Who a process belongs to, as far as its cgroup tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Not under `kubepods`: a host process. Never acted on.
    Host,
    /// A container of a pod.
    Container { pod_uid: String, container_id: String },
    /// Under `kubepods` but the path does not name a container (e.g. the pod
    /// cgroup itself or an unknown runtime layout). Never acted on.
    Unattributed { path: String },
}

/// Attributes a process from the text of its `/proc/<pid>/cgroup`.
pub fn attribute(cgroup_file: &str) -> Attribution {
    let Some(path) = pick_path(cgroup_file) else {
        return Attribution::Host;
    };
    if !path.contains("kubepods") {
        return Attribution::Host;
    }
    match parse_kubepods_path(path) {
        Some((pod_uid, container_id)) => Attribution::Container { pod_uid, container_id },
        None => Attribution::Unattributed { path: path.to_string() },
    }
}

/// The path to read: v2's single `0::` line, else v1's `memory` or
/// `name=systemd` hierarchy, else the first kubepods path of any line.
fn pick_path(file: &str) -> Option<&str> {
    let lines: Vec<(&str, &str)> = file
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers, path))
        })
        .collect();
    let by = |want: &dyn Fn(&str) -> bool| lines.iter().find(|(c, _)| want(c)).map(|(_, p)| *p);
    by(&|c| c.is_empty())
        .or_else(|| by(&|c| c.split(',').any(|x| x == "memory")))
        .or_else(|| by(&|c| c == "name=systemd"))
        .or_else(|| lines.iter().map(|(_, p)| *p).find(|p| p.contains("kubepods")))
        .or_else(|| lines.first().map(|(_, p)| *p))
}

/// Matches the tail `pod<uid>[.slice]/[<runtime>-]<64 hex>[.scope]`; paths
/// seen from a private cgroup namespace start with `/../..`, so only the tail
/// is trusted.
fn parse_kubepods_path(path: &str) -> Option<(String, String)> {
    let mut segs = path.trim_end_matches('/').rsplit('/');
    let leaf = segs.next()?;
    let pod_seg = segs.next()?;
    let id = container_id(leaf)?;
    let uid = pod_uid(pod_seg)?;
    Some((uid, id.to_string()))
}

fn container_id(leaf: &str) -> Option<&str> {
    let leaf = leaf.strip_suffix(".scope").unwrap_or(leaf);
    // CRI-O's conmon runs in its own scope; it is not the container.
    if leaf.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|p| leaf.strip_prefix(p))
        .unwrap_or(leaf);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then_some(id)
}

fn pod_uid(seg: &str) -> Option<String> {
    let seg = seg.strip_suffix(".slice").unwrap_or(seg);
    let raw = &seg[seg.rfind("pod")? + 3..];
    let uid = raw.replace('_', "-");
    let shape_ok = uid.len() == 36
        && uid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    shape_ok.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1e2d4c5b6a79881726354453627180a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4";
    const UID: &str = "1f6b8c2a-3d4e-4f50-9a1b-2c3d4e5f6a7b";

    fn container() -> Attribution {
        Attribution::Container {
            pod_uid: UID.into(),
            container_id: ID.into(),
        }
    }

    #[test]
    fn systemd_driver_cgroup_v2_containerd_and_crio() {
        let uid_ = UID.replace('-', "_");
        let containerd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(attribute(&containerd), container());
        let crio = format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope\n");
        assert_eq!(attribute(&crio), container());
        let docker = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/docker-{ID}.scope\n"
        );
        assert_eq!(attribute(&docker), container());
    }

    #[test]
    fn cgroupfs_driver_cgroup_v1_picks_the_memory_hierarchy() {
        let v1 = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n"
        );
        assert_eq!(attribute(&v1), container());
        let crio = format!("0::/kubepods/pod{UID}/crio-{ID}\n");
        assert_eq!(attribute(&crio), container());
    }

    #[test]
    fn private_cgroup_namespace_paths_match_on_the_tail() {
        let uid_ = UID.replace('-', "_");
        let ns = format!("0::/../../kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(attribute(&ns), container());
    }

    #[test]
    fn host_and_unattributable_processes() {
        assert_eq!(attribute("0::/system.slice/containerd.service\n"), Attribution::Host);
        assert_eq!(
            attribute("0::/user.slice/user-1000.slice/session-3.scope\n"),
            Attribution::Host
        );
        assert_eq!(attribute(""), Attribution::Host);
        let uid_ = UID.replace('-', "_");
        let conmon = format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-conmon-{ID}.scope\n");
        assert!(matches!(attribute(&conmon), Attribution::Unattributed { .. }));
        let pod_only = format!("0::/kubepods.slice/kubepods-pod{uid_}.slice\n");
        assert!(matches!(attribute(&pod_only), Attribution::Unattributed { .. }));
        let short_id = format!("0::/kubepods/pod{UID}/abc123\n");
        assert!(matches!(attribute(&short_id), Attribution::Unattributed { .. }));
    }
}
