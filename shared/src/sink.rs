//! Where audit records go: the wire format of each sink and how to read its answer, as pure functions.
//!
//! A record is a flat JSON object with at least `id` (a string, unique per request: what every sink
//! deduplicates on) and `ts` (UTC: RFC 3339 `2026-12-01T15:25:44.123Z` or ClickHouse's `2026-12-01
//! 15:25:44`), and may carry `ts_ms` (epoch milliseconds, preferred for HEC's and OTLP's times when
//! present; the audit table's columns are [`CLICKHOUSE_COLUMNS`]). [`encode`] turns a batch of
//! records into the one HTTP request a sink takes (path and query to append to the service's path,
//! content type, body); [`acknowledge`] turns the sink's answer into [`Ack::Delivered`] (commit the
//! batch), [`Ack::Retry`] (send the same batch again later: every format is idempotent on `id`) or
//! [`Ack::Rejected`] (the sink will never take this batch: log and count it, then commit, so a poison
//! batch cannot block the queue).
//!
//! | format | request | delivered when |
//! |---|---|---|
//! | `clickhouse` | `POST /?query=INSERT INTO <table> FORMAT JSONEachRow&…`, one object per line | 2xx |
//! | `webhook` | `POST` JSON lines (`application/x-ndjson`) | 2xx |
//! | `splunk_hec` | `POST /services/collector/event`, one `{"time","event",…}` per line | 2xx and `"code":0` |
//! | `elasticsearch` | `POST /_bulk`, `{"index":{"_index","_id"}}` + record pairs | 2xx and `"errors":false` |
//! | `otlp` | `POST /v1/logs`, OTLP/HTTP JSON `ExportLogsServiceRequest` | 2xx, no partial rejection |
//!
//! Common to all: status 0 (no answer), 408, 429 and 5xx → retry; 401, 403 and 404 → retry too (a sink
//! refusing its credentials or path is misconfigured: a rotated token or a created table makes it take
//! the same batch, and a queue that fills meanwhile counts what it drops); 413 → rejected (the batch is
//! too large); other 4xx (and 3xx: redirects are not followed) → rejected. ClickHouse answers 500 to bad
//! data too, so its answer's `Code: N` is read: a parse or schema error is rejected, a missing table or
//! database (60, 81) retried whatever the status, anything else retried.
//!
//! ClickHouse notes (checked against Debian's ClickHouse 18.16): the insert carries
//! `date_time_input_format=best_effort` so `ts` parses from RFC 3339 (18.16 has no `DateTime64`: the
//! column is `DateTime` and keeps seconds; `ts_ms` keeps the milliseconds) and
//! `input_format_skip_unknown_fields=1` so a record with a column the table lacks still lands (a newer
//! gateway writing to an older table loses that column, not the record). `JSONEachRow` refuses `null`
//! and objects in a `String` column, so [`encode`] leaves `null` fields out (the column's default) and
//! writes objects and arrays as JSON text.

use serde_json::{json, Map, Value};

use crate::config::tagged::{self, Variant};
use crate::config::ConfigError;
use crate::crypto::sigv4::uri_encode;
use crate::time::DateTime;

/// A sink's wire format, from the `format` field of a sink's config (unknown fields refused; read by
/// [`crate::config::tagged`], not derived).
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// ClickHouse's HTTP interface: `INSERT INTO <table> FORMAT JSONEachRow`. `table` is `name` or
    /// `database.name` (letters, digits, `_`).
    Clickhouse { table: String },
    /// Any HTTP endpoint taking JSON lines.
    Webhook,
    /// Splunk HTTP Event Collector (the token goes in the service's `authorization: Splunk <token>`).
    SplunkHec {
        sourcetype: Option<String>,
        index: Option<String>,
    },
    /// Elasticsearch or OpenSearch `_bulk`, one `index` action per record with `_id` = the record's id.
    Elasticsearch { index: String },
    /// OpenTelemetry logs over OTLP/HTTP, JSON encoding.
    Otlp { service_name: Option<String> },
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "clickhouse",
        fields: &["table"],
        nullable: &[],
    },
    Variant {
        name: "webhook",
        fields: &[],
        nullable: &[],
    },
    Variant {
        name: "splunk_hec",
        fields: &["sourcetype", "index"],
        nullable: &["sourcetype", "index"],
    },
    Variant {
        name: "elasticsearch",
        fields: &["index"],
        nullable: &[],
    },
    Variant {
        name: "otlp",
        fields: &["service_name"],
        nullable: &["service_name"],
    },
];

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let mut t = tagged::read(d, "format", VARIANTS)?;
        Ok(match t.variant {
            "clickhouse" => Format::Clickhouse {
                table: t.required("table")?,
            },
            "webhook" => Format::Webhook,
            "splunk_hec" => Format::SplunkHec {
                sourcetype: t.take("sourcetype"),
                index: t.take("index"),
            },
            "elasticsearch" => Format::Elasticsearch {
                index: t.required("index")?,
            },
            "otlp" => Format::Otlp {
                service_name: t.take("service_name"),
            },
            _ => return Err(t.unknown(VARIANTS)),
        })
    }
}

/// The OTLP resource's `service.name` when the config names none.
pub const DEFAULT_SERVICE_NAME: &str = "ai-gateway";
/// The OTLP instrumentation scope of every log record.
pub const OTLP_SCOPE: &str = "ai-audit-log";

impl Format {
    /// The format's name as configured (and as a metric label): `clickhouse`, `webhook`, `splunk_hec`,
    /// `elasticsearch`, `otlp`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Clickhouse { .. } => "clickhouse",
            Format::Webhook => "webhook",
            Format::SplunkHec { .. } => "splunk_hec",
            Format::Elasticsearch { .. } => "elasticsearch",
            Format::Otlp { .. } => "otlp",
        }
    }

    /// Checks the values serde cannot: the error names the field (relative to the sink's object).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Format::Clickhouse { table } => {
                if valid_table(table) {
                    Ok(())
                } else {
                    Err(ConfigError::new(
                        "table",
                        "must be `name` or `database.name` of letters, digits and `_`",
                    ))
                }
            }
            Format::Webhook => Ok(()),
            Format::SplunkHec { sourcetype, index } => {
                non_empty_line("sourcetype", sourcetype.as_deref())?;
                non_empty_line("index", index.as_deref())
            }
            Format::Elasticsearch { index } => {
                valid_es_index(index).map_err(|m| ConfigError::new("index", m))
            }
            Format::Otlp { service_name } => non_empty_line("service_name", service_name.as_deref()),
        }
    }
}

fn valid_table(table: &str) -> bool {
    let part = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match table.split_once('.') {
        Some((db, name)) => part(db) && part(name),
        None => part(table),
    }
}

fn non_empty_line(field: &str, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(ConfigError::new(field, "must not be empty")),
        Some(v) if v.chars().any(char::is_control) => {
            Err(ConfigError::new(field, "must not contain control characters"))
        }
        _ => Ok(()),
    }
}

/// Elasticsearch's index name rules: lower case, none of `\ / * ? " < > | , #` or space, not starting
/// with `-`, `_` or `+`, not `.` or `..`, at most 255 bytes.
fn valid_es_index(index: &str) -> Result<(), &'static str> {
    if index.is_empty() || index.len() > 255 {
        return Err("must be 1 to 255 bytes");
    }
    if index == "." || index == ".." || index.starts_with(['-', '_', '+']) {
        return Err("must not be `.` or `..` nor start with `-`, `_` or `+`");
    }
    if index
        .chars()
        .any(|c| c.is_uppercase() || c.is_control() || "\\/*?\"<>|, #:".contains(c))
    {
        return Err("must be lower case without \\ / * ? \" < > | , # : or spaces");
    }
    Ok(())
}

/// One HTTP request to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Path and query to POST to, appended to the service's path.
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The request that delivers `records` (flat JSON objects) in `format`. A record that is not an object
/// is sent as it is by the JSON-lines formats and wrapped as `{"value": …}` by the others.
pub fn encode(format: &Format, records: &[Value]) -> Encoded {
    match format {
        Format::Clickhouse { table } => Encoded {
            path: clickhouse_path(table),
            content_type: "application/x-ndjson",
            body: lines(records.iter().map(clickhouse_row)),
        },
        Format::Webhook => Encoded {
            path: String::new(),
            content_type: "application/x-ndjson",
            body: lines(records.iter().cloned()),
        },
        Format::SplunkHec { sourcetype, index } => Encoded {
            path: "/services/collector/event".into(),
            content_type: "application/json",
            body: lines(
                records
                    .iter()
                    .map(|r| hec_event(r, sourcetype.as_deref(), index.as_deref())),
            ),
        },
        Format::Elasticsearch { index } => Encoded {
            path: "/_bulk".into(),
            content_type: "application/x-ndjson",
            body: lines(records.iter().flat_map(|r| {
                let mut action = Map::new();
                action.insert("_index".into(), Value::String(index.clone()));
                if let Some(id) = r.get("id").and_then(Value::as_str) {
                    action.insert("_id".into(), Value::String(id.into()));
                }
                [json!({ "index": action }), r.clone()]
            })),
        },
        Format::Otlp { service_name } => Encoded {
            path: "/v1/logs".into(),
            content_type: "application/json",
            body: otlp_body(service_name.as_deref().unwrap_or(DEFAULT_SERVICE_NAME), records)
                .to_string()
                .into_bytes(),
        },
    }
}

/// Compact JSON values, one per line, each line ending in `\n`.
fn lines(values: impl Iterator<Item = Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// `table` as ClickHouse SQL: each part back-quoted (trusted: [`Format::validate`] allows only
/// `[A-Za-z0-9_]` parts).
pub fn clickhouse_table(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(".")
}

/// `/?query=INSERT%20INTO%20…%20FORMAT%20JSONEachRow` plus the input settings the records need.
pub fn clickhouse_path(table: &str) -> String {
    let query = format!("INSERT INTO {} FORMAT JSONEachRow", clickhouse_table(table));
    format!(
        "/?query={}&date_time_input_format=best_effort&input_format_skip_unknown_fields=1",
        uri_encode(&query, true)
    )
}

/// A record as a `JSONEachRow` row: `null` fields left out, objects and arrays as JSON text.
fn clickhouse_row(record: &Value) -> Value {
    match record {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match v {
                        Value::Object(_) | Value::Array(_) => Value::String(v.to_string()),
                        other => other.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => json!({ "value": other.to_string() }),
    }
}

/// The audit table for [`Format::Clickhouse`]: one column per record field, `ReplacingMergeTree` ordered
/// by `id` so a batch delivered twice collapses to one row per id (`SELECT … FINAL`, or after a merge).
/// `table` is trusted here (check it with [`Format::validate`]).
pub fn clickhouse_ddl(table: &str) -> String {
    let columns = CLICKHOUSE_COLUMNS
        .iter()
        .map(|(name, ty)| format!("    {name} {ty}"))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{columns}\n) ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY id",
        clickhouse_table(table)
    )
}

/// The audit record's columns (ai-audit-log's record) and their ClickHouse types. `ts` is `DateTime`
/// (seconds) because ClickHouse 18.16 has no `DateTime64` (on 20.1 or later `DateTime64(3)` would do);
/// `ts_ms` is the same instant in epoch milliseconds.
pub const CLICKHOUSE_COLUMNS: &[(&str, &str)] = &[
    ("id", "String"),
    ("request_id", "String"),
    ("ts", "DateTime"),
    ("ts_ms", "UInt64"),
    ("consumer", "String"),
    ("route", "String"),
    ("method", "String"),
    ("path", "String"),
    ("status", "UInt16"),
    ("latency_ms", "UInt64"),
    ("provider", "String"),
    ("target", "String"),
    ("model", "String"),
    ("upstream_model", "String"),
    ("prompt_tokens", "UInt64"),
    ("completion_tokens", "UInt64"),
    ("cached_tokens", "UInt64"),
    ("reasoning_tokens", "UInt64"),
    ("cost_usd", "Float64"),
    ("decisions", "String"),
    ("guard_verdict", "String"),
    ("guard_family", "String"),
    ("pii_total", "UInt64"),
    ("ratelimit_decision", "String"),
    ("router_rule", "String"),
    ("capture", "String"),
    ("request_bytes", "UInt64"),
    ("response_bytes", "UInt64"),
    ("request_excerpt", "String"),
    ("response_excerpt", "String"),
    ("summary", "String"),
];

/// Milliseconds since the epoch of a UTC time `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339; also a
/// lower-case `t`/`z` or a space for `T`), or the same without the `Z` (ClickHouse's `DateTime` text,
/// taken as UTC); `None` for anything else (offsets other than `Z` included).
pub fn utc_millis(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u16> {
        let digits = ts.get(from..to)?;
        if !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let t = DateTime {
        year: num(0, 4)?,
        month: u8::try_from(num(5, 7)?).ok()?,
        day: u8::try_from(num(8, 10)?).ok()?,
        hour: u8::try_from(num(11, 13)?).ok()?,
        minute: u8::try_from(num(14, 16)?).ok()?,
        second: u8::try_from(num(17, 19)?).ok()?,
    };
    let rest = ts.get(19..)?;
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(f) => {
            let digits = f.bytes().take_while(u8::is_ascii_digit).count();
            (f.get(..digits)?, f.get(digits..)?)
        }
        None => ("", rest),
    };
    if (rest.starts_with('.') && fraction.is_empty()) || !matches!(zone, "Z" | "z" | "") {
        return None;
    }
    let secs = t.epoch()?;
    // epoch() does not check ranges; an instant that does not come back as itself was out of range.
    if DateTime::from_epoch(secs) != Some(t) {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    secs.checked_mul(1000)?.checked_add(millis)
}

/// A record's time: its `ts_ms` (epoch milliseconds) if it has one, else its `ts` text.
fn record_millis(record: &Value) -> Option<u64> {
    record
        .get("ts_ms")
        .and_then(Value::as_u64)
        .or_else(|| record.get("ts").and_then(Value::as_str).and_then(utc_millis))
}

/// One HEC event: `time` in epoch seconds (milliseconds as the fraction) when `ts` parses.
fn hec_event(record: &Value, sourcetype: Option<&str>, index: Option<&str>) -> Value {
    let mut event = Map::new();
    if let Some(ms) = record_millis(record) {
        // Seconds with three decimals; f64 holds any such value of this era exactly enough to print it.
        event.insert("time".into(), json!(ms as f64 / 1000.0));
    }
    event.insert("event".into(), record.clone());
    if let Some(s) = sourcetype {
        event.insert("sourcetype".into(), Value::String(s.into()));
    }
    if let Some(i) = index {
        event.insert("index".into(), Value::String(i.into()));
    }
    Value::Object(event)
}

/// An OTLP `AnyValue` for a record field; `None` for `null` (left out).
fn otlp_value(v: &Value) -> Option<Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => json!({ "boolValue": b }),
        // int64 is a decimal string in OTLP's JSON encoding (the proto3 JSON mapping); a u64 past
        // i64::MAX does not fit one and goes as a double.
        Value::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
        Value::Number(n) => json!({ "doubleValue": n.as_f64() }),
        Value::String(s) => json!({ "stringValue": s }),
        Value::Array(_) | Value::Object(_) => json!({ "stringValue": v.to_string() }),
    })
}

/// The log record's body: the record's `summary` when there is one, else `METHOD path → status`.
fn otlp_summary(record: &Value) -> String {
    if let Some(s) = record
        .get("summary")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return s.to_string();
    }
    let field = |k: &str| match record.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let line = format!("{} {} {}", field("method"), field("path"), field("status"));
    let line = line.trim();
    if line.is_empty() {
        field("id")
    } else {
        line.to_string()
    }
}

fn otlp_body(service_name: &str, records: &[Value]) -> Value {
    let log_records: Vec<Value> = records
        .iter()
        .map(|r| {
            let attributes: Vec<Value> = match r {
                Value::Object(fields) => fields
                    .iter()
                    .filter(|(k, _)| k.as_str() != "ts" && k.as_str() != "summary")
                    .filter_map(|(k, v)| Some(json!({ "key": k, "value": otlp_value(v)? })))
                    .collect(),
                other => vec![json!({ "key": "value", "value": { "stringValue": other.to_string() } })],
            };
            let mut log = Map::new();
            if let Some(ms) = record_millis(r) {
                log.insert(
                    "timeUnixNano".into(),
                    Value::String((u128::from(ms) * 1_000_000).to_string()),
                );
            }
            log.insert("severityNumber".into(), json!(9));
            log.insert("severityText".into(), json!("INFO"));
            log.insert("body".into(), json!({ "stringValue": otlp_summary(r) }));
            log.insert("attributes".into(), Value::Array(attributes));
            Value::Object(log)
        })
        .collect();
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [{ "key": "service.name", "value": { "stringValue": service_name } }] },
            "scopeLogs": [{ "scope": { "name": OTLP_SCOPE }, "logRecords": log_records }]
        }]
    })
}

/// What to do with a batch after the sink answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Stored: commit the batch.
    Delivered,
    /// Not stored this time (the sink is down, busy or failing): send the same batch again later.
    Retry(String),
    /// The sink will never store this batch (bad data, bad credentials, wrong path): log, count, commit.
    Rejected(String),
}

/// At most this many bytes of a sink's answer are quoted in an [`Ack`] reason.
const REASON_BYTES: usize = 200;

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut end = text.len().min(REASON_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// Reads the answer (`status` 0 = no answer: connection refused, reset or timed out) to a request made
/// by [`encode`] with the same `format`.
pub fn acknowledge(format: &Format, status: u16, body: &[u8]) -> Ack {
    let reason = || format!("{} answered {status}: {}", format.name(), excerpt(body));
    match status {
        0 => Ack::Retry(format!("{} did not answer", format.name())),
        200..=299 => match format {
            Format::Clickhouse { .. } | Format::Webhook => Ack::Delivered,
            Format::SplunkHec { .. } => hec_ack(body),
            Format::Elasticsearch { .. } => bulk_ack(body),
            Format::Otlp { .. } => otlp_ack(body),
        },
        _ if matches!(format, Format::Clickhouse { .. })
            && clickhouse_code(body).is_some_and(|c| CLICKHOUSE_MISCONFIGURED.contains(&c)) =>
        {
            Ack::Retry(format!("{} (the table or database is missing)", reason()))
        }
        401 | 403 | 404 => Ack::Retry(format!(
            "{} (refused until the sink's credentials or path are fixed)",
            reason()
        )),
        413 => Ack::Rejected(format!(
            "{} (the batch is too large for the sink: lower batch.max_records)",
            reason()
        )),
        408 | 429 | 500..=599 => match format {
            Format::Clickhouse { .. }
                if clickhouse_code(body).is_some_and(|c| CLICKHOUSE_PERMANENT.contains(&c)) =>
            {
                Ack::Rejected(reason())
            }
            _ => Ack::Retry(reason()),
        },
        300..=499 => Ack::Rejected(reason()),
        _ => Ack::Retry(reason()),
    }
}

/// ClickHouse error codes that mean the data or the table will never take this batch, however often it
/// is sent (`Code: N, e.displayText() = …` starts every error answer).
const CLICKHOUSE_PERMANENT: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    16,  // NO_SUCH_COLUMN_IN_TABLE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    115, // UNKNOWN_SETTING
    117, // INCORRECT_DATA
];

/// ClickHouse error codes of a table or database not there (yet): the batch takes once it is created,
/// so it is retried, never dropped (`UNKNOWN_TABLE`, `UNKNOWN_DATABASE`).
const CLICKHOUSE_MISCONFIGURED: &[u32] = &[60, 81];

/// The `Code: N` a ClickHouse error answer starts with.
fn clickhouse_code(body: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(body);
    text.trim_start()
        .strip_prefix("Code:")
        .map(|rest| {
            rest.trim_start()
                .bytes()
                .take_while(u8::is_ascii_digit)
                .collect::<Vec<u8>>()
        })
        .and_then(|digits| String::from_utf8(digits).ok())
        .and_then(|d| d.parse::<u32>().ok())
}

/// HEC answers `{"text":"Success","code":0}`; another code is a refusal. A 2xx that is not an HEC answer
/// proves nothing was stored: retry.
fn hec_ack(body: &[u8]) -> Ack {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    match answer
        .as_ref()
        .and_then(|a| a.get("code"))
        .and_then(Value::as_i64)
    {
        Some(0) => Ack::Delivered,
        Some(code) => Ack::Rejected(format!(
            "splunk_hec answered code {code}: {}",
            answer
                .as_ref()
                .and_then(|a| a.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("")
        )),
        None => Ack::Retry(format!("splunk_hec answered no code: {}", excerpt(body))),
    }
}

/// `_bulk` answers 200 with `"errors":true` when some items failed: any 429/5xx item → retry the batch
/// (the `_id`s make it idempotent), else the first failed item's reason → rejected.
fn bulk_ack(body: &[u8]) -> Ack {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Ack::Retry(format!(
            "elasticsearch answered no bulk result: {}",
            excerpt(body)
        ));
    };
    match answer.get("errors").and_then(Value::as_bool) {
        Some(false) => return Ack::Delivered,
        Some(true) => {}
        None => {
            return Ack::Retry(format!(
                "elasticsearch answered no bulk result: {}",
                excerpt(body)
            ))
        }
    }
    let items = answer
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let failed: Vec<(u64, String)> = items
        .iter()
        // Each item is `{"<action>": {"status": …, "error": {"type": …, "reason": …}}}`.
        .filter_map(|item| item.as_object()?.values().next())
        .filter_map(|result| {
            let status = result.get("status").and_then(Value::as_u64)?;
            if (200..300).contains(&status) {
                return None;
            }
            let error = result.get("error");
            let reason = error
                .and_then(|e| e.get("reason").and_then(Value::as_str).or_else(|| e.as_str()))
                .unwrap_or("");
            let kind = error
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("error");
            Some((status, format!("{kind}: {reason}")))
        })
        .collect();
    if let Some((status, reason)) = failed.iter().find(|(s, _)| *s == 429 || *s >= 500) {
        return Ack::Retry(format!(
            "elasticsearch: {} of {} items failed, first retryable {status} {reason}",
            failed.len(),
            items.len()
        ));
    }
    match failed.first() {
        Some((status, reason)) => Ack::Rejected(format!(
            "elasticsearch: {} of {} items failed, first {status} {reason}",
            failed.len(),
            items.len()
        )),
        // `errors: true` with no failed item listed: nothing shows what was stored.
        None => Ack::Retry("elasticsearch answered errors without a failed item".into()),
    }
}

/// OTLP answers `{}` or `{"partialSuccess": {"rejectedLogRecords": N, "errorMessage": …}}`; the spec
/// forbids retrying a partial success, so rejected records make the batch rejected (logged, counted).
fn otlp_ack(body: &[u8]) -> Ack {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let partial = answer.get("partialSuccess");
    // rejectedLogRecords is an int64: a string in JSON, though some servers write a number.
    let rejected = partial
        .and_then(|p| p.get("rejectedLogRecords"))
        .and_then(|n| match n {
            Value::String(s) => s.parse::<u64>().ok(),
            other => other.as_u64(),
        });
    match rejected {
        Some(n) if n > 0 => Ack::Rejected(format!(
            "otlp rejected {n} log records: {}",
            partial
                .and_then(|p| p.get("errorMessage"))
                .and_then(Value::as_str)
                .unwrap_or("")
        )),
        _ => Ack::Delivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rec(id: &str, ts: &str) -> Value {
        json!({"id": id, "ts": ts, "method": "POST", "path": "/v1/chat/completions", "status": 200,
               "cost_usd": 0.25, "cached": false, "summary": null})
    }

    fn parse(v: Value) -> Result<Format, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn body(e: &Encoded) -> String {
        String::from_utf8(e.body.clone()).unwrap()
    }

    /// The derive the hand reader replaced, kept as its reference (serde lets a unit variant of an
    /// internally tagged enum take any field, so `webhook` is an empty struct variant).
    #[derive(serde::Deserialize)]
    #[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
    enum RawFormat {
        Clickhouse {
            table: String,
        },
        Webhook {},
        SplunkHec {
            #[serde(default)]
            sourcetype: Option<String>,
            #[serde(default)]
            index: Option<String>,
        },
        Elasticsearch {
            index: String,
        },
        Otlp {
            #[serde(default)]
            service_name: Option<String>,
        },
    }

    impl From<RawFormat> for Format {
        fn from(raw: RawFormat) -> Format {
            match raw {
                RawFormat::Clickhouse { table } => Format::Clickhouse { table },
                RawFormat::Webhook {} => Format::Webhook,
                RawFormat::SplunkHec { sourcetype, index } => Format::SplunkHec { sourcetype, index },
                RawFormat::Elasticsearch { index } => Format::Elasticsearch { index },
                RawFormat::Otlp { service_name } => Format::Otlp { service_name },
            }
        }
    }

    #[test]
    fn formats_read_as_the_derive_did() {
        crate::config::tagged::assert_reads_as_derived::<Format, RawFormat>(&[
            r#"{"format":"clickhouse","table":"t"}"#,
            r#"{"table":"t","format":"clickhouse"}"#,
            r#"{"format":"clickhouse"}"#,
            r#"{"format":"clickhouse","table":null}"#,
            r#"{"format":"clickhouse","table":7}"#,
            r#"{"format":"clickhouse","table":"t","tabel":"t"}"#,
            r#"{"format":"clickhouse","table":"t","table":"u"}"#,
            r#"{"format":"webhook"}"#,
            r#"{"format":"webhook","url":"x"}"#,
            r#"{"format":"splunk_hec"}"#,
            r#"{"format":"splunk_hec","sourcetype":null,"index":"main"}"#,
            r#"{"format":"splunk_hec","sourcetype":["a"]}"#,
            r#"{"format":"elasticsearch","index":"i"}"#,
            r#"{"format":"elasticsearch","index":null}"#,
            r#"{"format":"otlp"}"#,
            r#"{"format":"otlp","service_name":"gw"}"#,
            r#"{"format":"otlp","service_name":{"a":1}}"#,
            r#"{"format":"otlp","service":"gw"}"#,
            r#"{"format":"otlp","service_name":false,"service":"gw"}"#,
            r#"{"format":"otlp","service":"gw","service_name":false}"#,
            r#"{"format":"json"}"#,
            r#"{"format":true}"#,
            r#"{"format":"otlp","format":"otlp"}"#,
            r#"{}"#,
            r#"[]"#,
            r#"null"#,
        ]);
    }

    #[test]
    fn formats_parse_and_validate() {
        let cases: &[(Value, Result<Format, &str>)] = &[
            (
                json!({"format": "clickhouse", "table": "audit"}),
                Ok(Format::Clickhouse {
                    table: "audit".into(),
                }),
            ),
            (
                json!({"format": "clickhouse", "table": "db.audit_2"}),
                Ok(Format::Clickhouse {
                    table: "db.audit_2".into(),
                }),
            ),
            (json!({"format": "webhook"}), Ok(Format::Webhook)),
            (
                json!({"format": "splunk_hec"}),
                Ok(Format::SplunkHec {
                    sourcetype: None,
                    index: None,
                }),
            ),
            (
                json!({"format": "splunk_hec", "sourcetype": "ai", "index": "main"}),
                Ok(Format::SplunkHec {
                    sourcetype: Some("ai".into()),
                    index: Some("main".into()),
                }),
            ),
            (
                json!({"format": "elasticsearch", "index": "ai-audit"}),
                Ok(Format::Elasticsearch {
                    index: "ai-audit".into(),
                }),
            ),
            (json!({"format": "otlp"}), Ok(Format::Otlp { service_name: None })),
            (
                json!({"format": "otlp", "service_name": "gw"}),
                Ok(Format::Otlp {
                    service_name: Some("gw".into()),
                }),
            ),
            (json!({"format": "clickhouse"}), Err("missing field `table`")),
            (
                json!({"format": "clickhouse", "table": "t", "tabel": "t"}),
                Err("unknown field `tabel`"),
            ),
            (
                json!({"format": "otlp", "service": "gw"}),
                Err("unknown field `service`"),
            ),
            (
                json!({"format": "webhook", "url": "x"}),
                Err("unknown field `url`"),
            ),
            (json!({"format": "kafka"}), Err("unknown variant `kafka`")),
            (json!({"table": "t"}), Err("missing field `format`")),
        ];
        for (input, want) in cases {
            match (parse(input.clone()), want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(&got, want, "{input}");
                    assert_eq!(got.validate(), Ok(()), "{input}");
                    assert_eq!(Some(got.name()), input["format"].as_str());
                }
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let cases: &[(Value, &str)] = &[
            (json!({"format": "clickhouse", "table": ""}), "table"),
            (json!({"format": "clickhouse", "table": "a b"}), "table"),
            (json!({"format": "clickhouse", "table": "a.b.c"}), "table"),
            (json!({"format": "clickhouse", "table": "db."}), "table"),
            (
                json!({"format": "clickhouse", "table": "t; DROP TABLE t"}),
                "table",
            ),
            (json!({"format": "clickhouse", "table": "t`"}), "table"),
            (json!({"format": "elasticsearch", "index": "Audit"}), "index"),
            (json!({"format": "elasticsearch", "index": "_audit"}), "index"),
            (json!({"format": "elasticsearch", "index": "a,b"}), "index"),
            (json!({"format": "elasticsearch", "index": ""}), "index"),
            (json!({"format": "elasticsearch", "index": ".."}), "index"),
            (json!({"format": "splunk_hec", "sourcetype": " "}), "sourcetype"),
            (json!({"format": "splunk_hec", "index": "a\nb"}), "index"),
            (json!({"format": "otlp", "service_name": ""}), "service_name"),
        ];
        for (input, field) in cases {
            let format = parse(input.clone()).unwrap();
            let err = format.validate().unwrap_err();
            assert_eq!(&err.field, field, "{input}: {err:?}");
        }
    }

    #[test]
    fn rfc3339_times() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:00.001Z", Some(1)),
            ("2026-12-01T15:25:44.123Z", Some(1_796_138_744_123)),
            ("2026-12-01T15:25:44Z", Some(1_796_138_744_000)),
            ("2026-12-01T15:25:44.1Z", Some(1_796_138_744_100)),
            ("2026-12-01T15:25:44.123456789Z", Some(1_796_138_744_123)),
            ("2026-12-01 15:25:44.123z", Some(1_796_138_744_123)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2023-02-29T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-12-01T24:00:00Z", None),
            ("2026-12-01T15:25:44.Z", None),
            ("2026-12-01T15:25:44.123+01:00", None),
            ("2026-12-01T15:25:44", Some(1_796_138_744_000)),
            ("2026-12-01 15:25:44", Some(1_796_138_744_000)),
            ("2026-12-01 15:25:44.5", Some(1_796_138_744_500)),
            ("2026-12-01 15:25:44Zx", None),
            ("2026-12-01", None),
            ("", None),
            ("2026-12-01T15:25:4xZ", None),
        ];
        for (ts, want) in cases {
            assert_eq!(utc_millis(ts), *want, "{ts}");
        }
    }

    #[test]
    fn clickhouse_path_is_percent_encoded() {
        let cases = [
            (
                "audit",
                "/?query=INSERT%20INTO%20%60audit%60%20FORMAT%20JSONEachRow",
            ),
            (
                "db.audit",
                "/?query=INSERT%20INTO%20%60db%60.%60audit%60%20FORMAT%20JSONEachRow",
            ),
        ];
        for (table, want) in cases {
            let e = encode(&Format::Clickhouse { table: table.into() }, &[]);
            assert_eq!(
                e.path,
                format!("{want}&date_time_input_format=best_effort&input_format_skip_unknown_fields=1")
            );
            assert!(e.body.is_empty());
        }
    }

    #[test]
    fn golden_bodies() {
        let records = [
            rec("a1", "2026-12-01T15:25:44.123Z"),
            json!({"id": "b2", "ts": "not a time", "decisions": {"guard": {"verdict": "block"}}, "tags": [1]}),
        ];
        let cases: &[(Format, &str, &str, &str)] = &[
            (
                Format::Clickhouse { table: "audit".into() },
                "/?query=INSERT%20INTO%20%60audit%60%20FORMAT%20JSONEachRow&date_time_input_format=best_effort&input_format_skip_unknown_fields=1",
                "application/x-ndjson",
                concat!(
                    r#"{"cached":false,"cost_usd":0.25,"id":"a1","method":"POST","path":"/v1/chat/completions","status":200,"ts":"2026-12-01T15:25:44.123Z"}"#, "\n",
                    r#"{"decisions":"{\"guard\":{\"verdict\":\"block\"}}","id":"b2","tags":"[1]","ts":"not a time"}"#, "\n",
                ),
            ),
            (
                Format::Webhook,
                "",
                "application/x-ndjson",
                concat!(
                    r#"{"cached":false,"cost_usd":0.25,"id":"a1","method":"POST","path":"/v1/chat/completions","status":200,"summary":null,"ts":"2026-12-01T15:25:44.123Z"}"#, "\n",
                    r#"{"decisions":{"guard":{"verdict":"block"}},"id":"b2","tags":[1],"ts":"not a time"}"#, "\n",
                ),
            ),
            (
                Format::SplunkHec { sourcetype: Some("ai:audit".into()), index: Some("main".into()) },
                "/services/collector/event",
                "application/json",
                concat!(
                    r#"{"event":{"cached":false,"cost_usd":0.25,"id":"a1","method":"POST","path":"/v1/chat/completions","status":200,"summary":null,"ts":"2026-12-01T15:25:44.123Z"},"index":"main","sourcetype":"ai:audit","time":1796138744.123}"#, "\n",
                    r#"{"event":{"decisions":{"guard":{"verdict":"block"}},"id":"b2","tags":[1],"ts":"not a time"},"index":"main","sourcetype":"ai:audit"}"#, "\n",
                ),
            ),
            (
                Format::SplunkHec { sourcetype: None, index: None },
                "/services/collector/event",
                "application/json",
                concat!(
                    r#"{"event":{"cached":false,"cost_usd":0.25,"id":"a1","method":"POST","path":"/v1/chat/completions","status":200,"summary":null,"ts":"2026-12-01T15:25:44.123Z"},"time":1796138744.123}"#, "\n",
                    r#"{"event":{"decisions":{"guard":{"verdict":"block"}},"id":"b2","tags":[1],"ts":"not a time"}}"#, "\n",
                ),
            ),
            (
                Format::Elasticsearch { index: "ai-audit".into() },
                "/_bulk",
                "application/x-ndjson",
                concat!(
                    r#"{"index":{"_id":"a1","_index":"ai-audit"}}"#, "\n",
                    r#"{"cached":false,"cost_usd":0.25,"id":"a1","method":"POST","path":"/v1/chat/completions","status":200,"summary":null,"ts":"2026-12-01T15:25:44.123Z"}"#, "\n",
                    r#"{"index":{"_id":"b2","_index":"ai-audit"}}"#, "\n",
                    r#"{"decisions":{"guard":{"verdict":"block"}},"id":"b2","tags":[1],"ts":"not a time"}"#, "\n",
                ),
            ),
        ];
        for (format, path, content_type, want) in cases {
            let e = encode(format, &records);
            assert_eq!(e.path, *path, "{format:?}");
            assert_eq!(e.content_type, *content_type, "{format:?}");
            assert_eq!(body(&e), *want, "{format:?}");
        }
    }

    #[test]
    fn otlp_golden() {
        let records = [
            rec("a1", "2026-12-01T15:25:44.123Z"),
            json!({"id": "b2", "summary": "User updated invoice #INV-1001 status to 'paid'", "n": -3, "u": u64::MAX,
                   "d": {"k": 1}}),
        ];
        let e = encode(&Format::Otlp { service_name: None }, &records);
        assert_eq!(
            (e.path.as_str(), e.content_type),
            ("/v1/logs", "application/json")
        );
        let got: Value = serde_json::from_slice(&e.body).unwrap();
        let want = json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ai-gateway"}}]},
            "scopeLogs": [{"scope": {"name": "ai-audit-log"}, "logRecords": [
                {"timeUnixNano": "1796138744123000000", "severityNumber": 9, "severityText": "INFO",
                 "body": {"stringValue": "POST /v1/chat/completions 200"},
                 "attributes": [
                    {"key": "cached", "value": {"boolValue": false}},
                    {"key": "cost_usd", "value": {"doubleValue": 0.25}},
                    {"key": "id", "value": {"stringValue": "a1"}},
                    {"key": "method", "value": {"stringValue": "POST"}},
                    {"key": "path", "value": {"stringValue": "/v1/chat/completions"}},
                    {"key": "status", "value": {"intValue": "200"}}]},
                {"severityNumber": 9, "severityText": "INFO",
                 "body": {"stringValue": "User updated invoice #INV-1001 status to 'paid'"},
                 "attributes": [
                    {"key": "d", "value": {"stringValue": "{\"k\":1}"}},
                    {"key": "id", "value": {"stringValue": "b2"}},
                    {"key": "n", "value": {"intValue": "-3"}},
                    {"key": "u", "value": {"doubleValue": 18_446_744_073_709_551_615.0}}]}
            ]}]
        }]});
        assert_eq!(got, want);
        let named = encode(
            &Format::Otlp {
                service_name: Some("edge-gw".into()),
            },
            &[],
        );
        let got: Value = serde_json::from_slice(&named.body).unwrap();
        assert_eq!(
            got["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "edge-gw"
        );
        assert_eq!(got["resourceLogs"][0]["scopeLogs"][0]["logRecords"], json!([]));
        // Neither a summary nor a request line: the id.
        let bare = encode(&Format::Otlp { service_name: None }, &[json!({"id": "only"})]);
        let got: Value = serde_json::from_slice(&bare.body).unwrap();
        assert_eq!(
            got["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"],
            "only"
        );
    }

    #[test]
    fn ts_ms_wins_over_ts() {
        let r = json!({"id": "a", "ts": "2026-12-01 15:25:44", "ts_ms": 1_796_138_744_987u64});
        let hec = encode(
            &Format::SplunkHec {
                sourcetype: None,
                index: None,
            },
            std::slice::from_ref(&r),
        );
        let line: Value = serde_json::from_slice(&hec.body).unwrap();
        assert_eq!(line["time"], json!(1_796_138_744.987));
        let otlp = encode(&Format::Otlp { service_name: None }, &[r]);
        let body: Value = serde_json::from_slice(&otlp.body).unwrap();
        assert_eq!(
            body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["timeUnixNano"],
            "1796138744987000000"
        );
    }

    #[test]
    fn a_record_that_is_not_an_object_is_not_lost() {
        let e = encode(&Format::Clickhouse { table: "t".into() }, &[json!("x")]);
        assert_eq!(body(&e), "{\"value\":\"\\\"x\\\"\"}\n");
        let e = encode(&Format::Elasticsearch { index: "i".into() }, &[json!(7)]);
        assert_eq!(body(&e), "{\"index\":{\"_index\":\"i\"}}\n7\n");
    }

    #[test]
    fn clickhouse_ddl_has_every_column() {
        let ddl = clickhouse_ddl("db.audit");
        assert!(
            ddl.starts_with("CREATE TABLE IF NOT EXISTS `db`.`audit` (\n    id String,\n    request_id String,\n    ts DateTime,\n"),
            "{ddl}"
        );
        assert!(
            ddl.ends_with(
                "    summary String\n) ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY id"
            ),
            "{ddl}"
        );
        assert_eq!(ddl.matches(",\n").count(), CLICKHOUSE_COLUMNS.len() - 1);
        for (name, ty) in CLICKHOUSE_COLUMNS {
            assert!(ddl.contains(&format!("\n    {name} {ty}")), "{name}");
        }
    }

    #[test]
    fn acknowledgements() {
        use Ack::*;
        let ch = Format::Clickhouse { table: "t".into() };
        let hec = Format::SplunkHec {
            sourcetype: None,
            index: None,
        };
        let es = Format::Elasticsearch { index: "i".into() };
        let otlp = Format::Otlp { service_name: None };
        let wh = Format::Webhook;
        let es_items = r#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"a","status":201}},
            {"index":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [status]"}}},
            {"index":{"_id":"c","status":400,"error":{"type":"x","reason":"second"}}}]}"#;
        let es_busy = r#"{"errors":true,"items":[
            {"index":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},
            {"index":{"_id":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        // (format, status, body, want: 'D' delivered, 'R' retry, 'X' rejected, text the reason contains)
        let cases: &[(&Format, u16, &str, char, &str)] = &[
            (&ch, 200, "", 'D', ""),
            (&ch, 0, "", 'R', "clickhouse did not answer"),
            (&ch, 503, "", 'R', "clickhouse answered 503"),
            (&ch, 500, "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded", 'R', "Code: 241"),
            (&ch, 500, "Code: 252, e.displayText() = DB::Exception: Too many parts", 'R', "252"),
            (&ch, 500, "Code: 117, e.displayText() = DB::Exception: Unknown field found while parsing JSONEachRow format: zz", 'X', "Unknown field"),
            (&ch, 500, "Code: 27, e.displayText() = DB::Exception: Cannot parse input", 'X', "Cannot parse"),
            (&ch, 404, "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist.", 'R', "table or database is missing"),
            (&ch, 500, "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist.", 'R', "nope"),
            (&ch, 400, "Code: 81, e.displayText() = DB::Exception: Database nope doesn't exist", 'R', "Code: 81"),
            (&ch, 403, "Code: 516, e.displayText() = DB::Exception: default: Authentication failed", 'R', "credentials or path"),
            (&ch, 400, "Code: 26, e.displayText() = DB::Exception: Cannot parse JSON string", 'X', "400"),
            (&ch, 401, "", 'R', "401"),
            (&ch, 413, "", 'X', "too large"),
            (&ch, 400, "Code: 600, e.displayText() = DB::Exception: Code: 60 in the text", 'X', "400"),
            (&ch, 408, "", 'R', "408"),
            (&ch, 429, "", 'R', "429"),
            (&ch, 301, "", 'X', "301"),
            (&ch, 100, "", 'R', "100"),
            (&wh, 204, "", 'D', ""),
            (&wh, 202, "whatever", 'D', ""),
            (&wh, 502, "bad gateway", 'R', "webhook answered 502: bad gateway"),
            (&wh, 500, "Code: 27, e.displayText()", 'R', "Code: 27"),
            (&wh, 413, "too large", 'X', "413"),
            (&wh, 404, "", 'R', "webhook answered 404"),
            (&wh, 410, "gone", 'X', "410"),
            (&hec, 200, r#"{"text":"Success","code":0}"#, 'D', ""),
            (&hec, 200, r#"{"text":"No data","code":5}"#, 'X', "code 5: No data"),
            (&hec, 200, "<html>ok</html>", 'R', "no code"),
            (&hec, 403, r#"{"text":"Invalid token","code":4}"#, 'R', "Invalid token"),
            (&hec, 401, r#"{"text":"Token is required","code":2}"#, 'R', "credentials"),
            (&hec, 503, r#"{"text":"Server is busy","code":9}"#, 'R', "Server is busy"),
            (&hec, 400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#, 'X', "Invalid data format"),
            (&es, 200, r#"{"took":3,"errors":false,"items":[{"index":{"_id":"a","status":201}}]}"#, 'D', ""),
            (&es, 200, es_items, 'X', "2 of 3 items failed, first 400 mapper_parsing_exception: failed to parse field [status]"),
            (&es, 200, es_busy, 'R', "first retryable 429 es_rejected_execution_exception: queue full"),
            (&es, 200, r#"{"errors":true,"items":[{"index":{"status":503,"error":"unavailable"}}]}"#, 'R', "503 error: unavailable"),
            (&es, 200, r#"{"errors":true,"items":[]}"#, 'R', "without a failed item"),
            (&es, 200, "not json", 'R', "no bulk result"),
            (&es, 200, r#"{"acknowledged":true}"#, 'R', "no bulk result"),
            (&es, 413, "", 'X', "413"),
            (&es, 429, "", 'R', "429"),
            (&otlp, 200, "{}", 'D', ""),
            (&otlp, 200, "", 'D', ""),
            (&otlp, 200, r#"{"partialSuccess":{}}"#, 'D', ""),
            (&otlp, 200, r#"{"partialSuccess":{"rejectedLogRecords":"0"}}"#, 'D', ""),
            (&otlp, 200, r#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"too old"}}"#, 'X', "rejected 2 log records: too old"),
            (&otlp, 200, r#"{"partialSuccess":{"rejectedLogRecords":1}}"#, 'X', "rejected 1"),
            (&otlp, 400, "", 'X', "otlp answered 400"),
            (&otlp, 503, "", 'R', "503"),
        ];
        for (format, status, answer, want, text) in cases {
            let got = acknowledge(format, *status, answer.as_bytes());
            let ok = match (&got, want) {
                (Delivered, 'D') => true,
                (Retry(r), 'R') | (Rejected(r), 'X') => r.contains(text),
                _ => false,
            };
            assert!(
                ok,
                "{format:?} {status} {answer}: got {got:?}, want {want} {text}"
            );
        }
    }

    #[test]
    fn reasons_are_bounded() {
        let long = "é".repeat(1000);
        let Ack::Retry(r) = acknowledge(&Format::Webhook, 503, long.as_bytes()) else {
            panic!()
        };
        assert!(r.len() < REASON_BYTES + 40, "{}", r.len());
    }
}

/// Property tests (native only; `make fuzz` runs them longer): every format carries every record of any
/// batch, [`acknowledge`] reads any answer without panicking, and times round-trip.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128);
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Two decimals: serde_json's default parser reads these back exactly (longer ones may be off
            // by an ulp, a parser matter, not the encoders').
            (-100_000_000i64..100_000_000).prop_map(|c| Value::from(c as f64 / 100.0)),
            ".{0,12}".prop_map(Value::from),
            (".{0,4}", any::<i32>()).prop_map(|(k, v)| json!({ k: v })),
            proptest::collection::vec(any::<u8>(), 0..3).prop_map(|v| json!(v)),
        ]
    }

    fn record() -> impl Strategy<Value = Value> {
        (
            ".{0,10}",
            0u64..253_402_300_799_000,
            proptest::collection::btree_map("[a-z_]{1,8}", value(), 0..6),
        )
            .prop_map(|(id, ms, extra)| {
                let mut r: Map<String, Value> = extra.into_iter().collect();
                r.insert("id".into(), Value::String(id));
                r.insert("ts_ms".into(), Value::from(ms));
                Value::Object(r)
            })
    }

    fn lines(e: &Encoded) -> Vec<Value> {
        let text = String::from_utf8(e.body.clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn every_format_carries_every_record(records in proptest::collection::vec(record(), 0..8)) {
            let n = records.len();
            prop_assert_eq!(lines(&encode(&Format::Webhook, &records)), records.clone());

            let ch = lines(&encode(&Format::Clickhouse { table: "t".into() }, &records));
            prop_assert_eq!(ch.len(), n);
            for (row, r) in ch.iter().zip(&records) {
                prop_assert_eq!(&row["id"], &r["id"]);
                let fields = row.as_object().unwrap();
                prop_assert!(fields.values().all(|v| !v.is_null() && !v.is_object() && !v.is_array()));
                let kept = r.as_object().unwrap().values().filter(|v| !v.is_null()).count();
                prop_assert_eq!(fields.len(), kept);
            }

            let hec = lines(&encode(&Format::SplunkHec { sourcetype: None, index: Some("i".into()) }, &records));
            prop_assert_eq!(hec.len(), n);
            for (line, r) in hec.iter().zip(&records) {
                prop_assert_eq!(&line["event"], r);
                let ms = r["ts_ms"].as_u64().unwrap();
                prop_assert!((line["time"].as_f64().unwrap() - ms as f64 / 1000.0).abs() < 1e-3);
            }

            let es = lines(&encode(&Format::Elasticsearch { index: "i".into() }, &records));
            prop_assert_eq!(es.len(), 2 * n);
            for (pair, r) in es.chunks(2).zip(&records) {
                prop_assert_eq!(&pair[0]["index"]["_id"], &r["id"]);
                prop_assert_eq!(&pair[1], r);
            }

            let otlp: Value = serde_json::from_slice(&encode(&Format::Otlp { service_name: None }, &records).body).unwrap();
            let logs = otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().unwrap();
            prop_assert_eq!(logs.len(), n);
            for (log, r) in logs.iter().zip(&records) {
                let nanos: u128 = log["timeUnixNano"].as_str().unwrap().parse().unwrap();
                prop_assert_eq!(nanos, u128::from(r["ts_ms"].as_u64().unwrap()) * 1_000_000);
                let id = log["attributes"].as_array().unwrap().iter().find(|a| a["key"] == "id").unwrap();
                prop_assert_eq!(&id["value"]["stringValue"], &r["id"]);
            }
        }

        #[test]
        fn any_answer_is_read(
            status in prop_oneof![
                Just(0u16), Just(200), Just(301), Just(400), Just(401), Just(403), Just(404),
                Just(408), Just(413), Just(429), Just(500), Just(503), any::<u16>(),
            ],
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                (0u32..200).prop_map(|c| format!("Code: {c}, e.displayText() = DB::Exception").into_bytes()),
            ],
        ) {
            for format in [
                Format::Clickhouse { table: "t".into() },
                Format::Webhook,
                Format::SplunkHec { sourcetype: None, index: None },
                Format::Elasticsearch { index: "i".into() },
                Format::Otlp { service_name: None },
            ] {
                let ack = acknowledge(&format, status, &body);
                let clickhouse = format == Format::Clickhouse { table: "t".into() };
                let missing_table = clickhouse
                    && clickhouse_code(&body).is_some_and(|c| CLICKHOUSE_MISCONFIGURED.contains(&c));
                match status {
                    200..=299 if format == Format::Webhook => prop_assert_eq!(ack, Ack::Delivered),
                    200..=299 => {}
                    _ if missing_table => prop_assert!(matches!(ack, Ack::Retry(_))),
                    0 | 401 | 403 | 404 => prop_assert!(matches!(ack, Ack::Retry(_))),
                    408 | 429 | 500..=599
                        if clickhouse
                            && clickhouse_code(&body).is_some_and(|c| CLICKHOUSE_PERMANENT.contains(&c)) =>
                    {
                        prop_assert!(matches!(ack, Ack::Rejected(_)))
                    }
                    408 | 429 | 500..=599 => prop_assert!(matches!(ack, Ack::Retry(_))),
                    300..=499 => prop_assert!(matches!(ack, Ack::Rejected(_))),
                    _ => prop_assert!(matches!(ack, Ack::Retry(_))),
                }
            }
        }

        #[test]
        fn times_round_trip(ms in 0u64..253_402_300_799_999) {
            let t = DateTime::from_epoch(ms / 1000).unwrap();
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year, t.month, t.day, t.hour, t.minute, t.second, ms % 1000
            );
            prop_assert_eq!(utc_millis(&text), Some(ms));
        }
    }
}
