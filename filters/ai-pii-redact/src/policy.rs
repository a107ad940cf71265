//! The ai-pii-redact policy: find PII in the request text, replace it (or refuse the request), optionally
//! ask an NER service for what patterns miss, then put the originals back in the answer and mask PII
//! the model produced, in JSON and in streams.

use crate::body::{request_segments, rewrite_json_response, Segment, SseRewriter};
use crate::config::{Config, FailureMode, Mode};
use crate::ner;
use serde_json::json;
use shared::callout::{Callout, Failure, Judged};
use shared::chat::{self, Api, Class, Edit};
use shared::decision;
use shared::error::ApiError;
use shared::host::{
    Body, CallResponse, Host, LocalReply, LogLevel, Policy, ResponseMode, Step, WholeResponse,
};
use shared::metrics;
use shared::pii::detect::resolve_overlaps;
use shared::pii::stream::Scrub;
use shared::pii::{Action, Detection, Direction, Session};
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct PiiRedact {
    config: Rc<Config>,
    stage: Stage,
    session: Session,
    /// This consumer may see the model's output unmasked.
    unmasked: bool,
    /// Values that made us refuse the request, per type.
    blocked: BTreeMap<String, u64>,
    outcome: &'static str,
    ner: Option<&'static str>,
}

enum Stage {
    /// Not a request we handle (or handled in the headers only).
    Idle,
    /// The request's API, from its path.
    AwaitingBody(Option<Api>),
    AwaitingNer(Box<Pending>, Box<Callout>),
    Forwarded(Response),
}

/// The request's text and what was found in it, waiting for the NER answer.
struct Pending {
    segments: Vec<Segment>,
    detections: Vec<Vec<Detection>>,
    /// Each segment's start (in characters) in the text sent to the NER service.
    starts: Vec<usize>,
}

enum Response {
    /// Not decided yet, or nothing to do.
    None,
    Json,
    Sse(Box<SseRewriter>),
}

impl PiiRedact {
    pub fn new(config: Rc<Config>) -> Self {
        PiiRedact {
            config,
            stage: Stage::Idle,
            session: Session::new(),
            unmasked: false,
            blocked: BTreeMap::new(),
            outcome: "clean",
            ner: None,
        }
    }

    fn enforce(&self) -> bool {
        self.config.mode == Mode::Enforce
    }

    fn reject(&mut self, host: &mut dyn Host, err: ApiError) -> LocalReply {
        host.counter_add(
            &metrics::name("ai_pii_redact_rejected_total", &[("code", err.code)]),
            1,
        );
        host.log(
            LogLevel::Info,
            &format!(
                "ai-pii-redact: rejected status={} code={}: {}",
                err.status, err.code, err.message
            ),
        );
        err.into()
    }

    /// The 400 for blocked types: names the types, never the values.
    fn block(&mut self, host: &mut dyn Host, dets: &[&Detection]) -> Option<LocalReply> {
        let mut kinds: Vec<&str> = Vec::new();
        for d in dets {
            if self.config.rules.action(&d.kind) == Action::Block {
                *self.blocked.entry(d.kind.clone()).or_default() += 1;
                if !kinds.contains(&d.kind.as_str()) {
                    kinds.push(&d.kind);
                }
            }
        }
        if kinds.is_empty() {
            return None;
        }
        kinds.sort_unstable();
        let msg = format!(
            "the request contains personal data that may not be sent to the model: {}",
            kinds.join(", ")
        );
        self.outcome = "blocked";
        self.publish(host);
        if !self.enforce() {
            return None;
        }
        Some(self.reject(host, ApiError::invalid_request("pii_blocked", msg)))
    }

    /// Redacts the configured request headers; `Some` is a refusal.
    fn redact_headers(&mut self, host: &mut dyn Host) -> Option<LocalReply> {
        let config = Rc::clone(&self.config);
        for name in &config.headers {
            let Some(value) = host.request_header(name) else {
                continue;
            };
            let dets = config.engine.detect(&value);
            if dets.is_empty() {
                continue;
            }
            if let Some(reply) = self.block(host, &dets.iter().collect::<Vec<_>>()) {
                return Some(reply);
            }
            let new = self
                .session
                .redact(&config.rules, &value, &dets, Direction::Request);
            if self.enforce() {
                if let Err(e) = host.set_request_header(name, Some(&new)) {
                    // A header that cannot be rewritten must not leave with the value in it.
                    let err = ApiError::new(500, "server_error", "gateway_error", e.to_string());
                    return Some(self.reject(host, err));
                }
            }
            self.outcome = "redacted";
        }
        None
    }

    fn read_body(&mut self, host: &mut dyn Host, api: Option<Api>, body: &mut Body) -> Step {
        let parsed = match shared::chat::json(body) {
            Ok(v) => v,
            Err(err) if self.enforce() => {
                self.stage = Stage::Idle;
                // Text we cannot read (or could read two ways) cannot be checked: refuse it rather than
                // forward it unscanned.
                return Step::Reply(self.reject(host, err));
            }
            Err(_) => {
                self.stage = Stage::Idle;
                return Step::Continue;
            }
        };
        let segments = request_segments(parsed, api, self.config.roles.as_deref(), &self.config.kinds);
        let detections: Vec<Vec<Detection>> = segments
            .iter()
            .map(|s| self.config.engine.detect(&s.text))
            .collect();
        let mut pending = Pending {
            segments,
            detections,
            starts: Vec::new(),
        };
        if let Some(ner) = &self.config.ner {
            if pending.segments.iter().any(|s| !s.text.trim().is_empty()) {
                let (call_body, starts) = ner::request_body(&pending.segments, ner);
                pending.starts = starts;
                let callout = ner.service.callout(call_body);
                let step = callout.step();
                self.stage = Stage::AwaitingNer(Box::new(pending), Box::new(callout));
                return step;
            }
        }
        self.finish_request(host, pending, body)
    }

    /// Applies the detections: refuse, or rewrite the text in place (enforce), or only count (shadow).
    fn finish_request(&mut self, host: &mut dyn Host, p: Pending, body: &mut Body) -> Step {
        self.stage = Stage::Forwarded(Response::None);
        let all: Vec<&Detection> = p.detections.iter().flatten().collect();
        if all.is_empty() {
            self.publish(host);
            return Step::Continue;
        }
        if let Some(reply) = self.block(host, &all) {
            self.stage = Stage::Idle;
            return Step::Reply(reply);
        }
        if self.outcome == "clean" {
            self.outcome = "redacted";
        }
        let config = Rc::clone(&self.config);
        let mut edits = Vec::new();
        for (seg, dets) in p.segments.into_iter().zip(&p.detections) {
            if dets.is_empty() {
                continue;
            }
            let text = self
                .session
                .redact(&config.rules, &seg.text, dets, Direction::Request);
            host.counter_add(
                &metrics::name(
                    "ai_pii_redact_fields_total",
                    &[("kind", seg.kind.as_str()), ("mode", config.mode.as_str())],
                ),
                1,
            );
            edits.push(Edit {
                pointer: seg.pointer,
                inner: seg.inner,
                text,
            });
        }
        if self.enforce() {
            if let Ok(v) = body.json_mut() {
                chat::edit::apply(v, edits);
            }
        }
        self.publish(host);
        Step::Continue
    }

    /// Publishes the request-side decision for the audit log (`shared::decision`): the outcome, the
    /// mode, the values found per type and the actions taken, never the values.
    fn publish(&self, host: &mut dyn Host) {
        let mut types: BTreeMap<&str, u64> = BTreeMap::new();
        let mut actions: Vec<&str> = Vec::new();
        for ((dir, kind, action), n) in self.session.counts() {
            if *dir != Direction::Request || self.config.rules.action(kind) == Action::Block {
                continue;
            }
            *types.entry(kind.as_str()).or_default() += n;
            if !actions.contains(&action.as_str()) {
                actions.push(action.as_str());
            }
        }
        for (kind, n) in &self.blocked {
            *types.entry(kind.as_str()).or_default() += n;
            if !actions.contains(&"block") {
                actions.push("block");
            }
        }
        let total: u64 = types.values().sum();
        decision::publish(
            host,
            "pii",
            &[
                ("outcome", json!(self.outcome)),
                ("mode", json!(self.config.mode.as_str())),
                ("total", json!(total)),
                ("actions", json!(actions)),
                ("types", json!(types)),
            ],
        );
    }

    fn scrub(&mut self) -> (Scrub<'_>, Option<&mut Response>) {
        let redact = self.config.redact_response && !self.unmasked;
        let restore = self.config.restore;
        let response = match &mut self.stage {
            Stage::Forwarded(r) => Some(r),
            _ => None,
        };
        (
            Scrub {
                engine: &self.config.engine,
                rules: &self.config.rules,
                session: &mut self.session,
                redact,
                restore,
            },
            response,
        )
    }
}

fn is_success(host: &dyn Host) -> bool {
    host.response_header(":status")
        .and_then(|s| s.parse::<u16>().ok())
        .is_some_and(|s| (200..300).contains(&s))
}

impl Policy for PiiRedact {
    fn request_body_limit(&self) -> usize {
        self.config.max_body_bytes
    }

    fn on_request_headers(&mut self, host: &mut dyn Host, has_body: bool) -> Step {
        if let Some(u) = &self.config.unmasked {
            self.unmasked = host
                .request_header(&u.header)
                .is_some_and(|v| u.values.iter().any(|x| *x == v.trim()));
        }
        if let Some(reply) = self.redact_headers(host) {
            return Step::Reply(reply);
        }
        let path = host.request_header(":path").unwrap_or_default();
        let method = host.request_header(":method").unwrap_or_default();
        let api = match self.config.routes.classify(&method, &path) {
            Class::Other => return Step::Continue,
            Class::Chat(api) => api,
            // Enforced, an ambiguous path is refused (never skipped: the next filter may read it as a
            // chat request); in shadow mode it is scanned as the API it may be.
            Class::Ambiguous(api) if !self.enforce() => api,
            Class::Ambiguous(_) => {
                self.outcome = "ambiguous-path";
                return Step::Reply(self.reject(host, chat::path::ambiguous_path(&path)));
            }
        };
        if !has_body {
            return Step::Continue;
        }
        if self.enforce() {
            // The answer must be readable to restore and mask it.
            let _logged = host.set_request_header("accept-encoding", None);
        }
        self.stage = Stage::AwaitingBody(api);
        Step::ReadBody
    }

    fn on_request_too_large(&mut self, host: &mut dyn Host, limit: usize) -> Option<LocalReply> {
        // A body too large to scan is refused rather than forwarded unchecked; shadow mode only reports it.
        self.stage = Stage::Idle;
        self.outcome = "too-large";
        if !self.enforce() {
            host.log(
                LogLevel::Info,
                &format!("ai-pii-redact: mode=shadow body over {limit} bytes passed unscanned"),
            );
            return None;
        }
        Some(self.reject(host, shared::host::too_large(limit)))
    }

    fn on_request_encoded(&mut self, host: &mut dyn Host, encoding: &str) -> Option<LocalReply> {
        // An encoded body cannot be scanned: refused like one too large; shadow mode only reports it.
        self.stage = Stage::Idle;
        self.outcome = "encoded";
        if !self.enforce() {
            host.log(
                LogLevel::Info,
                "ai-pii-redact: mode=shadow content-encoded body passed unscanned",
            );
            return None;
        }
        Some(self.reject(host, shared::host::encoded_body(encoding)))
    }

    fn on_request_body(&mut self, host: &mut dyn Host, body: &mut Body) -> Step {
        let Stage::AwaitingBody(api) = self.stage else {
            return Step::Continue;
        };
        self.read_body(host, api, body)
    }

    fn on_call_responses(
        &mut self,
        host: &mut dyn Host,
        responses: Vec<CallResponse>,
        body: Option<&mut Body>,
    ) -> Step {
        let (Stage::AwaitingNer(pending, mut callout), Some(body)) =
            (std::mem::replace(&mut self.stage, Stage::Idle), body)
        else {
            return Step::Continue;
        };
        let mut pending = *pending;
        let config = Rc::clone(&self.config);
        let Some(ner) = config.ner.as_ref() else {
            return self.finish_request(host, pending, body);
        };
        let response = responses.into_iter().next().unwrap_or_default();
        let parsed = match callout.judge(response) {
            Judged::Answer(r) => ner::parse_response(&r.body, &pending.segments, &pending.starts, ner)
                .map_err(|why| callout.failed(Failure::InvalidResponse(why))),
            Judged::Retry(step) => {
                self.stage = Stage::AwaitingNer(Box::new(pending), callout);
                return step;
            }
            Judged::Failed(failed) => Err(failed),
        };
        match parsed {
            Ok(found) => {
                self.ner = Some("ok");
                for (dets, more) in pending.detections.iter_mut().zip(found) {
                    if !more.is_empty() {
                        dets.extend(more);
                        *dets = resolve_overlaps(std::mem::take(dets));
                    }
                }
                self.finish_request(host, pending, body)
            }
            Err(failed) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "ai-pii-redact: NER service failed after {} attempt(s): {}",
                        failed.attempts, failed.why
                    ),
                );
                match failed.mode {
                    FailureMode::Allow => {
                        self.ner = Some("failed-allowed");
                        self.finish_request(host, pending, body)
                    }
                    FailureMode::Deny => {
                        self.ner = Some("failed-denied");
                        self.outcome = "ner-unavailable";
                        if !self.enforce() {
                            return self.finish_request(host, pending, body);
                        }
                        let err = ApiError::new(
                            503,
                            "server_error",
                            "pii_detector_unavailable",
                            "the PII detection service is unavailable; the request was not sent",
                        );
                        Step::Reply(self.reject(host, err))
                    }
                }
            }
        }
    }

    fn on_response_headers(&mut self, host: &mut dyn Host) -> ResponseMode {
        if !matches!(self.stage, Stage::Forwarded(_)) || !self.enforce() {
            return ResponseMode::PassThrough;
        }
        let summary = self.session.summary(Direction::Request);
        if !summary.is_empty() {
            let _logged = host.set_response_header(&self.config.count_header, Some(&summary));
        }
        let restore = self.config.restore && self.session.has_restorable();
        let redact = self.config.redact_response && !self.unmasked;
        let encoded = host
            .response_header("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
        if !(restore || redact) || !is_success(host) || encoded {
            return ResponseMode::PassThrough;
        }
        let content_type = host.response_header("content-type").unwrap_or_default();
        let max_hold = self.config.max_hold;
        let (mode, response) = if content_type.contains("text/event-stream") {
            (
                ResponseMode::Stream,
                Response::Sse(Box::new(SseRewriter::new(
                    max_hold,
                    self.config.restore_tool_arguments,
                ))),
            )
        } else if content_type.contains("json") {
            (ResponseMode::Whole, Response::Json)
        } else {
            (ResponseMode::PassThrough, Response::None)
        };
        self.stage = Stage::Forwarded(response);
        mode
    }

    fn on_response_chunk(&mut self, _host: &mut dyn Host, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let (mut scrub, response) = self.scrub();
        match response {
            Some(Response::Sse(rw)) => Some(rw.feed(&mut scrub, chunk, end)),
            _ => None,
        }
    }

    fn on_response_whole(&mut self, _host: &mut dyn Host, body: &[u8]) -> WholeResponse {
        let restore_args = self.config.restore_tool_arguments;
        let (mut scrub, response) = self.scrub();
        let body = match response {
            Some(Response::Json) => {
                rewrite_json_response(&mut scrub, body, restore_args).unwrap_or_else(|| body.to_vec())
            }
            _ => body.to_vec(),
        };
        WholeResponse { body, status: None }
    }

    fn on_done(&mut self, host: &mut dyn Host) {
        let mode = self.config.mode.as_str();
        let mut total = 0;
        for ((dir, kind, action), n) in self.session.counts() {
            // Block-typed values are counted as blocked below (in shadow they were also "masked").
            if *dir == Direction::Request && self.config.rules.action(kind) == Action::Block {
                continue;
            }
            total += n;
            host.counter_add(
                &metrics::name(
                    "ai_pii_redact_entities_total",
                    &[
                        ("type", kind),
                        ("action", action.as_str()),
                        ("direction", dir.as_str()),
                        ("mode", mode),
                    ],
                ),
                *n,
            );
        }
        for (kind, n) in &self.blocked {
            total += n;
            host.counter_add(
                &metrics::name(
                    "ai_pii_redact_entities_total",
                    &[
                        ("type", kind),
                        ("action", "block"),
                        ("direction", "request"),
                        ("mode", mode),
                    ],
                ),
                *n,
            );
        }
        if self.session.restored() > 0 {
            host.counter_add("ai_pii_redact_restored_total", self.session.restored());
        }
        if let Some(ner) = self.ner {
            host.counter_add(
                &metrics::name("ai_pii_redact_ner_calls_total", &[("outcome", ner)]),
                1,
            );
        }
        if matches!(self.stage, Stage::Idle) && self.outcome == "clean" && total == 0 {
            return;
        }
        host.counter_add(
            &metrics::name(
                "ai_pii_redact_requests_total",
                &[("outcome", self.outcome), ("mode", mode)],
            ),
            1,
        );
        host.log(
            LogLevel::Debug,
            &format!(
                "ai-pii-redact: mode={mode} outcome={} request=[{}] response=[{}] restored={} ner={}",
                self.outcome,
                self.session.summary(Direction::Request),
                self.session.summary(Direction::Response),
                self.session.restored(),
                self.ner.unwrap_or("-"),
            ),
        );
    }
}

/// One smoke test of the policy against the fake host; real behaviour is proven in Envoy (tests/tests/pii.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use shared::host::{FakeHost, HostKind};

    #[test]
    fn redacts_restores_and_counts() {
        let config = Rc::new(Config::parse(br#"{"actions": {"card": "block"}}"#, &|_| None).unwrap());
        let mut p = PiiRedact::new(Rc::clone(&config));
        let mut host = FakeHost::new(HostKind::Envoy)
            .with_request_headers(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
        assert_eq!(p.on_request_headers(&mut host, true), Step::ReadBody);
        let mut body = Body::new(
            br#"{"model":"m","messages":[{"role":"user","content":"I am bob@example.com"}]}"#.to_vec(),
        );
        assert_eq!(p.on_request_body(&mut host, &mut body), Step::Continue);
        assert!(body.changed());
        let sent: Value = serde_json::from_slice(&body.into_bytes()).unwrap();
        assert_eq!(sent["messages"][0]["content"], "I am <EMAIL_1>");
        host.response_headers.insert(":status".into(), "200".into());
        host.response_headers
            .insert("content-type".into(), "application/json".into());
        assert_eq!(p.on_response_headers(&mut host), ResponseMode::Whole);
        assert_eq!(host.response_headers["x-pii-redacted"], "email=1");
        let answer = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi <EMAIL_1>"}}]}"#;
        let out: Value = serde_json::from_slice(&p.on_response_whole(&mut host, answer).body).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "hi bob@example.com");
        p.on_done(&mut host);
        assert_eq!(
            host.counters
                ["ai_pii_redact_entities_total_type=email_action=mask_direction=request_mode=enforce"],
            1
        );
        assert_eq!(host.counters["ai_pii_redact_restored_total"], 1);

        let mut p = PiiRedact::new(config);
        p.on_request_headers(&mut host, true);
        let mut body = Body::new(
            br#"{"model":"m","messages":[{"role":"user","content":"card 4111 1111 1111 1111"}]}"#.to_vec(),
        );
        let Step::Reply(r) = p.on_request_body(&mut host, &mut body) else {
            panic!("not blocked")
        };
        assert_eq!(r.status, 400);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("card") && !text.contains("4111"), "{text}");
    }
}
