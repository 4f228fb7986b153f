//! NVIDIA's opaque device configs (`resource.nvidia.com/v1beta1`).
//!
//! STUB: replaced by the full strict parser.
