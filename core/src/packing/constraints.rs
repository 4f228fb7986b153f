//! GPU-model constraints in the packing model: the task mix seen by each
//! node class, and how much constrained demand needs each class.
//!
//! A node class is a GPU model (`Option<ModelId>`: `None` for nodes whose
//! model is unknown). A task's constraint is a [`ModelMask`] (its
//! `gpu_spec`; [`ModelMask::ANY`] for none). Nothing here knows model names:
//! any set of classes and any constraint sets work.
//!
//! Two things change once some tasks are constrained (with none, both are
//! exactly the cluster-wide mix and zero, so unconstrained workloads place
//! as before):
//!
//! - **Per-class mix** ([`ConstrainedMix::tasks_for`]). FGD's measure
//!   counts a task that cannot use a node as seeing all of the node's idle
//!   GPU as fragment. With constraints that term differs by model (on a
//!   `T4` node every `G2`-only task sees a fragment), so consuming GPU on a
//!   model that *other* models' constrained tasks cannot use looks like
//!   removing fragmentation, whatever the capacity of each model. The class
//!   mix instead keeps only the tasks that can use the class, each GPU task
//!   weighted by its expected arrivals per unit of the class's capacity:
//!   `w / κ(S)` where `κ(S)` is the share of GPU capacity its set `S`
//!   allows (1 for unconstrained tasks, so they keep their weight). A
//!   `T4`-only task weighs `1 / κ(T4)` times an unconstrained one on `T4`
//!   nodes: per GPU of `T4` it arrives that much more often. CPU-only
//!   tasks keep their weight everywhere.
//! - **Demand pressure** ([`ConstrainedMix::pressure`]). Until the cluster
//!   is full, the remaining GPU demand is about the free GPU `F`, and a
//!   share `d(S)` of it (from the mix, by GPU request) can only use the
//!   classes in `S`. Class `c`'s pressure is the share of its free GPU that
//!   constrained demand is expected to need:
//!   `p(c) = Σ_{S ∋ c, S ≠ any} d(S) · F / free(S)`. Placing `g` milli on
//!   class `c` costs `weight · g · p(c)` ([`Pressure::cost`]). When every
//!   class fills at the pace its constrained demand allows, pressures are
//!   equal and the cost does not change any choice; when a class fills
//!   faster (unconstrained pods taking the `T4`s), its pressure rises and
//!   pods that can go elsewhere do.
//!
//! Callers: [`Railyard`](super::policies::Railyard) builds a
//! [`ConstrainedMix`] from the cluster's capacity by class
//! ([`ClassMilli::capacity`]) and recomputes the pressure from the idle GPU
//! by class ([`ClassMilli::idle`]) once per decision.
//!
//! A scheduler that scores nodes itself (the extender) does the same with
//! its own state, in four steps:
//! 1. Models: intern each node's GPU product in a
//!    [`ModelTable`](super::state::ModelTable) and set
//!    [`Node::model`]; give each pod's [`PodRequest::gpu_spec`] the mask of
//!    the products its node selector or affinity allows
//!    ([`ModelTable::mask`](super::state::ModelTable::mask) for `In`,
//!    [`ModelTable::all`](super::state::ModelTable::all) minus the excluded
//!    for `NotIn`; [`ModelMask::ANY`] without a constraint). The mix built
//!    from those requests then carries the constraints.
//! 2. Classes: `Railyard::with_classes(mix, capacity, cfg)` with the GPU
//!    capacity by model of all nodes (`ClassMilli::capacity`, or
//!    [`ClassMilli::add`] per node); `Railyard::set_classes` when nodes come
//!    and go (a no-op while the capacity is the same).
//! 3. Per pod: `let p = railyard.pressure(&idle)` with the idle GPU milli by
//!    model now (`ClassMilli::idle`, or kept up to date with `add`).
//! 4. Per node: `railyard.node_key(&node, railyard.node_frag(&node), &pod)`
//!    as today (it depends only on the node's state, its model and the pod,
//!    so it can be memoized, with the model in the memo key), then
//!    `key.value(cfg) - railyard.demand_cost(node.model, &pod, &p)`; or
//!    `node_key_with(.., &p)` in one call. Without constrained pods in the
//!    mix the pressure is zero and the cost nothing.

use std::sync::Arc;

use super::fragmentation::{TaskDistribution, TaskType};
use super::state::{MILLI, ModelId, ModelMask, Node, PodRequest};

/// Number of node classes: 64 model ids and the unknown model.
pub const CLASSES: usize = 65;

/// The class index of a model: its id (ids above 63 share slot 63, as
/// [`ModelMask`] cannot name them), or 64 for `None`.
pub fn class_index(model: Option<ModelId>) -> usize {
    model.map_or(CLASSES - 1, |m| (m.0 as usize).min(63))
}

fn class_model(i: usize) -> Option<ModelId> {
    (i < CLASSES - 1).then_some(ModelId(i as u8))
}

/// GPU milli per node class (capacity, or idle GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassMilli(pub [u64; CLASSES]);

impl Default for ClassMilli {
    fn default() -> Self {
        ClassMilli([0; CLASSES])
    }
}

impl ClassMilli {
    /// GPU capacity of `nodes` by class.
    pub fn capacity<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut c = ClassMilli::default();
        for n in nodes {
            c.add(n.model, n.gpu_count as u64 * MILLI as u64);
        }
        c
    }

    /// Idle GPU milli of `nodes` by class.
    pub fn idle<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut c = ClassMilli::default();
        for n in nodes {
            c.add(n.model, n.gpu_idle_milli() as u64);
        }
        c
    }

    pub fn add(&mut self, model: Option<ModelId>, milli: u64) {
        self.0[class_index(model)] += milli;
    }

    pub fn get(&self, model: Option<ModelId>) -> u64 {
        self.0[class_index(model)]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Milli summed over the classes `mask` allows.
    pub fn allowed(&self, mask: ModelMask) -> u64 {
        if mask == ModelMask::ANY {
            return self.total();
        }
        let mut sum = 0;
        let mut bits = mask.0;
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            sum += self.0[b];
            bits &= bits - 1;
        }
        sum
    }
}

/// The GPU demand share of one constraint set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetDemand {
    pub spec: ModelMask,
    /// Share of the mix's GPU request (popularity × GPU milli) from tasks
    /// with exactly this constraint.
    pub share: f64,
}

/// Each class's pressure from constrained demand (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure(pub [f64; CLASSES]);

impl Pressure {
    /// No pressure anywhere (no constrained demand).
    pub const NONE: Pressure = Pressure([0.0; CLASSES]);

    pub fn get(&self, model: Option<ModelId>) -> f64 {
        self.0[class_index(model)]
    }

    /// Cost (milli-GPU, the unit of Railyard's score) of placing `pod` on a
    /// node of `model`: `weight · gpu milli · p(model)`. CPU-only pods cost
    /// nothing.
    pub fn cost(&self, model: Option<ModelId>, pod: &PodRequest, weight: f64) -> f64 {
        if weight == 0.0 || !pod.wants_gpu() {
            return 0.0;
        }
        weight * pod.total_gpu_milli() as f64 * self.get(model)
    }
}

/// The task mix per node class and the constrained demand by set, for a
/// cluster with a given GPU capacity by class. Pure: built once per mix and
/// capacity, queried per decision.
#[derive(Debug, Clone)]
pub struct ConstrainedMix {
    base: Arc<TaskDistribution>,
    capacity: ClassMilli,
    /// Per class; `None` where the class has no capacity or no mix of its own.
    classes: Vec<Option<Arc<TaskDistribution>>>,
    sets: Vec<SetDemand>,
}

impl ConstrainedMix {
    /// `base` is the cluster-wide mix (its task types carry their
    /// `gpu_spec`); `capacity` the GPU capacity by class.
    pub fn new(base: Arc<TaskDistribution>, capacity: ClassMilli) -> Self {
        let total_cap = capacity.total() as f64;
        let gpu_demand: f64 = base.types().iter().map(gpu_weight).sum();
        let mut sets: Vec<SetDemand> = Vec::new();
        for t in base.types() {
            if t.gpu_spec == ModelMask::ANY || gpu_weight(t) == 0.0 {
                continue;
            }
            let share = gpu_weight(t) / gpu_demand;
            match sets.iter_mut().find(|s| s.spec == t.gpu_spec) {
                Some(s) => s.share += share,
                None => sets.push(SetDemand {
                    spec: t.gpu_spec,
                    share,
                }),
            }
        }
        sets.sort_by_key(|s| s.spec);
        let mut classes = vec![None; CLASSES];
        if !sets.is_empty() && total_cap > 0.0 {
            for (i, slot) in classes.iter_mut().enumerate() {
                if capacity.0[i] == 0 {
                    continue;
                }
                let model = class_model(i);
                let types: Vec<TaskType> = base
                    .types()
                    .iter()
                    .filter_map(|t| {
                        if t.num_gpu == 0 || t.gpu_milli == 0 || t.gpu_spec == ModelMask::ANY {
                            return Some(*t);
                        }
                        if !t.gpu_spec.allows(model) {
                            return None;
                        }
                        let kappa = capacity.allowed(t.gpu_spec) as f64 / total_cap;
                        Some(TaskType {
                            weight: t.weight / kappa,
                            ..*t
                        })
                    })
                    .collect();
                *slot = Some(Arc::new(TaskDistribution::from_weighted_types(types)));
            }
        }
        ConstrainedMix {
            base,
            capacity,
            classes,
            sets,
        }
    }

    /// Whether any GPU task of the mix is constrained; without, the class
    /// mixes are the base mix and the pressure is zero.
    pub fn is_constrained(&self) -> bool {
        !self.sets.is_empty()
    }

    pub fn base(&self) -> &Arc<TaskDistribution> {
        &self.base
    }

    pub fn capacity(&self) -> &ClassMilli {
        &self.capacity
    }

    /// The mix nodes of `model` are scored against.
    pub fn tasks_for(&self, model: Option<ModelId>) -> &Arc<TaskDistribution> {
        self.classes[class_index(model)].as_ref().unwrap_or(&self.base)
    }

    /// Constrained GPU demand by constraint set.
    pub fn sets(&self) -> &[SetDemand] {
        &self.sets
    }

    /// Each class's pressure given the idle GPU milli by class now.
    pub fn pressure(&self, idle: &ClassMilli) -> Pressure {
        let mut p = Pressure::NONE;
        let free = idle.total() as f64;
        if free <= 0.0 {
            return p;
        }
        for s in &self.sets {
            let in_set = idle.allowed(s.spec) as f64;
            // A full set gets the pressure of one milli left: its classes
            // have nothing free anyway, so the number only orders them.
            let v = s.share * free / in_set.max(1.0);
            let mut bits = s.spec.0;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                p.0[b] += v;
                bits &= bits - 1;
            }
        }
        p
    }
}

/// A task's popularity times its GPU request (milli).
fn gpu_weight(t: &TaskType) -> f64 {
    if t.num_gpu == 0 || t.gpu_milli == 0 {
        0.0
    } else {
        t.weight * t.num_gpu as f64 * t.gpu_milli as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::state::NodeSpec;

    fn t(num_gpu: u8, gpu_milli: u16, spec: u64, weight: f64) -> TaskType {
        TaskType {
            cpu_milli: 1000,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: ModelMask(spec),
            weight,
        }
    }

    fn node(model: u8, gpus: u8) -> Node {
        Node::new(&NodeSpec {
            name: String::new(),
            cpu_milli: 64_000,
            memory_mib: 1 << 20,
            gpus,
            model: Some(ModelId(model)),
        })
    }

    #[test]
    fn unconstrained_mix_is_the_base_mix() {
        let base = Arc::new(TaskDistribution::from_types(vec![t(1, 500, 0, 1.0), t(0, 0, 0, 1.0)]));
        let cap = ClassMilli::capacity(&[node(0, 8), node(1, 2)]);
        let m = ConstrainedMix::new(base.clone(), cap);
        assert!(!m.is_constrained());
        assert!(Arc::ptr_eq(m.tasks_for(Some(ModelId(1))), &base));
        assert_eq!(m.pressure(&cap), Pressure::NONE);
    }

    #[test]
    fn class_mix_weights_tasks_per_unit_of_capacity() {
        // Model 0: 8 GPUs, model 1: 2 GPUs (κ = 0.8 / 0.2). Half the tasks
        // are unconstrained, 0.3 want model 0 only, 0.2 model 1 only.
        let base = Arc::new(TaskDistribution::from_types(vec![
            t(1, 1000, 0, 0.5),
            t(1, 1000, 0b01, 0.3),
            t(1, 1000, 0b10, 0.2),
        ]));
        let nodes = [node(0, 8), node(1, 2)];
        let m = ConstrainedMix::new(base, ClassMilli::capacity(&nodes));
        let w = |model: u8| -> Vec<f64> {
            m.tasks_for(Some(ModelId(model)))
                .types()
                .iter()
                .map(|t| t.weight)
                .collect()
        };
        // Model 1 only sees the unconstrained tasks and its own, 0.2 / 0.2.
        assert_eq!(w(1), vec![0.5, 1.0]);
        let w0 = w(0);
        assert_eq!(w0.len(), 2);
        assert!((w0[0] - 0.5).abs() < 1e-12 && (w0[1] - 0.375).abs() < 1e-12);
        // A model-1 node with one GPU used: only model-1 tasks and
        // unconstrained ones count, none sees a fragment.
        let mut n = nodes[1];
        n.gpu_left[0] = 0;
        assert_eq!(m.tasks_for(Some(ModelId(1))).node_frag(&n), 0.0);
    }

    #[test]
    fn pressure_rises_on_the_class_that_fills_first() {
        let base = Arc::new(TaskDistribution::from_types(vec![
            t(1, 1000, 0, 0.5),
            t(1, 1000, 0b01, 0.4),
            t(1, 1000, 0b10, 0.1),
        ]));
        let nodes = [node(0, 8), node(1, 2)];
        let cap = ClassMilli::capacity(&nodes);
        let m = ConstrainedMix::new(base, cap);
        // Empty cluster: 0.4 · 10 / 8 = 0.5 and 0.1 · 10 / 2 = 0.5.
        let p = m.pressure(&cap);
        assert!((p.get(Some(ModelId(0))) - 0.5).abs() < 1e-12);
        assert!((p.get(Some(ModelId(1))) - 0.5).abs() < 1e-12);
        // One model-1 GPU taken: model 1's pressure rises to 0.1 · 9 / 1.
        let mut idle = cap;
        idle.0[1] -= 1000;
        let p = m.pressure(&idle);
        assert!((p.get(Some(ModelId(1))) - 0.9).abs() < 1e-12);
        assert!((p.get(Some(ModelId(0))) - 0.45).abs() < 1e-12);
        let pod = PodRequest::gpus(0, 0, 1, 500);
        assert!((p.cost(Some(ModelId(1)), &pod, 2.0) - 900.0).abs() < 1e-9);
        assert_eq!(p.cost(Some(ModelId(1)), &PodRequest::cpu_only(1, 1), 2.0), 0.0);
    }

    #[test]
    fn sets_share_pressure_over_their_classes() {
        let base = Arc::new(TaskDistribution::from_types(vec![
            t(1, 1000, 0, 0.5),
            t(2, 1000, 0b11, 0.25),
        ]));
        let cap = ClassMilli::capacity(&[node(0, 4), node(1, 4), node(2, 8)]);
        let m = ConstrainedMix::new(base, cap);
        // GPU demand: 0.5 · 1000 and 0.25 · 2000: the set has half of it.
        assert_eq!(m.sets().len(), 1);
        assert_eq!(m.sets()[0].spec, ModelMask(0b11));
        assert!((m.sets()[0].share - 0.5).abs() < 1e-12);
        let p = m.pressure(&cap);
        // 0.5 · 16 / 8 on both classes of the set, none on model 2.
        assert!((p.get(Some(ModelId(0))) - 1.0).abs() < 1e-12);
        assert!((p.get(Some(ModelId(1))) - 1.0).abs() < 1e-12);
        assert_eq!(p.get(Some(ModelId(2))), 0.0);
        assert_eq!(p.get(None), 0.0);
    }
}
