//! CEL selectors in the DRA environment (PROTOCOLS §4.3), on the `cel`
//! crate: one variable `device` with `driver`, `attributes[domain][id]`,
//! `capacity[domain][id]` (quantities) and `allowMultipleAllocations`;
//! Kubernetes' quantity and semver libraries ([`library`]); `cel.bind`.
//!
//! - Unqualified published names live under the driver's domain.
//! - An unknown domain is an empty map; an unknown id inside a domain is an
//!   evaluation error naming the key and the expression. The crate's maps
//!   cannot default, so every string literal of the expression that is not
//!   a published domain is added as an empty domain; a domain computed at
//!   run time and absent still errors (a known limitation).
//! - Work is bounded before evaluation by a static estimate ([`cost`]):
//!   expressions over [`MAX_EXPRESSION_LEN`] or estimated above
//!   [`COST_LIMIT`] are refused at compile time.

mod cost;
mod library;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use ::cel::objects::{Key, Map, Value};
use ::cel::{Context, Env, Program};

use crate::device::{AttrValue, Device, split_qualified};

pub use library::{QuantityValue, SemverValue};

/// The longest selector expression the API accepts (`10 * 1024`).
pub const MAX_EXPRESSION_LEN: usize = 10 * 1024;
/// The API's runtime cost limit per evaluation.
pub const COST_LIMIT: u64 = 1_000_000;
/// Parser nesting limit: deep enough for any real selector.
const MAX_DEPTH: u16 = 32;
/// Stack for compiling (see [`Selector::compile`]).
const COMPILE_STACK: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    #[error("selector is {len} bytes, longer than the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("selector {expression:?} does not compile: {message}")]
    Compile { expression: String, message: String },
    #[error("selector {expression:?} exceeds the cost limit: {message}")]
    CostLimit { expression: String, message: String },
    #[error("selector {expression:?} failed on device {device:?}: {message}")]
    Eval {
        expression: String,
        device: String,
        message: String,
    },
}

/// A compiled selector.
pub struct Selector {
    expression: String,
    program: Program,
    env: Arc<Env>,
    /// String literals of the expression: candidate domains that must read
    /// as empty maps when a device has none of them.
    literals: BTreeSet<String>,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("expression", &self.expression)
            .finish()
    }
}

fn env() -> Env {
    let mut env = Env::stdlib();
    // Registration of our own names cannot collide with the stdlib's.
    let _ = library::register(&mut env);
    env
}

impl Selector {
    /// Compiles on a thread of its own with a large stack: the ANTLR parser
    /// recurses deeply per nesting level, and a hostile selector must not
    /// overflow the caller's stack. Compiling happens once per expression.
    pub fn compile(expression: &str) -> Result<Selector, CelError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(CelError::TooLong {
                len: expression.len(),
                limit: MAX_EXPRESSION_LEN,
            });
        }
        let owned = expression.to_owned();
        let spawned = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || Self::compile_here(&owned));
        let internal = |message: &str| CelError::Compile {
            expression: expression.to_owned(),
            message: message.to_owned(),
        };
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|_| Err(internal("the parser failed"))),
            Err(_) => Err(internal("no thread to compile on")),
        }
    }

    fn compile_here(expression: &str) -> Result<Selector, CelError> {
        let env = env();
        let compile_err = |message: String| CelError::Compile {
            expression: expression.to_owned(),
            message,
        };
        let ast = env
            .parser()
            .max_recursion_depth(MAX_DEPTH)
            .parse(expression)
            .map_err(|e| compile_err(e.to_string()))?;
        let nesting = cost::comprehension_nesting(&ast);
        if nesting > cost::MAX_COMPREHENSION_NESTING {
            return Err(CelError::CostLimit {
                expression: expression.to_owned(),
                message: format!(
                    "{nesting} nested comprehensions (macros or cel.bind), more than {}",
                    cost::MAX_COMPREHENSION_NESTING
                ),
            });
        }
        let estimate = cost::estimate(&ast);
        if estimate > COST_LIMIT {
            return Err(CelError::CostLimit {
                expression: expression.to_owned(),
                message: format!("estimated cost {estimate} is above the limit of {COST_LIMIT}"),
            });
        }
        let program = env.compile(expression).map_err(|e| compile_err(e.to_string()))?;
        let mut literals = BTreeSet::new();
        string_literals(&ast, &mut literals);
        Ok(Selector {
            expression: expression.to_owned(),
            program,
            env: Arc::new(env),
            literals,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether `device`, published by `driver`, matches.
    pub fn matches(&self, driver: &str, device: &Device) -> Result<bool, CelError> {
        let eval = |message: String| CelError::Eval {
            expression: self.expression.clone(),
            device: device.name.clone(),
            message,
        };
        let mut ctx = Context::with_env(self.env.clone());
        library::add_functions(&mut ctx);
        ctx.add_variable_from_value("device", device_value(driver, device, &self.literals));
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(eval(format!("result is {:?}, not a bool", other.type_of()))),
            Err(e) => Err(eval(e.to_string())),
        }
    }
}

fn string_literals(e: &IdedExpr, out: &mut BTreeSet<String>) {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => {
            if out.len() < 256 {
                out.insert(s.inner().to_owned());
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                string_literals(t, out);
            }
            c.args.iter().for_each(|a| string_literals(a, out));
        }
        Expr::Comprehension(c) => {
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                string_literals(x, out);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| string_literals(x, out)),
        Expr::Map(m) => m.entries.iter().for_each(|x| match &x.expr {
            EntryExpr::MapEntry(m) => {
                string_literals(&m.key, out);
                string_literals(&m.value, out);
            }
            EntryExpr::StructField(f) => string_literals(&f.value, out),
        }),
        Expr::Select(s) => string_literals(&s.operand, out),
        Expr::Struct(s) => s.entries.iter().for_each(|x| {
            if let EntryExpr::StructField(f) = &x.expr {
                string_literals(&f.value, out)
            }
        }),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn attr_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Int(i) => Value::Int(*i),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::String(s) => Value::String(Arc::new(s.clone())),
        AttrValue::Version(s) => match crate::semver::Semver::parse(s) {
            Ok(v) => Value::Opaque(Arc::new(SemverValue(v))),
            // A published version that is not semver reads as its text.
            Err(_) => Value::String(Arc::new(s.clone())),
        },
    }
}

/// The `device` variable.
fn device_value(driver: &str, device: &Device, literals: &BTreeSet<String>) -> Value {
    let mut attributes: HashMap<String, HashMap<Key, Value>> = HashMap::new();
    for (k, v) in &device.attributes {
        let (domain, id) = split_qualified(driver, k);
        attributes
            .entry(domain.to_owned())
            .or_default()
            .insert(Key::from(id.to_owned()), attr_value(v));
    }
    let mut capacity: HashMap<String, HashMap<Key, Value>> = HashMap::new();
    for (k, c) in &device.capacity {
        let (domain, id) = split_qualified(driver, k);
        capacity.entry(domain.to_owned()).or_default().insert(
            Key::from(id.to_owned()),
            Value::Opaque(Arc::new(QuantityValue(c.value.clone()))),
        );
    }
    let domains = |mut m: HashMap<String, HashMap<Key, Value>>| {
        for l in literals {
            m.entry(l.clone()).or_default();
        }
        Value::Map(Map::from(
            m.into_iter()
                .map(|(k, v)| (Key::from(k), Value::Map(Map::from(v))))
                .collect::<HashMap<Key, Value>>(),
        ))
    };
    let mut d: HashMap<Key, Value> = HashMap::new();
    d.insert(
        Key::from("driver".to_owned()),
        Value::String(Arc::new(driver.to_owned())),
    );
    d.insert(Key::from("attributes".to_owned()), domains(attributes));
    d.insert(Key::from("capacity".to_owned()), domains(capacity));
    d.insert(
        Key::from("allowMultipleAllocations".to_owned()),
        Value::Bool(device.allow_multiple_allocations),
    );
    Value::Map(Map::from(d))
}

/// Compiles each distinct expression once. Bounded: when full, it is
/// cleared (simple, deterministic, and real clusters use few selectors).
#[derive(Debug, Default)]
pub struct SelectorCache {
    entries: Mutex<HashMap<String, Arc<Selector>>>,
}

/// Distinct selectors kept compiled.
pub const CACHE_ENTRIES: usize = 4096;

impl SelectorCache {
    pub fn get(&self, expression: &str) -> Result<Arc<Selector>, CelError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = entries.get(expression) {
            return Ok(s.clone());
        }
        let s = Arc::new(Selector::compile(expression)?);
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(expression.to_owned(), s.clone());
        Ok(s)
    }
}
