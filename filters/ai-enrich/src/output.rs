//! What leaves the filter with the request: header values made safe, and the signed context token.

use serde_json::{Map, Value};
use std::fmt::Write;

/// A value as a request header, or `None` when it must be left out (null, or JSON larger than `max`
/// bytes, which a cut would break).
///
/// - a string: control characters (CR, LF, tab, ... U+007F–U+009F) become spaces and the ends are
///   trimmed; `\` is written `\\` and every non-ASCII character `\uXXXX` (UTF-16, as JSON escapes it),
///   so the value is printable ASCII that reads back losslessly; cut to `max` bytes, never inside an
///   escape;
/// - a number or a boolean: its JSON text;
/// - an object or an array: compact JSON with non-ASCII characters escaped the same way (JSON itself
///   escapes control characters), left out whole when longer than `max`.
pub fn header_value(v: &Value, max: usize) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => {
            let mut out = String::with_capacity(s.len().min(max));
            let cleaned: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            for c in cleaned.trim().chars() {
                let piece = escape_char(c);
                if out.len() + piece.len() > max {
                    break;
                }
                out.push_str(&piece);
            }
            Some(out)
        }
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        Value::Array(_) | Value::Object(_) => {
            let text = ascii_json(v);
            (text.len() <= max).then_some(text)
        }
    }
}

/// One character of a header string: itself when printable ASCII, else its escape.
fn escape_char(c: char) -> String {
    match c {
        '\\' => "\\\\".into(),
        ' '..='~' => c.to_string(),
        _ => {
            let mut buf = [0u16; 2];
            let mut out = String::new();
            for unit in c.encode_utf16(&mut buf) {
                let _infallible = write!(out, "\\u{unit:04x}");
            }
            out
        }
    }
}

/// Compact JSON with every non-ASCII character written `\uXXXX` (inside strings, the only place JSON
/// has them).
pub fn ascii_json(v: &Value) -> String {
    let text = v.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&escape_char(c));
        }
    }
    out
}

/// The signed context token's fixed parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub key: Vec<u8>,
    pub kid: String,
    pub issuer: String,
    pub audience: Option<String>,
    pub ttl_s: u64,
}

/// Claim names the token sets itself; mapped and caller claims may not take them.
pub const RESERVED_CLAIMS: [&str; 6] = ["iss", "iat", "exp", "aud", "nbf", "jti"];

/// An HS256 JWT with the header `kid`, `iss`, `iat` and `exp` (`now_s` + TTL), `aud` when configured,
/// and `claims` (the mapped outputs and the caller's selected claims).
pub fn context_token(spec: &TokenSpec, now_s: u64, claims: Map<String, Value>) -> String {
    let mut header = Map::new();
    header.insert("kid".into(), Value::from(spec.kid.as_str()));
    let mut all = claims;
    all.insert("iss".into(), Value::from(spec.issuer.as_str()));
    all.insert("iat".into(), Value::from(now_s));
    all.insert("exp".into(), Value::from(now_s.saturating_add(spec.ttl_s)));
    if let Some(aud) = &spec.audience {
        all.insert("aud".into(), Value::from(aud.as_str()));
    }
    shared::jwt::sign(&spec.key, &header, &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_values_are_printable_ascii_and_bounded() {
        let cases: Vec<(Value, usize, Option<&str>)> = vec![
            (json!("billing"), 64, Some("billing")),
            (json!("  two\r\nlines\u{7}x "), 64, Some("two  lines x")),
            (json!("café ☕ 😀"), 64, Some("caf\\u00e9 \\u2615 \\ud83d\\ude00")),
            (json!("a\\b"), 64, Some("a\\\\b")),
            (
                json!("x-ai-inject: 1\r\nHost: evil"),
                64,
                Some("x-ai-inject: 1  Host: evil"),
            ),
            (json!("abcdef"), 4, Some("abcd")),
            (json!("é-é"), 8, Some("\\u00e9-")),
            (json!(42), 64, Some("42")),
            (json!(0.5), 64, Some("0.5")),
            (json!(true), 64, Some("true")),
            (Value::Null, 64, None),
            (json!(["Acme", "Zoë"]), 64, Some("[\"Acme\",\"Zo\\u00eb\"]")),
            (json!({"a": "line\nbreak"}), 64, Some("{\"a\":\"line\\nbreak\"}")),
            (json!(["a", "b", "c"]), 8, None),
        ];
        for (v, max, want) in cases {
            let got = header_value(&v, max);
            assert_eq!(got.as_deref(), want, "{v} {max}");
            if let Some(g) = got {
                assert!(g.len() <= max, "{g}");
                assert!(g.bytes().all(|b| (0x20..0x7f).contains(&b)), "{g}");
            }
        }
        // The JSON forms still parse, to the same value.
        let v = json!({"names": ["Zoë", "Łukasz"], "n": 2});
        assert_eq!(serde_json::from_str::<Value>(&ascii_json(&v)).unwrap(), v);
    }

    #[test]
    fn the_token_verifies_with_its_key_and_carries_the_claims() {
        let spec = TokenSpec {
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
            kid: "k1".into(),
            issuer: "ai-gateway".into(),
            audience: Some("tickets".into()),
            ttl_s: 60,
        };
        let mut claims = Map::new();
        claims.insert("intent".into(), json!("billing"));
        claims.insert("sub".into(), json!("alice"));
        let token = context_token(&spec, 1_000, claims);
        let got = shared::jwt::verify(&token, &spec.key, 1_030, 0).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"intent": "billing", "sub": "alice", "iss": "ai-gateway", "iat": 1000, "exp": 1060, "aud": "tickets"})
        );
        let header = shared::jwt::decode_unverified(&token).unwrap().header;
        assert_eq!(
            Value::Object(header),
            json!({"alg": "HS256", "typ": "JWT", "kid": "k1"})
        );
        assert_eq!(
            shared::jwt::verify(&token, &spec.key, 1_060, 0),
            Err(shared::jwt::JwtError::Expired)
        );
        assert_eq!(
            shared::jwt::verify(&token, b"another key of thirty-two bytes!", 1_030, 0),
            Err(shared::jwt::JwtError::BadSignature)
        );
    }
}
