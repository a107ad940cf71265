//! A circuit breaker per target, shared by every worker through shared data with CAS.
//!
//! State lives under `ai-proxy:cb:<target>` as text (`c,<failures>`, `o,<until_ms>`, `h,<until_ms>`):
//! closed with its count of consecutive failures; open until a time; half-open while one probe is out.
//! Every change is read → modify → write with the CAS token read, retried a bounded number of times;
//! if the store stays contended or fails, traffic goes through (a breaker must never block on itself).

use crate::config::Breaker;
#[cfg(test)]
use crate::config::ErrorRate;
use shared::host::{Host, LogLevel, SharedDataError};
use shared::metrics;

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

const MAX_CAS_TRIES: usize = 32;

fn key(target: &str) -> String {
    format!("ai-proxy:cb:{target}")
}

/// Reads, computes the next state, writes it with CAS; retries on a concurrent write. `next` returns
/// the value to hand back and the new state, or `None` when nothing needs writing.
fn update<T>(
    host: &mut dyn Host,
    target: &str,
    fallback: T,
    next: impl Fn(State) -> (T, Option<State>),
) -> T {
    let key = key(target);
    for _ in 0..MAX_CAS_TRIES {
        let (raw, cas) = host.shared_get(&key);
        let before = State::decode(raw.as_deref());
        let (out, after) = next(before);
        let Some(after) = after else {
            return out;
        };
        match host.shared_set(&key, after.encode().as_bytes(), cas) {
            Ok(()) => {
                if after.name() != before.name() {
                    transition(host, target, after);
                }
                return out;
            }
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Failed) => break,
        }
    }
    host.log(
        LogLevel::Warn,
        &format!("ai-proxy: breaker state for `{target}` could not be updated; letting traffic through"),
    );
    fallback
}

fn transition(host: &mut dyn Host, target: &str, to: State) {
    host.counter_add(
        &metrics::name(
            "ai_proxy_breaker_transitions_total",
            &[("target", target), ("state", to.name())],
        ),
        1,
    );
    host.log(
        LogLevel::Warn,
        &format!("ai-proxy: breaker target={target} state={}", to.name()),
    );
}

/// May a request go to `target` now? `probe_ms` bounds how long a probe may hold the half-open state.
pub fn admit(host: &mut dyn Host, target: &str, now_ms: u64, probe_ms: u64) -> Admit {
    update(host, target, Admit::Yes, |state| match state {
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

/// Records the outcome of a call to `target`.
pub fn record(host: &mut dyn Host, target: &str, breaker: &Breaker, now_ms: u64, success: bool) {
    update(host, target, (), |state| {
        ((), next_state(state, breaker, now_ms, success))
    })
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
    use shared::host::{FakeHost, HostKind};

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker {
            consecutive_failures: Some(2),
            error_rate: None,
            cooldown_ms: 1000,
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
    fn lost_probe_is_reclaimed_and_garbage_reads_closed() {
        let mut h = FakeHost::new(HostKind::Envoy);
        h.shared.insert(key("t"), (b"h,100".to_vec(), 7));
        assert_eq!(admit(&mut h, "t", 50, 10), Admit::No { retry_at_ms: 100 });
        assert_eq!(admit(&mut h, "t", 100, 10), Admit::Probe);
        h.shared.insert(key("u"), (b"\xff\xfe".to_vec(), 1));
        assert_eq!(admit(&mut h, "u", 0, 10), Admit::Yes);
    }
}
