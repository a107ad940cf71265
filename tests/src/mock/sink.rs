//! Recording sinks: `/sink/<name>/…` stands in for an audit sink of any format (`shared::sink`), so a
//! test can see exactly what the gateway shipped and make the sink fail.
//!
//! | Endpoint | What |
//! |---|---|
//! | `POST /sink/<name>[/…]` | recorded in sink `<name>`, then answered in the format's success shape, chosen by the path after the name: `…/services/collector/event` Splunk HEC `{"text":"Success","code":0}`; `…/_bulk` Elasticsearch `{"took":1,"errors":false,"items":[…]}` (one `index` item per action line, with its `_index` and `_id`, status 201); `…/v1/logs` OTLP `{}`; a `query=INSERT…` (ClickHouse) 200 and an empty body; anything else (a webhook) 200 `{"ok":true}` |
//! | `GET /sink/<name>/requests` | what `<name>` received, oldest first: `{"method", "path" (after `/sink/<name>`, with the query), "headers", "body" (text), "status" (what was answered; 0 = the connection was closed)}` |
//! | `DELETE /sink/<name>/requests` | forgets `<name>`'s requests and failures |
//! | `POST /sink/<name>/fail?count=N&status=S` | the next N requests to `<name>` are recorded, then answered S (default 503; 0 closes the connection without an answer, like a sink that is down); the fail request's body, if any, is the answer's body (e.g. a `_bulk` result with `"errors":true`, answered with `status=200`) |
//!
//! A body the format cannot be is refused as the real sink refuses it, so a test catches a bad encoder:
//! HEC 400 `{"text":"Invalid data format","code":6}` unless every line is an object with `event`; `_bulk`
//! 400 unless the lines are JSON, in action/document pairs, ending with a newline; OTLP 400 unless the
//! body is an object with a `resourceLogs` array. Sink traffic is not in `/_mock/requests` (so a test
//! counting provider requests does not count it) and takes no `/_mock/faults`; `DELETE /_mock/requests`
//! clears the sinks too.

use std::collections::HashMap;
use std::io;
use std::net::TcpStream;

use serde_json::{json, Value};

use super::{headers_json, lock, reset, write_body, write_json, Fault, Next, Request, Shared};

/// One sink's state.
#[derive(Debug, Default)]
pub(super) struct Sink {
    requests: Vec<Value>,
    /// Failures still to answer: (status, body).
    failures: Vec<(u16, Vec<u8>)>,
}

pub(super) type Sinks = HashMap<String, Sink>;

/// `/sink/<name>/<rest>` split into the name and the rest (with the query); `None` for another path.
fn split(target: &str) -> Option<(&str, &str)> {
    let after = target.strip_prefix("/sink/")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (name, rest) = after.split_at(end);
    (!name.is_empty()).then_some((name, rest))
}

/// Whether `path` (without the query) is a sink's.
pub(super) fn is_sink(path: &str) -> bool {
    path.starts_with("/sink/")
}

pub(super) fn handle(shared: &Shared, req: &Request, w: &mut TcpStream, keep: bool) -> io::Result<Next> {
    let Some((name, rest)) = split(&req.target) else {
        write_json(
            w,
            404,
            &[],
            &json!({"error": "mock: a sink path is /sink/<name>/…"}),
            keep,
        )?;
        return Ok(Next::KeepAlive);
    };
    let rest_path = rest.split_once('?').map_or(rest, |(p, _)| p);
    match (req.method.as_str(), rest_path) {
        ("GET", "/requests") => {
            write_json(w, 200, &[], &Value::Array(requests(shared, name)), keep)?;
            Ok(Next::KeepAlive)
        }
        ("DELETE", "/requests") => {
            lock(&shared.sinks).remove(name);
            write_json(w, 200, &[], &json!({"cleared": true}), keep)?;
            Ok(Next::KeepAlive)
        }
        ("POST", "/fail") => {
            let (count, status) = match (
                parse_num(req.query("count"), 1),
                parse_num(req.query("status"), 503),
            ) {
                (Ok(c), Ok(s)) if s == 0 || (200..=599).contains(&s) => (c, s as u16),
                _ => {
                    let msg = "mock: fail takes count=N and status=S (0 or 200..=599)";
                    write_json(w, 400, &[], &json!({ "error": msg }), keep)?;
                    return Ok(Next::KeepAlive);
                }
            };
            let mut sinks = lock(&shared.sinks);
            let sink = sinks.entry(name.to_string()).or_default();
            for _ in 0..count {
                sink.failures.push((status, req.body.clone()));
            }
            let queued = sink.failures.len();
            drop(sinks);
            write_json(w, 200, &[], &json!({ "failures": queued }), keep)?;
            Ok(Next::KeepAlive)
        }
        ("POST", _) => deliver(shared, name, rest, req, w, keep),
        _ => {
            let msg = format!("mock: no sink endpoint {} {}", req.method, req.target);
            write_json(w, 405, &[], &json!({ "error": msg }), keep)?;
            Ok(Next::KeepAlive)
        }
    }
}

/// What sink `name` received, oldest first.
pub(super) fn requests(shared: &Shared, name: &str) -> Vec<Value> {
    lock(&shared.sinks)
        .get(name)
        .map(|s| s.requests.clone())
        .unwrap_or_default()
}

fn parse_num(v: Option<&str>, default: u64) -> Result<u64, ()> {
    v.map_or(Ok(default), |s| s.parse().map_err(|_| ()))
}

/// A request to the sink: recorded with what it is answered.
fn deliver(
    shared: &Shared,
    name: &str,
    rest: &str,
    req: &Request,
    w: &mut TcpStream,
    keep: bool,
) -> io::Result<Next> {
    let rest_path = rest.split_once('?').map_or(rest, |(p, _)| p);
    let (status, body) = {
        let mut sinks = lock(&shared.sinks);
        let sink = sinks.entry(name.to_string()).or_default();
        let answer = if sink.failures.is_empty() {
            success(rest, rest_path, &req.body)
        } else {
            sink.failures.remove(0)
        };
        sink.requests.push(json!({
            "method": req.method,
            "path": rest,
            "headers": headers_json(req),
            "body": String::from_utf8_lossy(&req.body),
            "status": answer.0,
        }));
        answer
    };
    if status == 0 {
        return reset(w);
    }
    let content_type = if body.is_empty() {
        "text/plain"
    } else {
        "application/json"
    };
    write_body(
        w,
        status,
        content_type,
        &[("x-mock-provider", "sink".to_string())],
        &body,
        &Fault::default(),
        keep,
    )
}

/// The format's answer to a body it takes, or the refusal of one it does not.
fn success(rest: &str, rest_path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let text = String::from_utf8_lossy(body);
    let answer = if rest_path.ends_with("/services/collector/event") {
        hec(&text)
    } else if rest_path.ends_with("/_bulk") {
        bulk(&text)
    } else if rest_path.ends_with("/v1/logs") {
        otlp(body)
    } else if rest.contains("query=INSERT") {
        return (200, Vec::new());
    } else {
        Ok(json!({"ok": true}))
    };
    match answer {
        Ok(v) => (200, v.to_string().into_bytes()),
        Err(v) => (400, v.to_string().into_bytes()),
    }
}

fn hec(text: &str) -> Result<Value, Value> {
    let events: Vec<Option<Value>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    if events.is_empty() {
        return Err(json!({"text": "No data", "code": 5}));
    }
    for (i, event) in events.iter().enumerate() {
        match event {
            Some(Value::Object(o)) if o.contains_key("event") => {}
            Some(Value::Object(_)) => {
                return Err(json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}))
            }
            _ => return Err(json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i})),
        }
    }
    Ok(json!({"text": "Success", "code": 0}))
}

fn bulk(text: &str) -> Result<Value, Value> {
    let refuse = |reason: &str| json!({"error": {"type": "illegal_argument_exception", "reason": reason}, "status": 400});
    if !text.ends_with('\n') {
        return Err(refuse("The bulk request must be terminated by a newline [\\n]"));
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut items = Vec::new();
    for pair in lines.chunks(2) {
        let [action, doc] = pair else {
            return Err(refuse("Malformed action/metadata line: a document is missing"));
        };
        let action: Value =
            serde_json::from_str(action).map_err(|_| refuse("Malformed action/metadata line"))?;
        if serde_json::from_str::<Value>(doc).is_err() {
            return Err(refuse("failed to parse the document"));
        }
        let Some(meta) = action.get("index").and_then(Value::as_object) else {
            return Err(refuse("Malformed action/metadata line: expected index"));
        };
        items.push(json!({"index": {
            "_index": meta.get("_index").cloned().unwrap_or(Value::Null),
            "_id": meta.get("_id").cloned().unwrap_or(Value::Null),
            "result": "created", "status": 201
        }}));
    }
    Ok(json!({"took": 1, "errors": false, "items": items}))
}

fn otlp(body: &[u8]) -> Result<Value, Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("resourceLogs").is_some_and(Value::is_array) => Ok(json!({})),
        _ => Err(json!({"code": 3, "message": "invalid ExportLogsServiceRequest: no resourceLogs"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_paths() {
        let cases = [
            ("/sink/es/_bulk", Some(("es", "/_bulk"))),
            ("/sink/wh", Some(("wh", ""))),
            (
                "/sink/ch/?query=INSERT%20INTO",
                Some(("ch", "/?query=INSERT%20INTO")),
            ),
            ("/sink/ch?query=x", Some(("ch", "?query=x"))),
            ("/sink/", None),
            ("/sink//x", None),
            ("/sinks/a", None),
        ];
        for (target, want) in cases {
            assert_eq!(split(target), want, "{target}");
        }
    }

    #[test]
    fn success_shapes() {
        let ok = |rest: &str, body: &str| success(rest, rest.split('?').next().unwrap(), body.as_bytes());
        assert_eq!(
            ok("/services/collector/event", "{\"event\":{}}\n{\"event\":1}\n").0,
            200
        );
        assert_eq!(ok("/services/collector/event", "{\"time\":1}\n").0, 400);
        assert_eq!(ok("/services/collector/event", "nope\n").0, 400);
        assert_eq!(ok("/services/collector/event", "").0, 400);
        let (status, body) = ok(
            "/_bulk",
            "{\"index\":{\"_index\":\"i\",\"_id\":\"a\"}}\n{\"id\":\"a\"}\n",
        );
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"], false);
        assert_eq!(v["items"][0]["index"]["_id"], "a");
        assert_eq!(ok("/_bulk", "{\"index\":{}}\n{}").0, 400, "no final newline");
        assert_eq!(ok("/_bulk", "{\"index\":{}}\n").0, 400, "no document");
        assert_eq!(ok("/_bulk", "{\"delete\":{}}\n{}\n").0, 400);
        assert_eq!(ok("/v1/logs", "{\"resourceLogs\":[]}"), (200, b"{}".to_vec()));
        assert_eq!(ok("/v1/logs", "{}").0, 400);
        assert_eq!(ok("/?query=INSERT%20INTO%20t", "{}\n"), (200, Vec::new()));
        assert_eq!(ok("", "anything"), (200, b"{\"ok\":true}".to_vec()));
    }
}
