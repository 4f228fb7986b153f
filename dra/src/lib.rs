//! Railyard's DRA model, free of I/O: what a node publishes as
//! `resource.k8s.io/v1` ResourceSlices ([`inventory`], [`slices`], [`api`]),
//! how a CEL selector is evaluated ([`cel`]), and how the scheduler would
//! allocate a claim against the slices ([`alloc`]).
//!
//! **Why a sibling crate and not `core/src/dra/`:** selectors are evaluated
//! with the `cel` crate, which brings an ANTLR runtime and a regex engine.
//! Every Railyard binary links `railyard-core`; only the DRA driver, the
//! bench and (later) the extender evaluate selectors. Keeping DRA here
//! keeps that weight out of the device plugin, the watchdog and the MIG
//! manager. The seam is one way: this crate uses `core`'s catalog, MIG
//! geometry, machine profiles and topology; `core` knows nothing of DRA.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod api;
pub mod cel;
pub mod claim;
pub mod classes;
pub mod config;
pub mod device;
pub mod inventory;
pub mod names;
pub mod opaque;
pub mod quantity;
pub mod semver;
pub mod slices;
