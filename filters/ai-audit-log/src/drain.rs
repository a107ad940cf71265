//! The root timer's work ([`shared::host::Background`]): ship the queued records to every sink, at
//! least once.
//!
//! Each tick renews this worker's lease on the queue (one drainer across the gateway's VMs), then peeks
//! a batch and POSTs it, encoded per sink, to every sink that has not acknowledged it yet. The batch is
//! committed (removed from the queue) only once every sink acknowledged it; a sink that failed gets the
//! same batch again after a backoff that doubles from `retry.initial` to `retry.max` (a misconfigured
//! one too: 401, 403, 404, a missing ClickHouse table), and a sink that rejects it for good (413, another
//! 4xx, bad data: `shared::sink::acknowledge`) has it logged and counted as rejected, so one poison batch cannot block
//! the queue. Records carry their `id`, so a sink can deduplicate what arrives twice (ClickHouse's
//! `ReplacingMergeTree ORDER BY id` with `SELECT … FINAL`).
//!
//! A slot that a push reserved but never wrote (its write failed) would hold the queue: after
//! [`LOST_SLOT_MS`] at the same head it is skipped and counted as dropped (`reason=lost`).

use crate::config::{Config, Of, Sink, Summary, REQUEST_VAR, RESPONSE_VAR, SUMMARY_TASK};
use crate::policy::{metric, NAME};
use serde_json::Value;
use shared::host::{Background, CallResponse, Host, HttpCall, LogLevel};
use shared::llm::{Inputs, Run, Source};
use shared::queue::Queue;
use shared::sink::{acknowledge, encode, Ack};
use std::rc::Rc;

/// How long a reserved slot may stay unwritten before it is skipped.
pub const LOST_SLOT_MS: u64 = 10_000;

/// The batch being delivered: queue positions `head..upto`, and which sinks acknowledged it.
#[derive(Debug)]
struct Batch {
    head: u64,
    upto: u64,
    records: Vec<Value>,
    acked: Vec<bool>,
    /// Summaries are attached (or there are none to make).
    summarized: bool,
}

/// Summaries being made for the batch: one task run per record that has something to summarise.
struct Summaries {
    runs: Vec<(usize, Run)>,
    started_ms: u64,
}

/// Tags of summary calls: this bit, the summary round (16 bits from bit 32), the run (24 bits from bit
/// 8) and the call of its wave (8 bits). Below bit 56: the bundle keeps the top byte of a tag for the
/// policy's index (`shared::host::chain`).
const SUMMARY_TAG: u64 = 1 << 55;
/// Sink calls' tags: the round (bits 8..48) and the sink's index (the low byte: at most
/// [`crate::config::MAX_SINKS`] sinks).
const ROUND_MASK: u64 = (1 << 40) - 1;

pub struct Drain {
    config: Rc<Config>,
    owner: u64,
    batch: Option<Batch>,
    /// The round of calls in flight (tags carry it, so a late answer of an earlier round is ignored).
    round: u64,
    waiting: usize,
    sent_ms: u64,
    failed: bool,
    backoff_ms: u64,
    next_try_ms: u64,
    stuck: Option<(u64, u64)>,
    summaries: Option<Summaries>,
    summary_round: u64,
}

/// The record's text a summary reads, by `of`; `None` when it has none (no excerpt captured).
fn summary_inputs(summary: &Summary, record: &Value) -> Option<Inputs> {
    if let Some(routes) = &summary.routes {
        let route = record.get("route").and_then(Value::as_str)?;
        if !routes.iter().any(|r| r == route) {
            return None;
        }
    }
    let text = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (req, resp) = (text("request_excerpt"), text("response_excerpt"));
    let has = match summary.of {
        Of::Request => !req.is_empty(),
        Of::Response => !resp.is_empty(),
        Of::Both => !req.is_empty() || !resp.is_empty(),
    };
    if !has {
        return None;
    }
    let id = record.get("id").and_then(Value::as_str).map(str::to_string);
    let mut inputs = Inputs::new().with_request_id(id);
    inputs.set_var(REQUEST_VAR, req);
    inputs.set_var(RESPONSE_VAR, resp);
    Some(inputs)
}

/// The sink's base path and the format's path and query: `""` + `/?query=…`, `/audit` + `/_bulk`, `/in`
/// + `""`; never empty.
fn join_path(base: &str, format_path: &str) -> String {
    let joined = format!("{}{format_path}", base.trim_end_matches('/'));
    if joined.is_empty() {
        "/".to_string()
    } else if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

fn longest_summary_ms(summary: &Summary) -> u64 {
    summary
        .tasks
        .tasks()
        .iter()
        .map(|t| t.timeout_ms)
        .max()
        .unwrap_or(10_000)
        .saturating_add(1000)
}

impl Drain {
    pub fn new(config: Rc<Config>, owner: u64) -> Drain {
        Drain {
            config,
            owner,
            batch: None,
            round: 0,
            waiting: 0,
            sent_ms: 0,
            failed: false,
            backoff_ms: 0,
            next_try_ms: 0,
            stuck: None,
            summaries: None,
            summary_round: 0,
        }
    }

    /// Makes the batch's summaries: the calls to send now, or `None` once they are attached (a failed
    /// or late summary leaves its record's `summary` empty; the record is shipped all the same).
    fn summarize(&mut self, host: &mut dyn Host, now: u64) -> Option<Vec<(u64, HttpCall)>> {
        let config = Rc::clone(&self.config);
        let summary = config.summary.as_ref()?;
        let batch = self.batch.as_mut()?;
        if batch.summarized {
            return None;
        }
        if self.summaries.is_none() {
            let runs: Vec<(usize, Run)> = batch
                .records
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, summary.tasks.run(summary_inputs(summary, r)?))))
                .collect();
            self.summary_round = self.summary_round.wrapping_add(1);
            self.summaries = Some(Summaries {
                runs,
                started_ms: now,
            });
        }
        let s = self.summaries.as_mut()?;
        // Every call has its timeout; past twice the longest, answers that never came are given up.
        let late = now.saturating_sub(s.started_ms) > longest_summary_ms(summary).saturating_mul(2);
        let mut calls = Vec::new();
        if !late {
            for (j, (_, run)) in s.runs.iter_mut().enumerate() {
                for (k, call) in run.calls(&summary.tasks, host).into_iter().enumerate() {
                    let tag = SUMMARY_TAG
                        | (self.summary_round & 0xffff) << 32
                        | (j as u64 & 0xff_ffff) << 8
                        | k as u64 & 0xff;
                    calls.push((tag, call));
                }
            }
            if !calls.is_empty() || s.runs.iter().any(|(_, r)| !r.finished()) {
                return Some(calls);
            }
        }
        let source = Source::Task(SUMMARY_TASK.to_string(), Some("/summary".to_string()));
        let mut made = 0u64;
        for (i, run) in &s.runs {
            let text = run.value(&summary.tasks, &source);
            if let (Some(Value::String(t)), Some(Value::Object(r))) = (text, batch.records.get_mut(*i)) {
                r.insert("summary".into(), Value::String(t));
                made += 1;
            }
        }
        let missed = s.runs.len() as u64 - made;
        host.counter_add(&metric("summaries_total", &[("result", "ok")]), made);
        if missed > 0 {
            host.counter_add(&metric("summaries_total", &[("result", "failed")]), missed);
        }
        batch.summarized = true;
        self.summaries = None;
        None
    }

    /// The config's queue (`config` is the drainer's, cloned so the queue borrows no `self`).
    fn queue(config: &Config) -> Queue<'_> {
        Queue::new(&config.queue_key, config.queue_capacity, config.overflow)
    }

    fn longest_timeout(&self) -> u64 {
        self.config
            .sinks
            .iter()
            .map(|s| s.timeout_ms)
            .max()
            .unwrap_or(5000)
    }

    fn call(sink: &Sink, records: &[Value]) -> HttpCall {
        let enc = encode(&sink.format, records);
        let mut headers = vec![("content-type".to_string(), enc.content_type.to_string())];
        headers.extend(sink.headers.iter().cloned());
        HttpCall {
            upstream: sink.upstream.clone(),
            method: "POST".into(),
            path: join_path(&sink.path, &enc.path),
            headers,
            body: enc.body,
            timeout_ms: sink.timeout_ms,
        }
    }

    /// Removes a fully acknowledged batch from the queue.
    fn commit(&mut self, host: &mut dyn Host) {
        let Some(b) = &self.batch else {
            return;
        };
        if !b.acked.iter().all(|a| *a) {
            return;
        }
        let config = Rc::clone(&self.config);
        match Self::queue(&config).commit(host, b.upto) {
            Ok(()) => {
                self.batch = None;
                self.backoff_ms = 0;
                self.next_try_ms = 0;
            }
            Err(e) => host.log(
                LogLevel::Warn,
                &format!("{NAME}: delivered batch not removed from the queue yet: {e}"),
            ),
        }
    }

    /// Skips a slot reserved but never written, once it has held the head for [`LOST_SLOT_MS`].
    fn skip_lost_slot(&mut self, host: &mut dyn Host, head: u64, now: u64) {
        let config = Rc::clone(&self.config);
        let queue = Self::queue(&config);
        if queue.meta(host).is_empty() {
            self.stuck = None;
            return;
        }
        match self.stuck {
            Some((h, since)) if h == head => {
                if now.saturating_sub(since) >= LOST_SLOT_MS && queue.commit(host, head + 1).is_ok() {
                    self.stuck = None;
                    host.counter_add(&metric("dropped_total", &[("reason", "lost")]), 1);
                    host.log(
                        LogLevel::Warn,
                        &format!("{NAME}: queued record {head} was never written; skipped"),
                    );
                }
            }
            _ => self.stuck = Some((head, now)),
        }
    }

    fn answered(&mut self, host: &mut dyn Host, i: usize, response: CallResponse) {
        let Some(sink) = self.config.sinks.get(i) else {
            return;
        };
        let n = self.batch.as_ref().map_or(0, |b| b.records.len()) as u64;
        // No answer (timeout, connection failure) is status 0 to the sink's reading.
        let ack = acknowledge(&sink.format, response.status.unwrap_or(0), &response.body);
        let label = [("sink", sink.name.as_str())];
        let delivered = match ack {
            Ack::Delivered => {
                host.counter_add(&metric("delivered_total", &label), n);
                true
            }
            Ack::Rejected(why) => {
                host.counter_add(&metric("rejected_total", &label), n);
                host.log(
                    LogLevel::Error,
                    &format!(
                        "{NAME}: sink {} rejected a batch of {n} records for good ({why}); they are dropped",
                        sink.name
                    ),
                );
                true
            }
            Ack::Retry(why) => {
                host.counter_add(&metric("retries_total", &label), 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{NAME}: sink {} did not take a batch of {n} records ({why}); retrying",
                        sink.name
                    ),
                );
                false
            }
        };
        if let Some(b) = self.batch.as_mut() {
            if let Some(a) = b.acked.get_mut(i) {
                *a = *a || delivered;
            }
        }
        self.failed |= !delivered;
    }
}

impl Background for Drain {
    fn period_ms(&self) -> u64 {
        self.config.flush_interval_ms
    }

    fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u64, HttpCall)> {
        let now = host.now_ms();
        let config = Rc::clone(&self.config);
        let queue = Self::queue(&config);
        let ttl = self
            .longest_timeout()
            .saturating_add(self.config.flush_interval_ms.saturating_mul(3));
        if !queue.lease(host, self.owner, now, ttl) {
            return Vec::new();
        }
        let meta = queue.meta(host);
        host.gauge_set(&metric("queue_depth", &[]), meta.len());
        if self.waiting > 0 && now.saturating_sub(self.sent_ms) < self.longest_timeout().saturating_add(1000)
        {
            return Vec::new();
        }
        // Answers that never came are given up on (a later one is ignored by its round).
        self.waiting = 0;
        self.commit(host);
        if now < self.next_try_ms {
            return Vec::new();
        }
        let (head, items) = queue.peek(host, self.config.batch_max);
        if self.batch.as_ref().is_some_and(|b| b.head != head) {
            // Overflow dropped some of the batch meanwhile: start again from the queue's head.
            self.batch = None;
            self.summaries = None;
        }
        if items.is_empty() {
            self.batch = None;
            self.skip_lost_slot(host, head, now);
            return Vec::new();
        }
        self.stuck = None;
        let sinks = self.config.sinks.len();
        self.batch.get_or_insert_with(|| {
            let records: Vec<Value> = items
                .iter()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .collect();
            Batch {
                head,
                upto: head + items.len() as u64,
                records,
                acked: vec![false; sinks],
                summarized: false,
            }
        });
        if let Some(calls) = self.summarize(host, now) {
            return calls;
        }
        let Some(batch) = self.batch.as_ref() else {
            return Vec::new();
        };
        // Unreadable items (none are written so) are left out of the shipment, not out of the count.
        let records: Vec<Value> = batch.records.iter().filter(|r| r.is_object()).cloned().collect();
        self.round = self.round.wrapping_add(1);
        let mut calls = Vec::new();
        for (i, sink) in self.config.sinks.iter().enumerate() {
            if batch.acked.get(i).copied().unwrap_or(true) {
                continue;
            }
            calls.push((
                ((self.round & ROUND_MASK) << 8) | i as u64,
                Self::call(sink, &records),
            ));
        }
        self.waiting = calls.len();
        self.sent_ms = now;
        self.failed = false;
        calls
    }

    fn on_call_response(&mut self, host: &mut dyn Host, tag: u64, response: CallResponse) {
        if tag & SUMMARY_TAG != 0 {
            let config = Rc::clone(&self.config);
            let (Some(summary), Some(s)) = (config.summary.as_ref(), self.summaries.as_mut()) else {
                return;
            };
            if (tag >> 32) & 0xffff != self.summary_round & 0xffff {
                return;
            }
            let (j, k) = (((tag >> 8) & 0xff_ffff) as usize, (tag & 0xff) as usize);
            if let Some((_, run)) = s.runs.get_mut(j) {
                run.answer(&summary.tasks, host, k, response);
            }
            return;
        }
        if tag >> 8 != self.round & ROUND_MASK || self.waiting == 0 {
            return;
        }
        self.waiting -= 1;
        self.answered(host, (tag & 0xff) as usize, response);
        if self.waiting > 0 {
            return;
        }
        if self.failed {
            let c = &self.config;
            self.backoff_ms = if self.backoff_ms == 0 {
                c.retry_initial_ms
            } else {
                self.backoff_ms.saturating_mul(2).min(c.retry_max_ms)
            };
            self.next_try_ms = host.now_ms().saturating_add(self.backoff_ms);
        } else {
            self.commit(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::host::{FakeHost, HostKind};

    fn config(sinks: &str, extra: &str) -> Rc<Config> {
        let json = format!(
            r#"{{"sinks":[{sinks}],"batch":{{"max_records":3}},"retry":{{"initial":"100ms","max":"400ms"}}{extra}}}"#
        );
        Rc::new(Config::parse(json.as_bytes(), &|_| None).unwrap())
    }

    const CH: &str = r#"{"name":"ch","upstream":{"cluster":"c","host":"127.0.0.1:8123"},"format":"clickhouse","table":"t"}"#;
    const HOOK: &str =
        r#"{"name":"hook","upstream":{"cluster":"h","host":"127.0.0.1:9"},"path":"/in","format":"webhook"}"#;

    fn push(h: &mut FakeHost, c: &Config, n: usize) {
        let q = Queue::new(&c.queue_key, c.queue_capacity, c.overflow);
        for i in 0..n {
            q.push(
                h,
                serde_json::json!({"id": format!("r{i}")}).to_string().as_bytes(),
            )
            .unwrap();
        }
    }

    fn answer(status: Option<u16>) -> CallResponse {
        CallResponse {
            status,
            ..Default::default()
        }
    }

    #[test]
    fn ships_batches_and_commits_only_when_every_sink_acknowledged() {
        let c = config(&format!("{CH},{HOOK}"), "");
        let mut h = FakeHost::new(HostKind::Envoy);
        push(&mut h, &c, 4);
        let mut d = Drain::new(Rc::clone(&c), 1);
        let calls = d.on_tick(&mut h);
        assert_eq!(calls.len(), 2);
        assert!(
            calls[0]
                .1
                .path
                .starts_with("/?query=INSERT%20INTO%20%60t%60%20FORMAT%20JSONEachRow"),
            "{}",
            calls[0].1.path
        );
        assert_eq!(calls[1].1.path, "/in");
        assert_eq!(String::from_utf8_lossy(&calls[0].1.body).lines().count(), 3);
        // The webhook fails: nothing is committed; the next try goes to the webhook only.
        d.on_call_response(&mut h, calls[0].0, answer(Some(200)));
        d.on_call_response(&mut h, calls[1].0, answer(Some(503)));
        let q = Queue::new(&c.queue_key, c.queue_capacity, c.overflow);
        assert_eq!(q.meta(&h).len(), 4);
        assert!(d.on_tick(&mut h).is_empty(), "backing off");
        h.now_ms += 100;
        let again = d.on_tick(&mut h);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.path, "/in");
        d.on_call_response(&mut h, again[0].0, answer(Some(204)));
        assert_eq!(q.meta(&h).len(), 1, "the batch of 3 is committed");
        assert_eq!(h.counters["ai_audit_delivered_total_sink=ch"], 3);
        assert_eq!(h.counters["ai_audit_delivered_total_sink=hook"], 3);
        assert_eq!(h.counters["ai_audit_retries_total_sink=hook"], 1);
        let last = d.on_tick(&mut h);
        assert_eq!(last.len(), 2);
        assert_eq!(h.gauges["ai_audit_queue_depth"], 1);
    }

    const SUMMARY: &str = r#","targets":[{"name":"mini","provider":"openai","model":"gpt-4o-mini",
        "endpoint":{"cluster":"openai","host":"127.0.0.1:1"},"auth":{"value":"sk-test"}}],
        "summary":{"target":"mini","timeout":"1s"}"#;

    fn push_excerpts(h: &mut FakeHost, c: &Config) {
        let q = Queue::new(&c.queue_key, c.queue_capacity, c.overflow);
        for (id, excerpt) in [("a", "{\"invoice\":\"INV-1001\",\"status\":\"paid\"}"), ("b", "")] {
            let r = serde_json::json!({"id": id, "route": "default", "request_excerpt": excerpt,
                                        "response_excerpt": "", "summary": ""});
            q.push(h, r.to_string().as_bytes()).unwrap();
        }
    }

    fn shipped(call: &HttpCall) -> Vec<Value> {
        String::from_utf8_lossy(&call.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn summaries_are_made_per_batch_before_shipping_and_a_failure_leaves_them_empty() {
        for answer_with in [Some(200), None] {
            let c = config(CH, SUMMARY);
            let mut h = FakeHost::new(HostKind::Envoy);
            push_excerpts(&mut h, &c);
            let mut d = Drain::new(Rc::clone(&c), 1);
            let calls = d.on_tick(&mut h);
            assert_eq!(calls.len(), 1, "one summary: record b has no excerpt");
            assert_ne!(calls[0].0 & SUMMARY_TAG, 0);
            assert_eq!(calls[0].0 >> 56, 0, "the bundle's top byte is free");
            let prompt = String::from_utf8_lossy(&calls[0].1.body).to_string();
            assert!(prompt.contains("INV-1001"), "{prompt}");
            let content = r#"{\"summary\":\"User updated invoice INV-1001 status to paid\"}"#;
            let body = format!(
                r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":30,"completion_tokens":9}}}}"#
            );
            let resp = CallResponse {
                status: answer_with,
                headers: vec![("content-type".into(), "application/json".into())],
                body: if answer_with.is_some() {
                    body.into_bytes()
                } else {
                    Vec::new()
                },
            };
            d.on_call_response(&mut h, calls[0].0, resp);
            let ship = d.on_tick(&mut h);
            assert_eq!(ship.len(), 1, "{answer_with:?}");
            assert_eq!((ship[0].0 >> 56, ship[0].0 & SUMMARY_TAG), (0, 0));
            let rows = shipped(&ship[0].1);
            assert_eq!(rows.len(), 2, "a failed summary never drops a record");
            let want = if answer_with.is_some() {
                "User updated invoice INV-1001 status to paid"
            } else {
                ""
            };
            assert_eq!(rows[0]["summary"], want, "{answer_with:?}");
            assert_eq!(rows[1]["summary"], "");
            let result = if answer_with.is_some() { "ok" } else { "failed" };
            assert_eq!(
                h.counters[&format!("ai_audit_summaries_total_result={result}")],
                1
            );
        }
    }

    #[test]
    fn backoff_doubles_to_its_bound_and_resets() {
        let c = config(CH, "");
        let mut h = FakeHost::new(HostKind::Kong);
        push(&mut h, &c, 1);
        let mut d = Drain::new(Rc::clone(&c), 1);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let calls = d.on_tick(&mut h);
            assert_eq!(calls.len(), 1);
            d.on_call_response(&mut h, calls[0].0, answer(None));
            waits.push(d.next_try_ms - h.now_ms);
            h.now_ms = d.next_try_ms;
        }
        assert_eq!(waits, vec![100, 200, 400, 400, 400]);
        let calls = d.on_tick(&mut h);
        d.on_call_response(&mut h, calls[0].0, answer(Some(200)));
        assert_eq!((d.backoff_ms, d.next_try_ms), (0, 0));
        assert!(Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
            .meta(&h)
            .is_empty());
    }

    #[test]
    fn a_rejected_batch_is_logged_counted_and_committed() {
        let c = config(CH, "");
        let mut h = FakeHost::new(HostKind::Envoy);
        push(&mut h, &c, 2);
        let mut d = Drain::new(Rc::clone(&c), 1);
        let calls = d.on_tick(&mut h);
        d.on_call_response(
            &mut h,
            calls[0].0,
            CallResponse {
                status: Some(400),
                body: b"Code: 26, Cannot parse JSON".to_vec(),
                ..Default::default()
            },
        );
        assert!(Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
            .meta(&h)
            .is_empty());
        assert_eq!(h.counters["ai_audit_rejected_total_sink=ch"], 2);
        assert!(h.logged(LogLevel::Error, "rejected a batch of 2 records"));
    }

    #[test]
    fn two_audit_configs_with_their_own_queue_names_ship_only_their_own_records() {
        // Two configs in one VM id (one shared data): each drainer leases, peeks and ships its own
        // queue only; the default name is one queue for configs that do not set one.
        let a = config(CH, r#","queue":{"name":"team-a"}"#);
        let b = config(HOOK, r#","queue":{"name":"team-b"}"#);
        let mut h = FakeHost::new(HostKind::Envoy);
        push(&mut h, &a, 2);
        push(&mut h, &b, 1);
        let (mut da, mut db) = (Drain::new(Rc::clone(&a), 1), Drain::new(Rc::clone(&b), 2));
        let (ca, cb) = (da.on_tick(&mut h), db.on_tick(&mut h));
        assert_eq!((ca.len(), cb.len()), (1, 1), "each holds its own lease");
        assert_eq!(shipped(&ca[0].1).len(), 2);
        assert_eq!(shipped(&cb[0].1).len(), 1);
        assert_eq!(cb[0].1.path, "/in", "team-b's records go to team-b's sink");
        da.on_call_response(&mut h, ca[0].0, answer(Some(200)));
        let qa = Queue::new(&a.queue_key, a.queue_capacity, a.overflow);
        let qb = Queue::new(&b.queue_key, b.queue_capacity, b.overflow);
        assert_eq!((qa.meta(&h).len(), qb.meta(&h).len()), (0, 1));
        assert_eq!(config(CH, "").queue_key, "ai_audit_log/records");
    }

    #[test]
    fn a_misconfigured_sink_keeps_the_batch_until_it_is_fixed() {
        // A rotated token (401), then a table not created yet (ClickHouse 404, code 60), then it takes
        // the batch: nothing rejected, nothing dropped, the same records delivered.
        let c = config(CH, "");
        let mut h = FakeHost::new(HostKind::Envoy);
        push(&mut h, &c, 2);
        let mut d = Drain::new(Rc::clone(&c), 1);
        let refusals: [(u16, &[u8]); 2] = [
            (401, b""),
            (
                404,
                b"Code: 60, e.displayText() = DB::Exception: Table default.t doesn't exist.",
            ),
        ];
        for (status, body) in refusals {
            let calls = d.on_tick(&mut h);
            assert_eq!(calls.len(), 1, "{status}");
            let resp = CallResponse {
                status: Some(status),
                body: body.to_vec(),
                ..Default::default()
            };
            d.on_call_response(&mut h, calls[0].0, resp);
            assert_eq!(
                Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
                    .meta(&h)
                    .len(),
                2
            );
            h.now_ms = d.next_try_ms;
        }
        let calls = d.on_tick(&mut h);
        assert_eq!(shipped(&calls[0].1).len(), 2);
        d.on_call_response(&mut h, calls[0].0, answer(Some(200)));
        assert!(Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
            .meta(&h)
            .is_empty());
        assert_eq!(h.counters["ai_audit_retries_total_sink=ch"], 2);
        assert_eq!(h.counters["ai_audit_delivered_total_sink=ch"], 2);
        assert!(!h.counters.contains_key("ai_audit_rejected_total_sink=ch"));
        assert!(h.logged(LogLevel::Warn, "credentials or path"));
    }

    #[test]
    fn one_drainer_at_a_time_and_late_answers_are_ignored() {
        let c = config(CH, "");
        let mut h = FakeHost::new(HostKind::Envoy);
        push(&mut h, &c, 1);
        let (mut a, mut b) = (Drain::new(Rc::clone(&c), 1), Drain::new(Rc::clone(&c), 2));
        let calls = a.on_tick(&mut h);
        assert_eq!(calls.len(), 1);
        assert!(b.on_tick(&mut h).is_empty(), "the lease is held");
        // No answer within the timeout: the batch is sent again, and the first answer is stale.
        h.now_ms += 6001;
        let again = a.on_tick(&mut h);
        assert_eq!(again.len(), 1);
        a.on_call_response(&mut h, calls[0].0, answer(Some(200)));
        assert_eq!(
            Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
                .meta(&h)
                .len(),
            1
        );
        a.on_call_response(&mut h, again[0].0, answer(Some(200)));
        assert!(Queue::new(&c.queue_key, c.queue_capacity, c.overflow)
            .meta(&h)
            .is_empty());
    }
}
