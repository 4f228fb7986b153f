//! The DeviceClasses Railyard ships: NVIDIA's, with the same names and
//! selectors, so claims written for NVIDIA's driver work unchanged.

use k8s_openapi::api::resource::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `gpu.nvidia.com`, `mig.nvidia.com` for `driver`. The GPU class also
/// serves plain `nvidia.com/gpu` limits through DRA (DRAExtendedResource).
pub fn shipped(driver: &str) -> Vec<api::DeviceClass> {
    let class = |name: &str, kind: &str, extended: Option<&str>| api::DeviceClass {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: api::DeviceClassSpec {
            selectors: Some(vec![api::DeviceSelector {
                cel: Some(api::CELDeviceSelector {
                    expression: format!(
                        "device.driver == '{driver}' && device.attributes['{driver}'].type == '{kind}'"
                    ),
                }),
            }]),
            extended_resource_name: extended.map(str::to_owned),
            config: None,
        },
    };
    vec![
        class("gpu.nvidia.com", "gpu", Some("nvidia.com/gpu")),
        class("mig.nvidia.com", "mig", None),
    ]
}
