#![allow(clippy::unwrap_used)]
//! `nvml-wrapper` 0.13.0 checked function by function against the fake
//! library: what NvmlBackend uses works, and the upstream bugs it works
//! around are still there (if one of these fails after an upgrade, the
//! wrapper was fixed: drop the raw workaround and update gpu/README.md).

mod common;

use common::profile_path;
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::TopologyLevel;
use nvml_wrapper::enum_wrappers::nv_link::IntDeviceType;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use railyard_fake_nvml::harness::FakeNvml;

fn open(fake: &FakeNvml) -> Nvml {
    Nvml::builder().lib_path(fake.lib.as_os_str()).init().unwrap()
}

#[test]
fn functions_used_by_the_backend_report_the_profile() {
    let fake = FakeNvml::from_file(&profile_path("dgx-h100-mig")).unwrap();
    let nvml = open(&fake);
    let p = &fake.profile;
    assert_eq!(nvml.sys_driver_version().unwrap(), p.driver_version);
    assert_eq!(nvml.sys_cuda_driver_version().unwrap(), p.cuda_driver_version as i32);
    assert_eq!(nvml.device_count().unwrap(), 8);
    let d = nvml.device_by_index(4).unwrap();
    assert_eq!(d.index().unwrap(), 4);
    assert_eq!(d.uuid().unwrap(), p.gpus[4].uuid);
    assert_eq!(d.name().unwrap(), "NVIDIA H100 80GB HBM3");
    assert_eq!(d.minor_number().unwrap(), 4);
    let pci = d.pci_info().unwrap();
    assert_eq!(
        (pci.bus_id.as_str(), pci.pci_device_id),
        ("00000000:9D:00.0", 0x2330_10DE)
    );
    assert_eq!(d.memory_info().unwrap().total, 81559 * 1024 * 1024);
    assert!(matches!(d.numa_node_id(), Err(NvmlError::NotSupported)));
    let words = d.cpu_affinity(4).unwrap();
    assert_eq!(words[0], 0xFF00_0000_0000_0000, "CPUs 56-63 of NUMA node 1");
    let d0 = nvml.device_by_index(0).unwrap();
    assert_eq!(
        d0.topology_common_ancestor(nvml.device_by_index(1).unwrap()).unwrap(),
        TopologyLevel::Node
    );
    assert_eq!(
        d0.topology_common_ancestor(nvml.device_by_index(4).unwrap()).unwrap(),
        TopologyLevel::System
    );
    let m = d.mig_mode().unwrap();
    assert_eq!((m.current, m.pending), (1, 1));
    assert_eq!(d.mig_device_count().unwrap(), 7);
    let mig = d.mig_device_by_index(6).unwrap();
    assert!(mig.mig_is_mig_device_handle().unwrap());
    assert!(mig.uuid().unwrap().starts_with("MIG-"));
    assert!(matches!(d.mig_device_by_index(7), Err(NvmlError::NotFound)));
    assert_eq!(
        d.profile_info(0).unwrap().id,
        19,
        "profile_info takes the index, returns the id"
    );
    assert!(d.link_wrapper_for(0).is_active().unwrap());
    assert!(d.link_wrapper_for(17).is_active().unwrap());
    assert!(matches!(d.link_wrapper_for(18).is_active(), Err(NvmlError::InvalidArg)));
    fake.control("process 4 99 100 gi=7 ci=0").unwrap();
    let procs: Vec<ProcessInfo> = mig_process_list(&nvml);
    assert_eq!(procs.len(), 1);
    assert_eq!(
        (procs[0].pid, procs[0].gpu_instance_id, procs[0].compute_instance_id),
        (99, Some(7), Some(0))
    );
    let t4 = FakeNvml::from_file(&profile_path("t4-2x")).unwrap();
    let nvml_t4 = open(&t4);
    let t = nvml_t4.device_by_index(0).unwrap();
    assert!(matches!(
        t.link_wrapper_for(0).is_active(),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(t.mig_mode(), Err(NvmlError::NotSupported)));
    assert!(t.running_compute_processes().unwrap().is_empty());
}

fn mig_process_list(nvml: &Nvml) -> Vec<ProcessInfo> {
    let d = nvml.device_by_index(4).unwrap();
    let mig = d.mig_device_by_index(0).unwrap();
    mig.running_compute_processes().unwrap()
}

#[test]
fn upstream_bugs_are_still_there() {
    let fake = FakeNvml::from_file(&profile_path("dgx-h100-mig")).unwrap();
    let nvml = open(&fake);
    let d = nvml.device_by_index(7).unwrap();
    // (1) possible_placements never sets the Vec's length: always empty,
    // although the driver returned seven 1g placements.
    assert!(d.possible_placements(19).unwrap().is_empty());
    // (2) remote_device_type writes into a temporary: always Unknown, here
    // for a link to an NVSwitch.
    assert_eq!(
        d.link_wrapper_for(0).remote_device_type(0).unwrap(),
        IntDeviceType::Unknown
    );
    // (3) EventTypes stops at MIG_CONFIG_CHANGE: supported_event_types drops
    // newer bits (here SINGLE_BIT_ECC_ERROR_STORM, 0x200), the strict
    // variant fails.
    assert_eq!(d.supported_event_types().unwrap().bits() & 0x200, 0);
    assert!(matches!(
        d.supported_event_types_strict(),
        Err(NvmlError::IncorrectBits(_))
    ));
    // (4) register_events frees the set on any error.
    let set = nvml.create_event_set().unwrap();
    let err = d.register_events(EventTypes::POWER_SOURCE_CHANGE, set).err().unwrap();
    assert!(matches!(err.error, NvmlError::NotSupported));
    // (6) return codes 23-30 are UnexpectedVariant.
    fake.control("fail nvmlDeviceGetMemoryInfo_v2 23 times=1").unwrap();
    assert!(matches!(d.memory_info(), Err(NvmlError::UnexpectedVariant(23))));
}
