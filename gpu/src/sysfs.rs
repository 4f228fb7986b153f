//! NICs and PCI NUMA nodes from sysfs, under a configurable root so tests can
//! use a tree in a temp dir ([`write_profile_tree`] builds one from a machine
//! profile).
//!
//! Read: `class/infiniband/<dev>/device` (→ the PCI device: bus id,
//! `numa_node`, `net/<netdev>`), `ports/1/link_layer`, `ports/1/rate`; then
//! `class/net/<netdev>/device` for PCI NICs without RDMA (`speed` in Mb/s);
//! `bus/pci/devices/<bdf>/numa_node` for a GPU's NUMA node.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use railyard_core::machine::{LinkLayer, MachineProfile};

use crate::types::Nic;

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn numa_of(pci_dir: &Path) -> Option<u32> {
    read_trim(&pci_dir.join("numa_node"))
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok())
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Whether a name looks like a PCI address `dddd:bb:dd.f`.
fn is_bdf(s: &str) -> bool {
    s.len() == 12 && s.as_bytes()[4] == b':' && s.as_bytes()[7] == b':' && s.as_bytes()[10] == b'.'
}

/// The NUMA node of a PCI device, from `bus/pci/devices/<bdf>/numa_node`.
pub fn pci_numa_node(root: &Path, bus_id: &str) -> Option<u32> {
    numa_of(&root.join("bus/pci/devices").join(bus_id.to_ascii_lowercase()))
}

/// RDMA devices, then PCI netdevs without one; sorted by name. A missing
/// directory is an empty list.
pub fn read_nics(root: &Path) -> Vec<Nic> {
    let mut out: Vec<Nic> = Vec::new();
    for ib in sorted_entries(&root.join("class/infiniband")) {
        let (Some(name), Ok(dev)) = (file_name(&ib), fs::canonicalize(ib.join("device"))) else {
            continue;
        };
        let Some(bdf) = file_name(&dev).filter(|b| is_bdf(b)) else {
            continue;
        };
        let netdev = sorted_entries(&dev.join("net")).first().and_then(|p| file_name(p));
        let link_layer = match read_trim(&ib.join("ports/1/link_layer")).as_deref() {
            Some("Ethernet") => LinkLayer::Ethernet,
            _ => LinkLayer::Infiniband,
        };
        // "400 Gb/sec (4X NDR)"
        let speed_gbps = read_trim(&ib.join("ports/1/rate"))
            .and_then(|r| r.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()))
            .map(|g| g as u32);
        out.push(Nic {
            name,
            netdev,
            pci_bus_id: bdf.to_ascii_lowercase(),
            numa_node: numa_of(&dev),
            speed_gbps,
            link_layer,
        });
    }
    for net in sorted_entries(&root.join("class/net")) {
        let (Some(name), Ok(dev)) = (file_name(&net), fs::canonicalize(net.join("device"))) else {
            continue;
        };
        let Some(bdf) = file_name(&dev).filter(|b| is_bdf(b)) else {
            continue;
        };
        if out.iter().any(|n| n.pci_bus_id == bdf.to_ascii_lowercase()) {
            continue;
        }
        let speed_gbps = read_trim(&net.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|mbps| u32::try_from(mbps / 1000).ok())
            .filter(|g| *g > 0);
        let link_layer = match read_trim(&net.join("type")).as_deref() {
            Some("32") => LinkLayer::Infiniband,
            _ => LinkLayer::Ethernet,
        };
        out.push(Nic {
            name: name.clone(),
            netdev: Some(name),
            pci_bus_id: bdf.to_ascii_lowercase(),
            numa_node: numa_of(&dev),
            speed_gbps,
            link_layer,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, link)
}

/// Writes the sysfs files [`read_nics`] and [`pci_numa_node`] read, for the
/// profile's GPUs and NICs, under `root`.
pub fn write_profile_tree(profile: &MachineProfile, root: &Path) -> io::Result<()> {
    let pci = root.join("bus/pci/devices");
    for g in &profile.gpus {
        let d = pci.join(g.pci_bus_id.to_ascii_lowercase());
        fs::create_dir_all(&d)?;
        fs::write(d.join("numa_node"), format!("{}\n", g.numa_node))?;
    }
    for n in &profile.nics {
        let bdf = n.pci_bus_id.to_ascii_lowercase();
        let d = pci.join(&bdf);
        fs::create_dir_all(&d)?;
        fs::write(d.join("numa_node"), format!("{}\n", n.numa_node))?;
        let ib = root.join("class/infiniband").join(&n.name);
        fs::create_dir_all(ib.join("ports/1"))?;
        symlink_dir(&Path::new("../../../bus/pci/devices").join(&bdf), &ib.join("device"))?;
        let layer = match n.link_layer {
            LinkLayer::Ethernet => "Ethernet",
            LinkLayer::Infiniband => "InfiniBand",
        };
        fs::write(ib.join("ports/1/link_layer"), format!("{layer}\n"))?;
        fs::write(ib.join("ports/1/rate"), format!("{} Gb/sec (4X)\n", n.speed_gbps))?;
        if let Some(netdev) = &n.netdev {
            fs::create_dir_all(d.join("net").join(netdev))?;
            let net = root.join("class/net").join(netdev);
            fs::create_dir_all(&net)?;
            symlink_dir(&Path::new("../../../bus/pci/devices").join(&bdf), &net.join("device"))?;
            fs::write(net.join("speed"), format!("{}\n", n.speed_gbps as u64 * 1000))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ethernet_nic_without_rdma() {
        let root = std::env::temp_dir().join(format!("railyard-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dev = root.join("bus/pci/devices/0000:3b:00.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("numa_node"), "-1\n").unwrap();
        symlink_dir(
            Path::new("../../../bus/pci/devices/0000:3b:00.0"),
            &root.join("class/net/eno1/device"),
        )
        .unwrap();
        fs::write(root.join("class/net/eno1/speed"), "25000\n").unwrap();
        // A virtual interface: no PCI device.
        fs::create_dir_all(root.join("class/net/lo")).unwrap();
        let nics = read_nics(&root);
        assert_eq!(
            nics,
            vec![Nic {
                name: "eno1".into(),
                netdev: Some("eno1".into()),
                pci_bus_id: "0000:3b:00.0".into(),
                numa_node: None,
                speed_gbps: Some(25),
                link_layer: LinkLayer::Ethernet,
            }]
        );
        let _ = fs::remove_dir_all(&root);
    }
}
