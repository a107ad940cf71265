//! The sink formats this filter ships records in. A local stand-in with the interface of
//! `shared::sink` (ClickHouse and the JSON-lines webhook only), to be replaced by it once merged.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum Format {
    /// `INSERT INTO <table> FORMAT JSONEachRow` over ClickHouse's HTTP interface.
    Clickhouse { table: String },
    /// One JSON object per line, `application/x-ndjson`.
    Webhook,
}

/// A batch ready to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Path and query, appended to the sink's path.
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What a sink's answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Delivered,
    /// Try again later (no answer, 5xx, 408, 429).
    Retry(String),
    /// Never accepted as it is (other 4xx): counted, logged and dropped.
    Rejected(String),
}

fn json_lines(records: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in records {
        body.extend_from_slice(r.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

/// Percent-encodes a query value (unreserved characters kept).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn encode(format: &Format, records: &[Value]) -> Encoded {
    match format {
        Format::Clickhouse { table } => Encoded {
            path: format!(
                "?query={}",
                query_escape(&format!("INSERT INTO {table} FORMAT JSONEachRow"))
            ),
            content_type: "application/x-ndjson",
            body: json_lines(records),
        },
        Format::Webhook => Encoded {
            path: String::new(),
            content_type: "application/x-ndjson",
            body: json_lines(records),
        },
    }
}

pub fn acknowledge(_format: &Format, status: u16, body: &[u8]) -> Ack {
    let text = || {
        String::from_utf8_lossy(body.get(..200).unwrap_or(body))
            .trim()
            .to_string()
    };
    match status {
        200..=299 => Ack::Delivered,
        408 | 429 => Ack::Retry(format!("status {status}")),
        400..=499 => Ack::Rejected(format!("status {status}: {}", text())),
        _ => Ack::Retry(format!("status {status}: {}", text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clickhouse_inserts_json_each_row() {
        let f = Format::Clickhouse {
            table: "audit.records".into(),
        };
        let e = encode(&f, &[json!({"id": "a"}), json!({"id": "b"})]);
        assert_eq!(
            e.path,
            "?query=INSERT%20INTO%20audit.records%20FORMAT%20JSONEachRow"
        );
        assert_eq!(e.body, b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        let cases: &[(u16, &str)] = &[
            (200, "d"),
            (500, "r"),
            (429, "r"),
            (408, "r"),
            (400, "x"),
            (404, "x"),
        ];
        for (status, want) in cases {
            let got = match acknowledge(&f, *status, b"Code: 60") {
                Ack::Delivered => "d",
                Ack::Retry(_) => "r",
                Ack::Rejected(_) => "x",
            };
            assert_eq!(got, *want, "{status}");
        }
    }
}
