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
    Json(Value),
    Invalid(NotJson),
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
            self.parsed = match serde_json::from_slice::<Value>(&self.bytes) {
                Ok(v) => Parsed::Json(v),
                Err(e) => Parsed::Invalid(NotJson(e.to_string())),
            };
        }
    }

    /// The body as JSON, parsed on first use.
    pub fn json(&mut self) -> Result<&Value, NotJson> {
        self.parse();
        match &self.parsed {
            Parsed::Json(v) => Ok(v),
            Parsed::Invalid(e) => Err(e.clone()),
            Parsed::NotYet => Err(NotJson("not parsed".into())),
        }
    }

    /// The body as JSON, for editing: the body counts as changed.
    pub fn json_mut(&mut self) -> Result<&mut Value, NotJson> {
        self.parse();
        match &mut self.parsed {
            Parsed::Json(v) => {
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
        self.parsed = Parsed::Json(value);
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
            if let Parsed::Json(v) = &self.parsed {
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
}
