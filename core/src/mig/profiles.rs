//! The MIG profile table (PROTOCOLS §8). Geometry (slices, ids, placements,
//! max counts) is shared by all MIG models; names, memory and SM counts are
//! per model family. Facts that were not seen on real hardware are listed in
//! [`UNVERIFIED`] so they can be corrected in one place.

use super::Placement;

/// Models that share one MIG profile table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum MigFamily {
    A100_40gb,
    A100_80gb,
    H100_80gb,
    /// H100 PCIe: same profile names as H100 SXM, fewer SMs (114 in all).
    H100Pcie80gb,
    H200_141gb,
}

/// The geometry kind of a GPU-instance profile, independent of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProfileKind {
    /// 1 compute slice, 1 memory slice.
    G1,
    /// 1g with all media engines (`+me`); at most one per GPU.
    G1Me,
    /// 1 compute slice, 2 memory slices.
    G1DoubleMem,
    G2,
    G3,
    G4,
    G7,
}

pub const ALL_KINDS: [ProfileKind; 7] = [
    ProfileKind::G1,
    ProfileKind::G1Me,
    ProfileKind::G1DoubleMem,
    ProfileKind::G2,
    ProfileKind::G3,
    ProfileKind::G4,
    ProfileKind::G7,
];

/// Model-independent geometry of a profile kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSpec {
    pub kind: ProfileKind,
    /// `GpuInstanceProfileInfo.id`, as used with `nvidia-smi mig -cgi`.
    pub profile_id: u32,
    /// The NVML query index (`NVML_GPU_INSTANCE_PROFILE_*`).
    pub nvml_index: u32,
    pub compute_slices: u8,
    pub memory_slices: u8,
    pub max_count: u8,
    pub placements: &'static [Placement],
}

const fn p(start: u8, size: u8) -> Placement {
    Placement { start, size }
}

const SPECS: [ProfileSpec; 7] = [
    ProfileSpec {
        kind: ProfileKind::G1,
        profile_id: 19,
        nvml_index: 0,
        compute_slices: 1,
        memory_slices: 1,
        max_count: 7,
        placements: &[p(0, 1), p(1, 1), p(2, 1), p(3, 1), p(4, 1), p(5, 1), p(6, 1)],
    },
    ProfileSpec {
        kind: ProfileKind::G1Me,
        profile_id: 20,
        nvml_index: 7,
        compute_slices: 1,
        memory_slices: 1,
        max_count: 1,
        placements: &[p(0, 1), p(1, 1), p(2, 1), p(3, 1), p(4, 1), p(5, 1), p(6, 1)],
    },
    ProfileSpec {
        kind: ProfileKind::G1DoubleMem,
        profile_id: 15,
        nvml_index: 9,
        compute_slices: 1,
        memory_slices: 2,
        max_count: 4,
        placements: &[p(0, 2), p(2, 2), p(4, 2), p(6, 2)],
    },
    ProfileSpec {
        kind: ProfileKind::G2,
        profile_id: 14,
        nvml_index: 1,
        compute_slices: 2,
        memory_slices: 2,
        max_count: 3,
        placements: &[p(0, 2), p(2, 2), p(4, 2)],
    },
    ProfileSpec {
        kind: ProfileKind::G3,
        profile_id: 9,
        nvml_index: 2,
        compute_slices: 3,
        memory_slices: 4,
        max_count: 2,
        placements: &[p(0, 4), p(4, 4)],
    },
    ProfileSpec {
        kind: ProfileKind::G4,
        profile_id: 5,
        nvml_index: 3,
        compute_slices: 4,
        memory_slices: 4,
        max_count: 1,
        placements: &[p(0, 4)],
    },
    ProfileSpec {
        kind: ProfileKind::G7,
        profile_id: 0,
        nvml_index: 4,
        compute_slices: 7,
        memory_slices: 8,
        max_count: 1,
        placements: &[p(0, 8)],
    },
];

impl ProfileKind {
    pub fn spec(self) -> &'static ProfileSpec {
        &SPECS[self as usize]
    }

    pub fn from_profile_id(id: u32) -> Option<ProfileKind> {
        SPECS.iter().find(|s| s.profile_id == id).map(|s| s.kind)
    }
}

/// Media and copy engines of an instance (GFD's `.engines.*` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Engines {
    pub copy: u8,
    pub decoder: u8,
    pub encoder: u8,
    pub jpeg: u8,
    pub ofa: u8,
}

/// One profile as a given model family offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigProfile {
    pub family: MigFamily,
    pub kind: ProfileKind,
    /// e.g. `2g.10gb`, `1g.10gb+me`.
    pub name: &'static str,
    pub memory_mib: u64,
    pub sms: u32,
    pub engines: Engines,
}

impl MigProfile {
    pub fn spec(&self) -> &'static ProfileSpec {
        self.kind.spec()
    }
}

// (kind, name, memory MiB, SMs, engines: copy, decoder, encoder, jpeg, ofa)
type Row = (ProfileKind, &'static str, u64, u32, [u8; 5]);

// Memory and SMs: `nvidia-smi mig -lgip` dumps (PROTOCOLS §8), GiB × 1024.
// Engines: NVIDIA MIG user guide, "Supported MIG Profiles".
const A100_40GB: [Row; 7] = [
    (ProfileKind::G1, "1g.5gb", 4864, 14, [1, 0, 0, 0, 0]),
    (ProfileKind::G1Me, "1g.5gb+me", 4864, 14, [1, 1, 0, 1, 1]),
    (ProfileKind::G1DoubleMem, "1g.10gb", 9856, 14, [1, 1, 0, 0, 0]),
    (ProfileKind::G2, "2g.10gb", 9856, 28, [2, 1, 0, 0, 0]),
    (ProfileKind::G3, "3g.20gb", 19968, 42, [3, 2, 0, 0, 0]),
    (ProfileKind::G4, "4g.20gb", 19968, 56, [4, 2, 0, 0, 0]),
    (ProfileKind::G7, "7g.40gb", 40192, 98, [7, 5, 0, 1, 1]),
];
const A100_80GB: [Row; 7] = [
    (ProfileKind::G1, "1g.10gb", 9728, 14, [1, 0, 0, 0, 0]),
    (ProfileKind::G1Me, "1g.10gb+me", 9728, 14, [1, 1, 0, 1, 1]),
    (ProfileKind::G1DoubleMem, "1g.20gb", 19968, 14, [1, 1, 0, 0, 0]),
    (ProfileKind::G2, "2g.20gb", 19968, 28, [2, 1, 0, 0, 0]),
    (ProfileKind::G3, "3g.40gb", 40192, 42, [3, 2, 0, 0, 0]),
    (ProfileKind::G4, "4g.40gb", 40192, 56, [4, 2, 0, 0, 0]),
    (ProfileKind::G7, "7g.80gb", 80640, 98, [7, 5, 0, 1, 1]),
];
const H100_80GB: [Row; 7] = [
    (ProfileKind::G1, "1g.10gb", 9984, 16, [1, 1, 0, 1, 0]),
    (ProfileKind::G1Me, "1g.10gb+me", 9984, 16, [1, 1, 0, 1, 1]),
    (ProfileKind::G1DoubleMem, "1g.20gb", 20096, 26, [1, 1, 0, 1, 0]),
    (ProfileKind::G2, "2g.20gb", 20096, 32, [2, 2, 0, 2, 0]),
    (ProfileKind::G3, "3g.40gb", 40448, 60, [3, 3, 0, 3, 0]),
    (ProfileKind::G4, "4g.40gb", 40448, 64, [4, 4, 0, 4, 0]),
    (ProfileKind::G7, "7g.80gb", 81152, 132, [7, 7, 0, 7, 1]),
];
const H100_PCIE_80GB: [Row; 7] = [
    (ProfileKind::G1, "1g.10gb", 9984, 14, [1, 1, 0, 1, 0]),
    (ProfileKind::G1Me, "1g.10gb+me", 9984, 14, [1, 1, 0, 1, 1]),
    (ProfileKind::G1DoubleMem, "1g.20gb", 20096, 14, [1, 1, 0, 1, 0]),
    (ProfileKind::G2, "2g.20gb", 20096, 28, [2, 2, 0, 2, 0]),
    (ProfileKind::G3, "3g.40gb", 40448, 42, [3, 3, 0, 3, 0]),
    (ProfileKind::G4, "4g.40gb", 40448, 56, [4, 4, 0, 4, 0]),
    (ProfileKind::G7, "7g.80gb", 81152, 114, [7, 7, 0, 7, 1]),
];
const H200_141GB: [Row; 7] = [
    (ProfileKind::G1, "1g.18gb", 16384, 16, [1, 1, 0, 1, 0]),
    (ProfileKind::G1Me, "1g.18gb+me", 16384, 16, [1, 1, 0, 1, 1]),
    (ProfileKind::G1DoubleMem, "1g.35gb", 33280, 26, [1, 1, 0, 1, 0]),
    (ProfileKind::G2, "2g.35gb", 33280, 32, [2, 2, 0, 2, 0]),
    (ProfileKind::G3, "3g.71gb", 71680, 60, [3, 3, 0, 3, 0]),
    (ProfileKind::G4, "4g.71gb", 71680, 64, [4, 4, 0, 4, 0]),
    (ProfileKind::G7, "7g.141gb", 143360, 132, [7, 7, 0, 7, 1]),
];

/// Facts in the tables above that were inferred, not read off real hardware.
/// Correct the table row and drop the entry here once verified.
pub const UNVERIFIED: &[(MigFamily, &str, &str)] = &[
    (MigFamily::H100_80gb, "1g.20gb", "26 SMs seen in a single dump"),
    (
        MigFamily::H200_141gb,
        "1g.35gb",
        "memory and SMs inferred from H100 geometry",
    ),
    (
        MigFamily::H200_141gb,
        "3g.71gb",
        "memory inferred as half of 7g; 60 SMs from one benchmark note",
    ),
    (
        MigFamily::H200_141gb,
        "4g.71gb",
        "memory and SMs inferred from H100 geometry",
    ),
    (
        MigFamily::H200_141gb,
        "*",
        "profile ids and placements inferred identical to H100",
    ),
    (
        MigFamily::H100Pcie80gb,
        "*",
        "SM counts scaled to 114 SMs; no dump seen",
    ),
    (
        MigFamily::A100_40gb,
        "*",
        "engine counts from the MIG user guide, not a dump",
    ),
];

impl MigFamily {
    fn rows(self) -> &'static [Row; 7] {
        match self {
            MigFamily::A100_40gb => &A100_40GB,
            MigFamily::A100_80gb => &A100_80GB,
            MigFamily::H100_80gb => &H100_80GB,
            MigFamily::H100Pcie80gb => &H100_PCIE_80GB,
            MigFamily::H200_141gb => &H200_141GB,
        }
    }

    fn to_profile(self, row: &Row) -> MigProfile {
        let (kind, name, memory_mib, sms, [copy, decoder, encoder, jpeg, ofa]) = *row;
        MigProfile {
            family: self,
            kind,
            name,
            memory_mib,
            sms,
            engines: Engines {
                copy,
                decoder,
                encoder,
                jpeg,
                ofa,
            },
        }
    }

    /// Every profile of this family, smallest first.
    pub fn profiles(self) -> impl Iterator<Item = MigProfile> {
        self.rows().iter().map(move |r| self.to_profile(r))
    }

    pub fn profile(self, kind: ProfileKind) -> MigProfile {
        self.to_profile(&self.rows()[kind as usize])
    }

    /// Looks up a profile by name (`2g.10gb`, `1g.5gb+me`; the resource-name
    /// form `1g.5gb.me` and a `mig-` prefix are accepted too).
    pub fn profile_by_name(self, name: &str) -> Option<MigProfile> {
        let name = name.trim();
        let name = name.strip_prefix("mig-").unwrap_or(name);
        self.profiles()
            .find(|p| p.name.eq_ignore_ascii_case(name) || p.name.replace('+', ".").eq_ignore_ascii_case(name))
    }

    pub fn profile_names(self) -> Vec<&'static str> {
        self.rows().iter().map(|r| r.1).collect()
    }

    pub fn all() -> [MigFamily; 5] {
        [
            MigFamily::A100_40gb,
            MigFamily::A100_80gb,
            MigFamily::H100_80gb,
            MigFamily::H100Pcie80gb,
            MigFamily::H200_141gb,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_kind_order() {
        for f in MigFamily::all() {
            for (i, r) in f.rows().iter().enumerate() {
                assert_eq!(r.0 as usize, i, "{f:?} {}", r.1);
                assert_eq!(SPECS[i].kind as usize, i);
            }
        }
    }

    #[test]
    fn protocol_table_ids_and_indices() {
        let ids: Vec<_> = ALL_KINDS
            .iter()
            .map(|k| (k.spec().profile_id, k.spec().nvml_index))
            .collect();
        assert_eq!(ids, vec![(19, 0), (20, 7), (15, 9), (14, 1), (9, 2), (5, 3), (0, 4)]);
        assert_eq!(ProfileKind::from_profile_id(14), Some(ProfileKind::G2));
        assert_eq!(ProfileKind::from_profile_id(99), None);
    }

    #[test]
    fn placements_cover_exactly_their_memory_slices() {
        for k in ALL_KINDS {
            let s = k.spec();
            assert!(s.placements.len() >= s.max_count as usize, "{k:?}");
            for p in s.placements {
                assert_eq!(p.size, s.memory_slices);
                assert!(p.end() <= super::super::MEMORY_SLICES);
            }
        }
    }

    #[test]
    fn names_by_family() {
        assert_eq!(
            MigFamily::A100_40gb.profile_names(),
            [
                "1g.5gb",
                "1g.5gb+me",
                "1g.10gb",
                "2g.10gb",
                "3g.20gb",
                "4g.20gb",
                "7g.40gb"
            ]
        );
        assert_eq!(MigFamily::H200_141gb.profile(ProfileKind::G7).name, "7g.141gb");
        assert_eq!(MigFamily::H100_80gb.profile(ProfileKind::G7).sms, 132);
        assert_eq!(
            MigFamily::A100_40gb.profile_by_name("mig-1g.5gb.me").map(|p| p.kind),
            Some(ProfileKind::G1Me)
        );
        // 1g.10gb is the double-memory 1g on A100-40GB but the plain 1g on H100.
        assert_eq!(
            MigFamily::A100_40gb.profile_by_name("1g.10gb").map(|p| p.kind),
            Some(ProfileKind::G1DoubleMem)
        );
        assert_eq!(
            MigFamily::H100_80gb.profile_by_name("1g.10gb").map(|p| p.kind),
            Some(ProfileKind::G1)
        );
    }

    #[test]
    fn memory_grows_with_memory_slices() {
        for f in MigFamily::all() {
            for a in f.profiles() {
                for b in f.profiles() {
                    if a.spec().memory_slices < b.spec().memory_slices {
                        assert!(a.memory_mib < b.memory_mib, "{f:?} {} vs {}", a.name, b.name);
                    }
                }
            }
        }
    }
}
