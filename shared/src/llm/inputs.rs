//! What a run of tasks reads: the values of the [`Source`]s its templates use, gathered once.
//!
//! In a request, [`Inputs::from_request`] reads only the sources asked for (headers, the body at a
//! pointer, the consumer, verified claims, ...). Outside a request (a root-context timer: an audit
//! summary, a batch), the caller fills [`Inputs`] itself with [`Inputs::set`], usually declared
//! variables; nothing here assumes a request.

use super::template::Source;
use crate::config::{ConfigError, SecretSource};
use crate::host::{Body, Host};
use crate::ratelimit::identity;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The values of one run, by source, and the request id its log lines carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    values: BTreeMap<Source, Value>,
    request_id: Option<String>,
}

impl Inputs {
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Sets a source's value (a string, or any JSON value: it is inserted as compact JSON).
    pub fn set(&mut self, source: Source, value: impl Into<Value>) {
        self.values.insert(source, value.into());
    }

    /// Sets a declared variable.
    pub fn set_var(&mut self, name: &str, value: impl Into<Value>) {
        self.set(Source::Var(name.to_string()), value);
    }

    pub fn get(&self, source: &Source) -> Option<&Value> {
        self.values.get(source)
    }

    /// The id log lines carry (`x-request-id` in a request).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub fn with_request_id(mut self, id: Option<String>) -> Inputs {
        self.request_id = id;
        self
    }

    /// Reads `sources` from the current request: headers, method, path and query from the request
    /// headers, the client address from the host, the consumer and tier and claims through `context`,
    /// the body (when given) as text of at most `max_body_chars` characters or at a pointer. Sources a
    /// request does not hold (tasks' outputs, variables) are left to the caller.
    pub fn from_request<'a>(
        host: &dyn Host,
        mut body: Option<&mut Body>,
        sources: impl IntoIterator<Item = &'a Source>,
        context: &RequestContext,
        max_body_chars: usize,
    ) -> Inputs {
        let mut inputs = Inputs::new().with_request_id(host.request_header("x-request-id"));
        let mut claims: Option<Option<serde_json::Map<String, Value>>> = None;
        let path = host.request_header(":path").unwrap_or_default();
        for source in sources {
            if inputs.values.contains_key(source) || !source.from_request() {
                continue;
            }
            let value: Option<Value> = match source {
                Source::Body(pointer) => body
                    .as_deref_mut()
                    .and_then(|b| body_value(b, host, pointer.as_deref(), max_body_chars)),
                Source::Header(name) => host.request_header(name).map(Value::from),
                Source::Query(name) => query(&path, name).map(Value::from),
                Source::Method => host.request_header(":method").map(Value::from),
                Source::Path => Some(Value::from(path.split('?').next().unwrap_or_default())),
                Source::ClientAddress => identity::Source::ClientAddress {}.resolve(host).map(Value::from),
                Source::Consumer => identity::resolve_first(&context.consumer, host).map(Value::from),
                Source::Tier => identity::resolve_first(&context.tier, host).map(Value::from),
                Source::Claim(name) => claims
                    .get_or_insert_with(|| context.claims(host))
                    .as_ref()
                    .and_then(|c| claim(c, name))
                    .cloned(),
                Source::Task(..) | Source::Var(_) => None,
            };
            if let Some(v) = value {
                inputs.values.insert(source.clone(), v);
            }
        }
        inputs
    }
}

/// Whether a `content-type` says the body is a form.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| {
        t.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

fn body_value(body: &mut Body, host: &dyn Host, pointer: Option<&str>, max_chars: usize) -> Option<Value> {
    let Some(pointer) = pointer else {
        let text = String::from_utf8_lossy(body.bytes());
        return Some(Value::from(crate::text::truncate_chars(&text, max_chars)));
    };
    if is_form(host.request_header("content-type").as_deref()) {
        let field = pointer.trim_start_matches('/');
        let text = String::from_utf8_lossy(body.bytes()).into_owned();
        return form_pairs(&text)
            .into_iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| Value::from(v));
    }
    body.json().ok()?.pointer(pointer).cloned()
}

/// `%XX` and `+` decoded (query strings and form bodies); invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a query string or a form body, in order.
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn query(path: &str, name: &str) -> Option<String> {
    let (_, q) = path.split_once('?')?;
    form_pairs(q).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn claim<'a>(claims: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    let mut parts = name.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |v, k| v.get(k))
}

/// Where the caller's verified claims come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    /// A header carrying the payload an authentication filter in front verified (Envoy `jwt_authn`'s
    /// `forward_payload_header`; base64url or JSON). The filter in front must strip the client's own.
    #[serde(default)]
    header: Option<String>,
    /// Verify the bearer token in `authorization` here: HS256 under this key.
    #[serde(default)]
    hs256_key: Option<SecretSource>,
}

/// Checked [`RawClaims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claims {
    Header(String),
    Hs256 { key: Vec<u8> },
}

impl RawClaims {
    pub fn compile(self, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Claims, ConfigError> {
        match (self.header, self.hs256_key) {
            (Some(h), None) if !h.trim().is_empty() => Ok(Claims::Header(h.trim().to_ascii_lowercase())),
            (Some(_), None) => Err(ConfigError::new(format!("{at}.header"), "must not be empty")),
            (None, Some(k)) => {
                let key = k.resolve(&format!("{at}.hs256_key"), env)?.into_bytes();
                if key.len() < crate::jwt::MIN_KEY_BYTES {
                    return Err(ConfigError::new(
                        format!("{at}.hs256_key"),
                        format!("must be at least {} bytes", crate::jwt::MIN_KEY_BYTES),
                    ));
                }
                Ok(Claims::Hs256 { key })
            }
            _ => Err(ConfigError::new(at, "needs exactly one of header or hs256_key")),
        }
    }
}

/// How request-held sources that need config are read: the consumer identity, its tier, the claims.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Identity sources tried in order for `consumer` (as the rate limit's `consumer`).
    pub consumer: Vec<identity::Source>,
    /// Identity sources tried in order for `tier`.
    pub tier: Vec<identity::Source>,
    pub claims: Option<Claims>,
}

/// Clock skew allowed when verifying a token here.
const LEEWAY_S: u64 = 30;

impl RequestContext {
    /// The caller's verified claims, if any (a token that fails verification gives none).
    pub fn claims(&self, host: &dyn Host) -> Option<serde_json::Map<String, Value>> {
        match self.claims.as_ref()? {
            Claims::Header(name) => {
                let v = host.request_header(name)?;
                let v = v.trim();
                if v.starts_with('{') {
                    match serde_json::from_str::<Value>(v) {
                        Ok(Value::Object(m)) => Some(m),
                        _ => None,
                    }
                } else {
                    crate::jwt::decode_segment(v).ok()
                }
            }
            Claims::Hs256 { key } => {
                let auth = host.request_header("authorization")?;
                let token = auth.trim();
                let token = match token.get(..7) {
                    Some(p) if p.eq_ignore_ascii_case("bearer ") => token.get(7..).unwrap_or_default(),
                    _ => token,
                };
                crate::jwt::verify(token, key, host.now_ms() / 1000, LEEWAY_S).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn src(s: &str) -> Source {
        Source::parse(
            s,
            super::super::template::Scope {
                tasks: &["t"],
                vars: &["v"],
            },
        )
        .unwrap()
    }

    #[test]
    fn reads_only_what_is_asked_from_a_request() {
        let key = b"0123456789abcdef0123456789abcdef";
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), json!("alice"));
        claims.insert("org".into(), json!({"tier": "gold", "seats": 3}));
        let token = crate::jwt::sign(key, &serde_json::Map::new(), &claims);
        let mut host = FakeHost::new(HostKind::Envoy).with_request_headers(&[
            (":method", "POST"),
            (":path", "/tickets/new?lang=de&q=a%20b+c"),
            ("x-request-id", "rid-1"),
            ("x-consumer-id", "team-a"),
            ("x-tier", "pro"),
            ("authorization", &format!("Bearer {token}")),
            ("user-agent", "curl/8"),
        ]);
        host.now_ms = 1_000_000;
        host.properties
            .insert("source.address".into(), "10.1.2.3:5555".into());
        let context = RequestContext {
            consumer: vec![
                serde_json::from_value(json!({"type": "header", "name": "x-consumer-id"})).unwrap(),
            ],
            tier: vec![serde_json::from_value(json!({"type": "header", "name": "x-tier"})).unwrap()],
            claims: Some(Claims::Hs256 { key: key.to_vec() }),
        };
        let mut body = Body::new(br#"{"ticket": {"text": "printer on fire", "n": 2}}"#.to_vec());
        let sources: Vec<Source> = [
            "body",
            "body/ticket/text",
            "body/ticket/n",
            "body/missing",
            "header.user-agent",
            "query.q",
            "query.lang",
            "method",
            "path",
            "client_address",
            "consumer",
            "tier",
            "claim.sub",
            "claim.org.tier",
            "claim.nope",
            "task.t",
            "v",
        ]
        .iter()
        .map(|s| src(s))
        .collect();
        let inputs = Inputs::from_request(&host, Some(&mut body), &sources, &context, 10);
        let got = |s: &str| inputs.get(&src(s)).cloned();
        assert_eq!(got("body"), Some(json!("{\"ticket\":")), "bounded");
        assert_eq!(got("body/ticket/text"), Some(json!("printer on fire")));
        assert_eq!(got("body/ticket/n"), Some(json!(2)));
        assert_eq!(got("body/missing"), None);
        assert_eq!(got("header.user-agent"), Some(json!("curl/8")));
        assert_eq!(got("query.q"), Some(json!("a b c")));
        assert_eq!(got("query.lang"), Some(json!("de")));
        assert_eq!(got("method"), Some(json!("POST")));
        assert_eq!(got("path"), Some(json!("/tickets/new")));
        assert_eq!(got("client_address"), Some(json!("10.1.2.3")));
        assert_eq!(got("consumer"), Some(json!("team-a")));
        assert_eq!(got("tier"), Some(json!("pro")));
        assert_eq!(got("claim.sub"), Some(json!("alice")));
        assert_eq!(got("claim.org.tier"), Some(json!("gold")));
        assert_eq!(got("claim.nope"), None);
        assert_eq!((got("task.t"), got("v")), (None, None), "not the request's");
        assert_eq!(inputs.request_id(), Some("rid-1"));

        // A token under another key, or expired, yields no claims.
        let other = crate::jwt::sign(
            b"another key of thirty-two bytes!",
            &serde_json::Map::new(),
            &claims,
        );
        host.request_headers
            .insert("authorization".into(), format!("Bearer {other}"));
        assert_eq!(context.claims(&host), None);
        let mut expired = claims.clone();
        expired.insert("exp".into(), json!(900));
        let t = crate::jwt::sign(key, &serde_json::Map::new(), &expired);
        host.request_headers.insert("authorization".into(), t);
        assert_eq!(context.claims(&host), None);

        // Claims forwarded by an auth filter in front, base64url or JSON.
        let forwarded = RequestContext {
            claims: Some(Claims::Header("x-jwt-payload".into())),
            ..RequestContext::default()
        };
        for v in [
            crate::crypto::base64url_encode(br#"{"sub":"bob"}"#),
            r#"{"sub":"bob"}"#.to_string(),
        ] {
            host.request_headers.insert("x-jwt-payload".into(), v);
            assert_eq!(forwarded.claims(&host).unwrap()["sub"], "bob");
        }
    }

    #[test]
    fn form_bodies_and_decoding() {
        let host = FakeHost::new(HostKind::Kong)
            .with_request_headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
        let mut body = Body::new(b"name=Jane+Doe&note=caf%C3%A9%21&empty=&flag".to_vec());
        let sources = [
            src("body/note"),
            src("body/name"),
            src("body/flag"),
            src("body/x"),
        ];
        let inputs = Inputs::from_request(&host, Some(&mut body), &sources, &RequestContext::default(), 100);
        assert_eq!(inputs.get(&src("body/note")), Some(&json!("café!")));
        assert_eq!(inputs.get(&src("body/name")), Some(&json!("Jane Doe")));
        assert_eq!(inputs.get(&src("body/flag")), Some(&json!("")));
        assert_eq!(inputs.get(&src("body/x")), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(
            form_pairs("a=1&&b&c=%26"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".into(), "".into()),
                ("c".into(), "&".into())
            ]
        );
        // Without a body (a GET), body sources are missing.
        let inputs = Inputs::from_request(&host, None, &sources, &RequestContext::default(), 100);
        assert_eq!(inputs, Inputs::new());
    }

    #[test]
    fn claims_config() {
        let env = |k: &str| (k == "K").then(|| "k".repeat(32));
        let raw = |v: serde_json::Value| serde_json::from_value::<RawClaims>(v).unwrap();
        assert_eq!(
            raw(json!({"header": "X-Jwt"})).compile("claims", &env),
            Ok(Claims::Header("x-jwt".into()))
        );
        assert_eq!(
            raw(json!({"hs256_key": {"env": "K"}})).compile("claims", &env),
            Ok(Claims::Hs256 {
                key: "k".repeat(32).into_bytes()
            })
        );
        let cases = [
            (json!({}), "claims"),
            (json!({"header": "a", "hs256_key": {"value": "x"}}), "claims"),
            (json!({"header": " "}), "claims.header"),
            (json!({"hs256_key": {"value": "short"}}), "claims.hs256_key"),
            (json!({"hs256_key": {"env": "MISSING"}}), "claims.hs256_key"),
        ];
        for (v, field) in cases {
            assert_eq!(
                raw(v.clone()).compile("claims", &env).unwrap_err().field,
                field,
                "{v}"
            );
        }
    }
}
