//! Config objects tagged by one field (`{"type": "header", "name": "x-user"}`) whose other fields are
//! strings, read by hand. serde's derive for an internally tagged enum buffers the object and then
//! reads it again, so every field's reader is instantiated twice: about 17–21 KB of `.wasm` per enum
//! (`bench/README.md`, "What the bytes are"). [`read`] gives the same answers: the tag anywhere in the
//! object, unknown and duplicate fields refused with serde's own messages, `null` only where a field
//! is `nullable`. The caller builds its enum from the [`Tagged`] it returns.

use serde::de::{self, Error, IgnoredAny, MapAccess, Unexpected, Visitor};
use std::fmt;

/// One variant: its tag value and the fields it takes (all strings); `nullable` ones may be `null`.
pub struct Variant {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub nullable: &'static [&'static str],
}

/// An object read by [`read`]: which variant, and the string fields it had.
#[derive(Debug)]
pub struct Tagged {
    pub variant: &'static str,
    values: Vec<(String, Option<String>)>,
}

/// serde's list of what was expected: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
struct OneOf(&'static [Variant]);

impl fmt::Display for OneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("there are no variants"),
            [a] => write!(f, "expected `{}`", a.name),
            [a, b] => write!(f, "expected `{}` or `{}`", a.name, b.name),
            all => {
                f.write_str("expected one of ")?;
                for (i, v) in all.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}`", v.name)?;
                }
                Ok(())
            }
        }
    }
}

/// serde's "unknown variant" error, its list made from `variants`.
fn unknown_variant<E: Error>(kind: &str, variants: &'static [Variant]) -> E {
    E::custom(format_args!("unknown variant `{kind}`, {}", OneOf(variants)))
}

impl Tagged {
    /// The field's string, if it was given (and not `null`).
    pub fn take(&mut self, field: &str) -> Option<String> {
        self.values
            .iter_mut()
            .find(|(k, _)| k == field)
            .and_then(|(_, v)| v.take())
    }

    /// The field's string; serde's "missing field" error without it.
    pub fn required<E: Error>(&mut self, field: &'static str) -> Result<String, E> {
        self.take(field).ok_or_else(|| E::missing_field(field))
    }

    /// For the caller's last match arm: a variant of its table it has no arm for.
    pub fn unknown<E: Error>(&self, variants: &'static [Variant]) -> E {
        unknown_variant(self.variant, variants)
    }
}

/// Reads an object tagged by `tag` as one of `variants`.
pub fn read<'de, D: de::Deserializer<'de>>(
    d: D,
    tag: &'static str,
    variants: &'static [Variant],
) -> Result<Tagged, D::Error> {
    d.deserialize_map(TaggedVisitor { tag, variants })
}

struct TaggedVisitor {
    tag: &'static str,
    variants: &'static [Variant],
}

impl<'de> Visitor<'de> for TaggedVisitor {
    type Value = Tagged;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a `{}`", self.tag)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tagged, A::Error> {
        let mut kind: Option<String> = None;
        let mut fields: Vec<(String, Loose)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == self.tag {
                if kind.is_some() {
                    return Err(A::Error::duplicate_field(self.tag));
                }
                kind = Some(match map.next_value::<Loose>()? {
                    Loose::Str(v) => v,
                    other => return Err(other.not_a(&"variant identifier")),
                });
            } else if fields.iter().any(|(k, _)| *k == key) {
                return Err(A::Error::custom(format_args!("duplicate field `{key}`")));
            } else {
                let value = map.next_value::<Loose>()?;
                fields.push((key, value));
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field(self.tag))?;
        let Some(variant) = self.variants.iter().find(|v| v.name == kind) else {
            return Err(unknown_variant(&kind, self.variants));
        };
        // Field by field in the object's order, its name and then its value: the first error the
        // derive would have met.
        let mut values = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            if !variant.fields.contains(&key.as_str()) {
                return Err(A::Error::unknown_field(&key, variant.fields));
            }
            let value = match value {
                Loose::Str(v) => Some(v),
                Loose::Null if variant.nullable.contains(&key.as_str()) => None,
                other => return Err(other.not_a(&"a string")),
            };
            values.push((key, value));
        }
        Ok(Tagged {
            variant: variant.name,
            values,
        })
    }
}

/// A field's value as read before its variant is known: a string, `null`, or what else it was.
enum Loose {
    Str(String),
    Null,
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Seq,
    Map,
}

impl Loose {
    /// serde's "invalid type" error for a value that is not what `expected` says.
    fn not_a<E: Error>(&self, expected: &dyn de::Expected) -> E {
        let got = match *self {
            Loose::Str(ref s) => Unexpected::Str(s),
            Loose::Null => Unexpected::Unit,
            Loose::Bool(b) => Unexpected::Bool(b),
            Loose::Signed(i) => Unexpected::Signed(i),
            Loose::Unsigned(u) => Unexpected::Unsigned(u),
            Loose::Float(f) => Unexpected::Float(f),
            Loose::Seq => Unexpected::Seq,
            Loose::Map => Unexpected::Map,
        };
        E::invalid_type(got, expected)
    }
}

impl<'de> de::Deserialize<'de> for Loose {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E>(self) -> Result<Loose, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Signed(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Unsigned(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Float(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Map)
    }
}

/// Test helper: every object in `cases` reads as `T` the same as through `Derived`, the derive `T`'s
/// hand reader replaced (kept in the tests as the reference): the same value, or the same error
/// message (where in the text it is reported may differ). Not an object: both refuse it (the derive
/// says "missing field", the reader what it got).
#[cfg(test)]
pub(crate) fn assert_reads_as_derived<T, Derived>(cases: &[&str])
where
    T: serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    Derived: serde::de::DeserializeOwned + Into<T>,
{
    let message = |e: serde_json::Error| {
        let e = e.to_string();
        e.split(" at line ").next().unwrap_or_default().to_string()
    };
    for json in cases {
        let want = serde_json::from_str::<Derived>(json)
            .map(Into::into)
            .map_err(message);
        let got = serde_json::from_str::<T>(json).map_err(message);
        if json.starts_with('{') {
            assert_eq!(got, want, "{json}");
        } else {
            assert!(got.is_err() && want.is_err(), "{json}");
        }
    }
}
