//! Callout mode over a chain of upstreams: the filter calls them itself, judges each whole answer,
//! retries on the same upstream or moves down the chain, and answers the client once it has a good
//! answer or the chain is used up.
//!
//! The policy keeps one [`Attempts`] per request and asks it for the [`Next`] call; it judges each
//! answer itself (translation is its business) and hands the verdict to [`Attempts::record`], which
//! counts it (`<filter>_attempts_total{target,outcome}`), feeds the upstream's circuit breaker, and
//! decides whether the chain goes on. Configured per upstream by [`Resilience`]
//! (`timeout_ms`, `retries`, `retry_on`, `breaker`).

use super::{Failure, MAX_RETRIES};
use crate::breaker::{Admit, Breaker, Circuit, RawBreaker};
use crate::config::{ConfigError, Duration};
use crate::host::{Host, HttpCall, LogLevel};
use crate::metrics;

/// Deadline for a whole answer when the config sets none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Timeouts, retries and the circuit breaker as configured. At the top level of a config it is the
/// default for every upstream; an upstream's own block overrides it field by field.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    #[serde(default)]
    timeout_ms: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_on: Option<Vec<String>>,
    #[serde(default)]
    breaker: Option<RawBreaker>,
}

/// What counts as a failure worth another try on the same upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// No answer at all: connection refused or reset, or the host could not make the call.
    ConnectFailure,
    /// The upstream did not answer within `timeout_ms`.
    Timeout,
    /// A 2xx answer that cannot be read (bad JSON, a stream without its end).
    InvalidResponse,
    Status(u16),
}

impl RetryOn {
    fn parse(s: &str) -> Option<RetryOn> {
        match s {
            "connect_failure" => Some(RetryOn::ConnectFailure),
            "timeout" => Some(RetryOn::Timeout),
            "invalid_response" => Some(RetryOn::InvalidResponse),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|c| (400..600).contains(c))
                .map(RetryOn::Status),
        }
    }

    fn matches(self, failure: &Failure) -> bool {
        match (self, failure) {
            (RetryOn::ConnectFailure, Failure::ConnectFailure) | (RetryOn::Timeout, Failure::Timeout) => true,
            (RetryOn::InvalidResponse, Failure::InvalidResponse(_)) => true,
            (RetryOn::Status(s), Failure::Status { status, .. }) => s == *status,
            _ => false,
        }
    }
}

/// An upstream's checked resilience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    /// Deadline for a whole answer from this upstream, per attempt.
    pub timeout_ms: u64,
    /// Further attempts on the same upstream before moving on.
    pub retries: u32,
    pub retry_on: Vec<RetryOn>,
    pub breaker: Option<Breaker>,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: 0,
            retry_on: default_retry_on(),
            breaker: None,
        }
    }
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![
        RetryOn::ConnectFailure,
        RetryOn::Timeout,
        RetryOn::Status(429),
        RetryOn::Status(500),
        RetryOn::Status(502),
        RetryOn::Status(503),
        RetryOn::Status(504),
    ]
}

impl Resilience {
    /// An upstream's resilience: each field from its `own` block if set there, else from `global`.
    /// `field` names the block in errors (`targets[1].resilience`).
    pub fn compile(
        field: &str,
        own: Option<&RawResilience>,
        global: Option<&RawResilience>,
    ) -> Result<Self, ConfigError> {
        let pick = |f: fn(&RawResilience) -> bool| own.filter(|r| f(r)).or(global);
        let timeout_ms = pick(|r| r.timeout_ms.is_some())
            .and_then(|r| r.timeout_ms)
            .map_or(DEFAULT_TIMEOUT_MS, Duration::as_ms);
        if timeout_ms == 0 {
            return Err(ConfigError::new(
                format!("{field}.timeout_ms"),
                "must be at least 1",
            ));
        }
        let retries = pick(|r| r.retries.is_some()).and_then(|r| r.retries).unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(ConfigError::new(format!("{field}.retries"), "must be 0 to 5"));
        }
        let retry_on = match pick(|r| r.retry_on.is_some()).and_then(|r| r.retry_on.as_ref()) {
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, s) in list.iter().enumerate() {
                    let Some(c) = RetryOn::parse(s) else {
                        return Err(ConfigError::new(
                            format!("{field}.retry_on[{i}]"),
                            format!(
                                "`{s}` is not connect_failure, timeout, invalid_response or a 4xx/5xx status"
                            ),
                        ));
                    };
                    out.push(c);
                }
                out
            }
            None => default_retry_on(),
        };
        let breaker = match pick(|r| r.breaker.is_some()).and_then(|r| r.breaker.clone()) {
            Some(b) => Some(Breaker::compile(&format!("{field}.breaker"), b)?),
            None => None,
        };
        Ok(Resilience {
            timeout_ms,
            retries,
            retry_on,
            breaker,
        })
    }
}

/// How the chain sees one upstream.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its name: metric labels, logs, the breaker's key.
    pub name: &'a str,
    pub resilience: &'a Resilience,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Call this upstream (an index into the policy's list).
    Call { upstream: usize, call: HttpCall },
    /// The chain is used up.
    Exhausted(Exhausted),
}

/// How a used-up chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    /// The last failure is the answer (a client error is, even when a breaker was skipped).
    Failed { upstream: usize, failure: Failure },
    /// Every upstream left was skipped by its open breaker: try again in this many seconds.
    Unavailable { retry_after_s: u64 },
}

/// Where one request stands in its chain.
#[derive(Debug)]
pub struct Attempts {
    /// The filter's name (`ai-proxy`): metric names, logs, breaker keys.
    filter: &'static str,
    chain: Vec<usize>,
    pos: usize,
    /// Retries left on the upstream at `pos`; `None` until it is first tried.
    retries_left: Option<u32>,
    /// Calls made so far.
    count: u32,
    last_failure: Option<(usize, Failure)>,
    /// Earliest time an open breaker on this chain lets a probe through.
    reopen_at: Option<u64>,
}

impl Attempts {
    /// A chain of upstreams (indexes into the policy's list), tried in this order.
    pub fn new(filter: &'static str, chain: Vec<usize>) -> Attempts {
        Attempts {
            filter,
            chain,
            pos: 0,
            retries_left: None,
            count: 0,
            last_failure: None,
            reopen_at: None,
        }
    }

    /// Calls made so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The first upstream of the chain.
    pub fn first(&self) -> Option<usize> {
        self.chain.first().copied()
    }

    fn metric(&self, what: &str) -> String {
        format!("{}_{what}", self.filter.replace('-', "_"))
    }

    fn advance(&mut self) {
        self.pos += 1;
        self.retries_left = None;
    }

    /// The next call, from where the chain stands: upstreams whose breaker is open are skipped
    /// (counted in `<filter>_breaker_skipped_total{target}`), and so are those that cannot take the
    /// request (`prepare` fails; its failure is remembered as the last one). `prepare` builds the call
    /// for an upstream; its timeout is set from the upstream's resilience.
    pub fn next<'a>(
        &mut self,
        host: &mut dyn Host,
        candidate: impl Fn(usize) -> Option<Candidate<'a>>,
        mut prepare: impl FnMut(usize) -> Result<HttpCall, Failure>,
    ) -> Next {
        let now = host.now_ms();
        while let Some(&index) = self.chain.get(self.pos) {
            let Some(c) = candidate(index) else {
                self.advance();
                continue;
            };
            if c.resilience.breaker.is_some() {
                let circuit = Circuit {
                    filter: self.filter,
                    target: c.name,
                };
                if let Admit::No { retry_at_ms } = circuit.admit(host, now, c.resilience.timeout_ms) {
                    host.counter_add(
                        &metrics::name(&self.metric("breaker_skipped_total"), &[("target", c.name)]),
                        1,
                    );
                    self.reopen_at = Some(self.reopen_at.map_or(retry_at_ms, |r| r.min(retry_at_ms)));
                    self.advance();
                    continue;
                }
            }
            match prepare(index) {
                Ok(mut call) => {
                    call.timeout_ms = c.resilience.timeout_ms;
                    self.retries_left.get_or_insert(c.resilience.retries);
                    self.count += 1;
                    return Next::Call {
                        upstream: index,
                        call,
                    };
                }
                // This upstream cannot take the request (e.g. a feature its provider lacks): try the next.
                Err(failure) => {
                    self.last_failure = Some((index, failure));
                    self.advance();
                }
            }
        }
        // A client error is final and says nothing of the upstreams: it is the answer even when a
        // breaker was skipped on the way.
        let final_client_error = self
            .last_failure
            .as_ref()
            .is_some_and(|(_, f)| !f.is_target_fault());
        Next::Exhausted(match (&self.last_failure, self.reopen_at) {
            (Some((upstream, failure)), reopen) if reopen.is_none() || final_client_error => {
                Exhausted::Failed {
                    upstream: *upstream,
                    failure: failure.clone(),
                }
            }
            (_, reopen_at) => Exhausted::Unavailable {
                retry_after_s: reopen_at.map_or(1, |r| r.saturating_sub(now).div_ceil(1000).max(1)),
            },
        })
    }

    /// Records the outcome of the call just made to `upstream`: counted, fed to its breaker (client
    /// errors count for neither side), logged when it failed. `Some` is the success to answer with
    /// (`<filter>_fallbacks_total{from,to}` counted when it came from another upstream than the
    /// first); `None`: ask for [`Attempts::next`].
    pub fn record<T>(
        &mut self,
        host: &mut dyn Host,
        upstream: usize,
        c: Candidate<'_>,
        first: Option<&str>,
        result: Result<T, Failure>,
    ) -> Option<T> {
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(f) => f.label(),
        };
        host.counter_add(
            &metrics::name(
                &self.metric("attempts_total"),
                &[("target", c.name), ("outcome", &outcome)],
            ),
            1,
        );
        if let Some(b) = &c.resilience.breaker {
            if result.as_ref().err().is_none_or(Failure::is_target_fault) {
                let circuit = Circuit {
                    filter: self.filter,
                    target: c.name,
                };
                let now = host.now_ms();
                circuit.record(host, b, now, result.is_ok());
            }
        }
        let failure = match result {
            Ok(success) => {
                if let Some(first) = first.filter(|f| *f != c.name) {
                    host.counter_add(
                        &metrics::name(
                            &self.metric("fallbacks_total"),
                            &[("from", first), ("to", c.name)],
                        ),
                        1,
                    );
                }
                return Some(success);
            }
            Err(failure) => failure,
        };
        host.log(
            LogLevel::Warn,
            &format!(
                "{}: attempt {} on target={} failed: {}",
                self.filter, self.count, c.name, outcome
            ),
        );
        let retries_left = self.retries_left.unwrap_or(0);
        let retry = c.resilience.retry_on.iter().any(|r| r.matches(&failure)) && retries_left > 0;
        let final_client_error = !failure.is_target_fault();
        self.last_failure = Some((upstream, failure));
        if final_client_error {
            self.pos = self.chain.len();
        } else if retry {
            self.retries_left = Some(retries_left - 1);
        } else {
            self.advance();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind, Upstream};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn call(i: usize) -> Result<HttpCall, Failure> {
        Ok(HttpCall {
            upstream: Upstream {
                cluster: format!("c{i}"),
                host: "h:1".into(),
            },
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            body: vec![],
            timeout_ms: 0,
        })
    }

    fn status(s: u16) -> Failure {
        Failure::Status {
            status: s,
            body: vec![],
        }
    }

    struct Chain {
        names: Vec<String>,
        resilience: Vec<Resilience>,
    }

    impl Chain {
        fn new(resilience: Vec<Resilience>) -> Chain {
            Chain {
                names: (0..resilience.len()).map(|i| format!("t{i}")).collect(),
                resilience,
            }
        }
        fn candidate(&self, i: usize) -> Option<Candidate<'_>> {
            Some(Candidate {
                name: self.names.get(i)?,
                resilience: self.resilience.get(i)?,
            })
        }
    }

    /// Plays a chain against answers; returns the upstreams called and how it ended.
    fn play(
        chain: &Chain,
        host: &mut FakeHost,
        answers: &[Result<(), Failure>],
    ) -> (Vec<usize>, Result<usize, Exhausted>) {
        let mut a = Attempts::new("ai-proxy", (0..chain.names.len()).collect());
        let mut called = Vec::new();
        let mut answers = answers.iter();
        loop {
            let (upstream, call) = match a.next(host, |i| chain.candidate(i), call) {
                Next::Call { upstream, call } => (upstream, call),
                Next::Exhausted(e) => return (called, Err(e)),
            };
            assert_eq!(call.timeout_ms, chain.resilience[upstream].timeout_ms);
            called.push(upstream);
            let answer = answers.next().cloned().unwrap_or(Ok(()));
            let first = chain.names.first().map(String::as_str);
            if a.record(host, upstream, chain.candidate(upstream).unwrap(), first, answer)
                .is_some()
            {
                return (called, Ok(upstream));
            }
        }
    }

    #[test]
    fn retries_falls_back_and_stops_on_client_errors() {
        let retry_once = Resilience {
            retries: 1,
            timeout_ms: 50,
            ..Resilience::default()
        };
        let chain = Chain::new(vec![retry_once, Resilience::default()]);
        type Case = (Vec<Result<(), Failure>>, Vec<usize>, Result<usize, Exhausted>);
        let cases: Vec<Case> = vec![
            (vec![Ok(())], vec![0], Ok(0)),
            (vec![Err(status(503)), Ok(())], vec![0, 0], Ok(0)),
            (
                vec![Err(status(503)), Err(Failure::Timeout), Ok(())],
                vec![0, 0, 1],
                Ok(1),
            ),
            // Not in retry_on: straight to the next upstream.
            (
                vec![Err(Failure::InvalidResponse("x".into())), Ok(())],
                vec![0, 1],
                Ok(1),
            ),
            // A client error ends the chain at once.
            (
                vec![Err(status(400))],
                vec![0],
                Err(Exhausted::Failed {
                    upstream: 0,
                    failure: status(400),
                }),
            ),
            (
                vec![Err(status(500)), Err(status(500)), Err(status(502))],
                vec![0, 0, 1],
                Err(Exhausted::Failed {
                    upstream: 1,
                    failure: status(502),
                }),
            ),
        ];
        for (answers, want_called, want_end) in cases {
            let mut host = FakeHost::new(HostKind::Envoy);
            let (called, end) = play(&chain, &mut host, &answers);
            assert_eq!((&called, &end), (&want_called, &want_end), "{answers:?}");
        }
        let mut host = FakeHost::new(HostKind::Envoy);
        let (_, end) = play(&chain, &mut host, &[Err(status(500)), Err(status(500))]);
        assert_eq!(end, Ok(1));
        assert_eq!(
            host.counters["ai_proxy_attempts_total_target=t0_outcome=status-500"],
            2
        );
        assert_eq!(host.counters["ai_proxy_attempts_total_target=t1_outcome=ok"], 1);
        assert_eq!(host.counters["ai_proxy_fallbacks_total_from=t0_to=t1"], 1);
        assert!(host.logged(
            LogLevel::Warn,
            "ai-proxy: attempt 2 on target=t0 failed: status-500"
        ));
    }

    #[test]
    fn open_breakers_are_skipped_and_reported() {
        let breaker = Breaker {
            consecutive_failures: Some(1),
            error_rate: None,
            cooldown_ms: 10_000,
            store: crate::redis::Store::Local,
        };
        let guarded = Resilience {
            breaker: Some(breaker),
            ..Resilience::default()
        };
        let chain = Chain::new(vec![guarded.clone(), guarded]);
        let mut host = FakeHost::new(HostKind::Kong);
        let (called, end) = play(&chain, &mut host, &[Err(status(500)), Err(status(500))]);
        assert_eq!(called, vec![0, 1]);
        assert!(matches!(end, Err(Exhausted::Failed { upstream: 1, .. })));
        // Both breakers are open now: nothing is called, and the answer says when to come back.
        host.now_ms += 2500;
        let (called, end) = play(&chain, &mut host, &[]);
        assert_eq!(called, Vec::<usize>::new());
        assert_eq!(end, Err(Exhausted::Unavailable { retry_after_s: 8 }));
        assert_eq!(host.counters["ai_proxy_breaker_skipped_total_target=t0"], 1);
        // A client error after a skipped breaker is still the answer.
        let chain = Chain::new(vec![chain.resilience[0].clone(), Resilience::default()]);
        let (called, end) = play(&chain, &mut host, &[Err(status(404))]);
        assert_eq!(called, vec![1]);
        assert!(matches!(end, Err(Exhausted::Failed { upstream: 1, failure }) if failure == status(404)));
    }

    #[test]
    fn upstreams_that_cannot_take_the_request_are_passed_over() {
        let chain = Chain::new(vec![Resilience::default(), Resilience::default()]);
        let mut host = FakeHost::new(HostKind::Envoy);
        let mut a = Attempts::new("ai-proxy", vec![0, 1]);
        let refuse_first = |i: usize| if i == 0 { Err(status(400)) } else { call(i) };
        let Next::Call { upstream, .. } = a.next(&mut host, |i| chain.candidate(i), refuse_first) else {
            panic!()
        };
        assert_eq!((upstream, a.count()), (1, 1));
        let mut a = Attempts::new("ai-proxy", vec![0]);
        assert_eq!(
            a.next(&mut host, |i| chain.candidate(i), |_| Err(status(400))),
            Next::Exhausted(Exhausted::Failed {
                upstream: 0,
                failure: status(400)
            })
        );
    }
}
