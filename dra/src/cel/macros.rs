//! Macros beyond the standard ones: `cel.bind` (cel-go's bindings
//! extension) and the two-variable comprehensions of cel-go's
//! `ext.TwoVarComprehensions`, part of the Kubernetes base environment
//! since 1.32: `all(i, v, p)`, `exists(i, v, p)`, `existsOne(i, v, p)`,
//! `transformList(i, v, [filter,] e)` and `transformMap(k, v, [filter,] e)`.
//!
//! The interpreter binds one variable per comprehension, so a two-variable
//! form is rewritten into one-variable ones: the target is bound once,
//! the loop runs over its indices (a list) or keys (a map), given by the
//! internal `@keys`, and the second variable is bound to the element with
//! a `cel.bind` inside the body. `transformMap` pairs the kept keys with
//! the transformed values through the internal `@zipMap`. Names starting
//! with `@` cannot be written in CEL source, so they cannot clash.

use std::collections::HashMap;

use ::cel::common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue, operators};
use ::cel::common::types::{CelInt, CelList, CelMap, CelMapKey, Kind, LIST_TYPE, MAP_TYPE};
use ::cel::common::value::{CowVal, Val};
use ::cel::parser::{Macro, MacroExprHelper};
use ::cel::{DeclarationError, Env, ExecutionError, ParseError};

/// Internal: the indices of a list, or the keys of a map, as a list.
pub(crate) const KEYS: &str = "@keys";
/// Internal: a map from a list of keys and a list of values.
pub(crate) const ZIP_MAP: &str = "@zipMap";
const TARGET: &str = "@__target__";
const KEPT: &str = "@__kept__";
const RESULT: &str = "@result";

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_macro(Macro::receiver("bind", 3, bind_macro))?;
    for (name, kind) in [
        ("all", Kind2::All),
        ("exists", Kind2::Exists),
        ("existsOne", Kind2::ExistsOne),
        ("exists_one", Kind2::ExistsOne),
    ] {
        env.add_macro(Macro::receiver(name, 3, move |h, t, a| two_var(h, t, a, kind)))?;
    }
    for n in [3, 4] {
        env.add_macro(Macro::receiver("transformList", n, |h, t, a| {
            two_var(h, t, a, Kind2::TransformList)
        }))?;
        env.add_macro(Macro::receiver("transformMap", n, |h, t, a| {
            two_var(h, t, a, Kind2::TransformMap)
        }))?;
    }
    env.add_overload(KEYS, "@keys_list", vec![LIST_TYPE], keys)?;
    env.add_overload(KEYS, "@keys_map", vec![MAP_TYPE], keys)?;
    env.add_overload(ZIP_MAP, "@zip_map", vec![LIST_TYPE, LIST_TYPE], zip_map)?;
    Ok(())
}

/// `cel.bind(name, init, body)`: `body` with `name` bound to `init`,
/// evaluated once. Expanded as cel-go does, into a comprehension over an
/// empty list whose accumulator is `name`. A `bind` call on anything but
/// the identifier `cel` is declined before anything is taken from it.
fn bind_macro(
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, ParseError> {
    let on_cel = matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(n)) if n == "cel");
    if !on_cel || args.len() != 3 {
        return Ok(None);
    }
    let (Some(body), Some(init), Some(var)) = (args.pop(), args.pop(), args.pop()) else {
        return Err(helper.new_error(0, "cel.bind() takes three arguments"));
    };
    let Expr::Ident(name) = var.expr else {
        return Err(helper.new_error(var.id, "cel.bind() variable names must be simple identifiers"));
    };
    Ok(Some(bind(helper, name, init, body)))
}

/// `body` with `name` bound to `init`: the expansion of `cel.bind`.
fn bind(h: &mut MacroExprHelper<'_>, name: String, init: IdedExpr, body: IdedExpr) -> IdedExpr {
    let iter_range = h.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let loop_cond = boolean(h, false);
    let loop_step = ident(h, &name);
    comprehension(h, iter_range, "#unused", &name, init, loop_cond, loop_step, body)
}

fn ident(h: &mut MacroExprHelper<'_>, name: &str) -> IdedExpr {
    h.next_expr(Expr::Ident(name.to_owned()))
}

fn boolean(h: &mut MacroExprHelper<'_>, b: bool) -> IdedExpr {
    h.next_expr(Expr::Literal(LiteralValue::Boolean(b.into())))
}

fn int(h: &mut MacroExprHelper<'_>, n: i64) -> IdedExpr {
    h.next_expr(Expr::Literal(LiteralValue::Int(n.into())))
}

fn call(h: &mut MacroExprHelper<'_>, func: &str, args: Vec<IdedExpr>) -> IdedExpr {
    h.next_expr(Expr::Call(CallExpr {
        func_name: func.to_owned(),
        target: None,
        args,
    }))
}

#[allow(clippy::too_many_arguments)]
fn comprehension(
    h: &mut MacroExprHelper<'_>,
    iter_range: IdedExpr,
    iter_var: &str,
    accu_var: &str,
    accu_init: IdedExpr,
    loop_cond: IdedExpr,
    loop_step: IdedExpr,
    result: IdedExpr,
) -> IdedExpr {
    h.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range,
        iter_var: iter_var.to_owned(),
        iter_var2: None,
        accu_var: accu_var.to_owned(),
        accu_init,
        loop_cond,
        loop_step,
        result,
    })))
}

#[derive(Clone, Copy)]
enum Kind2 {
    All,
    Exists,
    ExistsOne,
    TransformList,
    TransformMap,
}

fn name_of(h: &mut MacroExprHelper<'_>, e: IdedExpr) -> Result<String, ParseError> {
    match e.expr {
        Expr::Ident(n) => Ok(n),
        _ => Err(h.new_error(e.id, "argument must be a simple name")),
    }
}

fn two_var(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
    kind: Kind2,
) -> Result<Option<IdedExpr>, ParseError> {
    let Some(subject) = target.take() else {
        return Ok(None);
    };
    let mut args = std::mem::take(args).into_iter();
    let (Some(first), Some(second)) = (args.next(), args.next()) else {
        return Err(h.new_error(subject.id, "expected two variables"));
    };
    let rest: Vec<IdedExpr> = args.collect();
    let (i, v) = (name_of(h, first)?, name_of(h, second)?);
    if i == v {
        return Err(h.new_error(subject.id, format!("duplicate variable name: {i}")));
    }
    // `body` with `v` bound to `@__target__[i]`.
    let with_value = |h: &mut MacroExprHelper<'_>, body: IdedExpr| {
        let t = ident(h, TARGET);
        let iv = ident(h, &i);
        let element = call(h, operators::INDEX, vec![t, iv]);
        bind(h, v.clone(), element, body)
    };
    let keys_of_target = |h: &mut MacroExprHelper<'_>| {
        let t = ident(h, TARGET);
        call(h, KEYS, vec![t])
    };
    let (filter, body) = match <[IdedExpr; 2]>::try_from(rest) {
        Ok([f, b]) => (Some(f), b),
        Err(mut rest) => match rest.pop() {
            Some(b) if rest.is_empty() => (None, b),
            _ => return Err(h.new_error(subject.id, "wrong number of arguments")),
        },
    };
    let accu = |h: &mut MacroExprHelper<'_>| ident(h, RESULT);
    let loop_expr = match kind {
        Kind2::All | Kind2::Exists => {
            let is_all = matches!(kind, Kind2::All);
            let range = keys_of_target(h);
            let init = boolean(h, is_all);
            let a = accu(h);
            let cond_arg = if is_all {
                a
            } else {
                call(h, operators::LOGICAL_NOT, vec![a])
            };
            let cond = call(h, operators::NOT_STRICTLY_FALSE, vec![cond_arg]);
            let a = accu(h);
            let value = with_value(h, body);
            let op = if is_all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(h, op, vec![a, value]);
            let result = accu(h);
            comprehension(h, range, &i, RESULT, init, cond, step, result)
        }
        Kind2::ExistsOne => {
            let range = keys_of_target(h);
            let init = int(h, 0);
            let cond = boolean(h, true);
            let value = with_value(h, body);
            let (a, one) = (accu(h), int(h, 1));
            let plus = call(h, operators::ADD, vec![a, one]);
            let a = accu(h);
            let step = call(h, operators::CONDITIONAL, vec![value, plus, a]);
            let (a, one) = (accu(h), int(h, 1));
            let result = call(h, operators::EQUALS, vec![a, one]);
            comprehension(h, range, &i, RESULT, init, cond, step, result)
        }
        Kind2::TransformList => {
            let range = keys_of_target(h);
            let value = with_value(h, body);
            let filter = filter.map(|f| with_value(h, f));
            append_loop(h, range, &i, value, filter)
        }
        Kind2::TransformMap => {
            // Keys kept by the filter, then their values, zipped.
            let range = keys_of_target(h);
            let kept = match filter {
                Some(f) => {
                    let f = with_value(h, f);
                    let key = ident(h, &i);
                    append_loop(h, range, &i, key, Some(f))
                }
                None => range,
            };
            let kept_ref = ident(h, KEPT);
            let value = with_value(h, body);
            let values = append_loop(h, kept_ref, &i, value, None);
            let kept_ref = ident(h, KEPT);
            let zipped = call(h, ZIP_MAP, vec![kept_ref, values]);
            bind(h, KEPT.to_owned(), kept, zipped)
        }
    };
    Ok(Some(bind(h, TARGET.to_owned(), subject, loop_expr)))
}

/// `range.map(var, item)`, or with a filter `range.map(var, filter, item)`,
/// in the shape the standard `map` macro expands to (which the
/// interpreter runs in place, without copying the accumulator).
fn append_loop(
    h: &mut MacroExprHelper<'_>,
    range: IdedExpr,
    var: &str,
    item: IdedExpr,
    filter: Option<IdedExpr>,
) -> IdedExpr {
    let init = h.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let cond = boolean(h, true);
    let a = ident(h, RESULT);
    let one = h.next_expr(Expr::List(ListExpr::new(vec![item])));
    let append = call(h, operators::ADD, vec![a, one]);
    let step = match filter {
        Some(f) => {
            let a = ident(h, RESULT);
            call(h, operators::CONDITIONAL, vec![f, append, a])
        }
        None => append,
    };
    let result = ident(h, RESULT);
    comprehension(h, range, var, RESULT, init, cond, step, result)
}

fn keys<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let Some(target) = args.first() else {
        return Err(ExecutionError::invalid_argument_count(1, 0));
    };
    let target: &(dyn Val + 'v) = target.as_ref();
    let out: Vec<Box<dyn Val + 'v>> = if target.get_type().kind() == Kind::List {
        let n = target.as_sizer().map_or(0, |s| *s.size().inner());
        (0..n).map(|i| Box::new(CelInt::from(i)) as Box<dyn Val + 'v>).collect()
    } else {
        let mut out = Vec::new();
        if let Some(it) = target.as_iterable() {
            let mut items = it.iter();
            while let Some(k) = items.next() {
                out.push(k.clone_as_boxed());
            }
        }
        out
    };
    Ok(CowVal::owned(CelList::from(out)))
}

fn zip_map<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (Some(keys), Some(values)) = (args.first(), args.get(1)) else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let collect = |l: &(dyn Val + 'v)| {
        let mut out: Vec<Box<dyn Val + 'v>> = Vec::new();
        if let Some(it) = l.as_iterable() {
            let mut items = it.iter();
            while let Some(x) = items.next() {
                out.push(x.clone_as_boxed());
            }
        }
        out
    };
    let (keys, values) = (collect(keys.as_ref()), collect(values.as_ref()));
    let mut map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::with_capacity(keys.len());
    for (k, v) in keys.into_iter().zip(values) {
        map.insert(CelMapKey::try_from(k)?, v);
    }
    Ok(CowVal::owned(CelMap::from(map)))
}
