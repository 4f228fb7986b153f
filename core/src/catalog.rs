//! GPU model catalog: what each supported model is, how NVML names it, and
//! whether it has MIG.
//!
//! Memory is the total NVML reports on current drivers (MiB); SM counts are
//! the full product's. Models NVML names that are not here are still usable:
//! [`identify`] returns [`Identified::Unknown`] and callers treat the device
//! as one whole, non-MIG GPU.

use std::fmt;

use crate::mig::MigFamily;

/// Key of a catalog entry. Stable strings, used in configs and machine profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelId {
    A100Sxm4_40gb,
    A100Pcie40gb,
    A100Sxm4_80gb,
    A100Pcie80gb,
    H100Sxm5_80gb,
    H100Pcie80gb,
    H200Sxm141gb,
    T4,
    V100_16gb,
    V100_32gb,
    P100_16gb,
    A10,
    L40s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Pascal,
    Volta,
    Turing,
    Ampere,
    Ada,
    Hopper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormFactor {
    Sxm,
    Pcie,
}

#[derive(Debug)]
pub struct GpuModel {
    pub id: ModelId,
    /// Canonical short name, e.g. `A100-SXM4-40GB`.
    pub name: &'static str,
    /// Product names as `nvmlDeviceGetName` returns them (current and older drivers).
    pub nvml_names: &'static [&'static str],
    /// PCI device ids (the upper 16 bits of NVML's `pciDeviceId`; vendor 0x10DE).
    pub pci_device_ids: &'static [u16],
    pub memory_mib: u64,
    pub sms: u32,
    pub architecture: Architecture,
    pub form_factor: FormFactor,
    /// NVLink links per GPU (0 = none); bandwidth per link in GB/s one way.
    pub nvlink_links: u32,
    pub nvlink_gbps_per_link: u32,
    pub mig: Option<MigFamily>,
}

impl GpuModel {
    pub fn is_mig_capable(&self) -> bool {
        self.mig.is_some()
    }

    /// NVLink bandwidth of the GPU, one direction, GB/s.
    pub fn nvlink_gbps(&self) -> u32 {
        self.nvlink_links * self.nvlink_gbps_per_link
    }
}

pub const NVIDIA_PCI_VENDOR: u16 = 0x10DE;

// Sources: NVIDIA product data sheets (memory, SMs, NVLink), the PCI ID
// repository (device ids), `nvidia-smi -L` / NVML name strings seen in public
// logs. NVLink 2/3/4 all run 25 GB/s per link per direction.
pub static MODELS: &[GpuModel] = &[
    GpuModel {
        id: ModelId::A100Sxm4_40gb,
        name: "A100-SXM4-40GB",
        nvml_names: &["NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"],
        pci_device_ids: &[0x20B0],
        memory_mib: 40960,
        sms: 108,
        architecture: Architecture::Ampere,
        form_factor: FormFactor::Sxm,
        nvlink_links: 12,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::A100_40gb),
    },
    GpuModel {
        id: ModelId::A100Pcie40gb,
        name: "A100-PCIE-40GB",
        nvml_names: &["NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB"],
        pci_device_ids: &[0x20F1],
        memory_mib: 40960,
        sms: 108,
        architecture: Architecture::Ampere,
        form_factor: FormFactor::Pcie,
        // Three NVLink bridges join two cards with 12 links.
        nvlink_links: 12,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::A100_40gb),
    },
    GpuModel {
        id: ModelId::A100Sxm4_80gb,
        name: "A100-SXM4-80GB",
        nvml_names: &["NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"],
        pci_device_ids: &[0x20B2],
        memory_mib: 81920,
        sms: 108,
        architecture: Architecture::Ampere,
        form_factor: FormFactor::Sxm,
        nvlink_links: 12,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::A100_80gb),
    },
    GpuModel {
        id: ModelId::A100Pcie80gb,
        name: "A100-PCIE-80GB",
        nvml_names: &["NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"],
        pci_device_ids: &[0x20B5],
        memory_mib: 81920,
        sms: 108,
        architecture: Architecture::Ampere,
        form_factor: FormFactor::Pcie,
        nvlink_links: 12,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::A100_80gb),
    },
    GpuModel {
        id: ModelId::H100Sxm5_80gb,
        name: "H100-SXM5-80GB",
        nvml_names: &["NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB"],
        pci_device_ids: &[0x2330],
        memory_mib: 81559,
        sms: 132,
        architecture: Architecture::Hopper,
        form_factor: FormFactor::Sxm,
        nvlink_links: 18,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::H100_80gb),
    },
    GpuModel {
        id: ModelId::H100Pcie80gb,
        name: "H100-PCIE-80GB",
        nvml_names: &["NVIDIA H100 PCIe", "NVIDIA H100-PCIE-80GB"],
        pci_device_ids: &[0x2331],
        memory_mib: 81559,
        sms: 114,
        architecture: Architecture::Hopper,
        form_factor: FormFactor::Pcie,
        nvlink_links: 12,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::H100Pcie80gb),
    },
    GpuModel {
        id: ModelId::H200Sxm141gb,
        name: "H200-SXM-141GB",
        nvml_names: &["NVIDIA H200", "NVIDIA H200 141GB HBM3e"],
        pci_device_ids: &[0x2335],
        memory_mib: 143771,
        sms: 132,
        architecture: Architecture::Hopper,
        form_factor: FormFactor::Sxm,
        nvlink_links: 18,
        nvlink_gbps_per_link: 25,
        mig: Some(MigFamily::H200_141gb),
    },
    GpuModel {
        id: ModelId::T4,
        name: "T4",
        nvml_names: &["Tesla T4", "NVIDIA T4"],
        pci_device_ids: &[0x1EB8],
        memory_mib: 15360,
        sms: 40,
        architecture: Architecture::Turing,
        form_factor: FormFactor::Pcie,
        nvlink_links: 0,
        nvlink_gbps_per_link: 0,
        mig: None,
    },
    GpuModel {
        id: ModelId::V100_16gb,
        name: "V100-16GB",
        nvml_names: &[
            "Tesla V100-SXM2-16GB",
            "Tesla V100-PCIE-16GB",
            "Tesla V100-SXM2-16GB-LS",
        ],
        pci_device_ids: &[0x1DB1, 0x1DB4],
        memory_mib: 16384,
        sms: 80,
        architecture: Architecture::Volta,
        form_factor: FormFactor::Sxm,
        nvlink_links: 6,
        nvlink_gbps_per_link: 25,
        mig: None,
    },
    GpuModel {
        id: ModelId::V100_32gb,
        name: "V100-32GB",
        nvml_names: &[
            "Tesla V100-SXM2-32GB",
            "Tesla V100-PCIE-32GB",
            "Tesla V100S-PCIE-32GB",
            "Tesla V100-SXM3-32GB",
        ],
        pci_device_ids: &[0x1DB5, 0x1DB6, 0x1DF6, 0x1DB8],
        memory_mib: 32768,
        sms: 80,
        architecture: Architecture::Volta,
        form_factor: FormFactor::Sxm,
        nvlink_links: 6,
        nvlink_gbps_per_link: 25,
        mig: None,
    },
    GpuModel {
        id: ModelId::P100_16gb,
        name: "P100-16GB",
        nvml_names: &["Tesla P100-PCIE-16GB", "Tesla P100-SXM2-16GB"],
        pci_device_ids: &[0x15F8, 0x15F9],
        memory_mib: 16384,
        sms: 56,
        architecture: Architecture::Pascal,
        form_factor: FormFactor::Pcie,
        nvlink_links: 0,
        nvlink_gbps_per_link: 0,
        mig: None,
    },
    GpuModel {
        id: ModelId::A10,
        name: "A10",
        nvml_names: &["NVIDIA A10"],
        pci_device_ids: &[0x2236],
        memory_mib: 24576,
        sms: 72,
        architecture: Architecture::Ampere,
        form_factor: FormFactor::Pcie,
        nvlink_links: 0,
        nvlink_gbps_per_link: 0,
        mig: None,
    },
    GpuModel {
        id: ModelId::L40s,
        name: "L40S",
        nvml_names: &["NVIDIA L40S"],
        pci_device_ids: &[0x26B9],
        memory_mib: 46068,
        sms: 142,
        architecture: Architecture::Ada,
        form_factor: FormFactor::Pcie,
        nvlink_links: 0,
        nvlink_gbps_per_link: 0,
        mig: None,
    },
];

pub fn model(id: ModelId) -> &'static GpuModel {
    // MODELS holds exactly one entry per ModelId (checked by a test).
    MODELS.iter().find(|m| m.id == id).unwrap_or(&MODELS[0])
}

/// Result of identifying a device. An unknown model is not an error: the
/// device is still a GPU, just one Railyard knows nothing special about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    Known(ModelId),
    Unknown(UnknownModel),
}

/// What NVML told us about a model the catalog does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel {
    pub product_name: String,
    pub pci_device_id: Option<u16>,
}

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown GPU model {:?}", self.product_name)?;
        if let Some(id) = self.pci_device_id {
            write!(f, " (PCI device id {id:#06x})")?;
        }
        write!(f, "; treating it as a whole GPU without MIG")
    }
}

impl Identified {
    pub fn model(&self) -> Option<&'static GpuModel> {
        match self {
            Identified::Known(id) => Some(model(*id)),
            Identified::Unknown(_) => None,
        }
    }

    pub fn mig_family(&self) -> Option<MigFamily> {
        self.model().and_then(|m| m.mig)
    }
}

/// Identifies a model from NVML's product name, its PCI device id, or both.
/// The name wins when both are known and disagree, since a PCI id can be
/// shared by board variants while the name is specific.
pub fn identify(product_name: &str, pci_device_id: Option<u16>) -> Identified {
    if let Some(m) = by_name(product_name) {
        return Identified::Known(m.id);
    }
    if let Some(m) = pci_device_id.and_then(by_pci_device_id) {
        return Identified::Known(m.id);
    }
    Identified::Unknown(UnknownModel {
        product_name: product_name.to_string(),
        pci_device_id,
    })
}

/// Splits NVML's 32-bit `pciDeviceId` (device << 16 | vendor).
pub fn split_nvml_pci_device_id(raw: u32) -> (u16, u16) {
    ((raw >> 16) as u16, (raw & 0xFFFF) as u16)
}

pub fn by_name(product_name: &str) -> Option<&'static GpuModel> {
    let wanted = normalize(product_name);
    MODELS
        .iter()
        .find(|m| normalize(m.name) == wanted || m.nvml_names.iter().any(|n| normalize(n) == wanted))
}

pub fn by_pci_device_id(device_id: u16) -> Option<&'static GpuModel> {
    MODELS.iter().find(|m| m.pci_device_ids.contains(&device_id))
}

/// Case-insensitive, with the vendor prefix and space/dash differences folded,
/// so `NVIDIA-H100-80GB-HBM3` (the GFD label form) matches too.
fn normalize(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let stripped = lower
        .strip_prefix("nvidia")
        .or_else(|| lower.strip_prefix("tesla"))
        .unwrap_or(&lower);
    stripped.chars().filter(|c| !matches!(c, ' ' | '-' | '_')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_model_id_and_unique_lookup_keys() {
        let mut ids: Vec<_> = MODELS.iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), MODELS.len());
        for m in MODELS {
            assert_eq!(model(m.id).name, m.name);
            for n in m.nvml_names {
                assert_eq!(by_name(n).map(|x| x.id), Some(m.id), "{n}");
            }
            for id in m.pci_device_ids {
                assert_eq!(by_pci_device_id(*id).map(|x| x.id), Some(m.id), "{id:#x}");
            }
        }
    }

    #[test]
    fn recognises_nvml_product_names() {
        let cases = [
            ("NVIDIA A100-SXM4-40GB", ModelId::A100Sxm4_40gb),
            ("NVIDIA A100-PCIE-40GB", ModelId::A100Pcie40gb),
            ("NVIDIA A100-SXM4-80GB", ModelId::A100Sxm4_80gb),
            ("NVIDIA A100 80GB PCIe", ModelId::A100Pcie80gb),
            ("NVIDIA H100 80GB HBM3", ModelId::H100Sxm5_80gb),
            ("NVIDIA H100 PCIe", ModelId::H100Pcie80gb),
            ("NVIDIA H200", ModelId::H200Sxm141gb),
            ("Tesla T4", ModelId::T4),
            ("Tesla V100-SXM2-16GB", ModelId::V100_16gb),
            ("Tesla V100-SXM2-32GB", ModelId::V100_32gb),
            ("Tesla P100-PCIE-16GB", ModelId::P100_16gb),
            ("NVIDIA A10", ModelId::A10),
            ("NVIDIA L40S", ModelId::L40s),
            // GPU Feature Discovery's label form.
            ("NVIDIA-H100-80GB-HBM3", ModelId::H100Sxm5_80gb),
        ];
        for (name, id) in cases {
            assert_eq!(identify(name, None), Identified::Known(id), "{name}");
        }
    }

    #[test]
    fn h100_sxm_and_pcie_differ_in_sms() {
        assert_eq!(model(ModelId::H100Sxm5_80gb).sms, 132);
        assert_eq!(model(ModelId::H100Pcie80gb).sms, 114);
    }

    #[test]
    fn recognises_pci_device_ids_from_nvml_raw_value() {
        let (dev, vendor) = split_nvml_pci_device_id(0x2330_10DE);
        assert_eq!(vendor, NVIDIA_PCI_VENDOR);
        assert_eq!(identify("", Some(dev)), Identified::Known(ModelId::H100Sxm5_80gb));
        assert_eq!(
            identify("weird board", Some(0x20B0)),
            Identified::Known(ModelId::A100Sxm4_40gb)
        );
    }

    #[test]
    fn unknown_model_is_reported_and_treated_as_whole_gpu() {
        let got = identify("NVIDIA B300 SXM6", Some(0x3182));
        let Identified::Unknown(u) = &got else {
            panic!("expected unknown, got {got:?}")
        };
        let msg = u.to_string();
        assert!(
            msg.contains("NVIDIA B300 SXM6") && msg.contains("0x3182") && msg.contains("without MIG"),
            "{msg}"
        );
        assert_eq!(got.mig_family(), None);
    }
}
