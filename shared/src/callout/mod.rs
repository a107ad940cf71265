//! Calls the gateway makes itself: one spec for an external service, one judgement of an answer.
//!
//! A [`Service`] is the checked config of anything a policy calls while a request waits (the PII NER
//! service, the guard's classifier; wave 2's LLM tasks, audit sinks, caches, stores): upstream,
//! path, headers, timeout, retries, `failure_mode`. [`Service::callout`] starts one request's
//! [`Callout`], which builds the [`HttpCall`], judges each answer ([`judge`]: a status, no status,
//! Kong's `:dispatch_status`, Envoy's own replies), retries what is worth retrying, and hands back
//! the answer or the failure with the failure mode that decides what happens next.
//!
//! [`attempts`] is callout mode for a chain of upstreams (ai-proxy's retries, fallback and circuit
//! breakers), for policies that call a model and answer the client themselves.

pub mod attempts;

use crate::config::{ConfigError, Duration, FailureMode};
use crate::host::{CallResponse, HttpCall, Step, Upstream};
use std::collections::BTreeMap;

/// Most retries any call may have.
pub const MAX_RETRIES: u32 = 5;

/// Why a call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: refused, reset, or dropped midway (a cut stream lands here).
    ConnectFailure,
    Timeout,
    /// A 2xx answer that cannot be read.
    InvalidResponse(String),
    Status {
        status: u16,
        body: Vec<u8>,
    },
}

impl Failure {
    /// A client error (4xx other than 408 and 429) would fail on every upstream: it is final, and it
    /// says nothing about the upstream's health.
    pub fn is_target_fault(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                !((400..500).contains(status) && *status != 408 && *status != 429)
            }
            _ => true,
        }
    }

    /// Worth another try on the same service: no answer, a timeout, 408, 429 or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::ConnectFailure | Failure::Timeout => true,
            Failure::InvalidResponse(_) => false,
            Failure::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
        }
    }

    /// The metric label: `connect-failure`, `timeout`, `invalid-response`, `status-503`.
    pub fn label(&self) -> String {
        match self {
            Failure::ConnectFailure => "connect-failure".into(),
            Failure::Timeout => "timeout".into(),
            Failure::InvalidResponse(_) => "invalid-response".into(),
            Failure::Status { status, .. } => format!("status-{status}"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::ConnectFailure => f.write_str("no answer (connection refused, reset or cut)"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::InvalidResponse(why) => write!(f, "unreadable answer: {why}"),
            Failure::Status { status, .. } => write!(f, "status {status}"),
        }
    }
}

/// The status of a callout's answer, or the failure it stands for. Envoy answers a call that failed
/// before any headers with a local reply of its own (503 `upstream connect error…` or `no healthy
/// upstream`, 504 `upstream request timeout`) and a failure after the headers with no status at all;
/// Kong answers every failure with no status and a `:dispatch_status` saying why.
pub fn answered(resp: &CallResponse) -> Result<u16, Failure> {
    let Some(status) = resp.status else {
        return Err(match resp.header(":dispatch_status") {
            Some(v) if v.contains("timeout") => Failure::Timeout,
            _ => Failure::ConnectFailure,
        });
    };
    let text_starts = |p: &str| resp.body.starts_with(p.as_bytes());
    if status == 504 && text_starts("upstream request timeout") {
        return Err(Failure::Timeout);
    }
    if status == 503 && (text_starts("upstream connect error") || text_starts("no healthy upstream")) {
        return Err(Failure::ConnectFailure);
    }
    Ok(status)
}

/// A 2xx answer, or the failure it is.
pub fn judge(resp: &CallResponse) -> Result<u16, Failure> {
    let status = answered(resp)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(Failure::Status {
            status,
            body: resp.body.clone(),
        })
    }
}

/// A service as new configs write it:
/// `{"upstream": {"cluster", "host"}, "path", "headers", "timeout", "retries", "failure_mode"}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub upstream: Upstream,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub failure_mode: FailureMode,
}

/// The names a config gives a service's fields, for errors: new configs say `upstream` and
/// `timeout`, older ones `endpoint` and `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub upstream: &'static str,
    pub timeout: &'static str,
}

pub const NAMES: Names = Names {
    upstream: "upstream",
    timeout: "timeout",
};

/// The timeout a service gets when its config sets none, and the most it may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub default_ms: u64,
    pub max_ms: u64,
}

/// What the NER service and the classifier have always allowed: 1 s by default, at most 60 s.
pub const TIMEOUTS: Timeouts = Timeouts {
    default_ms: 1000,
    max_ms: 60_000,
};

/// A checked external service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub upstream: Upstream,
    pub path: String,
    /// Sent with every call (lower-case names), after `content-type: application/json`.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// Further tries after a transient failure ([`Failure::is_transient`]).
    pub retries: u32,
    pub failure_mode: FailureMode,
}

/// `host:port` with a port in 1..=65535.
pub fn valid_host(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                // It becomes `:authority`: visible ASCII only, no path.
                && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

impl Service {
    /// Checks a service's config; `field` names it in errors (`ner`, `classifier`).
    pub fn compile(
        field: &str,
        names: Names,
        raw: RawService,
        timeouts: Timeouts,
    ) -> Result<Service, ConfigError> {
        let at = |f: &str| format!("{field}.{f}");
        if raw.upstream.cluster.trim().is_empty() {
            return Err(ConfigError::new(
                at(&format!("{}.cluster", names.upstream)),
                "must not be empty",
            ));
        }
        if !valid_host(&raw.upstream.host) {
            return Err(ConfigError::new(
                at(&format!("{}.host", names.upstream)),
                "must be host:port",
            ));
        }
        if !raw.path.starts_with('/') {
            return Err(ConfigError::new(at("path"), "must start with /"));
        }
        if !raw.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                at("path"),
                "must be a path of visible ASCII characters (percent-encode the rest)",
            ));
        }
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (name, value) in raw.headers {
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !valid {
                return Err(ConfigError::new(
                    at(&format!("headers.{name}")),
                    "is not a valid header name",
                ));
            }
            crate::config::check_header_value(at(&format!("headers.{name}")), &value)?;
            headers.push((name.to_ascii_lowercase(), value));
        }
        let timeout_ms = raw.timeout.map_or(timeouts.default_ms, Duration::as_ms);
        if !(1..=timeouts.max_ms).contains(&timeout_ms) {
            return Err(ConfigError::new(
                at(names.timeout),
                format!("must be 1 to {} ms", timeouts.max_ms),
            ));
        }
        let retries = raw.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(ConfigError::new(
                at("retries"),
                format!("must be 0 to {MAX_RETRIES}"),
            ));
        }
        Ok(Service {
            upstream: raw.upstream,
            path: raw.path,
            headers,
            timeout_ms,
            retries,
            failure_mode: raw.failure_mode,
        })
    }

    /// One request's call to the service: `POST` of a JSON `body`.
    pub fn callout(&self, body: Vec<u8>) -> Callout {
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        headers.push(("content-type".to_string(), "application/json".to_string()));
        headers.extend(self.headers.iter().cloned());
        Callout {
            call: HttpCall {
                upstream: self.upstream.clone(),
                method: "POST".into(),
                path: self.path.clone(),
                headers,
                body,
                timeout_ms: self.timeout_ms,
            },
            retries_left: self.retries,
            attempts: 1,
            failure_mode: self.failure_mode,
        }
    }

    /// One request's `GET` of `path` below the service's path, without a body: for services that take
    /// the whole request in the URL (Webdis). Kong's dispatcher always sends `connection: close`, which
    /// Webdis does not answer when a POST body arrives in a later TCP segment than the headers.
    pub fn get(&self, path: &str) -> Callout {
        let base = self.path.trim_end_matches('/');
        Callout {
            call: HttpCall {
                upstream: self.upstream.clone(),
                method: "GET".into(),
                path: format!("{base}/{path}"),
                headers: self.headers.clone(),
                body: Vec::new(),
                timeout_ms: self.timeout_ms,
            },
            retries_left: self.retries,
            attempts: 1,
            failure_mode: self.failure_mode,
        }
    }
}

/// One request's call to a [`Service`], kept while it is in flight so it can be made again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    call: HttpCall,
    retries_left: u32,
    attempts: u32,
    failure_mode: FailureMode,
}

/// What an answer means for the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Judged {
    /// A 2xx answer, for the policy to read.
    Answer(CallResponse),
    /// A transient failure with retries left: return this step (the same call again).
    Retry(Step),
    /// No usable answer, for good: the failure mode decides.
    Failed(Failed),
}

/// A call that failed for good, with the failure mode of its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub why: Failure,
    pub mode: FailureMode,
    /// Calls made, retries included.
    pub attempts: u32,
}

impl Failed {
    /// `failure_mode: allow`: go on without the service.
    pub fn allowed(&self) -> bool {
        self.mode == FailureMode::Allow
    }
}

impl Callout {
    /// The step that makes the call.
    pub fn step(&self) -> Step {
        Step::call(self.call.clone())
    }

    /// The call as made.
    pub fn call(&self) -> &HttpCall {
        &self.call
    }

    /// Calls made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Judges an answer; a transient failure is retried while retries remain.
    pub fn judge(&mut self, resp: CallResponse) -> Judged {
        match judge(&resp) {
            Ok(_) => Judged::Answer(resp),
            Err(why) if why.is_transient() && self.retries_left > 0 => {
                self.retries_left -= 1;
                self.attempts += 1;
                Judged::Retry(self.step())
            }
            Err(why) => Judged::Failed(self.failed(why)),
        }
    }

    /// A 2xx answer the policy could not read: a failure like the others (not retried).
    pub fn failed(&self, why: Failure) -> Failed {
        Failed {
            why,
            mode: self.failure_mode,
            attempts: self.attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn answer(status: Option<u16>, headers: &[(&str, &str)], body: &str) -> CallResponse {
        CallResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn judges_answers_on_both_hosts() {
        let status = |s: u16, b: &str| Failure::Status {
            status: s,
            body: b.as_bytes().to_vec(),
        };
        let cases = [
            (answer(Some(200), &[], "{}"), Ok(200)),
            (answer(Some(204), &[], ""), Ok(204)),
            (answer(Some(500), &[], "boom"), Err(status(500, "boom"))),
            (answer(Some(404), &[], ""), Err(status(404, ""))),
            // Envoy's own replies for a call that never got an answer.
            (
                answer(
                    Some(503),
                    &[],
                    "upstream connect error or disconnect/reset before headers",
                ),
                Err(Failure::ConnectFailure),
            ),
            (
                answer(Some(503), &[], "no healthy upstream"),
                Err(Failure::ConnectFailure),
            ),
            (
                answer(Some(504), &[], "upstream request timeout"),
                Err(Failure::Timeout),
            ),
            (
                answer(Some(503), &[], "overloaded"),
                Err(status(503, "overloaded")),
            ),
            // Envoy after the headers; Kong always: no status.
            (answer(None, &[], ""), Err(Failure::ConnectFailure)),
            (
                answer(None, &[(":dispatch_status", "timeout")], ""),
                Err(Failure::Timeout),
            ),
            (
                answer(None, &[(":Dispatch_Status", "broken connection")], ""),
                Err(Failure::ConnectFailure),
            ),
        ];
        for (resp, want) in cases {
            assert_eq!(judge(&resp), want, "{resp:?}");
        }
    }

    #[test]
    fn failure_kinds() {
        let s = |status| Failure::Status { status, body: vec![] };
        let cases = [
            (Failure::ConnectFailure, true, true, "connect-failure"),
            (Failure::Timeout, true, true, "timeout"),
            (
                Failure::InvalidResponse("x".into()),
                true,
                false,
                "invalid-response",
            ),
            (s(500), true, true, "status-500"),
            (s(429), true, true, "status-429"),
            (s(408), true, true, "status-408"),
            (s(400), false, false, "status-400"),
            (s(401), false, false, "status-401"),
        ];
        for (f, target_fault, transient, label) in cases {
            assert_eq!(
                (f.is_target_fault(), f.is_transient(), f.label().as_str()),
                (target_fault, transient, label),
                "{f:?}"
            );
        }
    }

    fn raw(v: serde_json::Value) -> RawService {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_the_spec() {
        let s = Service::compile(
            "svc",
            NAMES,
            raw(json!({"upstream": {"cluster": "c", "host": "h:80"}, "path": "/x",
                       "headers": {"X-Key": "k"}, "timeout": "2s", "retries": 2, "failure_mode": "allow"})),
            TIMEOUTS,
        )
        .unwrap();
        assert_eq!(s.timeout_ms, 2000);
        assert_eq!(s.retries, 2);
        assert_eq!(s.headers, vec![("x-key".to_string(), "k".to_string())]);
        assert_eq!(s.failure_mode, FailureMode::Allow);
        let d = Service::compile(
            "svc",
            NAMES,
            raw(json!({"upstream": {"cluster": "c", "host": "h:80"}, "path": "/x"})),
            TIMEOUTS,
        )
        .unwrap();
        assert_eq!(
            (d.timeout_ms, d.retries, d.failure_mode),
            (1000, 0, FailureMode::Deny)
        );

        let old = Names {
            upstream: "endpoint",
            timeout: "timeout_ms",
        };
        let cases = [
            (
                json!({"upstream": {"cluster": " ", "host": "h:1"}, "path": "/"}),
                NAMES,
                "svc.upstream.cluster",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h"}, "path": "/"}),
                NAMES,
                "svc.upstream.host",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:0"}, "path": "/"}),
                old,
                "svc.endpoint.host",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "x"}),
                NAMES,
                "svc.path",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "timeout": 0}),
                NAMES,
                "svc.timeout",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "timeout": "61s"}),
                old,
                "svc.timeout_ms",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "retries": 6}),
                NAMES,
                "svc.retries",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "headers": {"a b": "x"}}),
                NAMES,
                "svc.headers.a b",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "headers": {"x-key": "k\r\nx-evil: 1"}}),
                NAMES,
                "svc.headers.x-key",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/x y"}),
                NAMES,
                "svc.path",
            ),
            (
                json!({"upstream": {"cluster": "c", "host": "h\r\nx: y:1"}, "path": "/"}),
                NAMES,
                "svc.upstream.host",
            ),
        ];
        for (v, names, field) in cases {
            let err = Service::compile("svc", names, raw(v.clone()), TIMEOUTS).unwrap_err();
            assert_eq!(err.field, field, "{v}");
        }
        assert!(serde_json::from_value::<RawService>(
            json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/", "bogus": 1})
        )
        .is_err());
    }

    #[test]
    fn retries_transient_failures_then_applies_the_failure_mode() {
        let service = Service::compile(
            "svc",
            NAMES,
            raw(
                json!({"upstream": {"cluster": "c", "host": "h:1"}, "path": "/p", "retries": 1,
                       "headers": {"authorization": "Bearer k"}}),
            ),
            TIMEOUTS,
        )
        .unwrap();
        let mut c = service.callout(b"{}".to_vec());
        let Step::Call(calls) = c.step() else { panic!() };
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, "/p");
        assert_eq!(calls[0].timeout_ms, 1000);
        assert_eq!(
            calls[0].headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("authorization".to_string(), "Bearer k".to_string())
            ]
        );
        assert_eq!(c.judge(answer(None, &[], "")), Judged::Retry(c.step()));
        assert_eq!(c.attempts(), 2);
        let Judged::Failed(f) = c.judge(answer(Some(503), &[], "busy")) else {
            panic!()
        };
        assert_eq!((f.attempts, f.allowed()), (2, false));
        assert_eq!(f.why.label(), "status-503");

        // A client error is not retried; a 2xx is the answer.
        let mut c = service.callout(Vec::new());
        assert!(matches!(c.judge(answer(Some(400), &[], "")), Judged::Failed(_)));
        let mut c = service.callout(Vec::new());
        assert!(matches!(c.judge(answer(Some(200), &[], "ok")), Judged::Answer(r) if r.body == b"ok"));
        assert_eq!(c.failed(Failure::InvalidResponse("x".into())).attempts, 1);
    }
}
