//! Strict YAML reading for any serde type, as `kubectl apply --validate=strict` reads a
//! manifest: a field the type does not know is an error naming its full path and the nearest
//! known field, and a value of the wrong type is an error naming the field and the type
//! expected.
//!
//! ```
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(rename_all = "camelCase")]
//! struct Spec {
//!     max_replicas: i32,
//! }
//!
//! let err = warren_strict::from_str::<Spec>("maxReplica: 10\n").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "maxReplica: unknown field (did you mean maxReplicas?); missing field `maxReplicas`"
//! );
//!
//! let err = warren_strict::from_str::<Spec>("maxReplicas: ten\n").unwrap_err();
//! assert_eq!(err.to_string(), r#"maxReplicas: invalid type: string "ten", expected i32"#);
//! ```
//!
//! Types such as k8s-openapi's do not deny unknown fields; they skip them. Nothing here needs
//! the type to say which fields it has: the YAML is parsed into a tree, and the type is read
//! from that tree by a deserializer that keeps the path it is at. Every struct announces its
//! field names when it asks to be read (serde's `deserialize_struct`), so a mapping key that
//! is not among them is recorded there, with those names for the suggestion.
//!
//! Structs read through serde's buffering (`#[serde(flatten)]`, untagged and internally
//! tagged enums) do not announce their fields, so their keys are not checked; such types can
//! add `#[serde(deny_unknown_fields)]` where it applies.
#![deny(missing_docs)]

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_yaml::Value;

/// Reads `T` from YAML (or JSON) text, strictly.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| Error {
        problems: vec![Problem {
            path: String::new(),
            kind: ProblemKind::Syntax(e.to_string()),
        }],
    })?;
    from_value(&value)
}

/// Reads `T` from an already-parsed YAML tree, strictly.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    let unknown = RefCell::new(Vec::new());
    let result = T::deserialize(ValueDeserializer {
        value,
        path: Path::default(),
        unknown: &unknown,
    });
    let mut problems = unknown.into_inner();
    match result {
        Ok(t) if problems.is_empty() => Ok(t),
        Ok(_) => Err(Error { problems }),
        // A type that denies unknown fields itself fails on the first one, which is already
        // listed, with its suggestion.
        Err(e) if !problems.is_empty() && e.message.starts_with("unknown field `") => {
            Err(Error { problems })
        }
        Err(e) => {
            problems.push(Problem {
                path: e.path.unwrap_or_default(),
                kind: ProblemKind::Invalid(e.message),
            });
            Err(Error { problems })
        }
    }
}

/// Why a document cannot be read: every unknown field found, and the first value of a wrong
/// type (reading stops there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The problems, in document order (unknown fields first met first).
    pub problems: Vec<Problem>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// One problem, at one place of the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `spec.metrics[0].external.metric.nme`; empty for the whole document.
    pub path: String,
    /// What.
    pub kind: ProblemKind,
}

/// The kinds of problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The text is not YAML.
    Syntax(String),
    /// The type has no field of this name here.
    UnknownField {
        /// The known field closest to the unknown one, when one is close.
        suggestion: Option<String>,
        /// Every field the type knows here.
        known: Vec<String>,
    },
    /// A value the type cannot take, e.g. `invalid type: string "ten", expected i32`.
    Invalid(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match &self.kind {
            ProblemKind::Syntax(message) | ProblemKind::Invalid(message) => f.write_str(message),
            ProblemKind::UnknownField {
                suggestion: Some(s),
                ..
            } => write!(f, "unknown field (did you mean {s}?)"),
            ProblemKind::UnknownField { known, .. } if known.is_empty() => {
                f.write_str("unknown field (no fields are known here)")
            }
            ProblemKind::UnknownField { known, .. } => {
                write!(f, "unknown field (known fields: {})", known.join(", "))
            }
        }
    }
}

/// The known field nearest to `field`, when it is near enough to be a likely typo.
pub fn nearest_field<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = field.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A place in the document, built as the reader descends.
#[derive(Clone, Debug, Default)]
struct Path(String);

impl Path {
    fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
}

/// The deserializer's error: a message, and the path where it arose (set by the innermost
/// value that saw it).
#[derive(Debug)]
struct DeError {
    path: Option<String>,
    message: String,
}

impl DeError {
    fn at(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.0.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: None,
            message: msg.to_string(),
        }
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

struct ValueDeserializer<'a> {
    value: &'a Value,
    path: Path,
    unknown: &'a RefCell<Vec<Problem>>,
}

impl<'a> ValueDeserializer<'a> {
    fn child(&self, value: &'a Value, path: Path) -> Self {
        ValueDeserializer {
            value,
            path,
            unknown: self.unknown,
        }
    }

    fn untagged(&self) -> &'a Value {
        let mut value = self.value;
        while let Value::Tagged(tagged) = value {
            value = &tagged.value;
        }
        value
    }
}

impl<'de, 'a> de::Deserializer<'de> for ValueDeserializer<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = match self.untagged() {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Sequence(items) => visitor.visit_seq(SeqAccess {
                items: items.iter().enumerate(),
                parent: &self,
            }),
            Value::Mapping(map) => visitor.visit_map(MapAccess {
                entries: map.iter(),
                pending: None,
                parent: &self,
            }),
            Value::Tagged(_) => unreachable!("untagged() strips tags"),
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        match self.untagged() {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        visitor.visit_newtype_struct(self).map_err(|e| e.at(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if let Value::Mapping(map) = self.untagged() {
            for key in map.keys() {
                let name = key_text(key);
                if !fields.contains(&name.as_str()) {
                    self.unknown.borrow_mut().push(Problem {
                        path: self.path.field(&name).0,
                        kind: ProblemKind::UnknownField {
                            suggestion: nearest_field(&name, fields).map(str::to_string),
                            known: fields.iter().map(|f| f.to_string()).collect(),
                        },
                    });
                }
            }
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        match self.untagged() {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Mapping(map) if map.len() == 1 => {
                let Some((key, value)) = map.iter().next() else {
                    unreachable!("the mapping has one entry")
                };
                visitor.visit_enum(EnumAccess {
                    variant: key_text(key),
                    value: self.child(value, self.path.field(&key_text(key))),
                })
            }
            _ => self.deserialize_any(visitor),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct SeqAccess<'p, 'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    parent: &'p ValueDeserializer<'a>,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'_, 'a> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, item)) => seed
                .deserialize(self.parent.child(item, self.parent.path.index(i)))
                .map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'p, 'a> {
    entries: serde_yaml::mapping::Iter<'a>,
    pending: Option<(&'a Value, &'a Value)>,
    parent: &'p ValueDeserializer<'a>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'_, 'a> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        let path = self.parent.path.field(&key_text(key));
        seed.deserialize(self.parent.child(key, path)).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom(
                "a map value was asked for before its key",
            ));
        };
        let path = self.parent.path.field(&key_text(key));
        seed.deserialize(self.parent.child(value, path))
    }
}

struct EnumAccess<'a> {
    variant: String,
    value: ValueDeserializer<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = ValueDeserializer<'a>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let variant = seed.deserialize(self.variant.as_str().into_deserializer())?;
        Ok((variant, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for ValueDeserializer<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
