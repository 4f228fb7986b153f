//! The kubelet's gRPC APIs, compiled at build time from `.proto` files written
//! from the field tables in `PROTOCOLS.md` (§1–3, §9) by `protox`, so no
//! system `protoc` is needed:
//!
//! | module | proto package | served by |
//! |---|---|---|
//! | [`deviceplugin::v1beta1`] | `v1beta1` | kubelet (`Registration`), plugin (`DevicePlugin`) |
//! | [`pluginregistration::v1`] | `pluginregistration` | plugin (`Registration`) |
//! | [`dra::v1`], [`dra::v1beta1`] | `k8s.io.kubelet.pkg.apis.dra.v1`, `…v1beta1` | DRA driver |
//! | [`dra::health::v1alpha1`] | `v1alpha1` | DRA driver (optional health) |
//! | [`podresources::v1`] | `v1` | kubelet |
//! | [`cri::runtime::v1`] | `runtime.v1` (`ListContainers` only) | container runtime |
//!
//! [`unix`] serves and dials tonic over unix sockets. With the `test-util`
//! feature, [`fake`] has a fake kubelet, a fake PodResources server and a
//! fake CRI `RuntimeService`.
#![deny(unsafe_code)]

pub mod unix;

#[cfg(feature = "test-util")]
pub mod fake;

/// Device plugin API v1beta1 (PROTOCOLS §1).
pub mod deviceplugin {
    #[allow(missing_debug_implementations, clippy::all)]
    pub mod v1beta1 {
        tonic::include_proto!("v1beta1");

        /// The API version a plugin registers with.
        pub const VERSION: &str = "v1beta1";
        /// Versions kubelet accepts.
        pub const SUPPORTED_VERSIONS: [&str; 1] = ["v1beta1"];
        /// Where kubelet looks for device plugin sockets.
        pub const DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins/";
        /// Kubelet's `Registration` socket name inside [`DEVICE_PLUGIN_PATH`].
        pub const KUBELET_SOCKET_NAME: &str = "kubelet.sock";
        /// Kubelet's checkpoint, which it keeps when it cleans the directory.
        pub const KUBELET_CHECKPOINT: &str = "kubelet_internal_checkpoint";
        pub const HEALTHY: &str = "Healthy";
        pub const UNHEALTHY: &str = "Unhealthy";
    }
}

/// Plugin registration API v1 (PROTOCOLS §2); proto package `pluginregistration`.
pub mod pluginregistration {
    #[allow(missing_debug_implementations, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("pluginregistration");

        pub const PLUGINS_REGISTRY_PATH: &str = "/var/lib/kubelet/plugins_registry";
        pub const CSI_PLUGIN: &str = "CSIPlugin";
        pub const DEVICE_PLUGIN: &str = "DevicePlugin";
        pub const DRA_PLUGIN: &str = "DRAPlugin";
    }
}

/// DRA kubelet plugin API (PROTOCOLS §3).
pub mod dra {
    #[allow(missing_debug_implementations, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
        /// How the service is listed in `PluginInfo.supported_versions`.
        pub const SERVICE_NAME: &str = "v1.DRAPlugin";
    }

    #[allow(missing_debug_implementations, clippy::all)]
    pub mod v1beta1 {
        tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1beta1");
        pub const SERVICE_NAME: &str = "v1beta1.DRAPlugin";
    }

    /// The optional resource health service.
    pub mod health {
        #[allow(missing_debug_implementations, clippy::all)]
        pub mod v1alpha1 {
            tonic::include_proto!("v1alpha1");
            pub const SERVICE_NAME: &str = "v1alpha1.DRAResourceHealth";
        }
    }
}

/// PodResources API v1 (PROTOCOLS §9).
pub mod podresources {
    #[allow(missing_debug_implementations, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("v1");
        pub const SOCKET_PATH: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
    }
}

/// CRI `RuntimeService` v1, reduced to `ListContainers` (PROTOCOLS §9: CRI
/// container id → pod and container names through the kubelet's labels).
pub mod cri {
    pub mod runtime {
        #[allow(missing_debug_implementations, clippy::all)]
        pub mod v1 {
            tonic::include_proto!("runtime.v1");

            /// containerd's CRI socket.
            pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
            /// CRI-O's socket.
            pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";
            /// Labels kubelet puts on every container it creates.
            pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
            pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
            pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
            pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
        }
    }
}
