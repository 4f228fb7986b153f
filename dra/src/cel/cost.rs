//! A static bound on the work of evaluating an expression, computed once at
//! compile time over the parsed (macro-expanded) AST.
//!
//! The `cel` crate counts no cost while it evaluates, so a hostile selector
//! is refused before it ever runs. The model is an upper-bound estimate in
//! the spirit of the API server's `EstimateCost` (cel-go's checker), not
//! cel-go's exact runtime cost: units are comparable (about one per node
//! visited, one per ten bytes scanned or copied) and the limit is the API's,
//! [`COST_LIMIT`](super::COST_LIMIT).
//!
//! - Every node costs at least 1.
//! - Each value gets a [`Shape`]: a size bound for strings and bytes, a
//!   length and element shapes for lists and maps. Literals have their own
//!   size; `device.attributes` and `device.capacity` have at most 32 domains
//!   of at most 32 entries (attribute values ≤ 64 characters, domain names
//!   ≤ 63, ids ≤ 32), the API's limits; `cel.bind` variables and
//!   comprehension variables carry the shape of what they are bound to.
//! - `+` on strings or lists produces the sum of the sizes and costs a tenth
//!   of the bytes it copies, so doubling a value through nested `cel.bind`s
//!   or `+` grows the estimate exponentially and is caught.
//! - Comparisons, `in`, `contains`, `matches` and the string functions cost
//!   a tenth of what they scan (`matches`: string × pattern / 40).
//! - A comprehension (`all`, `exists`, `exists_one`, `map`, `filter`,
//!   `cel.bind`) costs its range, its initial accumulator and its result,
//!   plus the range's length times the cost of one iteration; accumulators
//!   that grow (`map`, `filter`) grow by the step's size per element.
//! - `?:` costs the condition plus the dearer branch.
//! - A range or value of unknown shape (an undeclared variable, or what an
//!   unmodelled function returns) is assumed to hold [`UNKNOWN_LEN`]
//!   elements or bytes: everything a selector can build comes from its own
//!   text, bounded by 10 KiB, or from the device, bounded far lower.
//!
//! Arithmetic saturates, so the estimate never overflows. Besides the cost,
//! [`validate`] bounds the AST's depth: the interpreter recurses once per
//! level, and its frames are large (tens of KiB in debug builds).

use std::rc::Rc;

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};

/// Elements, or bytes, assumed for a value whose size nothing bounds.
pub const UNKNOWN_LEN: u64 = 10 * 1024;

/// The deepest AST accepted. Kubernetes' own tests and the CEL spec's
/// conformance suite nest to 32 levels; the interpreter recurses once per
/// level, so this keeps evaluation within a 2 MiB thread stack even in a
/// debug build.
pub const MAX_AST_DEPTH: usize = 40;

/// Checks what the interpreter would panic on or recurse too deep into.
/// Iterative, so that it cannot itself overflow on a deep tree.
pub fn validate(root: &IdedExpr) -> Result<(), String> {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_AST_DEPTH {
            return Err(format!("expression nested deeper than {MAX_AST_DEPTH} levels"));
        }
        match &e.expr {
            Expr::Unspecified => return Err("malformed expression".to_owned()),
            Expr::Map(m) if m.entries.iter().any(|x| matches!(x.expr, EntryExpr::StructField(_))) => {
                return Err("malformed map literal".to_owned());
            }
            Expr::Struct(s) if s.entries.iter().any(|x| matches!(x.expr, EntryExpr::MapEntry(_))) => {
                return Err("malformed message literal".to_owned());
            }
            _ => {}
        }
        for child in children(e) {
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.iter().map(|t| t.as_ref()).chain(&c.args).collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(entry_children).collect(),
        Expr::Struct(s) => s.entries.iter().flat_map(entry_children).collect(),
        Expr::Select(s) => vec![s.operand.as_ref()],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entry_children(x: &::cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &x.expr {
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// The estimated worst-case cost of evaluating `e`; `device` is the DRA
/// device, any other free variable is of unknown shape.
pub fn estimate(e: &IdedExpr) -> u64 {
    Estimator::default().walk(e).0
}

/// What the estimate knows of a value.
#[derive(Clone, Debug, PartialEq)]
enum Shape {
    /// Fixed size: numbers, bools, null, types, quantities, semvers.
    Num,
    /// A string or bytes of at most this many bytes.
    Text(u64),
    /// A list (`key: None`) or a map of at most `len` entries.
    Seq {
        len: u64,
        elem: Rc<Shape>,
        key: Option<Rc<Shape>>,
    },
    /// The `device` variable.
    Device,
    Unknown,
}

fn seq(len: u64, elem: Shape, key: Option<Shape>) -> Shape {
    Shape::Seq {
        len,
        elem: Rc::new(elem),
        key: key.map(Rc::new),
    }
}

/// API limits on what a device publishes.
const DOMAINS: u64 = 32;
const IDS: u64 = 32;
const DOMAIN_LEN: u64 = 63;
const ID_LEN: u64 = 32;
const VALUE_LEN: u64 = 64;

fn device_field(field: &str) -> Shape {
    match field {
        "driver" => Shape::Text(DOMAIN_LEN),
        "attributes" => seq(
            DOMAINS,
            seq(IDS, Shape::Text(VALUE_LEN), Some(Shape::Text(ID_LEN))),
            Some(Shape::Text(DOMAIN_LEN)),
        ),
        "capacity" => seq(
            DOMAINS,
            seq(IDS, Shape::Num, Some(Shape::Text(ID_LEN))),
            Some(Shape::Text(DOMAIN_LEN)),
        ),
        "allowMultipleAllocations" => Shape::Num,
        _ => Shape::Unknown,
    }
}

impl Shape {
    fn len(&self) -> u64 {
        match self {
            Shape::Num => 1,
            Shape::Text(n) => *n,
            Shape::Seq { len, .. } => *len,
            Shape::Device => 4,
            Shape::Unknown => UNKNOWN_LEN,
        }
    }

    /// Bytes, roughly, that copying or scanning the whole value touches.
    fn weight(&self) -> u64 {
        match self {
            Shape::Num => 1,
            Shape::Text(n) => (*n).max(1),
            Shape::Seq { len, elem, key } => {
                let each = elem.weight().saturating_add(key.as_ref().map_or(0, |k| k.weight()));
                len.saturating_mul(each).saturating_add(1)
            }
            Shape::Device => ["driver", "attributes", "capacity"]
                .iter()
                .fold(1u64, |w, f| w.saturating_add(device_field(f).weight())),
            Shape::Unknown => UNKNOWN_LEN,
        }
    }

    /// What a comprehension binds its variable to: a list's elements, a
    /// map's keys.
    fn item(&self) -> Shape {
        match self {
            Shape::Seq { elem, key, .. } => key.as_deref().unwrap_or(elem).clone(),
            Shape::Num | Shape::Text(_) => Shape::Num,
            Shape::Device | Shape::Unknown => Shape::Unknown,
        }
    }

    /// `self[k]` or `self.field`.
    fn index(&self, field: Option<&str>) -> Shape {
        match self {
            Shape::Seq { elem, .. } => (**elem).clone(),
            Shape::Device => field.map_or(Shape::Unknown, device_field),
            Shape::Unknown => Shape::Unknown,
            Shape::Num | Shape::Text(_) => Shape::Num,
        }
    }

    /// A shape covering both: for alternatives and list elements.
    fn merge(&self, other: &Shape) -> Shape {
        use Shape::*;
        match (self, other) {
            (Num, Num) => Num,
            (Text(a), Text(b)) => Text((*a).max(*b)),
            (Num, Text(n)) | (Text(n), Num) => Text((*n).max(1)),
            (
                Seq {
                    len: a,
                    elem: ea,
                    key: ka,
                },
                Seq {
                    len: b,
                    elem: eb,
                    key: kb,
                },
            ) => Seq {
                len: (*a).max(*b),
                elem: Rc::new(ea.merge(eb)),
                key: match (ka, kb) {
                    (Some(x), Some(y)) => Some(Rc::new(x.merge(y))),
                    (k @ Some(_), None) | (None, k @ Some(_)) => k.clone(),
                    (None, None) => None,
                },
            },
            (s @ Seq { len, elem, key }, Num | Text(_)) | (Num | Text(_), s @ Seq { len, elem, key }) => {
                let n = if s == self { other.len() } else { self.len() };
                Seq {
                    len: (*len).max(n),
                    elem: elem.clone(),
                    key: key.clone(),
                }
            }
            (Device, Device) => Device,
            _ => Unknown,
        }
    }

    /// `self + other`: strings and lists concatenate.
    fn concat(&self, other: &Shape) -> Shape {
        use Shape::*;
        match (self, other) {
            (Num, Num) => Num,
            (Seq { len: a, elem: ea, key }, Seq { len: b, elem: eb, .. }) => Seq {
                len: a.saturating_add(*b),
                elem: Rc::new(ea.merge(eb)),
                key: key.clone(),
            },
            _ => Text(self.len().saturating_add(other.len())),
        }
    }

    /// `flatten(depth)`: nested lists spliced in; with an unknown depth,
    /// as many elements as the whole weighs.
    fn flatten(&self, depth: Option<u64>) -> Shape {
        match (self, depth) {
            (_, Some(0)) => self.clone(),
            (Shape::Seq { len, elem, key: None }, Some(d)) => match elem.as_ref() {
                inner @ Shape::Seq { key: None, .. } => {
                    let spliced = inner.flatten(Some(d - 1));
                    let n = len.saturating_mul(spliced.len().max(1));
                    let e = spliced.index(None).merge(inner);
                    seq(n, e, None)
                }
                _ => self.clone(),
            },
            _ => seq(self.weight(), Shape::Unknown, None),
        }
    }

    /// The accumulator after `n` iterations that each took it from `init`
    /// to `step`: a growing one (`map`, `filter`) grows by the difference
    /// every time.
    fn grow(init: &Shape, step: &Shape, n: u64) -> Shape {
        let (a, b) = (init.len(), step.len());
        if b <= a || matches!(step, Shape::Unknown | Shape::Device) {
            return init.merge(step);
        }
        let len = a.saturating_add(n.saturating_mul(b - a));
        match init.merge(step) {
            Shape::Seq { elem, key, .. } => Shape::Seq { len, elem, key },
            _ => Shape::Text(len),
        }
    }
}

/// The most elements `lists.range` makes (the crate's cap, cel-go's
/// default).
const MAX_RANGE: u64 = 1_000_000;

/// A tenth of `n`, rounded up: the cost of scanning or copying `n` bytes.
fn tenth(n: u64) -> u64 {
    n.div_ceil(10)
}

#[derive(Default)]
struct Estimator {
    /// Variables bound by comprehensions and `cel.bind`, innermost last.
    scopes: Vec<(String, Shape)>,
}

impl Estimator {
    fn lookup(&self, name: &str) -> Shape {
        match self.scopes.iter().rev().find(|(n, _)| n == name) {
            Some((_, s)) => s.clone(),
            None if name == "device" => Shape::Device,
            None => Shape::Unknown,
        }
    }

    /// (cost, shape) of `e`.
    fn walk(&mut self, e: &IdedExpr) -> (u64, Shape) {
        match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => (1, Shape::Text(s.inner().len() as u64)),
            Expr::Literal(LiteralValue::Bytes(b)) => (1, Shape::Text(b.inner().len() as u64)),
            Expr::Literal(_) => (1, Shape::Num),
            Expr::Unspecified => (1, Shape::Unknown),
            Expr::Ident(name) => (1, self.lookup(name)),
            Expr::Select(s) => {
                let (cost, operand) = self.walk(&s.operand);
                let shape = if s.test {
                    Shape::Num
                } else {
                    operand.index(Some(&s.field))
                };
                (cost.saturating_add(1), shape)
            }
            Expr::List(l) => {
                let mut cost = 1u64.saturating_add(l.elements.len() as u64);
                let mut elem: Option<Shape> = None;
                for x in &l.elements {
                    let (c, s) = self.walk(x);
                    cost = cost.saturating_add(c);
                    elem = Some(elem.map_or(s.clone(), |e| e.merge(&s)));
                }
                (cost, seq(l.elements.len() as u64, elem.unwrap_or(Shape::Num), None))
            }
            Expr::Map(m) => {
                let mut cost = 1u64.saturating_add(m.entries.len() as u64);
                let (mut key, mut value): (Option<Shape>, Option<Shape>) = (None, None);
                for x in &m.entries {
                    for (i, part) in entry_children(x).into_iter().enumerate() {
                        let (c, s) = self.walk(part);
                        cost = cost.saturating_add(c);
                        let slot = if i == 0 && matches!(x.expr, EntryExpr::MapEntry(_)) {
                            &mut key
                        } else {
                            &mut value
                        };
                        *slot = Some(slot.take().map_or(s.clone(), |e| e.merge(&s)));
                    }
                }
                let len = m.entries.len() as u64;
                (
                    cost,
                    seq(len, value.unwrap_or(Shape::Num), Some(key.unwrap_or(Shape::Num))),
                )
            }
            Expr::Struct(s) => {
                let mut cost = 1u64.saturating_add(s.entries.len() as u64);
                for x in &s.entries {
                    for part in entry_children(x) {
                        cost = cost.saturating_add(self.walk(part).0);
                    }
                }
                (cost, Shape::Unknown)
            }
            Expr::Comprehension(c) => {
                let (range_cost, range) = self.walk(&c.iter_range);
                let (init_cost, init) = self.walk(&c.accu_init);
                let n = range.len();
                let outer = self.scopes.len();
                match &c.iter_var2 {
                    // Two-variable form: index or key, then value.
                    Some(v2) => {
                        self.scopes.push((c.iter_var.clone(), range.item()));
                        self.scopes.push((v2.clone(), range.index(None)));
                    }
                    None => self.scopes.push((c.iter_var.clone(), range.item())),
                }
                self.scopes.push((c.accu_var.clone(), init.clone()));
                let (cond_cost, _) = self.walk(&c.loop_cond);
                let (step_cost, step) = self.walk(&c.loop_step);
                let accu = Shape::grow(&init, &step, n);
                if let Some(top) = self.scopes.last_mut() {
                    top.1 = accu;
                }
                let (result_cost, result) = self.walk(&c.result);
                self.scopes.truncate(outer);
                let per_item = cond_cost.saturating_add(step_cost).saturating_add(1);
                let cost = 1u64
                    .saturating_add(range_cost)
                    .saturating_add(init_cost)
                    .saturating_add(n.saturating_mul(per_item))
                    .saturating_add(result_cost);
                (cost, result)
            }
            Expr::Call(call) => self.call(call),
        }
    }

    fn call(&mut self, call: &::cel::common::ast::CallExpr) -> (u64, Shape) {
        let target = call.target.as_deref().map(|t| self.walk(t));
        let args: Vec<(u64, Shape)> = call.args.iter().map(|a| self.walk(a)).collect();
        let func = call.func_name.as_str();
        if func == operators::CONDITIONAL
            && let [(c0, _), (c1, s1), (c2, s2)] = args.as_slice()
        {
            return (1u64.saturating_add(*c0).saturating_add((*c1).max(*c2)), s1.merge(s2));
        }
        let base = args
            .iter()
            .chain(target.iter())
            .fold(1u64, |acc, (c, _)| acc.saturating_add(*c));
        // The receiver first, then the arguments: `s.f(x)` and `f(s, x)`
        // read alike below.
        let operands: Vec<&Shape> = target.iter().chain(args.iter()).map(|(_, s)| s).collect();
        let w = |i: usize| operands.get(i).map_or(0, |s| s.weight());
        let len = |i: usize| operands.get(i).map_or(0, |s| s.len());
        let (extra, shape) = match func {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT | operators::NOT_STRICTLY_FALSE => {
                (0, Shape::Num)
            }
            operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO | operators::NEGATE => {
                (0, Shape::Num)
            }
            operators::ADD => {
                let shape = match (operands.first(), operands.get(1)) {
                    (Some(a), Some(b)) => a.concat(b),
                    _ => Shape::Unknown,
                };
                (tenth(shape.weight()), shape)
            }
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => (tenth(w(0).max(w(1))), Shape::Num),
            operators::IN => match operands.get(1) {
                Some(Shape::Seq { key: None, len, .. }) => (len.saturating_mul(1 + tenth(w(0))), Shape::Num),
                _ => (tenth(w(0)), Shape::Num),
            },
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                let field = match call.args.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::String(s))) => Some(s.inner()),
                    _ => None,
                };
                (0, operands.first().map_or(Shape::Unknown, |s| s.index(field)))
            }
            "size" | "type" | "quantity" | "isQuantity" | "semver" | "isSemver" => (tenth(w(0)), Shape::Num),
            "matches" => (tenth(w(0)).saturating_mul(w(1).div_ceil(4)), Shape::Num),
            "contains" | "startsWith" | "endsWith" | "indexOf" | "lastIndexOf" => {
                (tenth(w(0).saturating_add(w(1))), Shape::Num)
            }
            "split" => {
                let n = len(0);
                (
                    tenth(n).saturating_add(n),
                    seq(n.saturating_add(1), Shape::Text(n), None),
                )
            }
            "join" => {
                let (list, sep) = (operands.first(), len(1));
                let each = list
                    .map_or(Shape::Unknown, |l| l.index(None))
                    .weight()
                    .saturating_add(sep);
                let shape = Shape::Text(len(0).saturating_mul(each));
                (tenth(shape.weight()), shape)
            }
            "replace" => {
                // An empty `old` inserts `new` between every character.
                let n = len(0);
                let shape = Shape::Text(n.saturating_add(n.saturating_add(1).saturating_mul(len(2))));
                (tenth(shape.weight()), shape)
            }
            "format" => {
                let shape = Shape::Text(
                    len(0)
                        .saturating_add(len(1).saturating_mul(32))
                        .saturating_add(w(1).saturating_mul(4)),
                );
                (tenth(shape.weight()), shape)
            }
            "strings.quote" => {
                let shape = Shape::Text(w(0).saturating_mul(6).saturating_add(2));
                (tenth(shape.weight()), shape)
            }
            // The two-variable comprehensions' internals (see `macros`).
            super::macros::KEYS => {
                let shape = match operands.first() {
                    Some(Shape::Seq { len, key: Some(k), .. }) => Shape::Seq {
                        len: *len,
                        elem: k.clone(),
                        key: None,
                    },
                    Some(Shape::Seq { len, key: None, .. }) => seq(*len, Shape::Num, None),
                    _ => seq(UNKNOWN_LEN, Shape::Unknown, None),
                };
                (shape.len(), shape)
            }
            super::macros::ZIP_MAP => {
                let part = |i: usize| operands.get(i).map_or(Shape::Unknown, |s| s.index(None));
                (tenth(w(0).saturating_add(w(1))), seq(len(0), part(1), Some(part(0))))
            }
            // The lists extension.
            "lists.range" => {
                let n = match call.args.first().map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::Int(n))) => u64::try_from(*n.inner()).unwrap_or(0).min(MAX_RANGE),
                    _ => MAX_RANGE,
                };
                (n, seq(n, Shape::Num, None))
            }
            "slice" | "reverse" => (tenth(w(0)), operands.first().map_or(Shape::Unknown, |s| (*s).clone())),
            "distinct" | "sort" | "@sortByAssociatedKeys" => {
                let n = len(0);
                let each = operands.first().map_or(UNKNOWN_LEN, |s| s.index(None).weight());
                // Pairwise for `distinct`; n log n for the sorts.
                let steps = if func == "distinct" {
                    n.saturating_mul(n)
                } else {
                    n.saturating_mul(u64::from(n.max(1).ilog2() + 1))
                };
                (
                    steps.saturating_mul(1 + tenth(each)),
                    operands.first().map_or(Shape::Unknown, |s| (*s).clone()),
                )
            }
            "flatten" => {
                let depth = match call.args.first().map(|a| &a.expr) {
                    None => Some(1),
                    Some(Expr::Literal(LiteralValue::Int(n))) => u64::try_from(*n.inner()).ok(),
                    Some(_) => None,
                };
                let shape = operands.first().map_or(Shape::Unknown, |s| s.flatten(depth));
                (tenth(shape.weight()), shape)
            }
            "string" => {
                let shape = Shape::Text(w(0).max(32));
                (tenth(shape.weight()), shape)
            }
            // Everything else returns something no bigger than its operands
            // (conversions, `dyn`, `lowerAscii`, `substring`, the optional
            // functions, the quantity and semver members) and reads them at
            // most once.
            _ => {
                let shape = operands
                    .iter()
                    .fold(None::<Shape>, |acc, s| Some(acc.map_or((*s).clone(), |a| a.merge(s))));
                let widest = (0..operands.len()).map(w).max().unwrap_or(0);
                (tenth(widest), shape.unwrap_or(Shape::Num))
            }
        };
        (base.saturating_add(extra), shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser needs a large stack for nested calls in a debug build.
    fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(s, f)
                .expect("thread")
                .join()
                .expect("no panic")
        })
    }

    fn parse(src: &str) -> IdedExpr {
        let env = super::super::library::environment().expect("environment");
        on_big_stack(|| env.parser().parse(src).expect("parses"))
    }

    fn cost(src: &str) -> u64 {
        let ast = parse(src);
        on_big_stack(|| estimate(&ast))
    }

    #[test]
    fn ordinary_selectors_are_cheap() {
        for src in [
            "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'",
            "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0",
            "device.attributes['gpu.nvidia.com'].exists(k, k.startsWith('cuda'))",
            "device.attributes['gpu.nvidia.com'].productName.matches('^NVIDIA (H100|H200)')",
        ] {
            assert!(cost(src) < 2_000, "{src}: {}", cost(src));
        }
    }

    #[test]
    fn nesting_multiplies_and_doubling_explodes() {
        let list = format!("[{}]", (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        let two = format!("{list}.all(a, {list}.all(b, a + b >= 0))");
        assert!(cost(&two) < super::super::COST_LIMIT, "{}", cost(&two));
        let three = format!("{list}.all(a, {list}.all(b, {list}.all(c, a + b + c >= 0)))");
        assert!(cost(&three) > super::super::COST_LIMIT);
        let doubling = (0..24).fold("'ab'".to_owned(), |body, i| {
            format!("cel.bind(v{i}, {body}, v{i} + v{i})")
        });
        assert!(cost(&format!("size({doubling}) > 0")) > super::super::COST_LIMIT);
        let few = (0..4).fold("'ab'".to_owned(), |body, i| {
            format!("cel.bind(v{i}, {body}, v{i} + v{i})")
        });
        assert!(cost(&format!("size({few}) > 0")) < 1_000);
    }

    #[test]
    fn map_grows_its_accumulator() {
        let list = format!("[{}]", (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        // 100 × 100 elements, then iterated again: 10^6 iterations.
        let src = format!("{list}.map(a, {list}).map(l, l.map(x, x)).size() > 0");
        let nested = format!("{list}.map(a, {list}.map(b, b)).all(l, l.all(x, {list}.all(y, x == y)))");
        assert!(cost(&src) > 10_000, "{}", cost(&src));
        assert!(cost(&nested) > super::super::COST_LIMIT, "{}", cost(&nested));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("1{}", " + 1".repeat(MAX_AST_DEPTH + 1));
        assert!(validate(&parse(&deep)).is_err());
        let ok = format!("1{}", " + 1".repeat(MAX_AST_DEPTH - 2));
        assert!(validate(&parse(&ok)).is_ok());
    }
}
