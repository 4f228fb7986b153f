//! Compiles the kubelet `.proto` files with `protox` (a protobuf compiler in
//! Rust), so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/deviceplugin/v1beta1/api.proto",
        "proto/pluginregistration/v1/api.proto",
        "proto/dra/v1/api.proto",
        "proto/dra/v1beta1/api.proto",
        "proto/dra-health/v1alpha1/api.proto",
        "proto/podresources/v1/api.proto",
        "proto/cri/runtime/v1/api.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().build_transport(false).compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
