//! The environment selectors are compiled and evaluated in: the CEL
//! standard library, cel-go's strings and lists extensions, Kubernetes'
//! quantity (`k8s.io/apiserver/pkg/cel/library/quantity.go`) and semver
//! (`semverlib.go`) libraries, and the macros of [`super::macros`]
//! (`cel.bind`, two-variable comprehensions).
//!
//! Quantities and semvers are values of their own CEL types
//! (`kubernetes.Quantity`, `kubernetes.Semver`) with typed overloads, so a
//! call on the wrong type is a "no matching overload" error, as in cel-go.
//! `==` compares them numerically (by precedence for semvers); `<` and
//! friends are not defined on them, as upstream.

use std::any::Any;
use std::cmp::Ordering;

use ::cel::common::types::{BOOL_TYPE, CelBool, CelDouble, CelInt, CelString, INT_TYPE, STRING_TYPE, Type};
use ::cel::common::value::{CowVal, StaticVal, Val};
use ::cel::{DeclarationError, Env, ExecutionError};

use crate::quantity::Quantity;
use crate::semver::Semver;

const QUANTITY_NAME: &str = "kubernetes.Quantity";
const SEMVER_NAME: &str = "kubernetes.Semver";
static QUANTITY_TYPE: Type = Type::new_unspecified_type(QUANTITY_NAME);
static SEMVER_TYPE: Type = Type::new_unspecified_type(SEMVER_NAME);

fn quantity_type() -> Type {
    Type::new_unspecified_type(QUANTITY_NAME)
}

fn semver_type() -> Type {
    Type::new_unspecified_type(SEMVER_NAME)
}

/// A Kubernetes quantity as a CEL value; `==` is numeric equality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityValue(pub Quantity);

/// A semantic version as a CEL value; `==` is precedence equality (build
/// metadata ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemverValue(pub Semver);

impl Val for QuantityValue {
    fn get_type(&self) -> &Type {
        &QUANTITY_TYPE
    }
    fn cel_type() -> &'static Type {
        &QUANTITY_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<QuantityValue>().is_some_and(|o| o.0 == self.0)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for QuantityValue {}

impl Val for SemverValue {
    fn get_type(&self) -> &Type {
        &SEMVER_TYPE
    }
    fn cel_type() -> &'static Type {
        &SEMVER_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<SemverValue>().is_some_and(|o| o.0 == self.0)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for SemverValue {}

/// A fresh environment with everything selectors may use.
pub(crate) fn environment() -> Result<Env, DeclarationError> {
    let mut env = Env::stdlib();
    env.add_extension(::cel::extensions::strings)?;
    env.add_type(quantity_type())?;
    env.add_type(semver_type())?;
    register_quantity(&mut env)?;
    register_semver(&mut env)?;
    // cel-go's lists extension (`ext.Lists`, in the Kubernetes base
    // environment since 1.34): `slice`, `flatten`, `distinct`, `reverse`,
    // `sort`, `sortBy`, `lists.range`.
    env.add_extension(::cel::extensions::lists)?;
    super::macros::register(&mut env)?;
    Ok(env)
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// Argument `i`, of the type its overload was declared with.
fn arg<'a, T: StaticVal>(args: &'a [CowVal<'_, '_>], i: usize, function: &str) -> Result<&'a T, ExecutionError> {
    args.get(i)
        .and_then(|a| a.as_ref().as_any())
        .and_then(|a| a.downcast_ref::<T>())
        .ok_or_else(|| ExecutionError::function_error(function, format!("argument {i} has the wrong type")))
}

fn str_arg<'a>(args: &'a [CowVal<'_, '_>], i: usize, function: &str) -> Result<&'a str, ExecutionError> {
    args.get(i)
        .and_then(|a| a.as_ref().downcast_ref::<CelString>())
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error(function, format!("argument {i} must be a string")))
}

fn bool_arg(args: &[CowVal<'_, '_>], i: usize, function: &str) -> Result<bool, ExecutionError> {
    args.get(i)
        .and_then(|a| a.as_ref().downcast_ref::<CelBool>())
        .map(|b| *b.inner())
        .ok_or_else(|| ExecutionError::function_error(function, format!("argument {i} must be a bool")))
}

fn int_arg(args: &[CowVal<'_, '_>], i: usize, function: &str) -> Result<i64, ExecutionError> {
    args.get(i)
        .and_then(|a| a.as_ref().downcast_ref::<CelInt>())
        .map(|n| *n.inner())
        .ok_or_else(|| ExecutionError::function_error(function, format!("argument {i} must be an int")))
}

fn boolean<'b, 'v>(b: bool) -> CowVal<'b, 'v> {
    CowVal::owned(CelBool::from(b))
}

fn int<'b, 'v>(n: i64) -> CowVal<'b, 'v> {
    CowVal::owned(CelInt::from(n))
}

fn ordering(o: Ordering) -> i64 {
    match o {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }
}

fn register_quantity(env: &mut Env) -> Result<(), DeclarationError> {
    let q = quantity_type;
    env.add_overload("quantity", "string_to_quantity", vec![STRING_TYPE], to_quantity)?;
    env.add_overload("isQuantity", "is_quantity_string", vec![STRING_TYPE], is_quantity)?;
    // Upstream declares `sign` as a global overload, yet documents it as a
    // member: both spellings work here.
    env.add_overload("sign", "quantity_sign", vec![q()], quantity_sign)?;
    env.add_member_overload("sign", "quantity_sign_member", q(), vec![], quantity_sign)?;
    env.add_member_overload("isGreaterThan", "quantity_is_greater_than", q(), vec![q()], q_greater)?;
    env.add_member_overload("isLessThan", "quantity_is_less_than", q(), vec![q()], q_less)?;
    env.add_member_overload("compareTo", "quantity_compare_to", q(), vec![q()], q_compare)?;
    env.add_member_overload("asApproximateFloat", "quantity_get_float", q(), vec![], q_float)?;
    env.add_member_overload("asInteger", "quantity_get_int", q(), vec![], q_as_int)?;
    env.add_member_overload("isInteger", "quantity_is_integer", q(), vec![], q_is_int)?;
    env.add_member_overload("add", "quantity_add", q(), vec![q()], q_add)?;
    env.add_member_overload("add", "quantity_add_int", q(), vec![INT_TYPE], q_add_int)?;
    env.add_member_overload("sub", "quantity_sub", q(), vec![q()], q_sub)?;
    env.add_member_overload("sub", "quantity_sub_int", q(), vec![INT_TYPE], q_sub_int)?;
    Ok(())
}

fn to_quantity<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let s = str_arg(&args, 0, "quantity")?;
    match Quantity::parse(s) {
        Ok(q) => Ok(CowVal::owned(QuantityValue(q))),
        Err(e) => Err(ExecutionError::function_error("quantity", e)),
    }
}

fn is_quantity<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(Quantity::parse(str_arg(&args, 0, "isQuantity")?).is_ok()))
}

fn quantity<'a>(args: &'a [CowVal<'_, '_>], i: usize, function: &str) -> Result<&'a Quantity, ExecutionError> {
    arg::<QuantityValue>(args, i, function).map(|q| &q.0)
}

fn quantity_sign<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(int(quantity(&args, 0, "sign")?.sign()))
}

fn q_cmp(args: &[CowVal<'_, '_>], function: &str) -> Result<Ordering, ExecutionError> {
    Ok(quantity(args, 0, function)?.cmp(quantity(args, 1, function)?))
}

fn q_greater<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(q_cmp(&args, "isGreaterThan")? == Ordering::Greater))
}

fn q_less<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(q_cmp(&args, "isLessThan")? == Ordering::Less))
}

fn q_compare<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(int(ordering(q_cmp(&args, "compareTo")?)))
}

fn q_float<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(CowVal::owned(CelDouble::from(
        quantity(&args, 0, "asApproximateFloat")?.as_f64(),
    )))
}

/// `isInteger()` is true exactly when `asInteger()` succeeds, as upstream.
fn q_is_int<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(quantity(&args, 0, "isInteger")?.as_i64().is_some()))
}

fn q_as_int<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    match quantity(&args, 0, "asInteger")?.as_i64() {
        Some(n) => Ok(int(n)),
        None => Err(ExecutionError::function_error(
            "asInteger",
            "cannot convert value to integer",
        )),
    }
}

fn q_result<'b, 'v>(function: &str, q: Option<Quantity>) -> Ret<'b, 'v> {
    match q {
        Some(q) => Ok(CowVal::owned(QuantityValue(q))),
        None => Err(ExecutionError::function_error(function, "quantity out of range")),
    }
}

fn q_add<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let sum = quantity(&args, 0, "add")?.checked_add(quantity(&args, 1, "add")?);
    q_result("add", sum)
}

fn q_add_int<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let n = int_arg(&args, 1, "add")?;
    q_result("add", quantity(&args, 0, "add")?.add_int(n))
}

fn q_sub<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let diff = quantity(&args, 0, "sub")?.checked_sub(quantity(&args, 1, "sub")?);
    q_result("sub", diff)
}

fn q_sub_int<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let n = int_arg(&args, 1, "sub")?;
    q_result("sub", quantity(&args, 0, "sub")?.sub_int(n))
}

fn register_semver(env: &mut Env) -> Result<(), DeclarationError> {
    let s = semver_type;
    env.add_overload("semver", "string_to_semver", vec![STRING_TYPE], to_semver)?;
    env.add_overload(
        "semver",
        "string_bool_to_semver",
        vec![STRING_TYPE, BOOL_TYPE],
        to_semver,
    )?;
    env.add_overload("isSemver", "is_semver_string", vec![STRING_TYPE], is_semver)?;
    env.add_overload(
        "isSemver",
        "is_semver_string_bool",
        vec![STRING_TYPE, BOOL_TYPE],
        is_semver,
    )?;
    env.add_member_overload("isGreaterThan", "semver_is_greater_than", s(), vec![s()], s_greater)?;
    env.add_member_overload("isLessThan", "semver_is_less_than", s(), vec![s()], s_less)?;
    env.add_member_overload("compareTo", "semver_compare_to", s(), vec![s()], s_compare)?;
    env.add_member_overload("major", "semver_major", s(), vec![], s_major)?;
    env.add_member_overload("minor", "semver_minor", s(), vec![], s_minor)?;
    env.add_member_overload("patch", "semver_patch", s(), vec![], s_patch)?;
    Ok(())
}

/// `semver(s)` or `semver(s, normalize)`.
fn parse_semver(args: &[CowVal<'_, '_>], function: &str) -> Result<Result<Semver, String>, ExecutionError> {
    let text = str_arg(args, 0, function)?;
    let normalize = if args.len() > 1 {
        bool_arg(args, 1, function)?
    } else {
        false
    };
    Ok(Semver::parse_with(text, normalize).map_err(|e| e.to_string()))
}

fn to_semver<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    match parse_semver(&args, "semver")? {
        Ok(v) => Ok(CowVal::owned(SemverValue(v))),
        Err(e) => Err(ExecutionError::function_error("semver", e)),
    }
}

fn is_semver<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(parse_semver(&args, "isSemver")?.is_ok()))
}

fn semver<'a>(args: &'a [CowVal<'_, '_>], i: usize, function: &str) -> Result<&'a Semver, ExecutionError> {
    arg::<SemverValue>(args, i, function).map(|s| &s.0)
}

fn s_cmp(args: &[CowVal<'_, '_>], function: &str) -> Result<Ordering, ExecutionError> {
    Ok(semver(args, 0, function)?.cmp(semver(args, 1, function)?))
}

fn s_greater<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(s_cmp(&args, "isGreaterThan")? == Ordering::Greater))
}

fn s_less<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(boolean(s_cmp(&args, "isLessThan")? == Ordering::Less))
}

fn s_compare<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    Ok(int(ordering(s_cmp(&args, "compareTo")?)))
}

fn component<'b, 'v>(function: &str, n: u64) -> Ret<'b, 'v> {
    i64::try_from(n)
        .map(int)
        .map_err(|_| ExecutionError::function_error(function, "version component does not fit an int"))
}

fn s_major<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    component("major", semver(&args, 0, "major")?.major)
}

fn s_minor<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    component("minor", semver(&args, 0, "minor")?.minor)
}

fn s_patch<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    component("patch", semver(&args, 0, "patch")?.patch)
}
