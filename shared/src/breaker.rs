//! A circuit breaker per upstream, shared by every worker through shared data with CAS.
//!
//! State lives under `<filter>:cb:<target>` (ai-proxy: `ai-proxy:cb:<target>`) as text (`c,<failures>,
//! <window start>,<calls>,<errors>`, `o,<until_ms>`, `h,<until_ms>`): closed with its counts; open until
//! a time; half-open while one probe is out. Every change goes through [`update_shared`], the one CAS
//! loop; if the store stays contended or fails, traffic goes through (a breaker must never block on
//! itself).
//!
//! With `store: {"type": "redis", …}` an open breaker is shared with the fleet: [`sync::BreakerSync`]
//! publishes each open state to Redis from the root timer and opens here what another gateway opened.

pub mod sync;

use crate::config::{ConfigError, Duration};
use crate::host::{update_shared, Host, LogLevel};
use crate::metrics;
use crate::redis::{RawStore, Store, BREAKERS};

/// A breaker's config (`resilience.breaker`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    error_rate: Option<RawErrorRate>,
    cooldown_ms: Duration,
    #[serde(default)]
    store: Option<RawStore>,
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrorRate {
    percent: u32,
    min_requests: u32,
    window_ms: Duration,
}

/// Opens when, within a window of `window_ms`, at least `min_requests` calls were made and at least
/// `percent` of them failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRate {
    pub percent: u32,
    pub min_requests: u32,
    pub window_ms: u64,
}

/// Opens on either rule; after `cooldown_ms` one probe may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub consecutive_failures: Option<u32>,
    pub error_rate: Option<ErrorRate>,
    pub cooldown_ms: u64,
    /// `redis`: open states are shared with the other gateways.
    pub store: Store,
}

impl Breaker {
    /// Checks a breaker's config; `field` names it in errors (`resilience.breaker`).
    pub fn compile(field: &str, b: RawBreaker) -> Result<Self, ConfigError> {
        let store = match b.store {
            Some(s) => Store::compile(&format!("{field}.store"), s, BREAKERS)?,
            None => Store::Local,
        };
        if b.consecutive_failures.is_none() && b.error_rate.is_none() {
            return Err(ConfigError::new(
                field,
                "needs consecutive_failures, error_rate, or both",
            ));
        }
        if b.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                format!("{field}.consecutive_failures"),
                "must be at least 1",
            ));
        }
        if b.cooldown_ms.as_ms() == 0 {
            return Err(ConfigError::new(
                format!("{field}.cooldown_ms"),
                "must be at least 1",
            ));
        }
        let error_rate = match b.error_rate {
            Some(r) => {
                let at = |f: &str| format!("{field}.error_rate.{f}");
                if !(1..=100).contains(&r.percent) {
                    return Err(ConfigError::new(at("percent"), "must be 1 to 100"));
                }
                if r.min_requests == 0 {
                    return Err(ConfigError::new(at("min_requests"), "must be at least 1"));
                }
                if r.window_ms.as_ms() == 0 {
                    return Err(ConfigError::new(at("window_ms"), "must be at least 1"));
                }
                Some(ErrorRate {
                    percent: r.percent,
                    min_requests: r.min_requests,
                    window_ms: r.window_ms.as_ms(),
                })
            }
            None => None,
        };
        Ok(Breaker {
            consecutive_failures: b.consecutive_failures,
            error_rate,
            cooldown_ms: b.cooldown_ms.as_ms(),
            store,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Counting: consecutive failures, and calls and failures in the current error-rate window.
    Closed {
        failures: u32,
        window_start_ms: u64,
        calls: u32,
        errors: u32,
    },
    Open {
        until_ms: u64,
    },
    /// One probe is out; others are refused until it answers or `until_ms` passes (a lost probe).
    HalfOpen {
        until_ms: u64,
    },
}

impl State {
    fn closed(failures: u32, window_start_ms: u64, calls: u32, errors: u32) -> State {
        State::Closed {
            failures,
            window_start_ms,
            calls,
            errors,
        }
    }

    fn encode(self) -> String {
        match self {
            State::Closed {
                failures,
                window_start_ms,
                calls,
                errors,
            } => {
                format!("c,{failures},{window_start_ms},{calls},{errors}")
            }
            State::Open { until_ms } => format!("o,{until_ms}"),
            State::HalfOpen { until_ms } => format!("h,{until_ms}"),
        }
    }

    /// Anything unreadable counts as closed: fail open.
    fn decode(raw: Option<&[u8]>) -> State {
        let text = raw.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
        let mut parts = text.split(',');
        let kind = parts.next().unwrap_or("");
        let mut n = || parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        match kind {
            "o" => State::Open { until_ms: n() },
            "h" => State::HalfOpen { until_ms: n() },
            "c" => {
                let (failures, start, calls, errors) = (small(n()), n(), small(n()), small(n()));
                State::closed(failures, start, calls, errors)
            }
            _ => State::closed(0, 0, 0, 0),
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// The breaker was open and its cooldown is over: this request is the one probe.
    Probe,
    /// Open: try again at this time.
    No {
        retry_at_ms: u64,
    },
}

/// The breaker of one upstream of one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit<'a> {
    /// The filter's name (`ai-proxy`): the key's prefix, the metrics' and the logs'.
    pub filter: &'a str,
    /// The upstream's name, as in metric labels.
    pub target: &'a str,
}

impl Circuit<'_> {
    fn key(&self) -> String {
        format!("{}:cb:{}", self.filter, self.target)
    }

    /// Computes the next state from the stored one and writes it; `next` returns the value to hand
    /// back and the new state, or `None` when nothing needs writing. On a store failure: `fallback`.
    fn update<T>(&self, host: &mut dyn Host, fallback: T, next: impl Fn(State) -> (T, Option<State>)) -> T {
        let result = update_shared(host, &self.key(), |raw| {
            let before = State::decode(raw);
            let (out, after) = next(before);
            ((out, before, after), after.map(|s| s.encode().into_bytes()))
        });
        match result {
            Ok((out, before, after)) => {
                if let Some(after) = after.filter(|a| a.name() != before.name()) {
                    self.transition(host, after, "");
                }
                out
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: breaker state for `{}` could not be updated ({e}); letting traffic through",
                        self.filter, self.target
                    ),
                );
                fallback
            }
        }
    }

    fn transition(&self, host: &mut dyn Host, to: State, note: &str) {
        host.counter_add(
            &metrics::name(
                &format!("{}_breaker_transitions_total", self.filter.replace('-', "_")),
                &[("target", self.target), ("state", to.name())],
            ),
            1,
        );
        host.log(
            LogLevel::Warn,
            &format!(
                "{}: breaker target={} state={}{note}",
                self.filter,
                self.target,
                to.name()
            ),
        );
    }

    /// May a request go to the upstream now? `probe_ms` bounds how long a probe may hold the
    /// half-open state.
    pub fn admit(&self, host: &mut dyn Host, now_ms: u64, probe_ms: u64) -> Admit {
        self.update(host, Admit::Yes, |state| match state {
            State::Closed { .. } => (Admit::Yes, None),
            State::Open { until_ms } | State::HalfOpen { until_ms } if now_ms < until_ms => (
                Admit::No {
                    retry_at_ms: until_ms,
                },
                None,
            ),
            // Cooldown over (or the last probe was lost): the worker whose write wins sends the probe.
            State::Open { .. } | State::HalfOpen { .. } => (
                Admit::Probe,
                Some(State::HalfOpen {
                    until_ms: now_ms.saturating_add(probe_ms),
                }),
            ),
        })
    }

    /// Records the outcome of a call.
    pub fn record(&self, host: &mut dyn Host, breaker: &Breaker, now_ms: u64, success: bool) {
        self.update(host, (), |state| {
            ((), next_state(state, breaker, now_ms, success))
        })
    }
}

impl Circuit<'_> {
    /// Until when the breaker is open here (not half-open: a probe is out), if it is open at `now_ms`.
    pub fn open_until(&self, host: &dyn Host, now_ms: u64) -> Option<u64> {
        match State::decode(host.shared_get(&self.key()).0.as_deref()) {
            State::Open { until_ms } if until_ms > now_ms => Some(until_ms),
            _ => None,
        }
    }

    /// Another gateway opened this upstream's breaker until `until_ms`: open it here too, unless it is
    /// already open as long or a probe of ours is out (its answer decides). Returns whether it changed.
    pub fn adopt(&self, host: &mut dyn Host, until_ms: u64, now_ms: u64) -> bool {
        if until_ms <= now_ms {
            return false;
        }
        let result = update_shared(host, &self.key(), |raw| match State::decode(raw) {
            State::Closed { .. } => (Some(true), Some(State::Open { until_ms }.encode().into_bytes())),
            State::Open { until_ms: u } if u < until_ms => {
                (Some(false), Some(State::Open { until_ms }.encode().into_bytes()))
            }
            _ => (None, None),
        });
        match result {
            Ok(Some(was_closed)) => {
                if was_closed {
                    self.transition(host, State::Open { until_ms }, " (opened by another gateway)");
                }
                true
            }
            _ => false,
        }
    }
}

/// The state after one call's outcome, or `None` when nothing changes.
fn next_state(state: State, breaker: &Breaker, now_ms: u64, success: bool) -> Option<State> {
    let open = State::Open {
        until_ms: now_ms.saturating_add(breaker.cooldown_ms),
    };
    let State::Closed {
        failures,
        window_start_ms,
        calls,
        errors,
    } = state
    else {
        return match state {
            // A successful probe closes; a failed one reopens for another cooldown.
            State::HalfOpen { .. } if success => Some(State::closed(0, now_ms, 0, 0)),
            State::HalfOpen { .. } => Some(open),
            // Admitted before the breaker opened: leave the cooldown alone.
            _ => None,
        };
    };
    let failures = if success { 0 } else { failures.saturating_add(1) };
    let by_count = breaker.consecutive_failures.is_some_and(|n| failures >= n);
    let Some(rate) = breaker.error_rate else {
        // Without a window, a success on a clean record needs no write.
        if success && state == State::closed(0, window_start_ms, calls, errors) {
            return None;
        }
        return Some(if by_count {
            open
        } else {
            State::closed(failures, 0, 0, 0)
        });
    };
    let fresh = now_ms.saturating_sub(window_start_ms) >= rate.window_ms;
    let (start, calls, errors) = if fresh {
        (now_ms, 0, 0)
    } else {
        (window_start_ms, calls, errors)
    };
    let calls = calls.saturating_add(1);
    let errors = errors.saturating_add(u32::from(!success));
    let by_rate =
        calls >= rate.min_requests && u64::from(errors) * 100 >= u64::from(rate.percent) * u64::from(calls);
    Some(if by_count || by_rate {
        open
    } else {
        State::closed(failures, start, calls, errors)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T: Circuit<'static> = Circuit {
        filter: "ai-proxy",
        target: "t",
    };

    fn admit(h: &mut FakeHost, target: &str, now: u64, probe: u64) -> Admit {
        Circuit { target, ..T }.admit(h, now, probe)
    }

    fn record(h: &mut FakeHost, target: &str, b: &Breaker, now: u64, ok: bool) {
        Circuit { target, ..T }.record(h, b, now, ok)
    }

    fn key(target: &str) -> String {
        Circuit { target, ..T }.key()
    }

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker {
            consecutive_failures: Some(2),
            error_rate: None,
            cooldown_ms: 1000,
            store: Store::Local,
        };
        let mut h = FakeHost::new(HostKind::Kong);
        assert_eq!(admit(&mut h, "t", 0, 500), Admit::Yes);
        record(&mut h, "t", &b, 0, false);
        assert_eq!(
            admit(&mut h, "t", 1, 500),
            Admit::Yes,
            "one failure is below the threshold"
        );
        record(&mut h, "t", &b, 10, false);
        assert_eq!(admit(&mut h, "t", 20, 500), Admit::No { retry_at_ms: 1010 });
        assert_eq!(admit(&mut h, "t", 1010, 500), Admit::Probe);
        assert_eq!(
            admit(&mut h, "t", 1011, 500),
            Admit::No { retry_at_ms: 1510 },
            "only one probe"
        );
        record(&mut h, "t", &b, 1100, false);
        assert_eq!(
            admit(&mut h, "t", 1200, 500),
            Admit::No { retry_at_ms: 2100 },
            "failed probe reopens"
        );
        assert_eq!(admit(&mut h, "t", 2100, 500), Admit::Probe);
        record(&mut h, "t", &b, 2150, true);
        assert_eq!(admit(&mut h, "t", 2160, 500), Admit::Yes);
        assert_eq!(
            h.counters["ai_proxy_breaker_transitions_total_target=t_state=open"],
            2
        );
        assert_eq!(
            h.counters["ai_proxy_breaker_transitions_total_target=t_state=half-open"],
            2
        );
        assert_eq!(
            h.counters["ai_proxy_breaker_transitions_total_target=t_state=closed"],
            1
        );
    }

    #[test]
    fn error_rate_over_a_window_opens() {
        let rate = ErrorRate {
            percent: 50,
            min_requests: 4,
            window_ms: 1000,
        };
        let b = Breaker {
            consecutive_failures: None,
            error_rate: Some(rate),
            cooldown_ms: 100,
            store: Store::Local,
        };
        let mut h = FakeHost::new(HostKind::Envoy);
        // Alternating outcomes never make two failures in a row, but half of the calls fail.
        for (i, ok) in [true, false, true].into_iter().enumerate() {
            record(&mut h, "t", &b, i as u64, ok);
            assert_eq!(admit(&mut h, "t", i as u64, 10), Admit::Yes);
        }
        record(&mut h, "t", &b, 3, false);
        assert_eq!(admit(&mut h, "t", 4, 10), Admit::No { retry_at_ms: 103 });
        // In a new window old calls no longer count.
        let mut h = FakeHost::new(HostKind::Envoy);
        for i in 0..3 {
            record(&mut h, "t", &b, i, false);
        }
        record(&mut h, "t", &b, 2000, false);
        assert_eq!(
            admit(&mut h, "t", 2001, 10),
            Admit::Yes,
            "window reset: 1 call of the 4 needed"
        );
    }

    #[test]
    fn adopts_what_another_gateway_opened() {
        let b = Breaker {
            consecutive_failures: Some(1),
            error_rate: None,
            cooldown_ms: 1000,
            store: Store::Local,
        };
        let mut h = FakeHost::new(HostKind::Envoy);
        let c = Circuit { target: "t", ..T };
        assert_eq!(c.open_until(&h, 0), None);
        assert!(!c.adopt(&mut h, 50, 100), "already over");
        assert!(c.adopt(&mut h, 500, 100));
        assert_eq!(admit(&mut h, "t", 200, 10), Admit::No { retry_at_ms: 500 });
        assert_eq!(c.open_until(&h, 200), Some(500));
        assert!(!c.adopt(&mut h, 400, 200), "open longer already");
        assert!(c.adopt(&mut h, 900, 200), "open longer elsewhere");
        assert_eq!(
            h.counters["ai_proxy_breaker_transitions_total_target=t_state=open"],
            1
        );
        assert!(h.logged(
            LogLevel::Warn,
            "breaker target=t state=open (opened by another gateway)"
        ));
        // A probe of ours is out: its answer decides, not the other gateway.
        assert_eq!(admit(&mut h, "t", 900, 10), Admit::Probe);
        assert_eq!(c.open_until(&h, 900), None);
        assert!(!c.adopt(&mut h, 2000, 901));
        record(&mut h, "t", &b, 905, true);
        assert_eq!(admit(&mut h, "t", 906, 10), Admit::Yes);
    }

    #[test]
    fn lost_probe_is_reclaimed_and_garbage_reads_closed() {
        let mut h = FakeHost::new(HostKind::Envoy);
        h.shared.insert(key("t"), (b"h,100".to_vec(), 7));
        assert_eq!(admit(&mut h, "t", 50, 10), Admit::No { retry_at_ms: 100 });
        assert_eq!(admit(&mut h, "t", 100, 10), Admit::Probe);
        h.shared.insert(key("u"), (b"\xff\xfe".to_vec(), 1));
        assert_eq!(admit(&mut h, "u", 0, 10), Admit::Yes);
    }
}
