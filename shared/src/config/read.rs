//! Configs read in two steps: the bytes into a JSON tree, then the tree into the policy's serde types
//! through [`Node`], a deserializer that knows where it is, so a failure names its field:
//! `targets[1].endpoint.host: invalid type: integer `5`, expected a string`.
//!
//! Why not serde_json's own deserializer over the bytes: serde's derive instantiates every config
//! type's reader once per deserializer, and that deserializer inlines the JSON parser into each one.
//! Over a tree the readers are smaller (the bundle: 10% less, `bench/README.md`, "What the bytes
//! are"), the parser is the one request bodies use ([`tree`]), and errors get a path instead of
//! a line and column. [`tree`] refuses a key given twice in one object, as serde's derive did for
//! struct fields.

use super::ConfigError;
use serde::de::{self, value::BorrowedStrDeserializer, DeserializeOwned, DeserializeSeed, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Reads `value` (a whole config or a part of one) into `T`; `at` is the part's path, "" for a whole.
pub fn from_value<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, ConfigError> {
    T::deserialize(Node(value)).map_err(|e| e.into_config(at))
}

/// Parses JSON text into a tree, refusing a key given twice in one object (which serde_json would read
/// as its last value); a syntax error says its line and column. The parser is the one request bodies
/// use ([`crate::host::body::parse_noting_duplicates`]), so the module holds it once.
pub fn tree(bytes: &[u8]) -> Result<Value, String> {
    match crate::host::body::parse_noting_duplicates(bytes) {
        Ok((_, Some(key))) => Err(format!("key `{key}` is given twice in one object")),
        Ok((tree, None)) => Ok(tree),
        Err(e) => Err(e.to_string()),
    }
}

/// A reading failure and where: the path's parts innermost first, as the failure travels out. Boxed,
/// as serde_json's error is: every reader returns it, and a small `Result` is less code in each.
#[derive(Debug)]
pub struct Error(Box<Failure>);

#[derive(Debug)]
struct Failure {
    path: Vec<Part>,
    message: String,
}

#[derive(Debug)]
enum Part {
    Key(String),
    Index(usize),
}

impl Error {
    /// The error as configs report it: `field` the path below `at` (`targets[1].endpoint.host`).
    fn into_config(self, at: &str) -> ConfigError {
        let mut field = at.to_owned();
        for part in self.0.path.iter().rev() {
            match part {
                Part::Key(k) if field.is_empty() => field.push_str(k),
                Part::Key(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                Part::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        ConfigError::new(field, self.0.message)
    }
}

/// Adds the place a failure came out of (out of line: each reader calls it).
#[inline(never)]
fn at_key(mut e: Error, key: &str) -> Error {
    e.0.path.push(Part::Key(key.to_owned()));
    e
}

#[inline(never)]
fn at_index(mut e: Error, index: usize) -> Error {
    e.0.path.push(Part::Index(index));
    e
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(Box::new(Failure {
            path: Vec::new(),
            message: msg.to_string(),
        }))
    }
}

/// A place in the tree, read as serde_json reads a `&Value`.
#[derive(Clone, Copy)]
struct Node<'a>(&'a Value);

/// serde's "invalid type" error for `v` (out of line: every reader has a wrong-type arm).
#[inline(never)]
fn wrong_type(v: &Value, expected: &dyn de::Expected) -> Error {
    de::Error::invalid_type(unexpected(v), expected)
}

impl<'de> Node<'de> {
    fn number<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                // serde_json keeps every other number as an f64 (no `arbitrary_precision`).
                (None, None) => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn seq<V: Visitor<'de>>(items: &'de [Value], visitor: V) -> Result<V::Value, Error> {
        let mut seq = Seq {
            items: items.iter().enumerate(),
        };
        let v = visitor.visit_seq(&mut seq)?;
        match seq.items.len() {
            0 => Ok(v),
            _ => Err(de::Error::invalid_length(items.len(), &"fewer elements in array")),
        }
    }

    fn map<V: Visitor<'de>>(object: &'de Map<String, Value>, visitor: V) -> Result<V::Value, Error> {
        let mut map = Entries {
            entries: object.iter(),
            value: None,
        };
        let v = visitor.visit_map(&mut map)?;
        match map.entries.len() {
            0 => Ok(v),
            _ => Err(de::Error::invalid_length(object.len(), &"fewer elements in map")),
        }
    }
}

impl<'de> de::Deserializer<'de> for Node<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(_) => self.number(visitor),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => Node::seq(items, visitor),
            Value::Object(object) => Node::map(object, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_borrowed_str(s),
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => Node::seq(items, visitor),
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(object) => Node::map(object, visitor),
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // An object only: serde_json would also take the fields in order from an array, which no
        // config means (and each struct's array reader would be code in the module).
        self.deserialize_map(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => Err(wrong_type(other, &visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            Value::Object(object) => match (object.len(), object.iter().next()) {
                (1, Some((variant, value))) => visitor.visit_enum(Variant { variant, value }),
                _ => Err(de::Error::invalid_value(
                    de::Unexpected::Map,
                    &"map with a single key",
                )),
            },
            other => Err(wrong_type(other, &"string or map")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.number(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit_struct tuple_struct
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => de::Unexpected::Unsigned(u),
            (None, Some(i)) => de::Unexpected::Signed(i),
            (None, None) => de::Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some((index, v)) = self.items.next() else {
            return Ok(None);
        };
        match seed.deserialize(Node(v)) {
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(at_index(e, index)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((k, v));
        seed.deserialize(BorrowedStrDeserializer::new(k)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        // serde asks for a value only after its key; `Null` would be read if it ever did not.
        let (k, v) = self.value.take().unwrap_or(("", &Value::Null));
        match seed.deserialize(Node(v)) {
            Ok(v) => Ok(v),
            Err(e) => Err(at_key(e, k)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// `{"variant": value}`: an externally tagged enum's variant with its content.
struct Variant<'a> {
    variant: &'a str,
    value: &'a Value,
}

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = Content<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Content<'de>), Error> {
        let tag = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.variant))?;
        Ok((
            tag,
            Content {
                variant: self.variant,
                value: self.value,
            },
        ))
    }
}

struct Content<'a> {
    variant: &'a str,
    value: &'a Value,
}

impl<'de> de::VariantAccess<'de> for Content<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            Value::Null => Ok(()),
            other => Err(at_key(wrong_type(other, &"unit variant"), self.variant)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(Node(self.value))
            .map_err(|e| at_key(e, self.variant))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(Node(self.value), visitor).map_err(|e| at_key(e, self.variant))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(Node(self.value), visitor).map_err(|e| at_key(e, self.variant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    use serde::Deserialize;
    use std::collections::BTreeMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Endpoint {
        cluster: String,
        #[serde(default)]
        port: Option<u16>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Enforce,
        Shadow,
        Limit(u32),
        Window { seconds: u32 },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Source {
        Header { name: String },
        Ip,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        targets: Vec<Endpoint>,
        #[serde(default)]
        modes: BTreeMap<String, Mode>,
        #[serde(default)]
        source: Option<Source>,
        #[serde(default)]
        ratio: f64,
        #[serde(default)]
        pair: Option<(i32, bool)>,
        #[serde(default)]
        extra: Value,
    }

    fn read(json: &str) -> Result<Config, ConfigError> {
        let v = tree(json.as_bytes()).map_err(|e| ConfigError::new("", e))?;
        from_value(&v, "")
    }

    /// What serde_json gives reading the same text directly, the reference for every answer.
    fn direct(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for json in [
            r#"{"targets": []}"#,
            r#"{"targets": [{"cluster": "a"}, {"cluster": "b", "port": 443}]}"#,
            r#"{"targets": [{"cluster": "a", "port": null}], "ratio": 0.25, "pair": [-3, true]}"#,
            r#"{"targets": [], "ratio": 2, "extra": {"a": [1, -2, 3.5, "x", null, false]}}"#,
            r#"{"targets": [], "modes": {"a": "enforce", "b": {"limit": 3}, "c": {"window": {"seconds": 5}}}}"#,
            r#"{"targets": [], "source": {"type": "header", "name": "x-user"}}"#,
            r#"{"source": {"type": "ip"}, "targets": []}"#,
        ] {
            assert_eq!(read(json).map_err(|e| e.to_string()), direct(json), "{json}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses_and_names_the_field() {
        for (json, field, message) in [
            (
                r#"{"targets": [{"cluster": 5}]}"#,
                "targets[0].cluster",
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"targets": [{"cluster": "a"}, {"cluster": "b", "port": 70000}]}"#,
                "targets[1].port",
                "invalid value: integer `70000`, expected u16",
            ),
            (
                r#"{"targets": [{"cluster": "a", "host": "h"}]}"#,
                "targets[0]",
                "unknown field `host`, expected `cluster` or `port`",
            ),
            (r#"{"targets": [{}]}"#, "targets[0]", "missing field `cluster`"),
            (r#"{}"#, "", "missing field `targets`"),
            (
                r#"{"targets": [], "modes": {"a": "off"}}"#,
                "modes.a",
                "unknown variant `off`, expected one of `enforce`, `shadow`, `limit`, `window`",
            ),
            (
                r#"{"targets": [], "modes": {"a": {"limit": "x"}}}"#,
                "modes.a.limit",
                "invalid type: string \"x\", expected u32",
            ),
            (
                r#"{"targets": [], "modes": {"a": {"limit": 1, "shadow": null}}}"#,
                "modes.a",
                "invalid value: map, expected map with a single key",
            ),
            (
                r#"{"targets": [], "source": {"type": "cookie"}}"#,
                "source.type",
                "unknown variant `cookie`, expected `header` or `ip`",
            ),
            (
                r#"{"targets": [], "source": {"type": "header"}}"#,
                "source",
                "missing field `name`",
            ),
            (
                r#"{"targets": [], "pair": [1, true, 3]}"#,
                "pair",
                "invalid length 3, expected fewer elements in array",
            ),
            (
                r#"{"targets": "a"}"#,
                "targets",
                "invalid type: string \"a\", expected a sequence",
            ),
            (r#"[]"#, "", "invalid type: sequence, expected struct Config"),
        ] {
            let got = read(json).unwrap_err();
            assert_eq!(
                (got.field.as_str(), got.message.as_str()),
                (field, message),
                "{json}"
            );
            // serde_json over the text refuses it too, mostly in the same words and by line and column
            // (an enum's second key or a tuple's extra element is a syntax error there).
            let want = direct(json).unwrap_err();
            let syntax = ["expected value", "trailing characters", "invalid length 0"];
            assert!(
                want.starts_with(message) || syntax.iter().any(|s| want.starts_with(s)),
                "{json}: {want}"
            );
        }
    }

    #[test]
    fn a_part_is_named_below_its_place() {
        let v = tree(br#"{"cluster": "a", "port": "x"}"#).unwrap();
        let e = from_value::<Endpoint>(&v, "tasks.intent.endpoint").unwrap_err();
        assert_eq!(e.field, "tasks.intent.endpoint.port");
        let v = tree(br#"[{"cluster": true}]"#).unwrap();
        assert_eq!(
            from_value::<Vec<Endpoint>>(&v, "targets").unwrap_err().field,
            "targets[0].cluster"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let e = tree(b"{\"targets\": [],\n \"ratio\": 1, \"ratio\": 2}").unwrap_err();
        assert_eq!(e, "key `ratio` is given twice in one object");
        let e = tree(br#"{"modes": {"a": "enforce", "a": "shadow"}}"#).unwrap_err();
        assert_eq!(e, "key `a` is given twice in one object");
        assert_eq!(
            tree(b"{\"a\": 1,\n").unwrap_err(),
            "EOF while parsing a value at line 2 column 0"
        );
        assert_eq!(
            tree(br#"[1, {"a": 1}, {"a": 2}]"#).unwrap(),
            serde_json::json!([1, {"a": 1}, {"a": 2}])
        );
        assert!(tree(b"{\"a\": 1").is_err());
        assert_eq!(tree(b" 1.5e3 ").unwrap(), serde_json::json!(1500.0));
    }
}
