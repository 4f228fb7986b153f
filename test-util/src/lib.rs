//! Test fakes shared by Railyard's test suites.
//!
//! - [`fake_api`]: a stateful Kubernetes API server on real HTTP that an
//!   unmodified `kube::Client` (or a component given its kubeconfig) talks
//!   to. Tests that must check one exact request keep using tower-test
//!   mocks; tests that need state use this.
//! - [`manifest`]: manifests and examples checked against their typed structs.
#![forbid(unsafe_code)]

pub mod fake_api;
pub mod manifest;

pub use fake_api::{ApiError, FakeApiServer};
