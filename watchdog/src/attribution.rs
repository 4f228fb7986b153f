//! From `/proc/<pid>/cgroup` to the pod and container a process belongs to,
//! for cgroup v1, v2 and hybrid mode, the systemd and cgroupfs drivers, and
//! containerd, CRI-O and Docker container ids (PROTOCOLS §9).
//!
//! A cgroup's owner can create cgroups of any name below it (a container with
//! a writable cgroupfs, a user's delegated systemd subtree, a plain Docker
//! container), so no part of a path is trusted on its own. A path names a
//! container only if it is, from its start, exactly the layout the kubelet and
//! the runtime create:
//!
//! - systemd driver: `/<R>kubepods.slice/<R>kubepods-<qos>.slice/<R>kubepods-<qos>-pod<uid_>.slice/<rt>-<id>.scope`
//!   (Guaranteed: no `<qos>` slice), `<qos>` `burstable` or `besteffort`,
//!   `<rt>` `cri-containerd`, `crio` or `docker` (`crio-conmon-` is not a
//!   container), `<uid_>` the pod UID with `-` as `_`. `<R>` is the kubelet's
//!   `--cgroup-root` (`node-` for `/node`, which adds `/node.slice` first):
//!   every slice is its parent's name plus one `-component`, as systemd nests
//!   slices, and the chain starts at `/`. A delegated subtree is a `.service`
//!   or `.scope`, so nothing below one can continue a chain from `/`.
//! - cgroupfs driver: `/kubepods/[<qos>/]pod<uid>/<id>` or `.../crio-<id>`.
//!   The kubepods directory must be the first segment: unlike slices, plain
//!   directories carry no ancestry, so `/docker/<x>/kubepods/...` could have
//!   been made by anyone owning `/docker/<x>`. With a non-default
//!   `--cgroup-root` and this driver, processes stay unattributed (never acted
//!   on).
//!
//! `<id>` is 64 lowercase hex digits; `<uid>` a lowercase UUID, or 32 hex
//! digits (a static pod's hashed UID).
//!
//! Seen from a private cgroup namespace, a path starts with `/..` segments up
//! to the common ancestor of the reader's root and the process. The first
//! segment after them is a child of that ancestor; the watchdog's own
//! ancestors are the kubelet's (root-owned) cgroups, so that child was made by
//! the kubelet or the host. The layout may then start at any level above the
//! container: the kubepods root, the QoS level or the pod (systemd slice names
//! spell out their full ancestry; cgroupfs ones start with `kubepods`,
//! `burstable`, `besteffort` or `pod<uid>`).
//!
//! Anything below the container's cgroup (crun's `container` subgroup,
//! systemd or a runtime inside the container) belongs to that container,
//! whatever its names. Anything else mentioning kubepods is unattributed, any
//! other path is a host process; neither is ever acted on.

use std::collections::HashSet;

/// Who a process belongs to, as far as its cgroup tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    /// Not under `kubepods`: a host process. Never acted on.
    Host,
    /// A container of a pod.
    Container { pod_uid: String, container_id: String },
    /// Under `kubepods` but the path is not exactly a container's cgroup or a
    /// cgroup below one (e.g. the pod cgroup itself, conmon, an unknown or
    /// spoofed layout), or the file is not one the kernel writes. Never acted
    /// on.
    Unattributed { path: String },
}

/// Most lines a kernel-written `/proc/<pid>/cgroup` has: one per mounted
/// hierarchy (about 15 v1 controllers, a few named ones, and `0::`).
const MAX_LINES: usize = 64;

/// Attributes a process from the text of its `/proc/<pid>/cgroup`. The work
/// and the memory are linear in the text's length.
pub fn attribute(cgroup_file: &str) -> Attribution {
    match pick_path(cgroup_file) {
        Pick::Path(path) => match parse_path(path) {
            Some((pod_uid, container_id)) => Attribution::Container { pod_uid, container_id },
            None if path.contains("kubepods") => Attribution::Unattributed { path: path.to_string() },
            None => Attribution::Host,
        },
        Pick::NotKernel(line) => Attribution::Unattributed { path: line.to_string() },
        Pick::NoHierarchy { kubepods: Some(path) } => Attribution::Unattributed { path: path.to_string() },
        Pick::NoHierarchy { kubepods: None } => Attribution::Host,
    }
}

enum Pick<'a> {
    /// The path of the hierarchy that places containers.
    Path(&'a str),
    /// A line the kernel would not write (malformed, repeated, misplaced).
    NotKernel(&'a str),
    /// Neither `memory`, `0::` nor `name=systemd`; the first path naming
    /// kubepods, if any.
    NoHierarchy { kubepods: Option<&'a str> },
}

/// The path to read, from lines `<hierarchy id>:<controllers>:<path>`.
///
/// The v1 `memory` line wins when there is one: a `memory` controller bound
/// to v1 means the system is not in unified mode, so the kubelet and the
/// runtime run on v1 and place containers there; the unified `0::` line of a
/// hybrid system is only systemd's process tracking and may be `/` or the
/// runtime's service (cgroupfs driver). Else the `0::` line (unified mode,
/// possibly beside named v1 hierarchies), else `name=systemd`.
///
/// The file must look as the kernel writes it: each hierarchy id and each
/// controller once, `0::` (controllers empty only there) last, paths
/// absolute. Otherwise which line is real is unknown (old kernels let a cgroup
/// name contain `\n` and so forge lines), and nothing is attributed.
fn pick_path(file: &str) -> Pick<'_> {
    let body = file.strip_suffix('\n').unwrap_or(file);
    if body.is_empty() {
        return Pick::NoHierarchy { kubepods: None };
    }
    let (mut memory, mut unified, mut systemd, mut kubepods) = (None, None, None, None);
    let mut ids = HashSet::new();
    let mut controllers_seen = HashSet::new();
    for (n, line) in body.split('\n').enumerate() {
        if n >= MAX_LINES || unified.is_some() {
            return Pick::NotKernel(line);
        }
        let Some((id, controllers, path)) = split_line(line) else {
            return Pick::NotKernel(line);
        };
        if !ids.insert(id) || (id == 0) != controllers.is_empty() {
            return Pick::NotKernel(line);
        }
        if kubepods.is_none() && path.contains("kubepods") {
            kubepods = Some(path);
        }
        if id == 0 {
            unified = Some(path);
            continue;
        }
        for c in controllers.split(',') {
            if c.is_empty() || !controllers_seen.insert(c) {
                return Pick::NotKernel(line);
            }
            match c {
                "memory" => memory = Some(path),
                "name=systemd" => systemd = Some(path),
                _ => {}
            }
        }
    }
    memory
        .or(unified)
        .or(systemd)
        .map_or(Pick::NoHierarchy { kubepods }, Pick::Path)
}

/// `(hierarchy id, controllers, path)` of one line; the path may contain `:`.
fn split_line(line: &str) -> Option<(u32, &str, &str)> {
    let (id, rest) = line.split_once(':')?;
    let (controllers, path) = rest.split_once(':')?;
    let canonical = !id.is_empty()
        && id.len() <= 10
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    let id = if canonical { id.parse().ok()? } else { return None };
    path.starts_with('/').then_some((id, controllers, path))
}

/// `(pod UID, container id)` if `path` is exactly one of the layouts in the
/// module documentation, or a cgroup below one.
fn parse_path(path: &str) -> Option<(String, String)> {
    let mut segs = path.strip_prefix('/')?.split('/').peekable();
    let mut relative = false;
    while segs.next_if_eq(&"..").is_some() {
        relative = true;
    }
    let first = segs.next()?;
    let (uid, id) = match first.strip_suffix(".slice") {
        Some(slice) => systemd_layout(slice, &mut segs, relative)?,
        None => cgroupfs_layout(first, &mut segs, relative)?,
    };
    // Below the container: its own cgroups, any names, but no `..` or `.`.
    segs.all(|s| !s.is_empty() && s != "." && s != "..")
        .then(|| (uid, id.to_string()))
}

/// Slices from `first` (its name without `.slice`) down to the pod slice,
/// then the container's scope.
fn systemd_layout<'a>(
    first: &str,
    segs: &mut impl Iterator<Item = &'a str>,
    relative: bool,
) -> Option<(String, &'a str)> {
    // A slice directly under `/` has one component; from a private namespace
    // the first slice may be any level.
    if first.split('-').any(str::is_empty) || (!relative && first.contains('-')) {
        return None;
    }
    let mut slice = first;
    let leaf = loop {
        let seg = segs.next()?;
        match seg.strip_suffix(".slice") {
            Some(child) => {
                // systemd nests `a-b.slice` in `a.slice`: exactly one more component.
                let tail = child.strip_prefix(slice)?.strip_prefix('-')?;
                if tail.is_empty() || tail.contains('-') {
                    return None;
                }
                slice = child;
            }
            None => break seg,
        }
    };
    let uid = systemd_pod_slice(slice)?;
    let leaf = leaf.strip_suffix(".scope")?;
    if leaf.starts_with("crio-conmon-") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-"]
        .iter()
        .find_map(|p| leaf.strip_prefix(p))?;
    is_container_id(id).then_some((uid, id))
}

/// The UID of a pod slice name `[<root>-]kubepods[-<qos>]-pod<uid_>`, where
/// no `<root>` component is `kubepods`.
fn systemd_pod_slice(name: &str) -> Option<String> {
    let (head, pod) = name.rsplit_once('-')?;
    let uid = pod_uid(pod.strip_prefix("pod")?, b'_')?;
    let root = match head.rsplit_once('-') {
        Some((root, "burstable" | "besteffort")) => root,
        _ => head,
    };
    let mut components = root.rsplit('-');
    (components.next() == Some("kubepods") && components.all(|c| c != "kubepods")).then_some(uid)
}

/// `kubepods/[<qos>/]pod<uid>/<leaf>` from `first`; from a private namespace
/// it may start at the QoS or pod level.
fn cgroupfs_layout<'a>(
    first: &'a str,
    segs: &mut impl Iterator<Item = &'a str>,
    relative: bool,
) -> Option<(String, &'a str)> {
    let mut seg = first;
    if seg == "kubepods" {
        seg = segs.next()?;
    } else if !relative {
        return None;
    }
    if seg == "burstable" || seg == "besteffort" {
        seg = segs.next()?;
    }
    let uid = pod_uid(seg.strip_prefix("pod")?, b'-')?;
    let leaf = segs.next()?;
    // containerd and Docker name the cgroup by the id, CRI-O `crio-<id>`;
    // `crio-conmon-<id>` is not a container and fails the id check.
    let id = leaf.strip_prefix("crio-").unwrap_or(leaf);
    is_container_id(id).then_some((uid, id))
}

/// A UUID with `sep` for its dashes (returned with dashes), or a static pod's
/// 32 hex digits.
fn pod_uid(raw: &str, sep: u8) -> Option<String> {
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let b = raw.as_bytes();
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == sep,
            _ => hex(c),
        });
    if uuid {
        return Some(raw.replace(sep as char, "-"));
    }
    (b.len() == 32 && b.iter().all(|&c| hex(c))).then(|| raw.to_string())
}

fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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
    fn private_cgroup_namespace_paths_are_read_after_the_dotdot_prefix() {
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

    const ID_B: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    const UID_B: &str = "9e8d7c6b-5a49-4838-a726-150f1e2d3c4b";

    fn uid_() -> String {
        UID.replace('-', "_")
    }

    fn unattributed(file: &str) -> bool {
        matches!(attribute(file), Attribution::Unattributed { .. })
    }

    #[test]
    fn container_in_container_naming_another_pod_is_charged_to_the_outer_container() {
        let uid_ = uid_();
        let uid_b = UID_B.replace('-', "_");
        // Cgroups made below container A's own cgroup, named after pod B.
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope/pod{UID_B}/{ID_B}\n"
        );
        assert_eq!(attribute(&systemd), container());
        let systemd_b = format!(
            "0::/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope/kubepods.slice/kubepods-pod{uid_b}.slice/crio-{ID_B}.scope\n"
        );
        assert_eq!(attribute(&systemd_b), container());
        let cgroupfs = format!("0::/kubepods/burstable/pod{UID}/{ID}/kubepods/pod{UID_B}/{ID_B}\n");
        assert_eq!(attribute(&cgroupfs), container());
        let ns = format!("0::/../../kubepods-pod{uid_}.slice/docker-{ID}.scope/pod{UID_B}/{ID_B}\n");
        assert_eq!(attribute(&ns), container());
    }

    #[test]
    fn kubepods_outside_the_kubelet_root_is_not_a_container() {
        let uid_b = UID_B.replace('-', "_");
        for path in [
            format!("/user.slice/kubepods-fake/pod{UID_B}/{ID_B}"),
            format!("/user.slice/kubepods/pod{UID_B}/{ID_B}"),
            // A delegated subtree (user service, plain Docker container) is
            // writable by its owner, so nothing below it is trusted.
            format!(
                "/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod{uid_b}.slice/cri-containerd-{ID_B}.scope"
            ),
            format!("/docker/{ID}/kubepods/pod{UID_B}/{ID_B}"),
            format!("/system.slice/docker-{ID}.scope/kubepods/besteffort/pod{UID_B}/{ID_B}"),
            format!("/../../user.slice/kubepods/pod{UID_B}/{ID_B}"),
            format!("/../../docker/{ID}/kubepods/pod{UID_B}/{ID_B}"),
            format!("/xkubepods/pod{UID_B}/{ID_B}"),
        ] {
            assert!(unattributed(&format!("0::{path}\n")), "{path}");
        }
    }

    #[test]
    fn child_cgroup_of_a_container_belongs_to_the_container() {
        let uid_ = uid_();
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope/child"
            ),
            // crun's systemd subgroup, and systemd running inside the container.
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}.scope/container"),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope/init.scope"),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope/system.slice/a.service"),
            format!("/kubepods/besteffort/pod{UID}/{ID}/sub"),
            format!("/kubepods/pod{UID}/crio-{ID}/a/b/c"),
            format!("/../../kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope/child"),
        ] {
            assert_eq!(attribute(&format!("0::{path}\n")), container(), "{path}");
        }
    }

    #[test]
    fn hybrid_mode_uses_the_v1_memory_line_beside_a_unified_root() {
        let uid_ = uid_();
        let cgroupfs = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(attribute(&cgroupfs), container());
        // cgroupfs driver: runc leaves the unified hierarchy where the
        // runtime was; the memory line still names the container.
        let runtime_unified = format!(
            "11:memory:/kubepods/pod{UID}/{ID}\n1:name=systemd:/system.slice/containerd.service\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(attribute(&runtime_unified), container());
        let systemd = format!(
            "10:cpu,cpuacct:/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n4:memory:/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n0::/\n"
        );
        assert_eq!(attribute(&systemd), container());
        // A host process in hybrid mode stays a host process.
        assert_eq!(
            attribute("11:memory:/system.slice/sshd.service\n0::/system.slice/sshd.service\n"),
            Attribution::Host
        );
    }

    #[test]
    fn every_runtime_driver_and_qos_layout_is_attributed() {
        let uid_ = uid_();
        for qos in ["", "burstable", "besteffort"] {
            let (slices, dirs) = if qos.is_empty() {
                (
                    format!("/kubepods.slice/kubepods-pod{uid_}.slice"),
                    format!("/kubepods/pod{UID}"),
                )
            } else {
                (
                    format!("/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid_}.slice"),
                    format!("/kubepods/{qos}/pod{UID}"),
                )
            };
            for runtime in ["cri-containerd", "crio", "docker"] {
                let path = format!("{slices}/{runtime}-{ID}.scope");
                assert_eq!(attribute(&format!("0::{path}\n")), container(), "{path}");
                assert_eq!(attribute(&format!("7:memory:{path}\n0::/\n")), container(), "{path}");
            }
            for leaf in [ID.to_string(), format!("crio-{ID}")] {
                let path = format!("{dirs}/{leaf}");
                assert_eq!(attribute(&format!("0::{path}\n")), container(), "{path}");
                assert_eq!(attribute(&format!("3:memory:{path}\n")), container(), "{path}");
            }
        }
    }

    #[test]
    fn private_namespace_paths_may_start_at_any_kubelet_level() {
        let uid_ = uid_();
        for path in [
            format!("/../../../kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            format!("/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"),
            format!("/../../kubepods-pod{uid_}.slice/docker-{ID}.scope"),
            format!("/../../../../kubepods/burstable/pod{UID}/{ID}"),
            format!("/../../../burstable/pod{UID}/{ID}"),
            format!("/../../pod{UID}/crio-{ID}"),
        ] {
            assert_eq!(attribute(&format!("0::{path}\n")), container(), "{path}");
        }
        // Within the reader's own pod there is no pod segment to read.
        assert!(!matches!(
            attribute(&format!("0::/../cri-containerd-{ID}.scope\n")),
            Attribution::Container { .. }
        ));
    }

    #[test]
    fn systemd_cgroup_root_prefix_must_be_a_slice_chain_from_the_root() {
        let uid_ = uid_();
        // --cgroup-root=/node with the systemd driver.
        let rooted = format!(
            "0::/node.slice/node-kubepods.slice/node-kubepods-burstable.slice/node-kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(attribute(&rooted), container());
        for path in [
            // The chain does not start at the root.
            format!("/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            format!("/other.slice/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            // The QoS slice and the pod slice disagree.
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-guaranteed.slice/kubepods-guaranteed-pod{uid_}.slice/crio-{ID}.scope"),
            // Two kubepods levels.
            format!("/kubepods.slice/kubepods-kubepods.slice/kubepods-kubepods-pod{uid_}.slice/crio-{ID}.scope"),
            // A slice below the pod slice.
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/kubepods-pod{uid_}-x.slice/crio-{ID}.scope"),
        ] {
            assert!(unattributed(&format!("0::{path}\n")), "{path}");
        }
    }

    #[test]
    fn layouts_mixing_driver_styles_are_unattributed() {
        let uid_ = uid_();
        for path in [
            format!("/kubepods/burstable/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/pod{UID}/cri-containerd-{ID}.scope"),
            format!("/kubepods/pod{UID}/docker-{ID}"),
            format!("/kubepods/pod{uid_}/{ID}"),
            format!("/kubepods.slice/burstable/pod{UID}/{ID}"),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/{ID}"),
            format!("/kubepods.slice/kubepods-pod{UID}.slice/crio-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{uid_}.slice/crio-{ID}"),
            format!("/kubepods/guaranteed/pod{UID}/{ID}"),
            format!("/kubepods/burstable/besteffort/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{}", ID.to_uppercase()),
            format!("/kubepods/pod{UID}/crio-conmon-{ID}"),
            format!("/kubepods/pod{UID}/{ID}/"),
            format!("/kubepods/pod{UID}/{ID}/../x"),
            format!("/kubepods//pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/../pod{UID}/{ID}"),
        ] {
            assert!(unattributed(&format!("0::{path}\n")), "{path}");
        }
    }

    #[test]
    fn files_the_kernel_cannot_write_are_unattributed() {
        let good = format!("/kubepods/pod{UID}/{ID}");
        let other = format!("/kubepods/pod{UID_B}/{ID_B}");
        for file in [
            // Two lines for one hierarchy or controller: which is real is unknown.
            format!("11:memory:{good}\n11:memory:{other}\n0::/\n"),
            format!("11:memory:{good}\n9:memory,pids:{other}\n0::/\n"),
            format!("0::{good}\n0::{other}\n"),
            // The unified line is always the last one.
            format!("0::{good}\n11:memory:{other}\n"),
            // Not `<id>:<controllers>:/<path>`.
            format!("0::{good}\ngarbage\n"),
            format!("x::{good}\n"),
            format!("0:memory:{good}\n"),
            format!("3::{good}\n"),
            format!("0::{good}\n\n"),
            format!("11:memory:kubepods/pod{UID}/{ID}\n"),
            format!("{}0::{good}\n", "1:name=a:/\n".repeat(100)),
        ] {
            assert!(unattributed(&file), "{file:?}");
        }
    }

    #[test]
    fn static_pod_uids_are_attributed() {
        let static_uid = "5a8f0c2e9b1d4e6f8a0b2c4d6e8f0a1b";
        let want = Attribution::Container {
            pod_uid: static_uid.into(),
            container_id: ID.into(),
        };
        let systemd = format!("0::/kubepods.slice/kubepods-pod{static_uid}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(attribute(&systemd), want);
        assert_eq!(
            attribute(&format!("0::/kubepods/burstable/pod{static_uid}/{ID}\n")),
            want
        );
    }
}
