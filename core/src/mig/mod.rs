//! MIG geometry: the profiles each MIG-capable model offers and where they may
//! be placed, and layouts of placed instances on one GPU.
//!
//! A GPU has 7 compute slices and 8 memory slices; a placement is
//! `start:size` in memory slices, as `nvidia-smi mig -lgipp` prints it.

mod layout;
mod plan;
mod profiles;

pub use layout::{LayoutError, MigInstance, MigLayout, enumerate_maximal_layouts};
pub use plan::{GpuGoal, GpuMigState, GpuPlan, InstanceRef, MigStep, MigTarget, Plan, PlanError, WantedInstance, plan};
pub use profiles::{Engines, MigFamily, MigProfile, ProfileKind, ProfileSpec, UNVERIFIED};

pub const MEMORY_SLICES: u8 = 8;
pub const COMPUTE_SLICES: u8 = 7;

/// A legal placement of a GPU instance, in memory slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub start: u8,
    pub size: u8,
}

impl Placement {
    pub fn end(self) -> u8 {
        self.start + self.size
    }

    pub fn overlaps(self, other: Placement) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    /// Bit mask of the memory slices it covers.
    pub fn mask(self) -> u8 {
        let ones = if self.size >= 8 {
            0xFF
        } else {
            (1u16 << self.size) as u8 - 1
        };
        ones << self.start
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.start, self.size)
    }
}
