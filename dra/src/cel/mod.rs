//! CEL selectors in the DRA environment (`resource.k8s.io/v1`
//! `DeviceSelector.cel`), on the `cel` crate.
//!
//! - **Environment** ([`library`]): the CEL standard library, the strings
//!   extension, Kubernetes' quantity and semver libraries and `cel.bind`;
//!   one variable, `device` ([`CelDevice`]): `device.driver`,
//!   `device.attributes[domain][id]` (int, bool, string or semver),
//!   `device.capacity[domain][id]` (quantity) and
//!   `device.allowMultipleAllocations`. Unqualified published names belong
//!   to the driver's domain. An unknown domain is an empty map; an unknown
//!   id inside a domain is an evaluation error naming the key and the
//!   expression, which fails the allocation.
//! - **Limits**: an expression longer than [`MAX_EXPRESSION_LEN`] is
//!   refused; the parser's nesting is limited; the AST's depth is bounded
//!   and its evaluation work estimated statically ([`cost`]) against
//!   [`COST_LIMIT`], so a hostile selector is refused at compile time
//!   instead of hanging or exhausting memory in the allocator.
//! - **Compile once**: [`SelectorCache`] keeps compiled selectors (and
//!   compile errors), bounded.
//!
//! The result must be a bool; anything else is an evaluation error.

mod cost;
mod device_value;
mod library;
mod macros;

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex};

use ::cel::common::ast::IdedExpr;
use ::cel::common::types::CelBool;
use ::cel::common::value::Val;
use ::cel::{Context, Env, ExecutionError, Value};

use crate::device::Device;

pub use device_value::CelDevice;
pub use library::{QuantityValue, SemverValue};

/// The longest selector expression the API accepts (`10 * 1024`).
pub const MAX_EXPRESSION_LEN: usize = 10 * 1024;
/// The API's runtime cost limit per evaluation; here the bound on the
/// static estimate.
pub const COST_LIMIT: u64 = 1_000_000;
/// Parser nesting (parentheses, lists, calls): the CEL spec asks for 32.
const PARSER_DEPTH: u16 = 32;
/// Deepest AST accepted (see [`cost::MAX_AST_DEPTH`]).
pub const MAX_AST_DEPTH: usize = cost::MAX_AST_DEPTH;
/// Compiled selectors a [`SelectorCache`] keeps.
pub const CACHE_ENTRIES: usize = 4096;
/// Stack of the thread that parses: the ANTLR parser recurses per operator
/// of a chain (`a.b.c…`, `1+1+…`) and needs about 16 MiB for the worst
/// 10 KiB input in a debug build. Touched only as far as used.
const COMPILE_STACK: usize = 64 << 20;

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

/// The environment, built once: it is immutable and shared by every
/// selector.
static ENV: LazyLock<Result<Arc<Env>, String>> =
    LazyLock::new(|| library::environment().map(Arc::new).map_err(|e| e.to_string()));

/// A compiled expression of any result type in the selector environment:
/// what [`Selector`] is built on, exposed for conformance tests and tools.
pub struct Expression {
    source: String,
    ast: IdedExpr,
    env: Arc<Env>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What an [`Expression`] evaluated to.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub value: Value,
    /// The CEL type's name (`int`, `list`, `type`, ...): a type value reads
    /// as its name in `value`.
    pub type_name: String,
}

impl Expression {
    /// Compiles `source`; with a `container`, names resolve against it
    /// first, as in cel-go.
    pub fn compile(source: &str, container: Option<&str>) -> Result<Expression, CelError> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(CelError::TooLong {
                len: source.len(),
                limit: MAX_EXPRESSION_LEN,
            });
        }
        let compile_err = |message: String| CelError::Compile {
            expression: source.to_owned(),
            message,
        };
        let env = match container {
            None => ENV.clone().map_err(compile_err)?,
            Some(c) => {
                let mut env = library::environment().map_err(|e| compile_err(e.to_string()))?;
                env.set_container(c).map_err(|e| compile_err(e.to_string()))?;
                Arc::new(env)
            }
        };
        // Parse and check on a thread of our own with a large stack, so that
        // no input can overflow the caller's; a rejected deep tree is also
        // dropped there. Compiling happens once per distinct expression.
        let owned = source.to_owned();
        let parse_env = env.clone();
        let spawned = std::thread::Builder::new()
            .name("railyard-cel-compile".to_owned())
            .stack_size(COMPILE_STACK)
            .spawn(move || parse_and_check(&owned, &parse_env));
        let ast = match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Rejected::Compile("the parser failed unexpectedly".to_owned()))),
            Err(e) => Err(Rejected::Compile(format!("cannot start the compiler thread: {e}"))),
        };
        match ast {
            Ok(ast) => Ok(Expression {
                source: source.to_owned(),
                ast,
                env,
            }),
            Err(Rejected::Compile(message)) => Err(compile_err(message)),
            Err(Rejected::Cost(message)) => Err(CelError::CostLimit {
                expression: source.to_owned(),
                message,
            }),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `variables` bound.
    pub fn evaluate(&self, variables: Vec<(String, Value)>) -> Result<Evaluated, CelError> {
        let mut ctx = Context::with_env(self.env.clone());
        for (name, value) in variables {
            match Box::<dyn Val>::try_from(value) {
                Ok(v) => ctx.add_variable_as_val(name, v),
                Err(e) => return Err(self.eval_error("", format!("variable {name}: {e}"))),
            }
        }
        let run = || {
            let v = Value::resolve_val(&self.ast, &ctx)?;
            let type_name = v.get_type().name().to_owned();
            Ok(Evaluated {
                value: Value::try_from(v.as_ref())?,
                type_name,
            })
        };
        guarded(run).map_err(|m| self.eval_error("", m))
    }

    fn eval_error(&self, device: &str, message: String) -> CelError {
        CelError::Eval {
            expression: self.source.clone(),
            device: device.to_owned(),
            message,
        }
    }
}

enum Rejected {
    Compile(String),
    Cost(String),
}

fn parse_and_check(source: &str, env: &Env) -> Result<IdedExpr, Rejected> {
    let ast = env
        .parser()
        .max_recursion_depth(PARSER_DEPTH)
        // Backquoted field names (`m.`content-type``), as cel-go.
        .enable_ident_escape_syntax(true)
        .parse(source)
        .map_err(|e| Rejected::Compile(e.to_string()))?;
    // The cost first: a hostile expression is usually both deep and dear,
    // and the cost is the clearer reason.
    let estimate = cost::estimate(&ast);
    if estimate > COST_LIMIT {
        return Err(Rejected::Cost(format!(
            "estimated worst-case cost {estimate} is above the limit of {COST_LIMIT}"
        )));
    }
    cost::validate(&ast).map_err(Rejected::Compile)?;
    Ok(ast)
}

/// Runs an evaluation, turning its error, or a panic of the interpreter
/// (none is known; selectors come from untrusted users), into a message.
fn guarded<T>(run: impl FnOnce() -> Result<T, ExecutionError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(message(&e)),
        Err(_) => Err("the evaluator failed unexpectedly".to_owned()),
    }
}

/// cel-go's wording for a missing key; the crate's otherwise.
fn message(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        e => e.to_string(),
    }
}

/// A compiled selector.
pub struct Selector {
    expression: Expression,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("expression", &self.expression.source)
            .finish()
    }
}

impl Selector {
    pub fn compile(expression: &str) -> Result<Selector, CelError> {
        Expression::compile(expression, None).map(|expression| Selector { expression })
    }

    pub fn expression(&self) -> &str {
        &self.expression.source
    }

    /// Whether `device`, published by `driver`, matches.
    pub fn matches(&self, driver: &str, device: &Device) -> Result<bool, CelError> {
        self.matches_device(&CelDevice::new(driver, device))
    }

    /// Whether the prepared `device` matches: build a [`CelDevice`] once
    /// per device to evaluate many selectors against it.
    pub fn matches_device(&self, device: &CelDevice<'_>) -> Result<bool, CelError> {
        let fail = |message: String| self.expression.eval_error(device.name(), message);
        if let Some(why) = device.invalid() {
            return Err(fail(why.to_owned()));
        }
        let mut ctx = Context::with_env(self.expression.env.clone());
        ctx.set_variable_resolver(device);
        let run = || {
            let v = Value::resolve_val(&self.expression.ast, &ctx)?;
            Ok(match v.downcast_ref::<CelBool>() {
                Some(b) => Ok(*b.inner()),
                None => Err(v.get_type().name().to_owned()),
            })
        };
        match guarded(run) {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(type_name)) => Err(fail(format!("must evaluate to bool, not {type_name}"))),
            Err(m) => Err(fail(m)),
        }
    }
}

/// Compiles each distinct expression once, errors included (a claim with a
/// bad selector is retried every scheduling cycle). Bounded to
/// [`CACHE_ENTRIES`]; when full, the oldest entry goes first. Expressions
/// over the length limit are refused without being kept.
#[derive(Debug)]
pub struct SelectorCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

type Compiled = Result<Arc<Selector>, CelError>;

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<String, Compiled>,
    order: VecDeque<String>,
}

impl Default for SelectorCache {
    fn default() -> Self {
        SelectorCache::with_capacity(CACHE_ENTRIES)
    }
}

impl SelectorCache {
    pub fn with_capacity(capacity: usize) -> SelectorCache {
        SelectorCache {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, expression: &str) -> Result<Arc<Selector>, CelError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(CelError::TooLong {
                len: expression.len(),
                limit: MAX_EXPRESSION_LEN,
            });
        }
        if let Some(hit) = self.lock().entries.get(expression) {
            return hit.clone();
        }
        // Compiled outside the lock: it takes a thread and may take a while.
        let compiled = Selector::compile(expression).map(Arc::new);
        let mut inner = self.lock();
        if let Some(hit) = inner.entries.get(expression) {
            return hit.clone();
        }
        while inner.entries.len() >= self.capacity {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.entries.remove(&oldest);
        }
        inner.entries.insert(expression.to_owned(), compiled.clone());
        inner.order.push_back(expression.to_owned());
        compiled
    }

    /// Expressions kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
