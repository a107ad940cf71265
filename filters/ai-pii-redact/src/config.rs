//! ai-pii-redact configuration: raw serde types, compiled into a checked [`Config`] at load.
//!
//! Every error names the field (`regexes[1].pattern: ...`). Regexes and term lists are compiled here,
//! once, into a [`shared::pii::Engine`]. The same rules are written as a draft-4 schema in
//! `ai_pii_redact.meta.json` for Kong; the fixtures in `fixtures/` are checked against both.

use serde::Deserialize;
use shared::callout::{self, Names, RawService, Service};
use shared::chat::{Kind, Routes};
use shared::config::{parse_json, ConfigError, Duration, SecretSource};
pub use shared::config::{FailureMode, Mode};
use shared::host::Upstream;
use shared::pii::{Action, Builtin, Engine, EngineErrorKind, EngineSpec, Rules};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    entities: Option<Vec<Builtin>>,
    #[serde(default)]
    default_action: Option<Action>,
    #[serde(default)]
    actions: BTreeMap<String, Action>,
    #[serde(default)]
    regexes: Vec<RawRegex>,
    #[serde(default)]
    terms: Vec<RawTerms>,
    #[serde(default)]
    hash_key: Option<SecretSource>,
    #[serde(default)]
    request: Option<RawRequest>,
    #[serde(default)]
    response: Option<RawResponse>,
    #[serde(default)]
    unmasked: Option<RawUnmasked>,
    #[serde(default)]
    ner: Option<RawNer>,
    #[serde(default)]
    count_header: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegex {
    name: String,
    pattern: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerms {
    name: String,
    terms: Vec<String>,
    #[serde(default)]
    case_sensitive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default)]
    restore: Option<bool>,
    #[serde(default)]
    redact: Option<bool>,
    #[serde(default)]
    max_hold_bytes: Option<u64>,
    #[serde(default)]
    restore_tool_arguments: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnmasked {
    header: String,
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNer {
    endpoint: Upstream,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    timeout_ms: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    entities: Option<Vec<String>>,
    #[serde(default)]
    failure_mode: FailureMode,
}

/// The external NER service (Presidio analyzer contract).
#[derive(Debug, Clone)]
pub struct Ner {
    /// Where and how it is called, and what its failure means.
    pub service: Service,
    pub language: String,
    pub threshold: f64,
    /// Presidio entity types to keep (upper case); empty keeps all.
    pub entities: Vec<String>,
}

/// `ner`'s service fields keep their first names.
const NER_NAMES: Names = Names {
    upstream: "endpoint",
    timeout: "timeout_ms",
};

/// Who sees model output unmasked: consumers whose header carries one of the values.
#[derive(Debug, Clone)]
pub struct Unmasked {
    pub header: String,
    pub values: Vec<String>,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    pub engine: Engine,
    pub rules: Rules,
    /// Requests whose bodies are redacted (`request.paths`, normalised: `shared::chat::path`).
    pub routes: Routes,
    /// Message roles whose text is redacted; `None` means all.
    pub roles: Option<Vec<String>>,
    /// Field kinds redacted (`request.fields`; default every kind).
    pub kinds: Vec<Kind>,
    /// Request headers whose values are redacted (lower case).
    pub headers: Vec<String>,
    pub restore: bool,
    /// Restore placeholders in the answer's tool-call arguments too (else they stay placeholders).
    pub restore_tool_arguments: bool,
    pub redact_response: bool,
    pub max_hold: usize,
    pub unmasked: Option<Unmasked>,
    pub ner: Option<Ner>,
    pub count_header: String,
    pub max_body_bytes: usize,
}

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;

/// Entity type names from config: they become metric labels and placeholder stems.
fn valid_kind(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn non_empty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(())
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // Every field is optional, and serde would take `[]` as an empty struct: insist on an object.
        if json
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b != b'{')
        {
            return Err(ConfigError::new("", "configuration must be a JSON object"));
        }
        let raw: RawConfig = parse_json(json)?;
        let builtins = raw.entities.unwrap_or_else(|| Builtin::ALL.to_vec());
        let builtin_names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
        let mut custom_names: Vec<String> = Vec::new();
        let mut claim = |field: String, name: &str| -> Result<(), ConfigError> {
            if !valid_kind(name) {
                return Err(ConfigError::new(
                    field,
                    "must be 1 to 32 characters of a-z 0-9 _ -",
                ));
            }
            if builtin_names.contains(&name) || custom_names.iter().any(|n| n == name) {
                return Err(ConfigError::new(
                    field,
                    format!("entity type `{name}` is already defined"),
                ));
            }
            custom_names.push(name.to_string());
            Ok(())
        };
        for (i, r) in raw.regexes.iter().enumerate() {
            claim(format!("regexes[{i}].name"), &r.name)?;
        }
        for (i, t) in raw.terms.iter().enumerate() {
            claim(format!("terms[{i}].name"), &t.name)?;
            if t.terms.is_empty() {
                return Err(ConfigError::new(
                    format!("terms[{i}].terms"),
                    "at least one term is required",
                ));
            }
        }
        let spec = EngineSpec {
            builtins,
            regexes: raw
                .regexes
                .iter()
                .map(|r| (r.name.clone(), r.pattern.clone()))
                .collect(),
            terms: raw
                .terms
                .iter()
                .map(|t| (t.name.clone(), t.terms.clone(), t.case_sensitive))
                .collect(),
        };
        let engine = Engine::new(&spec).map_err(|e| match e.what {
            EngineErrorKind::Regex => ConfigError::new(format!("regexes[{}].pattern", e.index), e.message),
            EngineErrorKind::Terms => ConfigError::new(format!("terms[{}].terms", e.index), e.message),
        })?;

        let ner = match raw.ner {
            Some(n) => Some(compile_ner(n)?),
            None => None,
        };
        for kind in raw.actions.keys() {
            let known = builtin_names.contains(&kind.as_str()) || custom_names.iter().any(|n| n == kind);
            // NER types (person, location, ...) are open-ended: accepted when an NER service is set.
            let ner_type = ner.is_some() && valid_kind(kind);
            if !(known || ner_type) {
                return Err(ConfigError::new(
                    format!("actions.{kind}"),
                    "unknown entity type (built-in, a custom detector's name, or an NER type with `ner` set)",
                ));
            }
        }
        let default = raw.default_action.unwrap_or(Action::Mask);
        let uses_hash = default == Action::Hash || raw.actions.values().any(|a| *a == Action::Hash);
        let hash_key = match (&raw.hash_key, uses_hash) {
            (Some(src), _) => src.resolve("hash_key", env)?.into_bytes(),
            (None, true) => {
                return Err(ConfigError::new(
                    "hash_key",
                    "is required when an action is `hash` (the HMAC key; keep it secret)",
                ))
            }
            (None, false) => Vec::new(),
        };
        let rules = Rules {
            default,
            per_kind: raw.actions.into_iter().collect::<HashMap<_, _>>(),
            hash_key,
        };

        let request = raw.request.unwrap_or(RawRequest {
            paths: None,
            roles: None,
            fields: None,
            headers: Vec::new(),
        });
        let routes = Routes::from_config("request.paths", request.paths.as_deref())?;
        let kinds = match &request.fields {
            None => Kind::ALL.to_vec(),
            Some(f) if f.is_empty() => {
                return Err(ConfigError::new(
                    "request.fields",
                    "must not be empty (omit it for every kind)",
                ))
            }
            Some(f) => kinds_list("request.fields", f)?,
        };
        if let Some(roles) = &request.roles {
            if roles.is_empty() {
                return Err(ConfigError::new(
                    "request.roles",
                    "must not be empty (omit it for all roles)",
                ));
            }
            for (i, r) in roles.iter().enumerate() {
                non_empty(&format!("request.roles[{i}]"), r)?;
            }
        }
        for (i, h) in request.headers.iter().enumerate() {
            non_empty(&format!("request.headers[{i}]"), h)?;
        }
        let response = raw.response.unwrap_or(RawResponse {
            restore: None,
            redact: None,
            max_hold_bytes: None,
            restore_tool_arguments: None,
        });
        let max_hold = response.max_hold_bytes.unwrap_or(8192);
        if !(64..=1024 * 1024).contains(&max_hold) {
            return Err(ConfigError::new(
                "response.max_hold_bytes",
                "must be 64 to 1048576",
            ));
        }
        let unmasked = match raw.unmasked {
            Some(u) => {
                non_empty("unmasked.header", &u.header)?;
                if u.values.is_empty() {
                    return Err(ConfigError::new(
                        "unmasked.values",
                        "at least one value is required",
                    ));
                }
                Some(Unmasked {
                    header: u.header.to_ascii_lowercase(),
                    values: u.values,
                })
            }
            None => None,
        };
        let count_header = raw.count_header.unwrap_or_else(|| "x-pii-redacted".into());
        non_empty("count_header", &count_header)?;
        if !count_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError::new("count_header", "must be a header name"));
        }
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new("max_body_bytes", "must be 1 to 104857600"));
        }
        Ok(Config {
            mode: raw.mode,
            engine,
            rules,
            routes,
            roles: request.roles,
            kinds,
            headers: request.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            restore: response.restore.unwrap_or(true),
            restore_tool_arguments: response.restore_tool_arguments.unwrap_or(true),
            redact_response: response.redact.unwrap_or(true),
            max_hold: usize::try_from(max_hold).unwrap_or(8192),
            unmasked,
            ner,
            count_header: count_header.to_ascii_lowercase(),
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        })
    }
}

/// A list of field kinds (`content`, `tool_call`, ...), each known and named once.
pub fn kinds_list(field: &str, names: &[String]) -> Result<Vec<Kind>, ConfigError> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(k) = Kind::parse(name) else {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("unknown field kind `{name}`; expected one of: {}", all.join(", ")),
            ));
        };
        if out.contains(&k) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("`{name}` is listed twice"),
            ));
        }
        out.push(k);
    }
    Ok(out)
}

fn compile_ner(n: RawNer) -> Result<Ner, ConfigError> {
    let service = Service::compile(
        "ner",
        NER_NAMES,
        RawService {
            upstream: n.endpoint,
            path: n.path.unwrap_or_else(|| "/analyze".into()),
            headers: BTreeMap::new(),
            timeout: n.timeout_ms,
            retries: n.retries,
            failure_mode: n.failure_mode,
        },
        callout::TIMEOUTS,
    )?;
    let language = n.language.unwrap_or_else(|| "en".into());
    non_empty("ner.language", &language)?;
    let threshold = n.threshold.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ConfigError::new("ner.threshold", "must be 0 to 1"));
    }
    Ok(Ner {
        service,
        language,
        threshold,
        entities: n
            .entities
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_ascii_uppercase())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "PII_HASH_KEY").then(|| "secret-key".to_string())
    }

    const BASE: &str = r#"{
      "mode": "enforce",
      "entities": ["email", "phone", "card"],
      "default_action": "mask",
      "actions": {"card": "block", "email": "hash", "employee_id": "partial", "person": "mask"},
      "regexes": [{"name": "employee_id", "pattern": "EMP-\\d{6}"}],
      "terms": [{"name": "project", "terms": ["Falcon"]}],
      "hash_key": {"env": "PII_HASH_KEY"},
      "request": {"roles": ["user"], "headers": ["X-Note"]},
      "response": {"restore": true, "redact": false, "max_hold_bytes": 4096},
      "unmasked": {"header": "X-Consumer-Role", "values": ["admin"]},
      "ner": {"endpoint": {"cluster": "ner", "host": "127.0.0.1:5002"}, "threshold": 0.6, "failure_mode": "allow"}
    }"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(BASE.as_bytes(), &env).unwrap();
        assert_eq!(c.rules.action("card"), Action::Block);
        assert_eq!(c.rules.action("ssn"), Action::Mask);
        assert_eq!(c.rules.hash_key, b"secret-key");
        assert_eq!(c.headers, vec!["x-note"]);
        assert!(c.restore && !c.redact_response);
        assert_eq!(c.unmasked.as_ref().unwrap().header, "x-consumer-role");
        let ner = c.ner.unwrap();
        assert_eq!(
            (
                ner.service.path.as_str(),
                ner.service.timeout_ms,
                ner.service.retries,
                ner.service.failure_mode
            ),
            ("/analyze", 1000, 0, FailureMode::Allow)
        );
        let c = Config::parse(
            BASE.replacen(
                r#""threshold": 0.6"#,
                r#""threshold": 0.6, "timeout_ms": "2s", "retries": 2"#,
                1,
            )
            .as_bytes(),
            &env,
        )
        .unwrap();
        let ner = c.ner.unwrap();
        assert_eq!((ner.service.timeout_ms, ner.service.retries), (2000, 2));
        let d = Config::parse(b"{}", &env).unwrap();
        assert_eq!(d.mode, Mode::Enforce);
        assert_eq!(d.routes, Routes::default());
        assert_eq!(d.kinds, Kind::ALL);
        assert!(d.restore_tool_arguments);
        assert!(d.restore && d.redact_response && d.ner.is_none());
        assert_eq!(d.count_header, "x-pii-redacted");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"EMP-\\d{6}"#, r#"EMP-(\\d{6}"#, "regexes[0].pattern"),
            (
                r#""name": "employee_id""#,
                r#""name": "Employee ID""#,
                "regexes[0].name",
            ),
            (r#""name": "project""#, r#""name": "email""#, "terms[0].name"),
            (r#""terms": ["Falcon"]"#, r#""terms": []"#, "terms[0].terms"),
            (r#""env": "PII_HASH_KEY""#, r#""env": "MISSING""#, "hash_key"),
            (r#""threshold": 0.6"#, r#""threshold": 1.5"#, "ner.threshold"),
            (r#""127.0.0.1:5002""#, r#""127.0.0.1""#, "ner.endpoint.host"),
            (r#""cluster": "ner""#, r#""cluster": " ""#, "ner.endpoint.cluster"),
            (
                r#""threshold": 0.6"#,
                r#""threshold": 0.6, "timeout_ms": 60001"#,
                "ner.timeout_ms",
            ),
            (
                r#""threshold": 0.6"#,
                r#""threshold": 0.6, "retries": 6"#,
                "ner.retries",
            ),
            (
                r#""max_hold_bytes": 4096"#,
                r#""max_hold_bytes": 1"#,
                "response.max_hold_bytes",
            ),
            (r#""values": ["admin"]"#, r#""values": []"#, "unmasked.values"),
            (r#""roles": ["user"]"#, r#""roles": []"#, "request.roles"),
        ];
        for (from, to, field) in cases {
            let json = BASE.replacen(from, to, 1);
            assert_ne!(json, BASE, "{from}");
            let err = Config::parse(json.as_bytes(), &env).unwrap_err();
            assert_eq!(err.field, *field, "{err}");
        }
        // Without `ner`, an unknown entity type in `actions` is a typo.
        let err = Config::parse(br#"{"actions": {"emial": "mask"}}"#, &env).unwrap_err();
        assert_eq!(err.field, "actions.emial");
        let err = Config::parse(br#"{"actions": {"ssn": "hash"}}"#, &env).unwrap_err();
        assert_eq!(err.field, "hash_key");
        let err = Config::parse(br#"{"bogus": 1}"#, &env).unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
        assert!(Config::parse(br#"{"mode": "audit"}"#, &env).is_err());
        assert!(Config::parse(br#"{"default_action": "drop"}"#, &env).is_err());
        assert!(Config::parse(b"", &env).is_err());
        for (json, field) in [
            (
                &br#"{"request": {"fields": ["content", "prose"]}}"#[..],
                "request.fields[1]",
            ),
            (
                br#"{"request": {"fields": ["user", "user"]}}"#,
                "request.fields[1]",
            ),
            (br#"{"request": {"fields": []}}"#, "request.fields"),
            (br#"{"request": {"paths": ["/v1/x", "/./"]}}"#, "request.paths[1]"),
        ] {
            assert_eq!(Config::parse(json, &env).unwrap_err().field, field);
        }
        let c = Config::parse(
            br#"{"request": {"fields": ["tool_call", "content"]}, "response": {"restore_tool_arguments": false}}"#,
            &env,
        )
        .unwrap();
        assert_eq!(c.kinds, [Kind::ToolCall, Kind::Content]);
        assert!(c.restore && !c.restore_tool_arguments);
    }

    /// The same fixtures are checked against ai_pii_redact.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen =
            shared::config::check_fixtures(&dir, |b| Config::parse(b, &|_| Some("x".to_string())).map(drop))
                .unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }
}
