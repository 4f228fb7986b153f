//! A structured-parameters allocator with kube-scheduler's semantics
//! (PROTOCOLS §4): class and request selectors, ExactCount and All,
//! `firstAvailable` in order, `matchAttribute` / `distinctAttribute` across
//! requests, shared counters, consumable capacity with request policies,
//! devices taken by other claims, admin access, taints and tolerations.
//!
//! It is deterministic: candidates are tried in one preference order
//! ([`order`]): GPUs already partitioned before untouched ones (MIG
//! packing), an NVLink island that fits the request, the GPUs the node's
//! topology ranks best (where the allocator is given the node's
//! [`PoolTopology`]), the MIG placement that leaves the most other
//! placements addable, shareable devices with the least capacity left that
//! fits, then publish order. Share ids are deterministic too. It is
//! bounded: at most [`MAX_STEPS`] candidate tries per claim; past that it
//! answers [`Outcome::GaveUp`], never a wrong "unsatisfiable".
//!
//! Evaluation runs on the caller's thread. Its deepest recursion is the CEL
//! interpreter's, which the selector depth bound keeps within a 2 MiB stack
//! (the default of spawned and tokio worker threads), debug builds included.

mod capacity;
mod dense;
mod order;
mod search;
mod state;

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};

pub use capacity::{CapacityMismatch, consumed};
use railyard_core::topology::NodeTopology;
pub use state::{AllocatedDevice, DeviceId, Taken};

use crate::cel::{CelDevice, CelError, SelectorCache};
use crate::claim::{ClaimSpec, DeviceClass};
use crate::device::{Device, Pool};
use crate::quantity::Quantity;

/// Candidate tries per claim before giving up. Each try is one
/// availability and constraint check, so a claim costs at most this many.
pub const MAX_STEPS: u64 = 100_000;

/// What Railyard knows of a node beyond its published attributes: the GPU
/// graph its topology code ranks GPU sets on, and which whole-GPU device is
/// which GPU. Built from the node's machine profile
/// ([`crate::inventory::pool_topology`]).
#[derive(Debug, Clone)]
pub struct PoolTopology {
    pub topology: NodeTopology,
    /// Whole-GPU device name → GPU index in `topology`.
    pub gpus: BTreeMap<String, u32>,
}

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
}

/// The pools of one node (or of every node a claim may use). Keep one per
/// node across claims: the counter index and the devices' CEL views are
/// built on first use and reused.
#[derive(Debug)]
pub struct Allocator<'a> {
    pub pools: &'a [Pool],
    pub classes: &'a BTreeMap<String, DeviceClass>,
    pub selectors: &'a SelectorCache,
    pub max_steps: u64,
    /// Known topologies, by pool name.
    pub topologies: BTreeMap<String, &'a PoolTopology>,
    index: OnceCell<dense::Index<'a>>,
    /// Per pool, per device: the device as selectors see it.
    views: OnceCell<Vec<Vec<CelDevice<'a>>>>,
    /// Selector verdicts per expression, per pool, per device: the devices
    /// cannot change under an allocator, so each is evaluated once.
    verdicts: RefCell<HashMap<String, Vec<Vec<Option<bool>>>>>,
}

/// Expressions whose verdicts an [`Allocator`] keeps; past this the memo
/// starts over, so a long-lived allocator stays bounded.
pub const VERDICT_EXPRESSIONS: usize = 1024;

impl<'a> Allocator<'a> {
    pub fn new(pools: &'a [Pool], classes: &'a BTreeMap<String, DeviceClass>, selectors: &'a SelectorCache) -> Self {
        Allocator {
            pools,
            classes,
            selectors,
            max_steps: MAX_STEPS,
            topologies: BTreeMap::new(),
            index: OnceCell::new(),
            views: OnceCell::new(),
            verdicts: RefCell::new(HashMap::new()),
        }
    }

    /// The devices every one of `expressions` matches, in publish order.
    /// Each expression is looked up once; a device is evaluated only
    /// against the expressions it passed so far, as upstream short-circuits.
    fn select<'s>(
        &self,
        request: &str,
        expressions: impl Iterator<Item = &'s String>,
    ) -> Result<Vec<(usize, usize)>, AllocError> {
        let err = |source| AllocError::Selector {
            request: request.to_owned(),
            source,
        };
        let mut left: Vec<(usize, usize)> = self
            .pools
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| (0..p.devices.len()).map(move |di| (pi, di)))
            .collect();
        for expression in expressions {
            let mut memo = self.verdicts.borrow_mut();
            if memo.len() >= VERDICT_EXPRESSIONS && !memo.contains_key(expression.as_str()) {
                memo.clear();
            }
            let verdicts = match memo.get_mut(expression.as_str()) {
                Some(v) => v,
                None => memo
                    .entry(expression.clone())
                    .or_insert_with(|| self.pools.iter().map(|p| vec![None; p.devices.len()]).collect()),
            };
            let mut selector = None;
            let mut kept = Vec::with_capacity(left.len());
            for at in left {
                let verdict = match verdicts[at.0][at.1] {
                    Some(v) => v,
                    None => {
                        let sel = match &selector {
                            Some(s) => s,
                            None => selector.insert(self.selectors.get(expression).map_err(err)?),
                        };
                        let v = sel.matches_device(self.view(at)).map_err(err)?;
                        verdicts[at.0][at.1] = Some(v);
                        v
                    }
                };
                if verdict {
                    kept.push(at);
                }
            }
            left = kept;
        }
        Ok(left)
    }

    fn index(&self) -> &dense::Index<'a> {
        self.index.get_or_init(|| dense::Index::new(self.pools))
    }

    fn view(&self, (pool, device): (usize, usize)) -> &CelDevice<'a> {
        let views = self.views.get_or_init(|| {
            self.pools
                .iter()
                .map(|p| p.devices.iter().map(|d| CelDevice::new(&p.driver, d)).collect())
                .collect()
        });
        &views[pool][device]
    }

    /// Ranks multi-GPU picks in pool `pool` by `topology`.
    pub fn with_topology(mut self, pool: &str, topology: &'a PoolTopology) -> Self {
        self.topologies.insert(pool.to_owned(), topology);
        self
    }

    /// Allocates `claim` given what `taken` already holds; `taken` is not
    /// changed (book the result with [`Allocator::book`]).
    pub fn allocate(&self, claim: &ClaimSpec, taken: &Taken) -> Result<Outcome, AllocError> {
        search::Search::new(self, claim, taken)?.run()
    }

    fn at(&self, (pool, device): (usize, usize)) -> (&'a Pool, &'a Device) {
        let pool = &self.pools[pool];
        (pool, &pool.devices[device])
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
