//! The `device` variable: a view of one [`Device`] as CEL values.
//!
//! Strings are borrowed from the device, not copied; each attribute and
//! capacity becomes one small boxed value, grouped by domain. Building a
//! [`CelDevice`] costs a few allocations, so a caller that evaluates many
//! selectors against the same devices (the allocator) can build one per
//! device and reuse it with [`Selector::matches_device`].
//!
//! `device.attributes` and `device.capacity` are maps of domain → map of
//! id → value. Looking up a domain the device does not publish yields an
//! empty map (as the API server's `newStringInterfaceMapWithDefault`), so
//! `"x" in device.attributes["other.io"]` is false and
//! `has(device.attributes["other.io"].x)` works; `"other.io" in
//! device.attributes` still tells whether the domain is published. An id
//! missing from a domain is a "no such key" evaluation error.
//!
//! [`Selector::matches_device`]: super::Selector::matches_device

use std::any::Any;

use ::cel::ExecutionError;
use ::cel::common::traits::{self, Container, Indexer, Iterable, Sizer, Zeroer};
use ::cel::common::types::{CelBool, CelInt, CelString, Kind, MAP_TYPE, Type};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;

use super::library::{QuantityValue, SemverValue};
use crate::device::{AttrValue, Device, split_qualified};
use crate::semver::Semver;

static DEVICE_TYPE: Type = Type::new_unspecified_type("kubernetes.DRADevice");

/// One device as the selector environment sees it.
#[derive(Debug, Clone)]
pub struct CelDevice<'a> {
    name: &'a str,
    value: DeviceValue<'a>,
    /// Why the device cannot be evaluated (an attribute version that is not
    /// semver): every selector then fails on it, as upstream.
    invalid: Option<String>,
}

impl<'a> CelDevice<'a> {
    /// `device` as published by `driver`.
    pub fn new(driver: &'a str, device: &'a Device) -> CelDevice<'a> {
        let mut invalid = None;
        let mut attributes = Domains::default();
        for (name, attr) in &device.attributes {
            let (domain, id) = split_qualified(driver, name);
            let value: Box<dyn Val + 'a> = match attr {
                AttrValue::Int(n) => Box::new(CelInt::from(*n)),
                AttrValue::Bool(b) => Box::new(CelBool::from(*b)),
                AttrValue::String(s) => Box::new(CelString::from(s.as_str())),
                AttrValue::Version(v) => match Semver::parse(v) {
                    Ok(v) => Box::new(SemverValue(v)),
                    Err(e) => {
                        invalid.get_or_insert_with(|| format!("attribute {name}: {e}"));
                        Box::new(CelString::from(v.as_str()))
                    }
                },
            };
            attributes.insert(domain, id, value);
        }
        let mut capacity = Domains::default();
        for (name, cap) in &device.capacity {
            let (domain, id) = split_qualified(driver, name);
            capacity.insert(domain, id, Box::new(QuantityValue(cap.value.clone())));
        }
        CelDevice {
            name: &device.name,
            value: DeviceValue {
                driver: CelString::from(driver),
                allow_multiple_allocations: CelBool::from(device.allow_multiple_allocations),
                attributes,
                capacity,
            },
            invalid,
        }
    }

    /// The device's name, for error messages.
    pub fn name(&self) -> &str {
        self.name
    }

    pub(crate) fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }
}

/// Resolves the one variable, `device`, borrowing the prepared value.
impl VariableResolver for CelDevice<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == "device").then(|| CowVal::Borrowed(&self.value as &dyn Val))
    }
}

fn key_str(key: &dyn Val) -> Option<&str> {
    key.downcast_ref::<CelString>().map(|s| s.inner())
}

/// A key that is not a string: maps of this environment have string keys
/// only, so it is never found.
fn is_other_lookup_key(key: &dyn Val) -> bool {
    matches!(
        key.get_type().kind(),
        Kind::Int | Kind::UInt | Kind::Boolean | Kind::Double
    )
}

fn bad_key(key: &dyn Val) -> ExecutionError {
    ExecutionError::UnexpectedType {
        got: key.get_type().name().to_owned(),
        want: "map key".to_owned(),
    }
}

/// `kubernetes.DRADevice`: fields `driver`, `attributes`, `capacity`,
/// `allowMultipleAllocations`.
#[derive(Debug, Clone)]
struct DeviceValue<'a> {
    driver: CelString<'a>,
    allow_multiple_allocations: CelBool,
    attributes: Domains<'a>,
    capacity: Domains<'a>,
}

impl<'a> Val for DeviceValue<'a> {
    fn get_type(&self) -> &Type {
        &DEVICE_TYPE
    }
    fn cel_type() -> &'static Type {
        &DEVICE_TYPE
    }
    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }
}

impl<'a> Indexer for DeviceValue<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Some(field) = key_str(idx) else {
            return Err(bad_key(idx));
        };
        let value: &'b (dyn Val + 'v) = match field {
            "driver" => &self.driver,
            "attributes" => &self.attributes,
            "capacity" => &self.capacity,
            "allowMultipleAllocations" => &self.allow_multiple_allocations,
            _ => return Err(ExecutionError::no_such_key(field)),
        };
        Ok(CowVal::Borrowed(value))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// The ids of one domain and their values, in publication order.
#[derive(Debug, Clone, Default)]
struct Domain<'a> {
    ids: Vec<CelString<'a>>,
    values: Vec<Box<dyn Val + 'a>>,
}

impl<'a> Domain<'a> {
    fn position(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|k| k.inner() == id)
    }
}

/// Domain → [`Domain`]; an unknown domain reads as an empty one.
#[derive(Debug, Clone, Default)]
struct Domains<'a> {
    names: Vec<CelString<'a>>,
    domains: Vec<Domain<'a>>,
    empty: Domain<'a>,
}

impl<'a> Domains<'a> {
    fn insert(&mut self, domain: &'a str, id: &'a str, value: Box<dyn Val + 'a>) {
        let d = match self.names.iter().position(|n| n.inner() == domain) {
            Some(i) => i,
            None => {
                self.names.push(CelString::from(domain));
                self.domains.push(Domain::default());
                self.domains.len() - 1
            }
        };
        let Some(entries) = self.domains.get_mut(d) else {
            return;
        };
        // A name published both qualified and unqualified: the last wins,
        // as in the API server's map.
        match entries.position(id) {
            Some(i) => {
                if let Some(slot) = entries.values.get_mut(i) {
                    *slot = value;
                }
            }
            None => {
                entries.ids.push(CelString::from(id));
                entries.values.push(value);
            }
        }
    }

    fn find(&self, domain: &str) -> Option<&Domain<'a>> {
        let i = self.names.iter().position(|n| n.inner() == domain)?;
        self.domains.get(i)
    }
}

/// Map equality against any value of type `map`: same size, and each of
/// our keys found there with an equal value.
fn map_equals<'a>(keys: &[CelString<'a>], value_of: impl Fn(usize) -> Option<&'a dyn Val>, other: &dyn Val) -> bool
where
    'a: 'a,
{
    if other.get_type().kind() != Kind::Map {
        return false;
    }
    let (Some(size), Some(indexer)) = (other.as_sizer(), other.as_indexer()) else {
        return false;
    };
    if usize::try_from(*size.size().inner()).ok() != Some(keys.len()) {
        return false;
    }
    keys.iter()
        .enumerate()
        .all(|(i, k)| match (value_of(i), indexer.get(k)) {
            (Some(mine), Ok(theirs)) => mine.equals(theirs.as_ref()),
            _ => false,
        })
}

/// The iterator over a map's keys.
struct Keys<'b, 'a>(std::slice::Iter<'b, CelString<'a>>);

impl<'b, 'a: 'v, 'v> traits::Iterator<'b, 'v> for Keys<'b, 'a> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'v)> {
        self.0.next().map(|k| k as &(dyn Val + 'v))
    }
}

macro_rules! map_val {
    ($ty:ident, $keys:ident) => {
        impl<'a> Val for $ty<'a> {
            fn get_type(&self) -> &Type {
                &MAP_TYPE
            }
            fn cel_type() -> &'static Type {
                &MAP_TYPE
            }
            fn as_container(&self) -> Option<&dyn Container> {
                Some(self)
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_sizer(&self) -> Option<&dyn Sizer> {
                Some(self)
            }
            fn as_zeroer(&self) -> Option<&dyn Zeroer> {
                Some(self)
            }
            fn equals(&self, other: &dyn Val) -> bool {
                self.equals_map(other)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
        }

        impl<'a> Iterable for $ty<'a> {
            fn iter<'b, 'v>(&'b self) -> Box<dyn traits::Iterator<'b, 'v> + 'b>
            where
                Self: 'v,
            {
                Box::new(Keys(self.$keys.iter()))
            }
        }

        impl Sizer for $ty<'_> {
            fn size(&self) -> CelInt {
                CelInt::from(i64::try_from(self.$keys.len()).unwrap_or(i64::MAX))
            }
        }

        impl Zeroer for $ty<'_> {
            fn is_zero_value(&self) -> bool {
                self.$keys.is_empty()
            }
        }

        impl Container for $ty<'_> {
            fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
                match key_str(key) {
                    Some(k) => Ok(self.$keys.iter().any(|n| n.inner() == k)),
                    None if is_other_lookup_key(key) => Ok(false),
                    None => Err(bad_key(key)),
                }
            }
        }
    };
}

map_val!(Domain, ids);
map_val!(Domains, names);

impl<'a> Domain<'a> {
    fn equals_map(&self, other: &dyn Val) -> bool {
        map_equals(&self.ids, |i| self.values.get(i).map(|v| v.as_ref() as &dyn Val), other)
    }
}

impl<'a> Domains<'a> {
    fn equals_map(&self, other: &dyn Val) -> bool {
        map_equals(&self.names, |i| self.domains.get(i).map(|d| d as &dyn Val), other)
    }
}

impl<'a> Indexer for Domain<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match key_str(idx) {
            Some(id) => match self.position(id).and_then(|i| self.values.get(i)) {
                Some(v) => Ok(CowVal::Borrowed(v.as_ref())),
                None => Err(ExecutionError::no_such_key(id)),
            },
            None if is_other_lookup_key(idx) => Err(ExecutionError::no_such_key(&format!("{idx:?}"))),
            None => Err(bad_key(idx)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

impl<'a> Indexer for Domains<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match key_str(idx) {
            Some(domain) => Ok(CowVal::Borrowed(self.find(domain).unwrap_or(&self.empty))),
            None if is_other_lookup_key(idx) => Ok(CowVal::Borrowed(&self.empty)),
            None => Err(bad_key(idx)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}
