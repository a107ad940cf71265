//! Who a request belongs to: the consumer (and its tier) a limit is counted for.
//!
//! A [`Source`] names where the identity comes from; a list of them is tried in order and the first
//! that yields a value wins. Identities end up in shared-data keys and log lines, never in metric names
//! (unbounded cardinality). API keys are hashed first so no secret is stored or logged.
//!
//! JWT claims are read WITHOUT checking the signature: this filter must sit behind an authentication
//! filter that verifies the token (Envoy `jwt_authn`, Kong `jwt`/`openid-connect`), or read the payload
//! such a filter forwards in a header (`jwt_authn`'s `forward_payload_header`). Anyone can forge an
//! unverified token's claims.

use crate::host::{property_string, Host};
use crate::rand::stable_hash;
use serde::de::Unexpected;
use serde::Deserialize;
use serde_json::Value;

/// Where an identity is read from: `{"type": "<snake_case variant>", …its fields}`. Read by hand
/// ([`Deserialize`] below), not derived: serde's internally tagged enums buffer the object and
/// instantiate every field's reader a second time, about 21 KB of `.wasm` in each module that reads one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header's value, as is.
    Header { name: String },
    /// An API key from a header (default `authorization`, `Bearer ` stripped), hashed: `key-<16 hex>`.
    ApiKey {
        /// Default `authorization`.
        header: String,
    },
    /// A claim of a JWT: from the bearer token in `authorization`, or, with `header`, from a header
    /// carrying the payload an auth filter verified (base64url or plain JSON).
    JwtClaim { claim: String, header: Option<String> },
    /// The client's IP address (property `source.address`, port removed; on Kong `ngx.remote_addr` if
    /// `source.address` is missing).
    ClientAddress {},
    /// The consumer Kong authenticated (property `kong.client.consumer`, a JSON object), by `field`.
    KongConsumer {
        /// Default `id`.
        field: String,
    },
    /// The name of the first group of Kong's consumer (property `kong.client.consumer_groups`, a JSON
    /// array of group objects), for tiers.
    KongConsumerGroup {},
}

const TYPES: &[&str] = &[
    "header",
    "api_key",
    "jwt_claim",
    "client_address",
    "kong_consumer",
    "kong_consumer_group",
];

/// The fields each `type` takes besides `type`.
fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "header" => &["name"],
        "api_key" => &["header"],
        "jwt_claim" => &["claim", "header"],
        "kong_consumer" => &["field"],
        _ => &[],
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        d.deserialize_map(SourceVisitor)
    }
}

struct SourceVisitor;

impl<'de> serde::de::Visitor<'de> for SourceVisitor {
    type Value = Source;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an identity source object with a `type`")
    }

    /// The same answers as the derive it replaces: `type` anywhere in the object, unknown and
    /// duplicate fields refused, `null` only for `jwt_claim`'s `header`.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
        use serde::de::Error;
        let mut kind: Option<String> = None;
        let mut fields: Vec<(String, Loose)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "type" {
                if kind.is_some() {
                    return Err(A::Error::duplicate_field("type"));
                }
                kind = Some(match map.next_value::<Loose>()? {
                    Loose::Str(v) => v,
                    Loose::Null => {
                        return Err(A::Error::invalid_type(Unexpected::Unit, &"variant identifier"))
                    }
                    Loose::Other(what) => {
                        return Err(A::Error::invalid_type(what.unexpected(), &"variant identifier"))
                    }
                });
            } else if fields.iter().any(|(k, _)| *k == key) {
                return Err(A::Error::custom(format_args!("duplicate field `{key}`")));
            } else {
                let value = map.next_value::<Loose>()?;
                fields.push((key, value));
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        if !TYPES.contains(&kind.as_str()) {
            return Err(A::Error::unknown_variant(&kind, TYPES));
        }
        let allowed = fields_of(&kind);
        // A field the type does not take, then a value that is not a string (`null` only where the
        // field is optional without a default).
        for (key, _) in &fields {
            if !allowed.contains(&key.as_str()) {
                return Err(A::Error::unknown_field(key, allowed));
            }
        }
        let mut strings = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            let value = match value {
                Loose::Str(v) => Some(v),
                Loose::Null if kind == "jwt_claim" && key == "header" => None,
                Loose::Null => return Err(A::Error::invalid_type(Unexpected::Unit, &"a string")),
                Loose::Other(what) => return Err(A::Error::invalid_type(what.unexpected(), &"a string")),
            };
            strings.push((key, value));
        }
        let mut take = |name: &str| {
            strings
                .iter_mut()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.take())
        };
        Ok(match kind.as_str() {
            "header" => Source::Header {
                name: take("name").ok_or_else(|| A::Error::missing_field("name"))?,
            },
            "api_key" => Source::ApiKey {
                header: take("header").unwrap_or_else(|| "authorization".into()),
            },
            "jwt_claim" => Source::JwtClaim {
                claim: take("claim").ok_or_else(|| A::Error::missing_field("claim"))?,
                header: take("header"),
            },
            "client_address" => Source::ClientAddress {},
            "kong_consumer" => Source::KongConsumer {
                field: take("field").unwrap_or_else(|| "id".into()),
            },
            _ => Source::KongConsumerGroup {},
        })
    }
}

/// A field's value as read before its type is known: a string, `null`, or what else it was.
enum Loose {
    Str(String),
    Null,
    Other(Kind),
}

/// What a value that is not a string was, for the error.
enum Kind {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Seq,
    Map,
}

impl Kind {
    fn unexpected(&self) -> Unexpected<'_> {
        match *self {
            Kind::Bool(b) => Unexpected::Bool(b),
            Kind::Signed(i) => Unexpected::Signed(i),
            Kind::Unsigned(u) => Unexpected::Unsigned(u),
            Kind::Float(f) => Unexpected::Float(f),
            Kind::Seq => Unexpected::Seq,
            Kind::Map => Unexpected::Map,
        }
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> serde::de::Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        Ok(Loose::Other(Kind::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Other(Kind::Signed(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Other(Kind::Unsigned(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Loose, E> {
        Ok(Loose::Other(Kind::Float(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Loose::Other(Kind::Seq))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Loose::Other(Kind::Map))
    }
}

impl Source {
    /// The identity this source yields for the current request, if any.
    pub fn resolve(&self, host: &dyn Host) -> Option<String> {
        let value = match self {
            Source::Header { name } => host.request_header(name),
            Source::ApiKey { header } => host.request_header(header).and_then(|v| {
                let key = strip_bearer(&v).trim();
                (!key.is_empty()).then(|| format!("key-{:016x}", stable_hash(key.as_bytes())))
            }),
            Source::JwtClaim { claim, header } => {
                let payload = match header {
                    Some(h) => host.request_header(h).and_then(|v| decode_payload(&v)),
                    None => host
                        .request_header("authorization")
                        .and_then(|v| jwt_payload(strip_bearer(&v))),
                };
                payload.and_then(|p| claim_string(&p, claim))
            }
            Source::ClientAddress {} => host
                .property(&["source", "address"])
                .or_else(|| host.property(&["ngx", "remote_addr"]))
                .and_then(|raw| property_string(&raw, false))
                .map(|a| strip_port(&a).to_string()),
            Source::KongConsumer { field } => host
                .property(&["kong", "client", "consumer"])
                .and_then(|raw| property_string(&raw, false))
                .and_then(|text| match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => claim_string(&v, field),
                    // A plain string is taken as the consumer's name.
                    _ => Some(text),
                }),
            Source::KongConsumerGroup {} => host
                .property(&["kong", "client", "consumer_groups"])
                .and_then(|raw| property_string(&raw, false))
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| match v.as_array()?.first()? {
                    Value::String(s) => Some(s.clone()),
                    group => claim_string(group, "name"),
                }),
        };
        value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }
}

/// The first identity any of `sources` yields.
pub fn resolve_first(sources: &[Source], host: &dyn Host) -> Option<String> {
    sources.iter().find_map(|s| s.resolve(host))
}

fn strip_bearer(v: &str) -> &str {
    let v = v.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v.get(7..).unwrap_or_default(),
        _ => v,
    }
}

/// `source.address` is `ip:port` on Envoy and `ip` on Kong; IPv6 comes as `[::1]:port` or bare.
pub fn strip_port(addr: &str) -> &str {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.split_once(':') {
        Some((ip, port)) if !port.contains(':') => ip,
        _ => addr,
    }
}

/// The payload of a compact JWT (`header.payload.signature`), decoded but NOT verified.
fn jwt_payload(token: &str) -> Option<Value> {
    crate::jwt::decode_unverified(token)
        .ok()
        .map(|d| Value::Object(d.claims))
}

/// A payload forwarded by an auth filter: base64url (padded or not) JSON, or JSON text.
fn decode_payload(v: &str) -> Option<Value> {
    let v = v.trim();
    if v.starts_with('{') {
        return serde_json::from_str::<Value>(v).ok().filter(Value::is_object);
    }
    crate::jwt::decode_segment(v).ok().map(Value::Object)
}

/// A claim as text: strings as is, numbers and booleans printed; a dotted name walks nested objects.
fn claim_string(payload: &Value, claim: &str) -> Option<String> {
    let v = claim.split('.').try_fold(payload, |v, k| v.get(k))?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn src(json: &str) -> Source {
        serde_json::from_str(json).unwrap()
    }

    /// The derive the hand reader replaced, kept as its reference.
    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Derived {
        Header {
            name: String,
        },
        ApiKey {
            #[serde(default = "authorization")]
            header: String,
        },
        JwtClaim {
            claim: String,
            #[serde(default)]
            header: Option<String>,
        },
        ClientAddress {},
        KongConsumer {
            #[serde(default = "id")]
            field: String,
        },
        KongConsumerGroup {},
    }

    fn authorization() -> String {
        "authorization".into()
    }

    fn id() -> String {
        "id".into()
    }

    impl From<Derived> for Source {
        fn from(d: Derived) -> Source {
            match d {
                Derived::Header { name } => Source::Header { name },
                Derived::ApiKey { header } => Source::ApiKey { header },
                Derived::JwtClaim { claim, header } => Source::JwtClaim { claim, header },
                Derived::ClientAddress {} => Source::ClientAddress {},
                Derived::KongConsumer { field } => Source::KongConsumer { field },
                Derived::KongConsumerGroup {} => Source::KongConsumerGroup {},
            }
        }
    }

    /// Every object the derive accepted reads the same, and every one it refused is refused.
    #[test]
    fn reads_as_the_derive_did() {
        let cases = [
            r#"{"type":"header","name":"x"}"#,
            r#"{"name":"x","type":"header"}"#,
            r#"{"type":"header"}"#,
            r#"{"type":"header","name":null}"#,
            r#"{"type":"header","name":1}"#,
            r#"{"type":"header","name":"a","x":1}"#,
            r#"{"type":"header","name":"a","name":"b"}"#,
            r#"{"type":"header","type":"header","name":"a"}"#,
            r#"{"type":"header","claim":"a"}"#,
            r#"{"type":"api_key"}"#,
            r#"{"type":"api_key","header":"x-key"}"#,
            r#"{"type":"api_key","header":null}"#,
            r#"{"type":"jwt_claim","claim":"sub"}"#,
            r#"{"header":"h","type":"jwt_claim","claim":"sub"}"#,
            r#"{"type":"jwt_claim","claim":"sub","header":null}"#,
            r#"{"type":"jwt_claim","header":"h"}"#,
            r#"{"type":"client_address"}"#,
            r#"{"type":"client_address","name":"x"}"#,
            r#"{"type":"kong_consumer"}"#,
            r#"{"type":"kong_consumer","field":"username"}"#,
            r#"{"type":"kong_consumer_group"}"#,
            r#"{"type":"kong_consumer_group","field":"x"}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":1}"#,
            r#"{"name":"x"}"#,
            r#"{}"#,
            r#"[]"#,
            r#""header""#,
            r#"null"#,
        ];
        for json in cases {
            // The same value, or the same message (where in the text it is reported may differ).
            let message = |e: serde_json::Error| {
                let e = e.to_string();
                e.split(" at line ").next().unwrap_or_default().to_string()
            };
            let want = serde_json::from_str::<Derived>(json)
                .map(Source::from)
                .map_err(message);
            let got = serde_json::from_str::<Source>(json).map_err(message);
            if json.starts_with('{') {
                assert_eq!(got, want, "{json}");
            } else {
                // Not an object: the derive says "missing field `type`", the reader what it got.
                assert!(got.is_err() && want.is_err(), "{json}");
            }
        }
        let err = |json: &str| serde_json::from_str::<Source>(json).unwrap_err().to_string();
        assert!(err(r#"{"type":"header","name":"a","x":1}"#).contains("unknown field `x`, expected `name`"));
        assert!(err(r#"{"type":"nope"}"#).contains("unknown variant `nope`"));
        assert!(err(r#"{"type":"header"}"#).contains("missing field `name`"));
    }

    #[test]
    fn ports() {
        let cases = [
            ("127.0.0.1:5000", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:443", "::1"),
            ("::1", "::1"),
            ("fe80::1", "fe80::1"),
        ];
        for (a, want) in cases {
            assert_eq!(strip_port(a), want);
        }
    }

    #[test]
    fn sources() {
        // {"sub":"alice","org":{"tier":"gold"},"n":7}
        let payload = "eyJzdWIiOiJhbGljZSIsIm9yZyI6eyJ0aWVyIjoiZ29sZCJ9LCJuIjo3fQ";
        let token = format!("Bearer eyJhbGciOiJub25lIn0.{payload}.sig");
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[
            ("x-consumer-id", " bob "),
            ("authorization", &token),
            ("x-jwt-payload", payload),
            ("x-jwt-json", r#"{"sub":"carol"}"#),
            ("x-api-key", "sk-123"),
        ]);
        host.properties
            .insert("source.address".into(), "10.0.0.7:5123".into());
        host.properties.insert(
            "kong.client.consumer".into(),
            r#"{"id":"c-1","username":"dave"}"#.into(),
        );
        let key = format!("key-{:016x}", stable_hash(b"sk-123"));
        let cases: Vec<(&str, Option<String>)> = vec![
            (r#"{"type":"header","name":"x-consumer-id"}"#, Some("bob".into())),
            (r#"{"type":"header","name":"x-missing"}"#, None),
            (r#"{"type":"api_key","header":"x-api-key"}"#, Some(key)),
            (r#"{"type":"jwt_claim","claim":"sub"}"#, Some("alice".into())),
            (r#"{"type":"jwt_claim","claim":"org.tier"}"#, Some("gold".into())),
            (r#"{"type":"jwt_claim","claim":"n"}"#, Some("7".into())),
            (r#"{"type":"jwt_claim","claim":"nope"}"#, None),
            (
                r#"{"type":"jwt_claim","claim":"sub","header":"x-jwt-payload"}"#,
                Some("alice".into()),
            ),
            (
                r#"{"type":"jwt_claim","claim":"sub","header":"x-jwt-json"}"#,
                Some("carol".into()),
            ),
            (r#"{"type":"client_address"}"#, Some("10.0.0.7".into())),
            (r#"{"type":"kong_consumer"}"#, Some("c-1".into())),
            (
                r#"{"type":"kong_consumer","field":"username"}"#,
                Some("dave".into()),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(src(json).resolve(&host), want, "{json}");
        }
        // The bearer token is hashed too, and the same key always gives the same identity.
        let a = src(r#"{"type":"api_key"}"#).resolve(&host).unwrap();
        assert!(a.starts_with("key-") && !a.contains("eyJ"), "{a}");
        assert_eq!(src(r#"{"type":"api_key"}"#).resolve(&host), Some(a));
        let list = [
            src(r#"{"type":"header","name":"x-missing"}"#),
            src(r#"{"type":"client_address"}"#),
        ];
        assert_eq!(resolve_first(&list, &host).as_deref(), Some("10.0.0.7"));
        // Kong: the address without a port, or nginx's remote_addr.
        let mut kong = FakeHost::new(HostKind::Kong);
        kong.properties
            .insert("ngx.remote_addr".into(), "10.1.1.1".into());
        assert_eq!(
            src(r#"{"type":"client_address"}"#).resolve(&kong).as_deref(),
            Some("10.1.1.1")
        );
        assert_eq!(src(r#"{"type":"kong_consumer"}"#).resolve(&kong), None);
        let group = src(r#"{"type":"kong_consumer_group"}"#);
        assert_eq!(group.resolve(&kong), None);
        kong.properties.insert(
            "kong.client.consumer_groups".into(),
            r#"[{"id":"g1","name":"gold"},{"name":"x"}]"#.into(),
        );
        assert_eq!(group.resolve(&kong).as_deref(), Some("gold"));
        kong.properties
            .insert("kong.client.consumer_groups".into(), "[]".into());
        assert_eq!(group.resolve(&kong), None);
        assert!(serde_json::from_str::<Source>(r#"{"type":"header"}"#).is_err());
        assert!(serde_json::from_str::<Source>(r#"{"type":"header","name":"a","x":1}"#).is_err());
    }
}
