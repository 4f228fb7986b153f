//! A structured-parameters allocator with kube-scheduler's semantics
//! (PROTOCOLS §4): class and request selectors, ExactCount and All,
//! `firstAvailable` in order, `matchAttribute` / `distinctAttribute` across
//! requests, shared counters, consumable capacity with request policies,
//! devices taken by other claims, admin access, taints and tolerations.
//!
//! It is deterministic: candidates are tried in one preference order
//! ([`search`]): GPUs already partitioned before untouched ones (MIG
//! packing), the MIG placement that leaves the most other placements
//! addable, the smallest NVLink island that still fits the request,
//! shareable devices with the least capacity left that fits, then publish
//! order. It is bounded: at most [`MAX_STEPS`] candidate tries per claim;
//! past that it answers [`Outcome::GaveUp`], never a wrong "unsatisfiable".

mod capacity;
mod search;
mod state;

use std::collections::BTreeMap;

pub use capacity::{CapacityMismatch, consumed};
pub use state::{AllocatedDevice, DeviceId, Taken};

use crate::cel::{CelError, SelectorCache};
use crate::claim::{ClaimSpec, DeviceClass};
use crate::device::{Device, Pool};
use crate::quantity::Quantity;

/// Candidate tries per claim before giving up. Each try is one
/// availability and constraint check, so a claim costs at most this many.
pub const MAX_STEPS: u64 = 100_000;

/// Stack of the thread an allocation runs on (see [`Allocator::allocate`]).
pub const EVAL_STACK: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub devices: Vec<AllocatedDevice>,
    /// Counters this allocation takes, per (pool, counter set).
    pub consumed_counters: BTreeMap<(String, String), BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allocated(Allocation),
    /// The first request that cannot be met, and why.
    Unsatisfiable {
        request: String,
        reason: String,
    },
    /// The search hit [`MAX_STEPS`] first.
    GaveUp {
        steps: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("request {request}: device class {class:?} does not exist")]
    UnknownClass { request: String, class: String },
    #[error("request {request}: {source}")]
    Selector { request: String, source: CelError },
    #[error("allocator: {0}")]
    Internal(&'static str),
}

/// The pools of one node (or of every node a claim may use).
#[derive(Debug)]
pub struct Allocator<'a> {
    pub pools: &'a [Pool],
    pub classes: &'a BTreeMap<String, DeviceClass>,
    pub selectors: &'a SelectorCache,
    pub max_steps: u64,
}

impl<'a> Allocator<'a> {
    pub fn new(pools: &'a [Pool], classes: &'a BTreeMap<String, DeviceClass>, selectors: &'a SelectorCache) -> Self {
        Allocator {
            pools,
            classes,
            selectors,
            max_steps: MAX_STEPS,
        }
    }

    /// Allocates `claim` given what `taken` already holds.
    ///
    /// Runs on a scoped thread with [`EVAL_STACK`] of stack: the CEL
    /// interpreter recurses per expression level with large frames, and a
    /// selector nested as deep as the parser allows must not overflow the
    /// caller's (e.g. a 2 MiB tokio worker's) stack.
    pub fn allocate(&self, claim: &ClaimSpec, taken: &Taken) -> Result<Outcome, AllocError> {
        std::thread::scope(|scope| {
            let run = || search::Search::new(self, claim, taken)?.run();
            match std::thread::Builder::new()
                .name("dra-allocate".into())
                .stack_size(EVAL_STACK)
                .spawn_scoped(scope, run)
            {
                Ok(handle) => handle
                    .join()
                    .unwrap_or(Err(AllocError::Internal("the allocator thread panicked"))),
                Err(_) => Err(AllocError::Internal("no thread to allocate on")),
            }
        })
    }

    pub fn find(&self, id: &DeviceId) -> Option<(&'a Pool, &'a Device)> {
        let pool = self.pools.iter().find(|p| p.driver == id.driver && p.name == id.pool)?;
        Some((pool, pool.devices.iter().find(|d| d.name == id.device)?))
    }

    /// Books every device of `allocation` into `taken`; devices not in these
    /// pools are skipped (they belong to other nodes).
    pub fn book(&self, taken: &mut Taken, devices: &[AllocatedDevice]) {
        for a in devices {
            if let Some((pool, device)) = self.find(&a.id) {
                taken.book(pool, device, a);
            }
        }
    }

    /// Undoes [`Allocator::book`].
    pub fn release(&self, taken: &mut Taken, devices: &[AllocatedDevice]) {
        for a in devices {
            if let Some((pool, device)) = self.find(&a.id) {
                taken.release(pool, device, a);
            }
        }
    }
}
