//! ai-prompt-guard configuration: raw serde types, compiled into checked [`Config`] at load.
//!
//! Every section is optional except that at least one check must be configured; every error names the
//! field (`rules.roles.user.deny[2]: invalid regex ...`). The same rules are written as a draft-4 schema
//! in `ai-prompt-guard.meta.json` for Kong; the fixtures in `fixtures/` are checked against both.

use crate::classifier::{pointer_segments, Lru};
use serde::Deserialize;
use serde_json::{Map, Value};
use shared::callout::{self, RawService, Service};
use shared::chat::{Kind, Routes};
use shared::config::{parse_json, ConfigError, Duration, SecretSource};
pub use shared::config::{FailureMode, Mode};
use shared::host::Upstream;
use shared::injection::{Detector, Family};
use shared::pattern::Pattern;
use shared::schema::Schema;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// What to do with client-supplied system (and `developer`) messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemMessages {
    #[default]
    Allow,
    Refuse,
    /// Removed from the request before it goes on.
    Strip,
}

/// How the classifier's score combines with the local detector's.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Combine {
    Max,
    /// `local_weight · local + (1 − local_weight) · remote`.
    Weighted {
        local_weight: f32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    block_status: Option<u16>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    validation: Option<RawValidation>,
    #[serde(default)]
    schema: Option<RawSchema>,
    #[serde(default)]
    rules: Option<RawRules>,
    #[serde(default)]
    injection: Option<RawInjection>,
    #[serde(default)]
    classifier: Option<RawClassifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidation {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    max_messages: Option<u64>,
    #[serde(default)]
    max_message_chars: Option<u64>,
    #[serde(default)]
    max_prompt_tokens: Option<u64>,
    #[serde(default)]
    max_tokens_ceiling: Option<u64>,
    #[serde(default)]
    allowed_models: Option<Vec<String>>,
    #[serde(default)]
    allowed_roles: Option<Vec<String>>,
    #[serde(default)]
    system_messages: SystemMessages,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    #[serde(default)]
    mode: Mode,
    document: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    mode: Mode,
    roles: BTreeMap<String, RawLists>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLists {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInjection {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    ignore_families: Vec<String>,
    #[serde(default)]
    detector: DetectorKind,
    #[serde(default)]
    cascade: Option<RawCascade>,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(default)]
    weight: Option<f32>,
    #[serde(default)]
    threshold: Option<f32>,
}

/// Which local score decides: the rules', the learned model's, or the larger of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Rules,
    /// The learned model (it reads the rules' family scores as features).
    #[default]
    Learned,
    Both,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCascade {
    band: [f32; 2],
    judge: RawJudge,
}

/// The judge of a cascade, one variant per kind (`{"classifier": {...}}`). An LLM-as-judge task on
/// `shared::llm` becomes one more variant here, `Llm(RawLlmJudge)`, and one more arm in
/// [`Judge`] and in the guard's `call_judge`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawJudge {
    Classifier(Box<RawClassifier>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassifier {
    #[serde(default)]
    mode: Mode,
    upstream: Upstream,
    path: String,
    #[serde(default)]
    auth: Option<SecretSource>,
    #[serde(default)]
    request_field: Option<String>,
    #[serde(default)]
    request_extra: Option<Map<String, Value>>,
    #[serde(default)]
    response_field: Option<String>,
    #[serde(default)]
    label_field: Option<String>,
    #[serde(default)]
    positive_label: Option<String>,
    threshold: f32,
    #[serde(default)]
    timeout_ms: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    cache_size: Option<usize>,
    failure_mode: FailureMode,
    #[serde(default)]
    combine: Option<Combine>,
    #[serde(default)]
    max_prompt_chars: Option<usize>,
}

/// Checked limits; `None` means no limit.
#[derive(Debug, Default)]
pub struct Validation {
    pub mode: Mode,
    pub max_body_bytes: usize,
    pub max_messages: Option<u64>,
    pub max_message_chars: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub max_tokens_ceiling: Option<u64>,
    /// Exact names, or prefixes written `name*`.
    pub allowed_models: Option<Vec<String>>,
    pub allowed_roles: Option<Vec<String>>,
    pub system_messages: SystemMessages,
}

impl Validation {
    pub fn model_allowed(&self, model: &str) -> bool {
        self.allowed_models.as_ref().is_none_or(|list| {
            list.iter().any(|m| match m.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => m == model,
            })
        })
    }
}

pub struct SchemaCheck {
    pub mode: Mode,
    pub schema: Schema,
}

pub struct RoleLists {
    pub role: String,
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
}

pub struct Rules {
    pub mode: Mode,
    pub roles: Vec<RoleLists>,
}

pub struct Injection {
    pub mode: Mode,
    pub threshold: f32,
    pub ignore: Vec<Family>,
    pub detector: Detector,
    pub kind: DetectorKind,
    pub cascade: Option<Cascade>,
    /// Per field kind: weight and threshold (`injection.fields`); kinds not listed score with weight 1
    /// at `threshold`.
    pub fields: BTreeMap<Kind, FieldScore>,
}

/// How one field kind is scored: its score times `weight` (0 turns the kind off) blocks at
/// `threshold` (with a cascade, at the band's top).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldScore {
    pub weight: f32,
    pub threshold: f32,
}

/// Largest per-kind weight.
pub const MAX_WEIGHT: f32 = 4.0;

impl Injection {
    pub fn field(&self, kind: Kind) -> FieldScore {
        self.fields.get(&kind).copied().unwrap_or(FieldScore {
            weight: 1.0,
            threshold: self.threshold,
        })
    }
}

/// Requests whose local score is in `[low, high)` go to the judge; at or above `high` the local
/// detector blocks, below `low` it passes (`threshold` is not used).
pub struct Cascade {
    pub low: f32,
    pub high: f32,
    pub judge: Judge,
}

/// A compiled cascade judge.
pub enum Judge {
    /// The remote classifier (same fields as the top-level `classifier`).
    Classifier(Classifier),
}

impl Judge {
    /// The classifier that answers for this judge.
    pub fn classifier(&self) -> &Classifier {
        match self {
            Judge::Classifier(c) => c,
        }
    }
}

pub struct Classifier {
    pub mode: Mode,
    /// Where and how it is called (the key as a bearer token), and what its failure means.
    pub service: Service,
    pub request_field: Vec<String>,
    pub request_extra: Map<String, Value>,
    pub response_field: String,
    /// (label pointer, positive label).
    pub label: Option<(String, String)>,
    pub threshold: f32,
    pub combine: Combine,
    pub max_prompt_chars: usize,
    /// Per-VM cache of scores by prompt hash.
    pub cache: RefCell<Lru>,
}

pub struct Config {
    /// The requests inspected (`paths`, normalised: `shared::chat::path`).
    pub routes: Routes,
    pub block_status: u16,
    pub header: String,
    pub validation: Validation,
    pub schema: Option<SchemaCheck>,
    pub rules: Option<Rules>,
    pub injection: Option<Injection>,
    pub classifier: Option<Classifier>,
    /// Roles whose text the injection detector and the classifier read.
    pub scan_roles: Vec<String>,
}

pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 100 * 1024 * 1024;
pub const KNOWN_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

fn positive(field: &str, v: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::new(field, "must be at least 1")),
        other => Ok(other),
    }
}

fn roles_list(field: &str, roles: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if roles.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    for (i, r) in roles.iter().enumerate() {
        if !KNOWN_ROLES.contains(&r.as_str()) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("unknown role `{r}`; expected one of: {}", KNOWN_ROLES.join(", ")),
            ));
        }
    }
    Ok(roles)
}

fn score(field: &str, v: f32) -> Result<f32, ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::new(field, "must be between 0 and 1"))
    }
}

fn patterns(field: &str, list: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            Pattern::new(p)
                .map_err(|e| ConfigError::new(format!("{field}[{i}]"), format!("invalid regex `{p}`: {e}")))
        })
        .collect()
}

fn pointer(field: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let p = v.unwrap_or_else(|| default.to_string());
    match pointer_segments(&p) {
        Some(_) => Ok(p),
        None => Err(ConfigError::new(
            field,
            "must be a JSON pointer such as /score or /0/score",
        )),
    }
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        if raw.validation.is_none()
            && raw.schema.is_none()
            && raw.rules.is_none()
            && raw.injection.is_none()
            && raw.classifier.is_none()
        {
            return Err(ConfigError::new(
                "",
                "nothing to check: configure at least one of validation, schema, rules, injection, classifier",
            ));
        }
        let block_status = raw.block_status.unwrap_or(400);
        if !(400..=599).contains(&block_status) {
            return Err(ConfigError::new(
                "block_status",
                "must be an HTTP error status, 400 to 599",
            ));
        }
        let header = raw
            .header
            .unwrap_or_else(|| "x-ai-prompt-guard".into())
            .to_ascii_lowercase();
        if header.is_empty() || !header.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ConfigError::new(
                "header",
                "must be a header name of A-Z a-z 0-9 -",
            ));
        }
        let v = raw.validation.unwrap_or_default();
        let max_body = v.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if !(1..=MAX_MAX_BODY).contains(&max_body) {
            return Err(ConfigError::new(
                "validation.max_body_bytes",
                "must be 1 to 104857600",
            ));
        }
        if let Some(models) = &v.allowed_models {
            if models.is_empty() || models.iter().any(|m| m.is_empty() || m == "*") {
                return Err(ConfigError::new(
                    "validation.allowed_models",
                    "must be a non-empty list of model names (a trailing * matches a prefix)",
                ));
            }
        }
        let validation = Validation {
            mode: v.mode,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            max_messages: positive("validation.max_messages", v.max_messages)?,
            max_message_chars: positive("validation.max_message_chars", v.max_message_chars)?,
            max_prompt_tokens: positive("validation.max_prompt_tokens", v.max_prompt_tokens)?,
            max_tokens_ceiling: positive("validation.max_tokens_ceiling", v.max_tokens_ceiling)?,
            allowed_models: v.allowed_models,
            allowed_roles: v
                .allowed_roles
                .map(|r| roles_list("validation.allowed_roles", r))
                .transpose()?,
            system_messages: v.system_messages,
        };
        let schema = match raw.schema {
            Some(s) => Some(SchemaCheck {
                mode: s.mode,
                schema: Schema::compile(&s.document, "schema.document")?,
            }),
            None => None,
        };
        let rules = match raw.rules {
            Some(r) => {
                if r.roles.is_empty() {
                    return Err(ConfigError::new("rules.roles", "at least one role is required"));
                }
                let mut roles = Vec::new();
                for (role, lists) in r.roles {
                    let at = format!("rules.roles.{role}");
                    if !KNOWN_ROLES.contains(&role.as_str()) {
                        return Err(ConfigError::new(
                            at,
                            format!("unknown role; expected one of: {}", KNOWN_ROLES.join(", ")),
                        ));
                    }
                    if lists.allow.is_empty() && lists.deny.is_empty() {
                        return Err(ConfigError::new(at, "needs an allow or a deny list"));
                    }
                    roles.push(RoleLists {
                        allow: patterns(&format!("{at}.allow"), &lists.allow)?,
                        deny: patterns(&format!("{at}.deny"), &lists.deny)?,
                        role,
                    });
                }
                Some(Rules { mode: r.mode, roles })
            }
            None => None,
        };
        let mut scan_roles = vec!["user".to_string(), "tool".to_string(), "function".to_string()];
        let injection = match raw.injection {
            Some(i) => {
                if let Some(r) = i.roles {
                    scan_roles = roles_list("injection.roles", r)?;
                }
                let mut ignore = Vec::new();
                for (k, name) in i.ignore_families.iter().enumerate() {
                    let Some(f) = Family::parse(name) else {
                        let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
                        return Err(ConfigError::new(
                            format!("injection.ignore_families[{k}]"),
                            format!("unknown family `{name}`; expected one of: {}", names.join(", ")),
                        ));
                    };
                    ignore.push(f);
                }
                let detector = Detector::new()
                    .map_err(|e| ConfigError::new("injection", format!("detector failed to compile: {e}")))?;
                if i.detector != DetectorKind::Rules && detector.model().is_none() {
                    return Err(ConfigError::new(
                        "injection.detector",
                        "this build has no learned model; use \"rules\"",
                    ));
                }
                let cascade = match i.cascade {
                    Some(c) => {
                        let [low, high] = c.band;
                        score("injection.cascade.band[0]", low)?;
                        score("injection.cascade.band[1]", high)?;
                        if low >= high {
                            return Err(ConfigError::new(
                                "injection.cascade.band",
                                "must be [low, high] with low < high",
                            ));
                        }
                        let judge = match c.judge {
                            RawJudge::Classifier(cl) => Judge::Classifier(Classifier::compile(
                                *cl,
                                "injection.cascade.judge.classifier",
                                env,
                            )?),
                        };
                        Some(Cascade { low, high, judge })
                    }
                    None => None,
                };
                let threshold = score("injection.threshold", i.threshold.unwrap_or(0.5))?;
                let mut fields = BTreeMap::new();
                for (name, f) in i.fields {
                    let at = format!("injection.fields.{name}");
                    let Some(kind) = Kind::parse(&name) else {
                        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                        return Err(ConfigError::new(
                            at,
                            format!("unknown field kind; expected one of: {}", all.join(", ")),
                        ));
                    };
                    let weight = f.weight.unwrap_or(1.0);
                    if !(0.0..=MAX_WEIGHT).contains(&weight) {
                        return Err(ConfigError::new(
                            format!("{at}.weight"),
                            "must be between 0 and 4",
                        ));
                    }
                    let threshold = match f.threshold {
                        Some(t) => score(&format!("{at}.threshold"), t)?,
                        None => threshold,
                    };
                    fields.insert(kind, FieldScore { weight, threshold });
                }
                Some(Injection {
                    mode: i.mode,
                    threshold,
                    ignore,
                    detector,
                    kind: i.detector,
                    cascade,
                    fields,
                })
            }
            None => None,
        };
        if raw.classifier.is_some() && injection.as_ref().is_some_and(|i| i.cascade.is_some()) {
            return Err(ConfigError::new(
                "injection.cascade",
                "use either classifier (every request) or injection.cascade (the uncertain band only)",
            ));
        }
        let classifier = match raw.classifier {
            Some(c) => Some(Classifier::compile(c, "classifier", env)?),
            None => None,
        };
        Ok(Config {
            routes: Routes::from_config("paths", raw.paths.as_deref())?,
            block_status,
            header,
            validation,
            schema,
            rules,
            injection,
            classifier,
            scan_roles,
        })
    }
}

impl Classifier {
    /// `at` is the field path of this classifier in the config (`classifier`, or a cascade's judge).
    fn compile(
        c: RawClassifier,
        at: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Classifier, ConfigError> {
        let mut headers = BTreeMap::new();
        if let Some(key) = c
            .auth
            .map(|a| a.resolve(&format!("{at}.auth"), env))
            .transpose()?
        {
            shared::config::check_header_value(format!("{at}.auth"), &key)?;
            headers.insert("authorization".to_string(), format!("Bearer {key}"));
        }
        let service = Service::compile(
            at,
            callout::Names {
                upstream: "upstream",
                timeout: "timeout_ms",
            },
            RawService {
                upstream: c.upstream,
                path: c.path,
                headers,
                timeout: c.timeout_ms,
                retries: c.retries,
                failure_mode: c.failure_mode,
            },
            callout::TIMEOUTS,
        )?;
        let request_field = pointer(&format!("{at}.request_field"), c.request_field, "/text")?;
        let label = match (c.label_field, c.positive_label) {
            (Some(f), Some(p)) if !p.is_empty() => {
                Some((pointer(&format!("{at}.label_field"), Some(f), "")?, p))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    format!("{at}.positive_label"),
                    "label_field and a non-empty positive_label go together",
                ))
            }
        };
        let cache_size = c.cache_size.unwrap_or(256);
        if cache_size > 10_000 {
            return Err(ConfigError::new(format!("{at}.cache_size"), "must be 0 to 10000"));
        }
        let combine = c.combine.unwrap_or(Combine::Max);
        if let Combine::Weighted { local_weight } = combine {
            score(&format!("{at}.combine.local_weight"), local_weight)?;
        }
        let max_prompt_chars = c.max_prompt_chars.unwrap_or(20_000);
        if max_prompt_chars == 0 {
            return Err(ConfigError::new(
                format!("{at}.max_prompt_chars"),
                "must be at least 1",
            ));
        }
        Ok(Classifier {
            mode: c.mode,
            service,
            request_field: pointer_segments(&request_field).unwrap_or_default(),
            request_extra: c.request_extra.unwrap_or_default(),
            response_field: pointer(&format!("{at}.response_field"), c.response_field, "/score")?,
            label,
            threshold: score(&format!("{at}.threshold"), c.threshold)?,
            combine,
            max_prompt_chars,
            cache: RefCell::new(Lru::new(cache_size)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "CLASSIFIER_KEY").then(|| "k".to_string())
    }

    const FULL: &str = r#"{
      "block_status": 403,
      "validation": {"max_messages": 5, "allowed_models": ["gpt-4o-mini", "claude-*"], "allowed_roles": ["user", "assistant"], "system_messages": "strip"},
      "schema": {"document": {"type": "object"}},
      "rules": {"mode": "shadow", "roles": {"user": {"allow": ["(?i)weather"], "deny": ["password", "secret"]}}},
      "injection": {"threshold": 0.6, "roles": ["user"], "ignore_families": ["fake_delimiter"],
                    "fields": {"tool_definition": {"weight": 0.5}, "tool_result": {"threshold": 0.8}}},
      "classifier": {"upstream": {"cluster": "c", "host": "h:1"}, "path": "/classify", "threshold": 0.8,
                     "failure_mode": "allow", "auth": {"env": "CLASSIFIER_KEY"}, "combine": {"method": "weighted", "local_weight": 0.3}}
    }"#;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse(FULL.as_bytes(), &env).unwrap();
        assert_eq!(c.block_status, 403);
        assert_eq!(c.header, "x-ai-prompt-guard");
        assert!(c.validation.model_allowed("claude-3-5-haiku"));
        assert!(!c.validation.model_allowed("gpt-4o"));
        assert_eq!(c.rules.as_ref().unwrap().mode, Mode::Shadow);
        assert_eq!(c.scan_roles, vec!["user"]);
        let cl = c.classifier.as_ref().unwrap();
        assert_eq!(
            cl.service.headers,
            vec![("authorization".to_string(), "Bearer k".to_string())]
        );
        assert_eq!((cl.service.timeout_ms, cl.service.retries), (1000, 0));
        assert_eq!(cl.response_field, "/score");
        assert_eq!(cl.combine, Combine::Weighted { local_weight: 0.3 });
        let inj = c.injection.as_ref().unwrap();
        assert_eq!(
            inj.field(Kind::ToolDefinition),
            FieldScore {
                weight: 0.5,
                threshold: 0.6
            }
        );
        assert_eq!(
            inj.field(Kind::ToolResult),
            FieldScore {
                weight: 1.0,
                threshold: 0.8
            }
        );
        assert_eq!(
            inj.field(Kind::User),
            FieldScore {
                weight: 1.0,
                threshold: 0.6
            }
        );
        assert_eq!(c.routes, Routes::default());
        let min = Config::parse(br#"{"injection": {}}"#, &env).unwrap();
        assert_eq!(min.injection.as_ref().unwrap().threshold, 0.5);
        assert_eq!(min.validation.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (r#""secret""#, r#""(unclosed""#, "rules.roles.user.deny[1]"),
            (r#""(?i)weather""#, r#""[z-a]""#, "rules.roles.user.allow[0]"),
            // Unicode classes are not in the small engine: refused, not silently ASCII.
            (r#""(?i)weather""#, r#""\\p{L}+""#, "rules.roles.user.allow[0]"),
            (
                r#""max_messages": 5"#,
                r#""max_messages": 0"#,
                "validation.max_messages",
            ),
            (r#""block_status": 403"#, r#""block_status": 200"#, "block_status"),
            (
                r#""threshold": 0.6"#,
                r#""threshold": 1.6"#,
                "injection.threshold",
            ),
            (r#""fake_delimiter""#, r#""nope""#, "injection.ignore_families[0]"),
            (
                r#""roles": ["user"]"#,
                r#""roles": ["robot"]"#,
                "injection.roles[0]",
            ),
            (
                r#""allowed_roles": ["user", "assistant"]"#,
                r#""allowed_roles": ["user", "x"]"#,
                "validation.allowed_roles[1]",
            ),
            (r#""/classify""#, r#""classify""#, "classifier.path"),
            (r#""CLASSIFIER_KEY""#, r#""MISSING""#, "classifier.auth"),
            (
                r#""local_weight": 0.3"#,
                r#""local_weight": 3"#,
                "classifier.combine.local_weight",
            ),
            (
                r#""type": "object""#,
                r#""type": "thing""#,
                "schema.document.type",
            ),
            (r#""user": {"allow""#, r#""robot": {"allow""#, "rules.roles.robot"),
            (
                r#""tool_definition": {"weight": 0.5"#,
                r#""tool_definitions": {"weight": 0.5"#,
                "injection.fields.tool_definitions",
            ),
            (
                r#""weight": 0.5"#,
                r#""weight": 5"#,
                "injection.fields.tool_definition.weight",
            ),
            (
                r#""threshold": 0.8}"#,
                r#""threshold": 1.8}"#,
                "injection.fields.tool_result.threshold",
            ),
            (
                r#""block_status": 403"#,
                r#""paths": ["chat"], "block_status": 403"#,
                "paths[0]",
            ),
        ];
        for (from, to, field) in cases {
            let json = FULL.replacen(from, to, 1);
            assert_ne!(json, FULL, "{from}");
            let err = Config::parse(json.as_bytes(), &env).err().unwrap();
            assert_eq!(err.field, *field, "{err}");
        }
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"bogus": 1}"#,
            br#"{"injection": {"mode": "loud"}}"#,
        ] {
            assert!(
                Config::parse(bad, &env).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The same fixtures are checked against ai-prompt-guard.meta.json by tests/check_meta.py.
    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen =
            shared::config::check_fixtures(&dir, |b| Config::parse(b, &|_| Some("x".to_string())).map(drop))
                .unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }
}
