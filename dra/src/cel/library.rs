//! Kubernetes' CEL libraries that selectors use: quantity
//! (`k8s.io/apiserver/pkg/cel/library/quantity.go`) and semver
//! (`semverlib.go`), as opaque values with their member functions.

use std::cmp::Ordering;
use std::sync::Arc;

use ::cel::common::ast::{ComprehensionExpr, Expr, ListExpr, LiteralValue};
use ::cel::common::types::Type;
use ::cel::extractors::{Arguments, This};
use ::cel::objects::{Opaque, Value};
use ::cel::parser::Macro;
use ::cel::{Env, ExecutionError};

use crate::quantity::Quantity;
use crate::semver::Semver;

pub const QUANTITY_TYPE: &str = "kubernetes.Quantity";
pub const SEMVER_TYPE: &str = "kubernetes.Semver";

/// A quantity in CEL; `==` is numeric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityValue(pub Quantity);
impl Opaque for QuantityValue {
    fn runtime_type_name(&self) -> &str {
        QUANTITY_TYPE
    }
}

/// A semver in CEL; `==` is precedence equality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemverValue(pub Semver);
impl Opaque for SemverValue {
    fn runtime_type_name(&self) -> &str {
        SEMVER_TYPE
    }
}

fn fail(function: &str, message: impl Into<String>) -> ExecutionError {
    ExecutionError::FunctionError {
        function: function.to_owned(),
        message: message.into(),
    }
}

fn quantity_of<'a>(function: &str, v: &'a Value) -> Result<&'a Quantity, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<QuantityValue>().map(|q| &q.0),
        _ => None,
    }
    .ok_or_else(|| fail(function, format!("expected a quantity, got {:?}", v.type_of())))
}

fn semver_of<'a>(function: &str, v: &'a Value) -> Option<&'a Semver> {
    let _ = function;
    match v {
        Value::Opaque(o) => o.downcast_ref::<SemverValue>().map(|s| &s.0),
        _ => None,
    }
}

fn string_arg(function: &str, args: &[Value], i: usize) -> Result<Arc<String>, ExecutionError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(fail(function, format!("argument {i} must be a string, got {other:?}"))),
    }
}

fn normalize_arg(function: &str, args: &[Value]) -> Result<bool, ExecutionError> {
    match args.get(1) {
        None => Ok(false),
        Some(Value::Bool(b)) if args.len() == 2 => Ok(*b),
        _ => Err(fail(function, "expects (string) or (string, bool)")),
    }
}

/// Ordering of two quantities or two semvers.
fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    if let (Some(x), Some(y)) = (semver_of(function, a), semver_of(function, b)) {
        return Ok(x.cmp(y));
    }
    Ok(quantity_of(function, a)?.cmp(quantity_of(function, b)?))
}

fn ordering_int(o: Ordering) -> i64 {
    match o {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

/// A quantity or an int argument of add/sub.
fn addend(function: &str, v: &Value) -> Result<Quantity, ExecutionError> {
    match v {
        Value::Int(i) => Ok(Quantity::from_i64(*i)),
        other => quantity_of(function, other).cloned(),
    }
}

fn q(v: Quantity) -> Value {
    Value::Opaque(Arc::new(QuantityValue(v)))
}

/// Registers the types and the `cel.bind` macro on `env`.
pub fn register(env: &mut Env) -> Result<(), ::cel::DeclarationError> {
    env.add_type(Type::new_opaque_type(QUANTITY_TYPE))?;
    env.add_type(Type::new_opaque_type(SEMVER_TYPE))?;
    // cel.bind(name, init, body) → a comprehension over an empty list whose
    // accumulator is `name`, as cel-go expands it.
    env.add_macro(Macro::receiver("bind", 3, |helper, target, args| {
        let is_cel = matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(n)) if n == "cel");
        if !is_cel {
            return Ok(None);
        }
        let (Some(body), Some(init), Some(name)) = (args.pop(), args.pop(), args.pop()) else {
            return Ok(None);
        };
        let Expr::Ident(var) = name.expr else {
            return Err(helper.new_error(name.id, "cel.bind() variable name must be a simple identifier"));
        };
        let bind = ComprehensionExpr {
            iter_range: helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
            iter_var: "#unused".to_owned(),
            iter_var2: None,
            accu_var: var.clone(),
            accu_init: init,
            loop_cond: helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into()))),
            loop_step: helper.next_expr(Expr::Ident(var)),
            result: body,
        };
        Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(bind)))))
    }))?;
    Ok(())
}

/// Adds the library's functions to an evaluation context.
pub fn add_functions(ctx: &mut ::cel::Context<'_, '_>) {
    // Names are distinct from the stdlib's, so these cannot fail.
    let _ = ctx.add_function(
        "quantity",
        |Arguments(args): Arguments| -> Result<Value, ExecutionError> {
            let s = string_arg("quantity", &args, 0)?;
            Quantity::parse(&s).map(q).map_err(|e| fail("quantity", e.to_string()))
        },
    );
    let _ = ctx.add_function(
        "isQuantity",
        |Arguments(args): Arguments| -> Result<bool, ExecutionError> {
            Ok(Quantity::parse(&string_arg("isQuantity", &args, 0)?).is_ok())
        },
    );
    let _ = ctx.add_function(
        "semver",
        |Arguments(args): Arguments| -> Result<Value, ExecutionError> {
            let s = string_arg("semver", &args, 0)?;
            let normalize = normalize_arg("semver", &args)?;
            Semver::parse_with(&s, normalize)
                .map(|v| Value::Opaque(Arc::new(SemverValue(v))))
                .map_err(|e| fail("semver", e.to_string()))
        },
    );
    let _ = ctx.add_function(
        "isSemver",
        |Arguments(args): Arguments| -> Result<bool, ExecutionError> {
            let s = string_arg("isSemver", &args, 0)?;
            Ok(Semver::parse_with(&s, normalize_arg("isSemver", &args)?).is_ok())
        },
    );
    let _ = ctx.add_function(
        "compareTo",
        |This(a): This<Value>, b: Value| -> Result<i64, ExecutionError> {
            Ok(ordering_int(compare("compareTo", &a, &b)?))
        },
    );
    let _ = ctx.add_function(
        "isGreaterThan",
        |This(a): This<Value>, b: Value| -> Result<bool, ExecutionError> {
            Ok(compare("isGreaterThan", &a, &b)? == Ordering::Greater)
        },
    );
    let _ = ctx.add_function(
        "isLessThan",
        |This(a): This<Value>, b: Value| -> Result<bool, ExecutionError> {
            Ok(compare("isLessThan", &a, &b)? == Ordering::Less)
        },
    );
    let _ = ctx.add_function("isInteger", |This(a): This<Value>| -> Result<bool, ExecutionError> {
        Ok(quantity_of("isInteger", &a)?.as_i64().is_some())
    });
    let _ = ctx.add_function("asInteger", |This(a): This<Value>| -> Result<i64, ExecutionError> {
        quantity_of("asInteger", &a)?
            .as_i64()
            .ok_or_else(|| fail("asInteger", "quantity is not an exact int64"))
    });
    let _ = ctx.add_function(
        "asApproximateFloat",
        |This(a): This<Value>| -> Result<f64, ExecutionError> { Ok(quantity_of("asApproximateFloat", &a)?.as_f64()) },
    );
    let _ = ctx.add_function("sign", |This(a): This<Value>| -> Result<i64, ExecutionError> {
        Ok(quantity_of("sign", &a)?.sign())
    });
    let _ = ctx.add_function(
        "add",
        |This(a): This<Value>, b: Value| -> Result<Value, ExecutionError> {
            let a = quantity_of("add", &a)?;
            // An int operand follows upstream's Add(int): the receiver's format.
            let sum = match &b {
                Value::Int(i) => a.add_int(*i),
                other => a.checked_add(&addend("add", other)?),
            };
            sum.map(q).ok_or_else(|| fail("add", "overflow"))
        },
    );
    let _ = ctx.add_function(
        "sub",
        |This(a): This<Value>, b: Value| -> Result<Value, ExecutionError> {
            let a = quantity_of("sub", &a)?;
            let diff = match &b {
                Value::Int(i) => a.sub_int(*i),
                other => a.checked_sub(&addend("sub", other)?),
            };
            diff.map(q).ok_or_else(|| fail("sub", "overflow"))
        },
    );
    for (name, part) in [("major", 0usize), ("minor", 1), ("patch", 2)] {
        let _ = ctx.add_function(name, move |This(a): This<Value>| -> Result<i64, ExecutionError> {
            let v = semver_of(name, &a).ok_or_else(|| fail(name, "expected a semver"))?;
            let n = [v.major, v.minor, v.patch][part];
            i64::try_from(n).map_err(|_| fail(name, "component does not fit an int"))
        });
    }
}
