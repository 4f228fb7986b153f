//! A static upper-bound estimate of an expression's evaluation work, like
//! the API server's cost estimate (not cel-go's exact cost): every node
//! costs 1; a comprehension costs its range's size times its loop body;
//! `+` costs the sizes it concatenates. Sizes of lists and strings are
//! tracked through literals, `+` and `cel.bind`, so doubling a string
//! through nested binds is caught. A range of unknown size (a device map,
//! a bound list) counts as [`UNKNOWN_SIZE`] elements. Saturating
//! arithmetic: the estimate never overflows.

use std::collections::BTreeMap;

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};

/// Elements assumed for a list or map whose size is not known statically
/// (a device's attributes and capacities are at most 32).
pub const UNKNOWN_SIZE: u64 = 64;

#[derive(Clone, Copy)]
struct Est {
    cost: u64,
    size: u64,
}

pub fn estimate(e: &IdedExpr) -> u64 {
    walk(e, &BTreeMap::new()).cost
}

fn walk(e: &IdedExpr, bound: &BTreeMap<String, u64>) -> Est {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Est {
            cost: 1,
            size: s.inner().len() as u64,
        },
        Expr::Literal(LiteralValue::Bytes(_)) => Est {
            cost: 1,
            size: UNKNOWN_SIZE,
        },
        Expr::Literal(_) | Expr::Unspecified => Est { cost: 1, size: 1 },
        Expr::Ident(n) => Est {
            cost: 1,
            size: bound.get(n).copied().unwrap_or(UNKNOWN_SIZE),
        },
        Expr::Select(s) => {
            let o = walk(&s.operand, bound);
            Est {
                cost: o.cost.saturating_add(1),
                size: UNKNOWN_SIZE,
            }
        }
        Expr::List(l) => {
            let mut cost = 1u64;
            for x in &l.elements {
                cost = cost.saturating_add(walk(x, bound).cost);
            }
            Est {
                cost,
                size: l.elements.len() as u64,
            }
        }
        Expr::Map(m) => {
            let mut cost = 1u64;
            for x in &m.entries {
                match &x.expr {
                    EntryExpr::MapEntry(me) => {
                        cost = cost
                            .saturating_add(walk(&me.key, bound).cost)
                            .saturating_add(walk(&me.value, bound).cost)
                    }
                    EntryExpr::StructField(f) => cost = cost.saturating_add(walk(&f.value, bound).cost),
                }
            }
            Est {
                cost,
                size: m.entries.len() as u64,
            }
        }
        Expr::Struct(s) => {
            let mut cost = 1u64;
            for x in &s.entries {
                if let EntryExpr::StructField(f) = &x.expr {
                    cost = cost.saturating_add(walk(&f.value, bound).cost);
                }
            }
            Est { cost, size: 1 }
        }
        Expr::Call(c) => {
            let mut cost = 1u64;
            let mut sizes = Vec::new();
            for x in c.target.iter().map(|b| b.as_ref()).chain(&c.args) {
                let est = walk(x, bound);
                cost = cost.saturating_add(est.cost);
                sizes.push(est.size);
            }
            let size = if c.func_name == "_+_" {
                let s = sizes.iter().fold(0u64, |a, b| a.saturating_add(*b));
                // Concatenation copies both sides.
                cost = cost.saturating_add(s);
                s
            } else {
                // Other functions (string ops, matches) scan their inputs.
                let s = sizes.iter().copied().max().unwrap_or(1);
                cost = cost.saturating_add(s);
                s
            };
            Est { cost, size }
        }
        Expr::Comprehension(c) => {
            let range = walk(&c.iter_range, bound);
            let init = walk(&c.accu_init, bound);
            let mut inner = bound.clone();
            inner.insert(c.iter_var.clone(), UNKNOWN_SIZE);
            inner.insert(c.accu_var.clone(), init.size);
            let cond = walk(&c.loop_cond, &inner);
            let step = walk(&c.loop_step, &inner);
            let result = walk(&c.result, &inner);
            let per_item = cond.cost.saturating_add(step.cost);
            let cost = range
                .cost
                .saturating_add(init.cost)
                .saturating_add(range.size.saturating_mul(per_item))
                .saturating_add(result.cost);
            Est {
                cost,
                size: result.size.max(range.size),
            }
        }
    }
}

/// Comprehensions (macros and `cel.bind`) nested in one another. The
/// interpreter recurses per level with large frames, so the nesting is
/// capped to keep evaluation within a 2 MiB thread stack.
pub const MAX_COMPREHENSION_NESTING: usize = 6;

/// The deepest nesting of comprehensions in `e`.
pub fn comprehension_nesting(e: &IdedExpr) -> usize {
    let max = |xs: &mut dyn Iterator<Item = &IdedExpr>| xs.map(comprehension_nesting).max().unwrap_or(0);
    match &e.expr {
        Expr::Comprehension(c) => {
            1 + max(&mut [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter())
        }
        Expr::Call(c) => max(&mut c.target.iter().map(|b| b.as_ref()).chain(&c.args)),
        Expr::List(l) => max(&mut l.elements.iter()),
        Expr::Map(m) => max(&mut m.entries.iter().flat_map(|x| match &x.expr {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })),
        Expr::Select(s) => comprehension_nesting(&s.operand),
        Expr::Struct(s) => max(&mut s.entries.iter().filter_map(|x| match &x.expr {
            EntryExpr::StructField(f) => Some(&f.value),
            EntryExpr::MapEntry(_) => None,
        })),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    }
}
