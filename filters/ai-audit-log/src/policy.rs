//! The ai-audit-log policy: first in the chain, it sees the client's request and the final response,
//! gives the record its own generated id (the sinks' dedup key, which no client can choose) and the
//! request its id (the client's `x-request-id`, else the record's id, returned to the client),
//! keeps the bodies' first bytes as its route's capture says, and at the end builds the record with
//! every policy's published decision (`shared::decision`) and queues it in shared data
//! (`shared::queue`), where the root timer ([`crate::drain`]) picks it up. Nothing here calls out.

use crate::config::{Capture, Config};
use crate::record::{self, Facts, HOLD_MARGIN};
use shared::decision;
use shared::host::{Body, Host, LocalReply, LogLevel, Policy, ResponseMode, Step};
use shared::metrics;
use shared::queue::{Pushed, Queue, QueueError};
use shared::rand::Rng;
use std::rc::Rc;

pub const NAME: &str = "ai-audit-log";
const ID_HEADER: &str = "x-request-id";
/// Longest client request id kept; a longer (or non-printable) one is replaced.
const MAX_ID: usize = 128;

pub struct AuditLog {
    config: Rc<Config>,
    /// Draws the record ids: seeded per VM at random, so no two VMs draw the same ids.
    rng: Rng,
    facts: Facts,
    capture: Capture,
    /// Whether the request was seen at all (headers phase ran).
    started: bool,
    /// The response is a server-sent event stream: its raw `data:` frames cut values across tokens
    /// (an email split over two frames is seen whole by no detector), so only its size is kept.
    event_stream: bool,
}

pub fn metric(what: &str, labels: &[(&str, &str)]) -> String {
    metrics::name(&format!("ai_audit_{what}"), labels)
}

/// A client's request id, if it is one we keep: 1..=128 visible ASCII characters.
fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A new request id: 32 hex digits (128 random bits).
fn new_id(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

impl AuditLog {
    pub fn new(config: Rc<Config>, seed: u64) -> Self {
        AuditLog {
            config,
            rng: Rng::new(shared::redis::seed(seed)),
            facts: Facts::default(),
            capture: Capture::None,
            started: false,
            event_stream: false,
        }
    }

    /// How many body bytes to hold for the record: what the capture keeps, plus the most margin its
    /// redaction may use (`record::excerpt`).
    fn hold(&self) -> usize {
        match self.capture.keep() {
            0 => 0,
            n => n.saturating_add(HOLD_MARGIN),
        }
    }

    fn keep_head(head: &mut Vec<u8>, chunk: &[u8], hold: usize) {
        let room = hold.saturating_sub(head.len());
        head.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
    }
}

impl Policy for AuditLog {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        self.started = true;
        let f = &mut self.facts;
        f.start_ms = host.now_ms();
        f.method = host.request_header(":method").unwrap_or_default();
        f.path = host.request_header(":path").unwrap_or_default();
        let route = self.config.route(f.path.split('?').next().unwrap_or_default());
        f.route = route.map_or_else(|| "default".to_string(), |r| r.name.clone());
        self.capture = route.map_or(Capture::Metadata, |r| r.capture);
        f.consumer = self
            .config
            .consumer_headers
            .iter()
            .find_map(|h| host.request_header(h))
            .unwrap_or_default();
        // The record's id is always ours: a client reusing an id must not make two requests one row.
        f.id = new_id(&mut self.rng);
        f.request_id = match host.request_header(ID_HEADER) {
            Some(id) if usable_id(&id) => id,
            _ => {
                // The upstream and every later policy see the same id.
                let _reported = host.set_request_header(ID_HEADER, Some(&f.id));
                f.id.clone()
            }
        };
        if has_body && !matches!(self.capture, Capture::None) {
            return Step::ReadBody;
        }
        Step::Continue
    }

    fn on_request_body(&mut self, _host: &mut dyn Host, body: &mut Body) -> Step {
        let bytes = body.bytes();
        self.facts.request_bytes = bytes.len() as u64;
        let hold = self.hold();
        Self::keep_head(&mut self.facts.request_head, bytes, hold);
        Step::Continue
    }

    /// A body too large to hold is never refused for the audit's sake: it goes on unread.
    fn on_request_too_large(&mut self, _host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        self.facts.request_bytes = limit as u64;
        None
    }

    /// An encoded body is not readable text: it goes on, with no excerpt.
    fn on_request_encoded(&mut self, _host: &mut dyn Host, _encoding: &str) -> Option<LocalReply> {
        None
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        self.facts.status = host
            .response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let _reported = host.set_response_header(ID_HEADER, Some(&self.facts.request_id));
        self.event_stream = host.response_header("content-type").is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        if matches!(self.capture, Capture::None) {
            return ResponseMode::PassThrough;
        }
        ResponseMode::Stream
    }

    fn on_response_chunk(&mut self, _host: &mut dyn Host, chunk: &[u8], _end: bool) -> Option<Vec<u8>> {
        self.facts.response_bytes += chunk.len() as u64;
        let hold = if self.event_stream { 0 } else { self.hold() };
        Self::keep_head(&mut self.facts.response_head, chunk, hold);
        None
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        if !self.started {
            return;
        }
        self.facts.end_ms = host.now_ms();
        let decisions = decision::collect(host);
        let record = record::build(&self.facts, self.capture, &decisions);
        let config = &self.config;
        let queue = Queue::new(&config.queue_key, config.queue_capacity, config.overflow);
        match queue.push(host, record.to_string().as_bytes()) {
            Ok(Pushed::Queued { .. }) => host.counter_add(&metric("records_total", &[]), 1),
            Ok(Pushed::QueuedDroppingOldest { .. }) => {
                host.counter_add(&metric("records_total", &[]), 1);
                host.counter_add(&metric("dropped_total", &[("reason", "overflow")]), 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{NAME}: queue full ({} records): the oldest record was dropped (overflow drop_oldest)",
                        config.queue_capacity
                    ),
                );
            }
            Ok(Pushed::Refused) => {
                host.counter_add(&metric("dropped_total", &[("reason", "overflow")]), 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{NAME}: queue full ({} records): record {} dropped (overflow drop_newest)",
                        config.queue_capacity, self.facts.id
                    ),
                );
            }
            // Its reserved slot stays empty: the drainer skips it later and counts it (`reason=lost`).
            Err(e @ QueueError::Slot { .. }) => host.log(
                LogLevel::Error,
                &format!("{NAME}: record {} dropped: {e}", self.facts.id),
            ),
            Err(e) => {
                host.counter_add(&metric("dropped_total", &[("reason", "store")]), 1);
                host.log(
                    LogLevel::Error,
                    &format!("{NAME}: record {} dropped: {e}", self.facts.id),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use shared::host::{FakeHost, HostKind};

    fn config(extra: &str) -> Rc<Config> {
        let json = format!(
            r#"{{"routes":[{{"name":"chat","prefix":"/v1/","capture":{{"mode":"excerpt","bytes":64}}}}],
                "sinks":[{{"name":"ch","upstream":{{"cluster":"c","host":"127.0.0.1:8123"}},"format":"clickhouse","table":"t"}}]{extra}}}"#
        );
        Rc::new(Config::parse(json.as_bytes(), &|_| None).unwrap())
    }

    fn queued(h: &FakeHost) -> Vec<Value> {
        let q = Queue::new("ai_audit_log/records", 100, Default::default());
        q.peek(h, 100)
            .1
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    /// One request through the policy's phases, with `publish` run as the later policies would.
    fn run(
        kind: HostKind,
        config: &Rc<Config>,
        id: Option<&str>,
        publish: impl Fn(&mut FakeHost),
    ) -> FakeHost {
        let mut h = FakeHost::new(kind).with_request_headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("x-consumer-id", "team-a"),
        ]);
        if let Some(id) = id {
            h.request_headers.insert(ID_HEADER.into(), id.into());
        }
        let mut p = AuditLog::new(Rc::clone(config), 7);
        assert_eq!(p.on_request_headers(&mut h, true), Step::ReadBody);
        let body = br#"{"messages":[{"role":"user","content":"I am jane.doe@example.com"}]}"#;
        assert_eq!(
            p.on_request_body(&mut h, &mut Body::new(body.to_vec())),
            Step::Continue
        );
        publish(&mut h);
        h.response_headers.insert(":status".into(), "200".into());
        assert_eq!(p.on_response_headers(&mut h), ResponseMode::Stream);
        assert_eq!(p.on_response_chunk(&mut h, b"{\"ok\":true}", true), None);
        p.on_done(&mut h);
        h
    }

    #[test]
    fn one_record_per_request_with_its_id_and_decisions_on_both_hosts() {
        let c = config("");
        for kind in [HostKind::Envoy, HostKind::Kong] {
            let h = run(kind, &c, Some("client-id-1"), |h| {
                decision::publish(h, "guard", &[("verdict", json!("allow"))]);
            });
            let r = queued(&h);
            assert_eq!(r.len(), 1, "{kind:?}");
            assert_eq!(r[0]["request_id"], "client-id-1");
            assert_eq!(r[0]["id"].as_str().map(str::len), Some(32), "{kind:?}");
            assert_eq!(h.response_headers[ID_HEADER], "client-id-1");
            assert_eq!(r[0]["guard_verdict"], "allow", "{kind:?}");
            assert_eq!(
                (r[0]["status"].as_u64(), r[0]["route"].as_str()),
                (Some(200), Some("chat"))
            );
            assert_eq!(r[0]["consumer"], "team-a");
            let excerpt = r[0]["request_excerpt"].as_str().unwrap();
            assert!(excerpt.len() <= 64 && excerpt.contains("<EMAIL>"), "{excerpt}");
            assert!(!r[0].to_string().contains("jane.doe"));
            assert_eq!(h.counters["ai_audit_records_total"], 1);
        }
    }

    #[test]
    fn a_missing_or_unusable_id_is_generated_and_sent_both_ways() {
        let c = config("");
        for id in [None, Some(""), Some("bad id with spaces")] {
            let h = run(HostKind::Envoy, &c, id, |_| {});
            let r = queued(&h);
            let got = r[0]["id"].as_str().unwrap();
            assert_eq!(got.len(), 32, "{id:?}");
            assert_eq!(r[0]["request_id"], got, "{id:?}");
            assert_eq!(h.request_headers[ID_HEADER], got);
            assert_eq!(h.response_headers[ID_HEADER], got);
        }
    }

    #[test]
    fn a_reused_client_id_never_makes_two_requests_one_record() {
        // A blocked prompt, then a harmless request with the same `x-request-id` (same seed too):
        // two records, one id each, both with the client's id.
        let c = config("");
        let mut q = Vec::new();
        for verdict in ["block", "allow"] {
            let h = run(HostKind::Envoy, &c, Some("same-id"), |h| {
                decision::publish(h, "guard", &[("verdict", json!(verdict))]);
            });
            assert_eq!(h.response_headers[ID_HEADER], "same-id");
            assert_eq!(
                h.request_headers[ID_HEADER], "same-id",
                "the client's id goes upstream"
            );
            q.extend(queued(&h));
        }
        assert_eq!(q.len(), 2);
        assert!(q.iter().all(|r| r["request_id"] == "same-id"));
        assert_ne!(q[0]["id"], q[1]["id"], "the dedup key is the gateway's");
        assert_eq!(
            (q[0]["guard_verdict"].as_str(), q[1]["guard_verdict"].as_str()),
            (Some("block"), Some("allow"))
        );
    }

    #[test]
    fn a_failed_write_is_counted_once() {
        // The store refuses everything: nothing reserved, counted here as `store`.
        let c = config("");
        let mut h =
            FakeHost::new(HostKind::Envoy).with_request_headers(&[(":method", "GET"), (":path", "/x")]);
        h.refuse_shared_writes = true;
        let mut p = AuditLog::new(Rc::clone(&c), 1);
        p.on_request_headers(&mut h, false);
        p.on_done(&mut h);
        assert_eq!(h.counters["ai_audit_dropped_total_reason=store"], 1);
        // Only the slot write fails: its number is reserved, so the drainer counts it as `lost` later;
        // not counted here too.
        h.refuse_shared_writes = false;
        h.refuse_shared_keys = vec![format!("{}/0", c.queue_key)];
        let mut p = AuditLog::new(Rc::clone(&c), 2);
        p.on_request_headers(&mut h, false);
        p.on_done(&mut h);
        assert_eq!(h.counters["ai_audit_dropped_total_reason=store"], 1);
        assert!(h.logged(LogLevel::Error, "slot 0 not written"));
        let mut d = crate::drain::Drain::new(Rc::clone(&c), 1);
        use shared::host::Background;
        assert!(d.on_tick(&mut h).is_empty());
        h.now_ms += crate::drain::LOST_SLOT_MS;
        assert!(d.on_tick(&mut h).is_empty());
        assert_eq!(h.counters["ai_audit_dropped_total_reason=lost"], 1);
        assert_eq!(h.counters["ai_audit_dropped_total_reason=store"], 1);
    }

    #[test]
    fn an_event_stream_keeps_its_size_only() {
        // An email cut across two SSE frames (no detector sees it whole in the raw frames): no excerpt
        // of the stream, its size all the same; a JSON response cut in two chunks keeps its excerpt,
        // redacted.
        let c = config("");
        let sse: [&[u8]; 2] = [
            b"data: {\"choices\":[{\"delta\":{\"content\":\"mail jane.doe@exa\"}}]}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":\"mple.com\"}}]}\n\ndata: [DONE]\n\n",
        ];
        let json: [&[u8]; 2] = [b"{\"content\":\"mail jane.doe@exa", b"mple.com\"}"];
        for (ct, frames, excerpt) in [
            ("text/event-stream; charset=utf-8", sse, false),
            ("application/json", json, true),
        ] {
            let mut h = FakeHost::new(HostKind::Envoy)
                .with_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
            let mut p = AuditLog::new(Rc::clone(&c), 3);
            p.on_request_headers(&mut h, false);
            h.response_headers.insert(":status".into(), "200".into());
            h.response_headers.insert("content-type".into(), ct.into());
            assert_eq!(p.on_response_headers(&mut h), ResponseMode::Stream);
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(p.on_response_chunk(&mut h, f, i == 1), None);
            }
            p.on_done(&mut h);
            let r = &queued(&h)[0];
            let size: usize = frames.iter().map(|f| f.len()).sum();
            assert_eq!(r["response_bytes"], size as u64, "{ct}");
            let e = r["response_excerpt"].as_str().unwrap();
            assert_eq!(!e.is_empty(), excerpt, "{ct}: {e}");
            assert!(!e.contains("jane.doe@"), "{ct}: {e}");
            assert_eq!(e.contains("<EMAIL>"), excerpt, "{ct}: {e}");
        }
    }

    #[test]
    fn overflow_is_counted_and_logged() {
        for (overflow, first_kept) in [("drop_oldest", "r2"), ("drop_newest", "r0")] {
            let c = config(&format!(r#","queue":{{"capacity":2,"overflow":"{overflow}"}}"#));
            let mut h = FakeHost::new(HostKind::Envoy);
            for i in 0..3 {
                h.request_headers = [
                    (":method", "GET"),
                    (":path", "/x"),
                    (ID_HEADER, &format!("r{i}") as &str),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let mut p = AuditLog::new(Rc::clone(&c), i);
                p.on_request_headers(&mut h, false);
                p.on_done(&mut h);
            }
            let q = Queue::new(&c.queue_key, 2, c.overflow);
            let (_, items) = q.peek(&h, 10);
            let ids: Vec<String> = items
                .iter()
                .map(|b| {
                    serde_json::from_slice::<Value>(b).unwrap()["request_id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(ids.len(), 2);
            assert!(ids.contains(&first_kept.to_string()), "{overflow}: {ids:?}");
            assert_eq!(
                h.counters["ai_audit_dropped_total_reason=overflow"], 1,
                "{overflow}"
            );
            assert!(h.logged(LogLevel::Warn, "queue full"), "{overflow}");
        }
    }
}
