//! Railyard with GPU-model constraints on small hand-made clusters whose
//! right answer is known.

use std::sync::Arc;

use super::{Policy, Railyard, RailyardConfig};
use crate::packing::constraints::ClassMilli;
use crate::packing::fragmentation::{TaskDistribution, TaskType};
use crate::packing::state::{Cluster, ModelId, ModelMask, NodeSpec, Placement, PodRequest};

const BIG: u8 = 0;
const SMALL: u8 = 1;
const OTHER: u8 = 2;

fn spec(model: u8, gpus: u8) -> NodeSpec {
    NodeSpec {
        name: format!("m{model}x{gpus}"),
        cpu_milli: 96_000,
        memory_mib: 1 << 20,
        gpus,
        model: Some(ModelId(model)),
    }
}

fn only(models: &[u8]) -> ModelMask {
    ModelMask(models.iter().map(|m| 1u64 << m).sum())
}

fn task(num_gpu: u8, gpu_milli: u16, spec: ModelMask, weight: f64) -> TaskType {
    TaskType {
        cpu_milli: 4000,
        memory_mib: 0,
        num_gpu,
        gpu_milli,
        gpu_spec: spec,
        weight,
    }
}

fn pod(num_gpu: u8, gpu_milli: u16, spec: ModelMask) -> PodRequest {
    PodRequest {
        gpu_spec: spec,
        ..PodRequest::gpus(4000, 0, num_gpu, gpu_milli)
    }
}

/// The mix the old policy gets wrong: most constrained demand wants the big
/// model, a little the small one, in proportion to their capacity.
fn skewed_mix() -> Arc<TaskDistribution> {
    Arc::new(TaskDistribution::from_types(vec![
        task(1, 1000, ModelMask::ANY, 0.5),
        task(1, 1000, only(&[BIG]), 0.4),
        task(1, 1000, only(&[SMALL]), 0.1),
    ]))
}

fn old() -> RailyardConfig {
    RailyardConfig {
        class_mix: false,
        demand: 0.0,
        ..RailyardConfig::DEFAULT
    }
}

/// Places `pods` in order and returns where each went.
fn run(policy: &mut dyn Policy, c: &mut Cluster, pods: &[PodRequest]) -> Vec<Option<u32>> {
    pods.iter()
        .map(|p| {
            let at = policy.place(c, p)?;
            c.apply(p, at).ok()?;
            Some(at.node)
        })
        .collect()
}

#[test]
fn small_model_only_pod_still_finds_its_model_after_unconstrained_pods() {
    // One 8-GPU node of the big model, one 2-GPU node of the small one.
    // Two unconstrained 1-GPU pods, then one that can only use the small
    // model. The old score saw every big-model-only task as a fragment on
    // the small node, so "using it up" looked good: both unconstrained pods
    // went there and the constrained one failed.
    let nodes = [spec(BIG, 8), spec(SMALL, 2)];
    let pods = [
        pod(1, 1000, ModelMask::ANY),
        pod(1, 1000, ModelMask::ANY),
        pod(1, 1000, only(&[SMALL])),
    ];
    let mut c = Cluster::new(&nodes);
    let before = run(&mut Railyard::with_config(skewed_mix(), old()), &mut c, &pods);
    assert_eq!(before, vec![Some(1), Some(1), None]);
    let mut c = Cluster::new(&nodes);
    let now = run(&mut Railyard::new(skewed_mix()), &mut c, &pods);
    assert_eq!(now[2], Some(1), "{now:?}");
    assert!(now.iter().all(Option::is_some));
}

#[test]
fn unconstrained_pods_leave_the_model_constrained_demand_needs() {
    // Equal capacity (two 4-GPU nodes of different models); a third of the
    // mix can only use the small model, none only the other. Unconstrained
    // pods go to the other model until its pressure catches up: the first
    // four all land there.
    let nodes = [spec(SMALL, 4), spec(OTHER, 4)];
    let mix = Arc::new(TaskDistribution::from_types(vec![
        task(1, 1000, ModelMask::ANY, 2.0),
        task(1, 1000, only(&[SMALL]), 1.0),
    ]));
    let mut c = Cluster::new(&nodes);
    let got = run(
        &mut Railyard::new(mix.clone()),
        &mut c,
        &[pod(1, 1000, ModelMask::ANY); 4],
    );
    assert_eq!(got, vec![Some(1); 4]);
    // Then the small model's own pods still find all four GPUs.
    let got = run(&mut Railyard::new(mix), &mut c, &[pod(1, 1000, only(&[SMALL])); 4]);
    assert_eq!(got, vec![Some(0); 4]);
}

#[test]
fn a_set_constraint_takes_the_member_with_less_pressure() {
    // A pod allowed on SMALL or OTHER: SMALL is what single-model
    // constrained tasks need, OTHER only the set. It goes to OTHER even
    // though SMALL's node is listed first and both are empty and equal.
    let nodes = [spec(SMALL, 4), spec(OTHER, 4), spec(BIG, 8)];
    let mix = Arc::new(TaskDistribution::from_types(vec![
        task(1, 1000, ModelMask::ANY, 0.6),
        task(1, 1000, only(&[SMALL]), 0.3),
        task(1, 1000, only(&[SMALL, OTHER]), 0.1),
    ]));
    let c = Cluster::new(&nodes);
    let at = Railyard::new(mix).place(&c, &pod(1, 1000, only(&[SMALL, OTHER])));
    assert_eq!(at.map(|p| p.node), Some(1));
}

#[test]
fn shared_pods_fill_the_right_model_first() {
    // A half-used GPU on each model. Constrained demand is all on SMALL,
    // so an unconstrained half-GPU pod fills the BIG node's half GPU and
    // leaves SMALL's for the SMALL-only shared pods.
    let nodes = [spec(SMALL, 2), spec(BIG, 2)];
    let mix = Arc::new(TaskDistribution::from_types(vec![
        task(1, 500, ModelMask::ANY, 1.0),
        task(1, 500, only(&[SMALL]), 1.0),
    ]));
    let mut c = Cluster::new(&nodes);
    for node in 0..2 {
        c.apply(&pod(1, 500, ModelMask::ANY), Placement { node, gpus: 0b01 })
            .unwrap();
    }
    let mut p = Railyard::new(mix);
    assert_eq!(
        p.place(&c, &pod(1, 500, ModelMask::ANY)),
        Some(Placement { node: 1, gpus: 0b01 })
    );
}

#[test]
fn nothing_changes_without_constrained_tasks() {
    // Same decisions with and without the constraint machinery on a mixed
    // cluster and workload, when no task carries a constraint.
    let nodes = [
        spec(BIG, 8),
        spec(SMALL, 2),
        spec(OTHER, 4),
        spec(SMALL, 2),
        spec(BIG, 8),
    ];
    let shapes = [
        pod(1, 300, ModelMask::ANY),
        pod(1, 1000, ModelMask::ANY),
        pod(2, 1000, ModelMask::ANY),
        pod(1, 810, ModelMask::ANY),
        PodRequest::cpu_only(8000, 0),
        pod(4, 1000, ModelMask::ANY),
    ];
    let mix = Arc::new(TaskDistribution::with_options(&shapes, Railyard::DIST));
    let pods: Vec<PodRequest> = (0..40).map(|i| shapes[(i * 7 + i / 3) % shapes.len()]).collect();
    let mut a = Cluster::new(&nodes);
    let mut b = Cluster::new(&nodes);
    let new = run(&mut Railyard::new(mix.clone()), &mut a, &pods);
    let was = run(&mut Railyard::with_config(mix.clone(), old()), &mut b, &pods);
    assert_eq!(new, was);
    let r = Railyard::with_classes(mix, ClassMilli::capacity(&a.nodes), RailyardConfig::DEFAULT);
    assert!(r.constrained_mix().is_none());
}

#[test]
fn extender_style_scoring_matches_the_policy() {
    // node_key_with over the nodes, with the pressure from the idle GPU by
    // class, ranks like place().
    let nodes = [spec(BIG, 8), spec(SMALL, 2), spec(SMALL, 2)];
    let mut c = Cluster::new(&nodes);
    c.apply(&pod(1, 1000, ModelMask::ANY), Placement { node: 1, gpus: 0b01 })
        .unwrap();
    let r = Railyard::with_classes(skewed_mix(), ClassMilli::capacity(&c.nodes), RailyardConfig::DEFAULT);
    let pressure = r.pressure(&ClassMilli::idle(&c.nodes));
    let p = pod(1, 1000, ModelMask::ANY);
    let cfg = *r.config();
    let best = (0..c.len())
        .filter_map(|i| {
            let n = &c.nodes[i];
            r.node_key_with(n, r.node_frag(n), &p, &pressure)
                .map(|k| (k.value(&cfg), i))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, i)| i as u32);
    assert_eq!(best, Railyard::new(skewed_mix()).place(&c, &p).map(|p| p.node));
    // Per GPU, the small model is less wanted by constrained demand (0.1 of
    // the mix on a third of the capacity, against 0.4 on two thirds), so
    // the pod goes there, to the node in use.
    assert_eq!(best, Some(1));
}
