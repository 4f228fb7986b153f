//! Property tests of `/proc/<pid>/cgroup` attribution over valid layouts,
//! mutated layouts and arbitrary text: no panic, a container only for an exact
//! kubelet/runtime layout (checked against an oracle that builds the layouts
//! from the ids instead of parsing), and output bounded by the input.
//! A fixed case budget keeps them quick in CI.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use railyard_watchdog::attribution::{Attribution, attribute};

const QOS: [&str; 3] = ["", "burstable", "besteffort"];
const SYSTEMD_RUNTIMES: [&str; 3] = ["cri-containerd", "crio", "docker"];

fn is_hex_char(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

fn is_hex(s: &str) -> bool {
    s.chars().all(is_hex_char)
}

/// The shapes a returned pod UID and container id may have.
fn well_shaped(uid: &str, id: &str) -> bool {
    let uuid = uid.len() == 36
        && uid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => is_hex_char(c),
        });
    (uuid || (uid.len() == 32 && is_hex(uid))) && id.len() == 64 && is_hex(id)
}

/// Every exact layout for (uid, id) as segment lists, with the index of the
/// pod segment. The systemd `--cgroup-root` components are taken from any
/// segment of `segs` that ends like a pod slice of this uid.
fn layouts(uid: &str, id: &str, segs: &[&str]) -> Vec<(Vec<String>, usize)> {
    let uid_ = uid.replace('-', "_");
    let mut out = Vec::new();
    for qos in QOS {
        let q: Vec<&str> = if qos.is_empty() { vec![] } else { vec![qos] };
        // cgroupfs
        for leaf in [id.to_string(), format!("crio-{id}")] {
            let mut l = vec!["kubepods".to_string()];
            l.extend(q.iter().map(|s| s.to_string()));
            l.push(format!("pod{uid}"));
            let pod = l.len() - 1;
            l.push(leaf);
            out.push((l, pod));
        }
        // systemd, default root and any root a segment spells out
        let pod_tail = format!(
            "kubepods{}-pod{uid_}.slice",
            q.iter().map(|s| format!("-{s}")).collect::<String>()
        );
        let mut roots: Vec<Vec<&str>> = vec![vec![]];
        for s in segs {
            if let Some(r) = s.strip_suffix(pod_tail.as_str())
                && let Some(r) = r.strip_suffix('-')
            {
                let comps: Vec<&str> = r.split('-').collect();
                if comps.iter().all(|c| !c.is_empty() && *c != "kubepods") {
                    roots.push(comps);
                }
            }
        }
        for root in roots {
            let mut comps: Vec<String> = root.iter().map(|s| s.to_string()).collect();
            comps.push("kubepods".into());
            comps.extend(q.iter().map(|s| s.to_string()));
            comps.push(format!("pod{uid_}"));
            let slices: Vec<String> = (1..=comps.len())
                .map(|k| format!("{}.slice", comps[..k].join("-")))
                .collect();
            for rt in SYSTEMD_RUNTIMES {
                let mut l = slices.clone();
                l.push(format!("{rt}-{id}.scope"));
                out.push((l, slices.len() - 1));
            }
        }
    }
    out
}

/// Whether `path` is `/`, then `..` segments, then an exact layout for (uid,
/// id) (from a private namespace: a suffix of one that keeps the pod
/// segment), then cgroups below the container.
fn oracle(path: &str, uid: &str, id: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let all: Vec<&str> = rest.split('/').collect();
    let n = all.iter().take_while(|s| **s == "..").count();
    let segs = &all[n..];
    layouts(uid, id, segs).iter().any(|(layout, pod)| {
        let starts = if n == 0 { 0..=0 } else { 0..=*pod };
        starts.into_iter().any(|start| {
            let want = &layout[start..];
            segs.len() >= want.len()
                && segs.iter().zip(want).all(|(a, b)| a == b)
                && segs[want.len()..]
                    .iter()
                    .all(|s| !s.is_empty() && *s != "." && *s != "..")
        })
    })
}

/// The result must agree with the oracle and be bounded by the input.
fn check(file: &str, candidate_paths: &[&str]) -> Result<Attribution, TestCaseError> {
    let got = attribute(file);
    match &got {
        Attribution::Container { pod_uid, container_id } => {
            prop_assert!(well_shaped(pod_uid, container_id), "{got:?}");
            prop_assert!(
                candidate_paths.iter().any(|p| oracle(p, pod_uid, container_id)),
                "not an exact layout: {file:?} -> {got:?}"
            );
        }
        Attribution::Unattributed { path } => prop_assert!(file.contains(path.as_str())),
        Attribution::Host => {}
    }
    Ok(got)
}

#[derive(Debug, Clone)]
struct Layout {
    systemd: bool,
    qos: usize,
    runtime: usize,
    root: Vec<String>,
    dotdots: usize,
    start: usize,
    nested: Vec<String>,
    uid: String,
    id: String,
}

impl Layout {
    fn segments(&self) -> (Vec<String>, usize) {
        let q: Vec<String> = if QOS[self.qos].is_empty() {
            vec![]
        } else {
            vec![QOS[self.qos].into()]
        };
        if self.systemd {
            let mut comps = self.root.clone();
            comps.push("kubepods".into());
            comps.extend(q);
            comps.push(format!("pod{}", self.uid.replace('-', "_")));
            let mut segs: Vec<String> = (1..=comps.len())
                .map(|k| format!("{}.slice", comps[..k].join("-")))
                .collect();
            let pod = segs.len() - 1;
            segs.push(format!("{}-{}.scope", SYSTEMD_RUNTIMES[self.runtime % 3], self.id));
            (segs, pod)
        } else {
            let mut segs = vec!["kubepods".to_string()];
            segs.extend(q);
            segs.push(format!("pod{}", self.uid));
            let pod = segs.len() - 1;
            segs.push(if self.runtime.is_multiple_of(2) {
                self.id.clone()
            } else {
                format!("crio-{}", self.id)
            });
            (segs, pod)
        }
    }

    fn path(&self) -> String {
        let (segs, pod) = self.segments();
        let start = if self.dotdots == 0 { 0 } else { self.start % (pod + 1) };
        let mut p = String::new();
        for _ in 0..self.dotdots {
            p.push_str("/..");
        }
        for s in segs[start..].iter().chain(&self.nested) {
            p.push('/');
            p.push_str(s);
        }
        p
    }

    fn expected(&self) -> Attribution {
        Attribution::Container {
            pod_uid: self.uid.clone(),
            container_id: self.id.clone(),
        }
    }
}

fn uid() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[0-9a-f]{32}",
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        0..3usize,
        0..6usize,
        // A systemd --cgroup-root only where the chain starts at `/`.
        prop::collection::vec("[a-z0-9.]{1,6}".prop_filter("one kubepods", |c| c != "kubepods"), 0..3),
        prop_oneof![3 => Just(0usize), 2 => 1..5usize],
        0..8usize,
        // Below the container anything goes but `/`, `.`/`..` and line breaks.
        prop::collection::vec("[^/\n]{1,12}".prop_filter("real name", |s| s != "." && s != ".."), 0..4),
        uid(),
        "[0-9a-f]{64}",
    )
        .prop_map(
            |(systemd, qos, runtime, root, dotdots, start, nested, uid, id)| Layout {
                systemd,
                qos,
                runtime,
                root: if systemd { root } else { vec![] },
                dotdots,
                start,
                nested,
                uid,
                id,
            },
        )
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(prop::sample::Index, char),
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
    DropSegment(prop::sample::Index),
    DuplicateSegment(prop::sample::Index),
    SwapSegments(prop::sample::Index),
    InsertSegment(prop::sample::Index, String),
}

/// Segments an attacker would plant: other pods' and containers' names.
fn tricky_segment() -> impl Strategy<Value = String> {
    const UID_B: &str = "9e8d7c6b-5a49-4838-a726-150f1e2d3c4b";
    const ID_B: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    let uid_b = UID_B.replace('-', "_");
    prop::sample::select(vec![
        "kubepods".to_string(),
        "kubepods.slice".into(),
        "kubepods-burstable.slice".into(),
        "burstable".into(),
        "besteffort".into(),
        format!("pod{UID_B}"),
        format!("pod{uid_b}"),
        ID_B.into(),
        format!("crio-{ID_B}"),
        format!("crio-conmon-{ID_B}"),
        format!("kubepods-pod{uid_b}.slice"),
        format!("kubepods-besteffort-pod{uid_b}.slice"),
        format!("cri-containerd-{ID_B}.scope"),
        format!("docker-{ID_B}.scope"),
        "..".into(),
        ".".into(),
        String::new(),
        "x.slice".into(),
        "user.slice".into(),
    ])
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let any_index = any::<prop::sample::Index>;
    prop_oneof![
        (
            any_index(),
            prop::sample::select("/-_.:0123456789abcdefkpodsublcrint ".chars().collect::<Vec<_>>())
        )
            .prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any_index(), "[-/_.a-z0-9]{1,8}").prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any_index(), 1..12usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any_index().prop_map(Mutation::DropSegment),
        any_index().prop_map(Mutation::DuplicateSegment),
        any_index().prop_map(Mutation::SwapSegments),
        (any_index(), tricky_segment()).prop_map(|(i, s)| Mutation::InsertSegment(i, s)),
    ]
}

fn apply(path: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = path.chars().collect();
    // Segments after the leading `/` (the string "" splits into one).
    let segs = || -> Vec<String> {
        path.strip_prefix('/')
            .unwrap_or(path)
            .split('/')
            .map(String::from)
            .collect()
    };
    let join = |s: Vec<String>| format!("/{}", s.join("/"));
    match m {
        Mutation::Replace(i, c) if !chars.is_empty() => {
            let at = i.index(chars.len());
            chars[at] = *c;
            chars.into_iter().collect()
        }
        Mutation::Insert(i, s) => {
            let at = i.index(chars.len() + 1);
            chars.splice(at..at, s.chars());
            chars.into_iter().collect()
        }
        Mutation::Delete(i, n) if !chars.is_empty() => {
            let at = i.index(chars.len());
            let end = (at + n).min(chars.len());
            chars.drain(at..end);
            chars.into_iter().collect()
        }
        Mutation::DropSegment(i) => {
            let mut s = segs();
            s.remove(i.index(s.len()));
            join(s)
        }
        Mutation::DuplicateSegment(i) => {
            let mut s = segs();
            let at = i.index(s.len());
            s.insert(at, s[at].clone());
            join(s)
        }
        Mutation::SwapSegments(i) => {
            let mut s = segs();
            if s.len() > 1 {
                let at = i.index(s.len() - 1);
                s.swap(at, at + 1);
            }
            join(s)
        }
        Mutation::InsertSegment(i, seg) => {
            let mut s = segs();
            s.insert(i.index(s.len() + 1), seg.clone());
            join(s)
        }
        _ => path.to_string(),
    }
}

/// v1 hierarchies a host may mount beside memory (named ones included).
const OTHER_V1: [&str; 6] = [
    "pids",
    "cpu,cpuacct",
    "blkio",
    "devices",
    "name=systemd",
    "net_cls,net_prio",
];

fn decoy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("/system.slice/containerd.service".to_string()),
        layout().prop_map(|l| l.path()),
        "/[-./_a-z0-9]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every layout the kubelet and the runtimes create, from the host's or a
    /// private namespace, with cgroups below the container, in a v2, hybrid
    /// or v1 file: the exact container.
    #[test]
    fn exact_layouts_are_attributed_in_every_file_shape(
        l in layout(),
        shape in 0..4usize,
        decoys in prop::collection::vec(decoy(), OTHER_V1.len() + 1),
        order in Just((1..=OTHER_V1.len() as u32 + 1).collect::<Vec<u32>>()).prop_shuffle(),
    ) {
        let path = l.path();
        prop_assert!(oracle(&path, &l.uid, &l.id), "generator and oracle disagree: {path}");
        let file = match shape {
            // Unified mode.
            0 => format!("0::{path}\n"),
            // Unified, with named or unused v1 hierarchies beside it.
            1 => format!("{}:name=foo:{}\n{}:net_cls:{}\n0::{path}\n", order[0], decoys[0], order[1], decoys[1]),
            // Hybrid or v1: the memory line, whatever the others say.
            _ => {
                let mut lines: Vec<String> = OTHER_V1
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{}:{c}:{}", order[i], decoys[i]))
                    .collect();
                lines.push(format!("{}:memory:{path}", order[OTHER_V1.len()]));
                let turn = order[0] as usize % lines.len();
                lines.rotate_left(turn);
                let tail = if shape == 2 { format!("0::{}\n", decoys[OTHER_V1.len()]) } else { String::new() };
                format!("{}\n{tail}", lines.join("\n"))
            }
        };
        prop_assert_eq!(check(&file, &[&path])?, l.expected(), "{}", file);
    }

    /// A mutated layout is a container only if it is still an exact layout
    /// (for whatever ids it now names), and an unmutated one always is.
    #[test]
    fn mutated_layouts_are_attributed_only_when_exact(
        l in layout(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut path = l.path();
        for m in &mutations {
            path = apply(&path, m);
        }
        let got = check(&format!("0::{path}\n"), &[&path])?;
        if oracle(&path, &l.uid, &l.id) {
            prop_assert_eq!(got, l.expected(), "{}", path);
        }
    }

    /// Arbitrary text and line-shaped noise: no panic, a container only from
    /// an exact layout on some line, an unattributed path copied from the input.
    #[test]
    fn arbitrary_cgroup_files_never_panic_or_spoof(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop_oneof![
                    "(0|[1-9][0-9]{0,2}):[a-z=,_]{0,14}:/[-./_a-z0-9:]{0,60}",
                    layout().prop_map(|l| format!("0::{}", l.path())),
                    (1..20u32, layout(), mutation()).prop_map(|(n, l, m)| format!("{n}:memory:{}", apply(&l.path(), &m))),
                    "[^\n]{0,30}",
                ],
                0..10,
            ).prop_map(|lines| lines.join("\n")),
        ],
    ) {
        let paths: Vec<&str> = text.split('\n').filter_map(|l| l.splitn(3, ':').nth(2)).collect();
        check(&text, &paths)?;
    }
}

/// Huge inputs finish (every step is linear in the text) and keep their
/// meaning: a quadratic step would not finish here in any reasonable time.
#[test]
fn huge_inputs_are_handled_in_linear_time() {
    let id = "3f1e2d4c5b6a79881726354453627180a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4";
    let uid = "1f6b8c2a-3d4e-4f50-9a1b-2c3d4e5f6a7b";
    let want = Attribution::Container {
        pod_uid: uid.into(),
        container_id: id.into(),
    };
    // A million cgroups below a container.
    let deep = format!("0::/kubepods/pod{uid}/{id}{}\n", "/a".repeat(1_000_000));
    assert_eq!(attribute(&deep), want);
    // A million `..` and then a layout.
    let up = format!("0::{}/kubepods/pod{uid}/{id}\n", "/..".repeat(1_000_000));
    assert_eq!(attribute(&up), want);
    // A 2,000-slice chain from `/` (4 MB of names) that never reaches a pod.
    let mut chain = String::from("0::");
    let mut name = String::from("a");
    for _ in 0..2_000 {
        chain.push_str(&format!("/{name}.slice"));
        name.push_str("-a");
    }
    chain.push_str(&format!("/cri-containerd-{id}.scope\n"));
    assert_eq!(attribute(&chain), Attribution::Host);
    // 100,000 lines, and one line of 500,000 controllers.
    let lines = "1:name=a:/\n".repeat(100_000);
    assert!(matches!(attribute(&lines), Attribution::Unattributed { .. }));
    let controllers: Vec<String> = (0..500_000).map(|i| format!("c{i}")).collect();
    let wide = format!("7:{}:/kubepods/pod{uid}/{id}\n0::/\n", controllers.join(","));
    assert_eq!(attribute(&wide), Attribution::Host);
    let wide_memory = format!("7:{},memory:/kubepods/pod{uid}/{id}\n0::/\n", controllers.join(","));
    assert_eq!(attribute(&wide_memory), want);
}
