//! A request body as the policies of one request share it: parsed at most once, serialised at most
//! once.
//!
//! The driver reads the body from the host into a [`Body`] and hands it to the policy (or, in the
//! bundle, to every policy of the chain in turn). A policy reads it as bytes or as JSON and edits it
//! either way; the driver writes it back to the host only if it changed, after the last policy.

use serde_json::Value;

/// Why the body is not JSON: serde's message, kept for the client's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson(pub String);

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
enum Parsed {
    NotYet,
    /// The value, and the first key that occurred twice in one object (the value keeps the last).
    Json(Value, Option<String>),
    Invalid(NotJson),
}

/// Parses JSON into a [`Value`] like serde_json does (the last of repeated keys wins), noting the first
/// key repeated in an object: two readers of such a body (a policy here, the provider upstream) may not
/// agree on which value counts, so chat policies refuse it.
pub fn parse_noting_duplicates(bytes: &[u8]) -> Result<(Value, Option<String>), serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Seed<'a>(&'a RefCell<Option<String>>);

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Seed(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let v = map.next_value_seed(Seed(self.0))?;
                match out.entry(key) {
                    serde_json::map::Entry::Vacant(e) => {
                        e.insert(v);
                    }
                    serde_json::map::Entry::Occupied(mut e) => {
                        self.0.borrow_mut().get_or_insert_with(|| e.key().clone());
                        e.insert(v);
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }

    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed(&dup).deserialize(&mut de)?;
    de.end()?;
    Ok((value, dup.into_inner()))
}

#[derive(Debug)]
pub struct Body {
    /// The bytes as read, or as last replaced; stale while `json_dirty`.
    bytes: Vec<u8>,
    parsed: Parsed,
    /// The parsed value was edited: `bytes` must be re-serialised from it.
    json_dirty: bool,
    changed: bool,
}

impl Body {
    pub fn new(bytes: Vec<u8>) -> Body {
        Body {
            bytes,
            parsed: Parsed::NotYet,
            json_dirty: false,
            changed: false,
        }
    }

    fn parse(&mut self) {
        if matches!(self.parsed, Parsed::NotYet) {
            self.parsed = match parse_noting_duplicates(&self.bytes) {
                Ok((v, dup)) => Parsed::Json(v, dup),
                Err(e) => Parsed::Invalid(NotJson(e.to_string())),
            };
        }
    }

    /// The body as JSON, parsed on first use.
    pub fn json(&mut self) -> Result<&Value, NotJson> {
        self.parse();
        match &self.parsed {
            Parsed::Json(v, _) => Ok(v),
            Parsed::Invalid(e) => Err(e.clone()),
            Parsed::NotYet => Err(NotJson("not parsed".into())),
        }
    }

    /// The first key that occurs twice in one object of the body as it arrived, if any.
    pub fn duplicate_key(&mut self) -> Option<&str> {
        self.parse();
        match &self.parsed {
            Parsed::Json(_, dup) => dup.as_deref(),
            _ => None,
        }
    }

    /// The body as JSON, for editing: the body counts as changed.
    pub fn json_mut(&mut self) -> Result<&mut Value, NotJson> {
        self.parse();
        match &mut self.parsed {
            Parsed::Json(v, _) => {
                self.json_dirty = true;
                self.changed = true;
                Ok(v)
            }
            Parsed::Invalid(e) => Err(e.clone()),
            Parsed::NotYet => Err(NotJson("not parsed".into())),
        }
    }

    /// Replaces the body with a JSON value (serialised when the bytes are next needed).
    pub fn set_json(&mut self, value: Value) {
        self.parsed = Parsed::Json(value, None);
        self.json_dirty = true;
        self.changed = true;
    }

    /// Replaces the body with these bytes.
    pub fn replace(&mut self, bytes: Vec<u8>) {
        self.bytes = bytes;
        self.parsed = Parsed::NotYet;
        self.json_dirty = false;
        self.changed = true;
    }

    /// The current bytes (serialising an edited JSON value once).
    pub fn bytes(&mut self) -> &[u8] {
        if self.json_dirty {
            if let Parsed::Json(v, _) = &self.parsed {
                self.bytes = v.to_string().into_bytes();
            }
            self.json_dirty = false;
        }
        &self.bytes
    }

    /// The bytes as they were last read or replaced, without serialising pending JSON edits.
    pub fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the current bytes out.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.bytes();
        self.bytes
    }

    /// Whether any policy changed the body.
    pub fn changed(&self) -> bool {
        self.changed
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_once_and_serialises_only_edits() {
        let mut b = Body::new(br#"{"a": 1}"#.to_vec());
        assert_eq!(b.json().unwrap()["a"], 1);
        assert!(!b.changed());
        assert_eq!(
            b.bytes(),
            br#"{"a": 1}"#,
            "untouched bytes are kept byte for byte"
        );
        b.json_mut().unwrap()["a"] = 2.into();
        assert!(b.changed());
        assert_eq!(b.bytes(), br#"{"a":2}"#);
        b.replace(b"not json".to_vec());
        assert!(b.json().is_err());
        assert_eq!(b.into_bytes(), b"not json");
    }

    #[test]
    fn notes_repeated_keys_at_any_depth_and_keeps_the_last() {
        let mut b = Body::new(
            br#"{"model":"a","messages":[{"role":"user","content":"x","content":"y"}],"model":"b"}"#.to_vec(),
        );
        assert_eq!(b.json().unwrap()["model"], "b", "as serde_json: the last wins");
        assert_eq!(b.json().unwrap()["messages"][0]["content"], "y");
        assert_eq!(b.duplicate_key(), Some("content"), "the first found");
        let mut b = Body::new(br#"{"a":{"b":1},"c":[{"b":2}]}"#.to_vec());
        assert_eq!(b.duplicate_key(), None);
        for bad in [&br#"{"a":1} x"#[..], br#"{"a":"#, b"[1,]"] {
            assert!(Body::new(bad.to_vec()).json().is_err());
        }
    }
}
