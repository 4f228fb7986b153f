//! YAML parsing whose work is bounded by the input's size, for config files
//! anyone with write access to a ConfigMap controls.
//!
//! serde-saphyr refuses nested alias bombs ("billion laughs": its alias
//! replay is capped), but its defaults allow a million replayed events: an
//! anchored list of N values referenced M times costs N × M values from
//! N + M lines, so a 100 KB config could still ask for a lot. Here every
//! value deserialized (a node, counted again where an `Option` wraps it) and
//! every byte of string it carries spends from a budget of twice the input's
//! size plus a constant, and saphyr's own alias replay limit is set to a
//! small multiple of the same budget (for values nobody deserializes, which
//! this count does not see). An alias-free document costs at most about one
//! unit per byte, so no real config comes near it; aliases may repeat a
//! value only within it.
//!
//! The same deserializer wrapper (with no budget) serves
//! [`crate::yaml::from_yaml`]: it also hands numbers and booleans to serde's
//! own visitors, so a type error names the bad value (`invalid type: string
//! "many", expected u32`), which saphyr's typed parsers do not.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};

use crate::yaml::ConfigError;

/// Largest config text accepted: a ConfigMap holds at most 1 MiB of data,
/// so no config the cluster can deliver is longer.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Bound on `[`/`{` count × text length, checked before the parser runs.
/// It was set for libyaml (under serde_yaml), whose scanner did work
/// proportional to the flow nesting depth for every token and read the
/// whole document before any depth limit applied (`[` × 20,000 took 0.5 s).
/// serde-saphyr's parser stops at 255 nested flow collections by itself;
/// this cheap count stays as a parser-independent bound. The depth is at
/// most the number of `[` and `{`, so their count times the length bounds
/// that work (2^30). Counting every bracket, quoted or not, cannot be
/// fooled by quoting; a real config (a few KB, a few dozen flow lists) is
/// far below it.
pub const MAX_FLOW_WORK: usize = 1 << 30;

/// Budget units allowed for `len` bytes of input.
pub fn budget_for(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(4096)
}

/// Like [`crate::yaml::from_yaml`], refusing text over [`MAX_CONFIG_BYTES`]
/// and documents that expand past [`budget_for`] their length.
pub fn from_yaml_bounded<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Parse {
            what: what.to_string(),
            path: "(document)".into(),
            message: format!(
                "{} bytes, above the maximum of {MAX_CONFIG_BYTES} (a ConfigMap's limit)",
                text.len()
            ),
        });
    }
    let opens = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if opens.saturating_mul(text.len()) > MAX_FLOW_WORK {
        return Err(ConfigError::Parse {
            what: what.to_string(),
            path: "(document)".into(),
            message: format!(
                "{opens} flow collections ('[' or '{{') in {} bytes: above the maximum of {} for this size \
                 (the YAML parser's work grows with both)",
                text.len(),
                MAX_FLOW_WORK / text.len().max(1)
            ),
        });
    }
    parse(what, text, Some(budget_for(text.len())))
}

/// Deserializes `text` through [`Counted`] (spending from `budget` units,
/// `None` for no limit) and path tracking; errors name the field path.
pub(crate) fn parse<T: DeserializeOwned>(what: &str, text: &str, budget: Option<usize>) -> Result<T, ConfigError> {
    let mut options = crate::yaml::options();
    if let Some(units) = budget {
        // Values nobody deserializes (skipped, ignored) are replayed by the
        // parser without passing through `Counted`; bound those too.
        options.alias_limits.max_total_replayed_events = units.saturating_mul(4);
    }
    let budget = Budget {
        left: Cell::new(budget.unwrap_or(usize::MAX)),
        max: budget.unwrap_or(usize::MAX),
    };
    // The path of the first error, kept while saphyr adds its location.
    let path = RefCell::new(None);
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(Counted { de, budget: &budget }).map_err(|e| {
            *path.borrow_mut() = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| crate::yaml::parse_error(what, path.into_inner(), &e))
}

struct Budget {
    left: Cell<usize>,
    max: usize,
}

impl Budget {
    fn spend<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom(format!(
                    "the document expands to more than {} values and string bytes (twice its size plus 4096); \
                     YAML aliases may repeat content only within that",
                    self.max
                )))
            }
        }
    }
}

/// A deserializer that spends one unit per value it is asked for (and
/// reads numbers and booleans as [`as_any!`] says).
struct Counted<'b, D> {
    de: D,
    budget: &'b Budget,
}

/// A visitor that spends string bytes and wraps nested access.
struct Counting<'b, V> {
    inner: V,
    budget: &'b Budget,
}

struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Counted {
            de: d,
            budget: self.budget,
        })
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.budget.spend(1)?;
            self.de.$method($($arg,)* Counting { inner: visitor, budget: self.budget })
        }
    )*};
}

/// Numbers and booleans: the node is handed to the visitor as what it is
/// (`deserialize_any`), so serde's own visitors report a mismatch with the
/// value (`invalid type: string "many", expected u32`, `invalid value:
/// integer `-1`, expected u32`), as serde_yaml did; saphyr's typed parsers
/// say only `invalid u32`.
macro_rules! as_any {
    ($($method:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.budget.spend(1)?;
            self.de.deserialize_any(Counting { inner: visitor, budget: self.budget })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Counted<'_, D> {
    type Error = D::Error;

    as_any! {
        deserialize_bool;
        deserialize_i8;
        deserialize_i16;
        deserialize_i32;
        deserialize_i64;
        deserialize_i128;
        deserialize_u8;
        deserialize_u16;
        deserialize_u32;
        deserialize_u64;
        deserialize_u128;
        deserialize_f32;
        deserialize_f64;
    }

    forward! {
        deserialize_any();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! scalar {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Counting<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    scalar! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.budget.spend(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Counted {
            de: d,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Counted {
            de: d,
            budget: self.budget,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access {
            inner: seq,
            budget: self.budget,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Access {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access {
            inner: data,
            budget: self.budget,
        })
    }
}

/// Sequence, map, enum and variant access whose elements are counted.
struct Access<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'b, A> Access<'b, A> {
    fn seed<S>(&self, inner: S) -> Seed<'b, S> {
        Seed {
            inner,
            budget: self.budget,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_element_seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'b, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'b, A> {
    type Error = A::Error;
    type Variant = Access<'b, A::Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (v, variant) = self.inner.variant_seed(Seed { inner: seed, budget })?;
        Ok((v, Access { inner: variant, budget }))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Counting {
                inner: visitor,
                budget: self.budget,
            },
        )
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Counting {
                inner: visitor,
                budget: self.budget,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        v: crate::yaml::Value,
    }

    #[test]
    fn alias_free_documents_fit_and_wide_alias_bombs_do_not() {
        // Dense but alias-free: about one unit per byte.
        let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:x}")).collect();
        let dense = format!("v: {{{}}}\n", keys.join(","));
        from_yaml_bounded::<Doc>("t", &dense).unwrap();
        let list = format!("v: [{}]\n", vec!["xy"; 20_000].join(","));
        from_yaml_bounded::<Doc>("t", &list).unwrap();

        // One anchored list of 500 values, referenced 500 times: 250,000
        // values from ~3.5 KB.
        let bomb = format!("v:\n  - &a [{}]\n{}", vec!["1"; 500].join(","), "  - *a\n".repeat(500));
        let e = from_yaml_bounded::<Doc>("t", &bomb).unwrap_err();
        assert!(e.path().starts_with("v"), "{e}");
        assert!(e.to_string().contains("YAML aliases"), "{e}");
        // A long string repeated through aliases is counted by its bytes.
        let strings = format!("v:\n  - &s {}\n{}", "x".repeat(4000), "  - *s\n".repeat(100));
        assert!(from_yaml_bounded::<Doc>("t", &strings).is_err());
        // A few aliases are fine.
        from_yaml_bounded::<Doc>("t", "v: [&a [1, 2, 3], *a, *a]\n").unwrap();
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_the_parser_runs() {
        // 30,000 deep in 60 KB: libyaml would take over a second.
        let doc = format!("v: {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
        let e = from_yaml_bounded::<Doc>("t", &doc).unwrap_err();
        assert_eq!(e.path(), "(document)");
        assert!(e.to_string().contains("30000 flow collections"), "{e}");
        // A config with hundreds of flow lists is fine.
        let lists: String = (0..500).map(|i| format!("  k{i}: [a, {{b: c}}]\n")).collect();
        from_yaml_bounded::<Doc>("t", &format!("v:\n{lists}")).unwrap();
    }

    #[test]
    fn oversized_text_is_refused_before_parsing() {
        let e = from_yaml_bounded::<Doc>("t", &" ".repeat(MAX_CONFIG_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("above the maximum of 1048576"), "{e}");
    }
}
