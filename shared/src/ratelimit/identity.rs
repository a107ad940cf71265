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

use crate::config::tagged::{self, Variant};
use crate::host::{property_string, Host};
use crate::rand::stable_hash;
use serde::Deserialize;
use serde_json::Value;

/// Where an identity is read from: `{"type": "<snake_case variant>", …its fields}`. Read by hand
/// ([`crate::config::tagged`]), not derived.
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

const VARIANTS: &[Variant] = &[
    Variant {
        name: "header",
        fields: &["name"],
        nullable: &[],
    },
    Variant {
        name: "api_key",
        fields: &["header"],
        nullable: &[],
    },
    Variant {
        name: "jwt_claim",
        fields: &["claim", "header"],
        nullable: &["header"],
    },
    Variant {
        name: "client_address",
        fields: &[],
        nullable: &[],
    },
    Variant {
        name: "kong_consumer",
        fields: &["field"],
        nullable: &[],
    },
    Variant {
        name: "kong_consumer_group",
        fields: &[],
        nullable: &[],
    },
];

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let mut t = tagged::read(d, "type", VARIANTS)?;
        Ok(match t.variant {
            "header" => Source::Header {
                name: t.required("name")?,
            },
            "api_key" => Source::ApiKey {
                header: t.take("header").unwrap_or_else(|| "authorization".into()),
            },
            "jwt_claim" => Source::JwtClaim {
                claim: t.required("claim")?,
                header: t.take("header"),
            },
            "client_address" => Source::ClientAddress {},
            "kong_consumer" => Source::KongConsumer {
                field: t.take("field").unwrap_or_else(|| "id".into()),
            },
            "kong_consumer_group" => Source::KongConsumerGroup {},
            _ => return Err(t.unknown(VARIANTS)),
        })
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
            r#"{"type":"header","name":1,"x":1}"#,
            r#"{"type":"header","x":1,"name":1}"#,
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
        crate::config::tagged::assert_reads_as_derived::<Source, Derived>(&cases);
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
