//! ai-audit-log configuration: raw serde types, compiled into a checked [`Config`] at load. Every error
//! names the field (`sinks[0].table: ...`, `routes[1].capture: ...`); the same rules are written as a
//! draft-4 schema in `ai_audit_log.meta.json` for Kong.

use serde::Deserialize;
use serde_json::{Map, Value};
use shared::callout::valid_host;
use shared::config::{check_header_value, check_prices, parse_json, read, ConfigError, Duration, Price};
use shared::host::Upstream;
use shared::llm::{self, Spec, Tasks};
use shared::queue::Overflow;
use shared::sink::Format;
use std::collections::HashMap;

/// What of a request's payload its record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// No payload information at all.
    None,
    /// Body sizes only.
    Metadata,
    /// Sizes and the first `bytes` bytes of each body, redacted.
    Excerpt { bytes: usize },
    /// Sizes and the whole bodies, redacted, up to `bytes` each.
    Full { bytes: usize },
}

impl Capture {
    /// How many body bytes to keep (0: none).
    pub fn keep(self) -> usize {
        match self {
            Capture::None | Capture::Metadata => 0,
            Capture::Excerpt { bytes } | Capture::Full { bytes } => bytes,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capture::None => "none",
            Capture::Metadata => "metadata",
            Capture::Excerpt { .. } => "excerpt",
            Capture::Full { .. } => "full",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Path prefix this route matches (`None`: every path).
    pub prefix: Option<String>,
    pub capture: Capture,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub upstream: Upstream,
    /// Base path (default empty); the format's path and query are appended (`/?query=…` for
    /// ClickHouse, `/_bulk`, `/services/collector/event`, `/v1/logs`).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub format: Format,
    pub timeout_ms: u64,
}

/// Which excerpts a summary reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Of {
    Request,
    Response,
    #[default]
    Both,
}

/// The summary task (`shared::llm`), run by the drainer over each batch before it is shipped.
#[derive(Debug)]
pub struct Summary {
    pub tasks: Tasks,
    pub of: Of,
    /// Only records of these routes (`None`: every record with an excerpt).
    pub routes: Option<Vec<String>>,
}

/// The summary task's name (metric label `task=summary`) and the variables its prompt reads.
pub const SUMMARY_TASK: &str = "summary";
pub const REQUEST_VAR: &str = "audit.request";
pub const RESPONSE_VAR: &str = "audit.response";
pub const DEFAULT_SUMMARY_PROMPT: &str =
    "Condense this API exchange into one sentence of intent for an audit log \
(who wants what done, with the key identifiers), e.g. \"User updated invoice #INV-1001 status to 'paid'\". \
Do not repeat personal data.";

#[derive(Debug)]
pub struct Config {
    pub routes: Vec<Route>,
    /// The consumer: the first of these request headers present.
    pub consumer_headers: Vec<String>,
    pub sinks: Vec<Sink>,
    /// The shared-data key of the records' queue: `ai_audit_log/<queue.name>`. Audit configs in one
    /// VM id share a queue (and its drainer) only when they name the same one.
    pub queue_key: String,
    pub queue_capacity: u64,
    pub overflow: Overflow,
    pub batch_max: usize,
    pub flush_interval_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub max_body_bytes: usize,
    pub summary: Option<Summary>,
}

pub const DEFAULT_EXCERPT: usize = 512;
pub const DEFAULT_FULL: usize = 16 * 1024;
pub const MAX_KEEP: usize = 256 * 1024;
pub const MAX_CAPACITY: u64 = 100_000;
/// Most sinks: a sink's index is the low byte of its calls' tags (`drain`).
pub const MAX_SINKS: usize = 16;
/// The queue's name when `queue.name` is not set, and the shared-data key it is put under.
pub const DEFAULT_QUEUE: &str = "records";
pub const QUEUE_PREFIX: &str = "ai_audit_log/";

/// `queue.name`: 1 to 32 of `[a-z0-9_-]`.
fn valid_queue_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
pub const MAX_BATCH: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_capture: Option<RawCapture>,
    #[serde(default)]
    consumer_headers: Option<Vec<String>>,
    sinks: Vec<Map<String, Value>>,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    batch: RawBatch,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default)]
    targets: Vec<llm::RawTarget>,
    #[serde(default)]
    prices: HashMap<String, Price>,
    #[serde(default)]
    summary: Option<RawSummary>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSummary {
    target: String,
    #[serde(default)]
    of: Of,
    #[serde(default)]
    routes: Option<Vec<String>>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    cache_ttl: Option<Duration>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    max_input_chars: Option<u64>,
}

/// The summary as a `shared::llm` task config: one sentence, schema-checked, `failure_mode: allow`
/// (a failed summary leaves the record without one, never drops it).
fn summary_task(raw: &RawSummary) -> Result<llm::RawTask, ConfigError> {
    let ms = |d: Option<Duration>, default: u64| d.map_or(default, Duration::as_ms);
    let system = raw
        .instructions
        .clone()
        .unwrap_or_else(|| DEFAULT_SUMMARY_PROMPT.to_string())
        // A template opens a reference at `{{`: instructions may not smuggle one in.
        .replace("{{", "{ {");
    let prompt = match raw.of {
        Of::Request => format!("Request: {{{{{REQUEST_VAR}}}}}"),
        Of::Response => format!("Response: {{{{{RESPONSE_VAR}}}}}"),
        Of::Both => format!("Request: {{{{{REQUEST_VAR}}}}}\nResponse: {{{{{RESPONSE_VAR}}}}}"),
    };
    let mut task = serde_json::json!({
        "name": SUMMARY_TASK,
        "target": raw.target,
        "system": system,
        "prompt": prompt,
        "output": {"type": "object", "required": ["summary"], "additionalProperties": false,
                   "properties": {"summary": {"type": "string", "maxLength": 300}}},
        "max_tokens": raw.max_tokens.unwrap_or(120),
        "temperature": 0,
        "timeout": ms(raw.timeout, 10_000),
        "cache_ttl": ms(raw.cache_ttl, 3_600_000),
        "failure_mode": "allow",
        "max_input_chars": raw.max_input_chars.unwrap_or(4000),
    });
    if let (Some(obj), Some(t)) = (task.as_object_mut(), raw.tokens_per_minute) {
        obj.insert("tokens_per_minute".into(), t.into());
    }
    read::from_value(&task, "summary")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    capture: Option<RawCapture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    mode: CaptureMode,
    #[serde(default)]
    bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CaptureMode {
    None,
    Metadata,
    Excerpt,
    Full,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    capacity: Option<u64>,
    #[serde(default)]
    overflow: Overflow,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    #[serde(default)]
    max_records: Option<u64>,
    #[serde(default)]
    interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default)]
    initial: Option<Duration>,
    #[serde(default)]
    max: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSinkBase {
    name: String,
    upstream: Upstream,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timeout: Option<Duration>,
}

/// The keys of a sink that are not its format's.
const SINK_KEYS: &[&str] = &["name", "upstream", "path", "headers", "timeout"];

fn capture(field: &str, raw: Option<RawCapture>, default: Capture) -> Result<Capture, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let bytes = |d: usize| -> Result<usize, ConfigError> {
        let n = raw.bytes.map_or(d as u64, |b| b);
        if n == 0 || n > MAX_KEEP as u64 {
            return Err(ConfigError::new(
                format!("{field}.bytes"),
                format!("must be 1..={MAX_KEEP}"),
            ));
        }
        usize::try_from(n).map_err(|_| ConfigError::new(format!("{field}.bytes"), "too large"))
    };
    match raw.mode {
        CaptureMode::None | CaptureMode::Metadata if raw.bytes.is_some() => Err(ConfigError::new(
            format!("{field}.bytes"),
            "only for mode excerpt or full",
        )),
        CaptureMode::None => Ok(Capture::None),
        CaptureMode::Metadata => Ok(Capture::Metadata),
        CaptureMode::Excerpt => Ok(Capture::Excerpt {
            bytes: bytes(DEFAULT_EXCERPT)?,
        }),
        CaptureMode::Full => Ok(Capture::Full {
            bytes: bytes(DEFAULT_FULL)?,
        }),
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn sink(i: usize, mut raw: Map<String, Value>) -> Result<Sink, ConfigError> {
    let at = |f: &str| format!("sinks[{i}].{f}");
    let mut base = Map::new();
    for key in SINK_KEYS {
        if let Some(v) = raw.remove(*key) {
            base.insert((*key).to_string(), v);
        }
    }
    let base: RawSinkBase = read::from_value(&Value::Object(base), &format!("sinks[{i}]"))?;
    let format: Format = read::from_value(&Value::Object(raw), &at("format"))?;
    format
        .validate()
        .map_err(|e| ConfigError::new(at(&e.field), e.message))?;
    if !name_ok(&base.name) {
        return Err(ConfigError::new(at("name"), "must be 1-64 of A-Z a-z 0-9 - _ ."));
    }
    if base.upstream.cluster.trim().is_empty() {
        return Err(ConfigError::new(at("upstream.cluster"), "must not be empty"));
    }
    if !valid_host(&base.upstream.host) {
        return Err(ConfigError::new(at("upstream.host"), "must be host:port"));
    }
    let path = base.path.unwrap_or_default();
    if !(path.is_empty() || path.starts_with('/')) || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            at("path"),
            "must start with / and be visible ASCII",
        ));
    }
    let mut headers = Vec::new();
    for (k, v) in base.headers {
        let name = k.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ConfigError::new(at(&format!("headers.{k}")), "not a header name"));
        }
        if name == "content-type" {
            return Err(ConfigError::new(
                at(&format!("headers.{k}")),
                "the format sets the content type",
            ));
        }
        check_header_value(at(&format!("headers.{k}")), &v)?;
        headers.push((name, v));
    }
    let timeout_ms = base.timeout.map_or(5000, Duration::as_ms);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(at("timeout"), "must be 1ms..60s"));
    }
    Ok(Sink {
        name: base.name,
        upstream: base.upstream,
        path,
        headers,
        format,
        timeout_ms,
    })
}

impl Config {
    pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(json)?;
        check_prices(&raw.prices)?;
        let default_capture = capture("default_capture", raw.default_capture, Capture::Metadata)?;
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let at = |f: &str| format!("routes[{i}].{f}");
            if !name_ok(&r.name) {
                return Err(ConfigError::new(at("name"), "must be 1-64 of A-Z a-z 0-9 - _ ."));
            }
            if routes.iter().any(|x: &Route| x.name == r.name) {
                return Err(ConfigError::new(at("name"), "duplicate route name"));
            }
            if let Some(p) = &r.prefix {
                if !p.starts_with('/') {
                    return Err(ConfigError::new(at("prefix"), "must start with /"));
                }
            }
            routes.push(Route {
                name: r.name,
                prefix: r.prefix,
                capture: capture(&at("capture"), r.capture, default_capture)?,
            });
        }
        routes.push(Route {
            name: "default".into(),
            prefix: None,
            capture: default_capture,
        });
        let consumer_headers = raw
            .consumer_headers
            .unwrap_or_else(|| vec!["x-consumer-id".to_string()])
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect::<Vec<_>>();
        for (i, h) in consumer_headers.iter().enumerate() {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::new(
                    format!("consumer_headers[{i}]"),
                    "not a header name",
                ));
            }
        }
        if raw.sinks.is_empty() {
            return Err(ConfigError::new("sinks", "at least one sink is required"));
        }
        if raw.sinks.len() > MAX_SINKS {
            return Err(ConfigError::new("sinks", format!("at most {MAX_SINKS} sinks")));
        }
        let mut sinks = Vec::new();
        for (i, s) in raw.sinks.into_iter().enumerate() {
            let s = sink(i, s)?;
            if sinks.iter().any(|x: &Sink| x.name == s.name) {
                return Err(ConfigError::new(
                    format!("sinks[{i}].name"),
                    "duplicate sink name",
                ));
            }
            sinks.push(s);
        }
        let queue_name = raw.queue.name.as_deref().unwrap_or(DEFAULT_QUEUE);
        if !valid_queue_name(queue_name) {
            return Err(ConfigError::new(
                "queue.name",
                "must be 1 to 32 of a-z, 0-9, `_`, `-`",
            ));
        }
        let queue_key = format!("{QUEUE_PREFIX}{queue_name}");
        let queue_capacity = raw.queue.capacity.unwrap_or(10_000);
        if !(1..=MAX_CAPACITY).contains(&queue_capacity) {
            return Err(ConfigError::new(
                "queue.capacity",
                format!("must be 1..={MAX_CAPACITY}"),
            ));
        }
        let batch_max = raw.batch.max_records.unwrap_or(500);
        if !(1..=MAX_BATCH).contains(&batch_max) {
            return Err(ConfigError::new(
                "batch.max_records",
                format!("must be 1..={MAX_BATCH}"),
            ));
        }
        let flush_interval_ms = raw.batch.interval.map_or(1000, Duration::as_ms);
        if !(10..=60_000).contains(&flush_interval_ms) {
            return Err(ConfigError::new("batch.interval", "must be 10ms..60s"));
        }
        let retry_initial_ms = raw.retry.initial.map_or(1000, Duration::as_ms);
        let retry_max_ms = raw.retry.max.map_or(30_000, Duration::as_ms);
        if !(1..=600_000).contains(&retry_initial_ms) {
            return Err(ConfigError::new("retry.initial", "must be 1ms..10m"));
        }
        if !(1..=600_000).contains(&retry_max_ms) {
            return Err(ConfigError::new("retry.max", "must be 1ms..10m"));
        }
        if retry_max_ms < retry_initial_ms {
            return Err(ConfigError::new("retry.max", "must not be below retry.initial"));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(1 << 20);
        if !(1..=(64 << 20)).contains(&max_body_bytes) {
            return Err(ConfigError::new("max_body_bytes", "must be 1..=67108864"));
        }
        let summary = match &raw.summary {
            None if !raw.targets.is_empty() => {
                return Err(ConfigError::new(
                    "targets",
                    "only the summary uses targets (set summary)",
                ));
            }
            None => None,
            Some(r) => {
                if let Some((i, name)) = r
                    .routes
                    .iter()
                    .flatten()
                    .enumerate()
                    .find(|(_, n)| !routes.iter().any(|x| &x.name == *n))
                {
                    return Err(ConfigError::new(
                        format!("summary.routes[{i}]"),
                        format!("no route is named `{name}`"),
                    ));
                }
                let tasks = Tasks::compile(
                    Spec {
                        filter: "ai-audit-log",
                        at: "",
                        targets: raw.targets,
                        tasks: vec![summary_task(r)?],
                        prices: &raw.prices,
                        vars: &[REQUEST_VAR, RESPONSE_VAR],
                    },
                    env,
                )
                .map_err(|e| match e.field.strip_prefix("tasks[0]") {
                    Some(rest) => ConfigError::new(format!("summary{rest}"), e.message),
                    None => e,
                })?;
                Some(Summary {
                    tasks,
                    of: r.of,
                    routes: r.routes.clone(),
                })
            }
        };
        Ok(Config {
            summary,
            routes,
            consumer_headers,
            sinks,
            queue_key,
            queue_capacity,
            overflow: raw.queue.overflow,
            batch_max: usize::try_from(batch_max).unwrap_or(500),
            flush_interval_ms,
            retry_initial_ms,
            retry_max_ms,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(1 << 20),
        })
    }

    /// The route of a path: the first whose prefix matches, else `default`.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.prefix.as_deref().is_none_or(|p| path.starts_with(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINK: &str = r#"{"name":"ch","upstream":{"cluster":"clickhouse","host":"127.0.0.1:8123"},"format":"clickhouse","table":"default.ai_audit"}"#;

    #[test]
    fn parses_a_full_config() {
        let json = format!(
            r#"{{"routes":[{{"name":"chat","prefix":"/v1/","capture":{{"mode":"excerpt","bytes":100}}}},
                 {{"name":"tickets","prefix":"/support/","capture":{{"mode":"full"}}}}],
               "default_capture":{{"mode":"none"}},
               "sinks":[{SINK},{{"name":"hook","upstream":{{"cluster":"h","host":"h:80"}},"path":"/in","format":"webhook","headers":{{"Authorization":"Bearer x"}}}}],
               "queue":{{"name":"team-a_2","capacity":50,"overflow":"drop_newest"}},"batch":{{"max_records":10,"interval":"200ms"}},
               "retry":{{"initial":"100ms","max":"2s"}}}}"#
        );
        let c = Config::parse(json.as_bytes(), &|_| None).unwrap();
        assert_eq!(
            c.route("/v1/chat/completions").unwrap().capture,
            Capture::Excerpt { bytes: 100 }
        );
        assert_eq!(
            c.route("/support/tickets").unwrap().capture,
            Capture::Full { bytes: DEFAULT_FULL }
        );
        assert_eq!(c.route("/health").unwrap().name, "default");
        assert_eq!(c.route("/health").unwrap().capture, Capture::None);
        assert_eq!(
            c.sinks[1].headers,
            vec![("authorization".to_string(), "Bearer x".to_string())]
        );
        assert_eq!(c.sinks[1].format, Format::Webhook);
        assert_eq!((c.queue_capacity, c.overflow), (50, Overflow::DropNewest));
        assert_eq!(c.queue_key, "ai_audit_log/team-a_2");
        let plain = Config::parse(format!(r#"{{"sinks":[{SINK}]}}"#).as_bytes(), &|_| None).unwrap();
        assert_eq!(plain.queue_key, "ai_audit_log/records", "the default name");
        assert_eq!((c.batch_max, c.flush_interval_ms), (10, 200));
        assert_eq!((c.retry_initial_ms, c.retry_max_ms), (100, 2000));
        assert_eq!(c.consumer_headers, vec!["x-consumer-id"]);
    }

    #[test]
    fn fixtures_agree_with_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let seen = shared::config::check_fixtures(&dir, |b| Config::parse(b, &|_| None).map(drop)).unwrap();
        assert!(seen >= 10, "too few fixtures: {seen}");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"sinks":[]}"#, "sinks"),
            (
                r#"{"sinks":[{"name":"a","upstream":{"cluster":"c","host":"h:1"},"format":"kafka"}]}"#,
                "sinks[0].format",
            ),
            (
                r#"{"sinks":[{"name":"a","upstream":{"cluster":"c","host":"h:1"},"format":"clickhouse","table":"x;drop"}]}"#,
                "sinks[0].table",
            ),
            (
                r#"{"sinks":[{"name":"a","upstream":{"cluster":"c","host":"h:1"},"format":"webhook","tabel":"x"}]}"#,
                "sinks[0].format",
            ),
            (
                r#"{"sinks":[{"name":"a","upstream":{"cluster":"c","host":"nohost"},"format":"webhook"}]}"#,
                "sinks[0].upstream.host",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"capacity":0}}}}"#),
                "queue.capacity",
            ),
            (
                &format!(r#"{{"sinks":[{}]}}"#, vec![SINK; MAX_SINKS + 1].join(",")),
                "sinks",
            ),
            (
                r#"{"sinks":[{"name":"a","upstream":{"cluster":"c","host":"h:1"},"format":"webhook","headers":{"Content-Type":"text/plain"}}]}"#,
                "sinks[0].headers.Content-Type",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"name":"Team A"}}}}"#),
                "queue.name",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"name":""}}}}"#),
                "queue.name",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"name":"{}"}}}}"#, "a".repeat(33)),
                "queue.name",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"name":"a/b"}}}}"#),
                "queue.name",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"queue":{{"overflow":"drop_all"}}}}"#),
                "queue.overflow",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"batch":{{"max_records":0}}}}"#),
                "batch.max_records",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"retry":{{"initial":"2s","max":"1s"}}}}"#),
                "retry.max",
            ),
            (
                &format!(
                    r#"{{"sinks":[{SINK}],"routes":[{{"name":"a","capture":{{"mode":"excerpt","bytes":0}}}}]}}"#
                ),
                "routes[0].capture.bytes",
            ),
            (
                &format!(
                    r#"{{"sinks":[{SINK}],"routes":[{{"name":"a","capture":{{"mode":"metadata","bytes":5}}}}]}}"#
                ),
                "routes[0].capture.bytes",
            ),
            (
                &format!(r#"{{"sinks":[{SINK}],"routes":[{{"name":"a","prefix":"v1"}}]}}"#),
                "routes[0].prefix",
            ),
            (&format!(r#"{{"sinks":[{SINK}],"colour":"red"}}"#), ""),
            (&format!(r#"{{"sinks":[{SINK},{SINK}]}}"#), "sinks[1].name"),
        ];
        for (json, field) in cases {
            let err = Config::parse(json.as_bytes(), &|_| None).unwrap_err();
            assert_eq!(err.field, *field, "{json}: {err}");
        }
    }
}
