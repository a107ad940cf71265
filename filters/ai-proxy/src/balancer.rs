//! How a model's first target is chosen: `weighted` (the default), `priority`, `lowest_latency`,
//! `least_busy` and `lowest_cost`, and the statistics the last three read.
//!
//! **Statistics** are kept per target in shared data (`ai-proxy:lb:<target>`), so every worker sees
//! the same numbers, and every change goes through the one CAS loop ([`update_shared`]):
//! - latency and time to first byte (TTFT): moving averages over the answers. A new sample `x` moves
//!   the average `m` to `k·m + (1 − k)·x`, with `k = (1 − α)·2^(−Δt / half_life)`, `α` = [`ALPHA`]
//!   and `Δt` the time since the last sample: samples close together smooth each other, and after a
//!   quiet spell the old value has decayed and the new sample counts almost alone. An answer that
//!   failed for the target's sake (5xx, 429, no answer, a timeout) counts as at least
//!   [`FAILURE_SAMPLE_MS`], so a target that fails fast never looks fast;
//! - in-flight requests: counted up when a request is sent to the target (also each attempt of
//!   callout mode), down when its answer ends or the request is abandoned. A count that has not
//!   changed for [`IN_FLIGHT_STALE_MS`] reads as 0, so a count left by a worker that died with
//!   requests in flight does not stick for ever.
//!
//! **Choosing** (pure: [`choose`] over snapshots, tested natively):
//! - `lowest_latency`: a target with no sample for `probe_after` (or none yet) is **probed** — one
//!   request at a time, claimed in shared data — so it is never starved and a recovered target is seen
//!   again; otherwise `explore_percent` % of requests go to a random other target (**explore**), and
//!   the rest to the **fastest** average (time to first byte for streams, whole latency otherwise);
//! - `least_busy`: the fewest requests in flight across workers, ties at random; the count is claimed
//!   with the same CAS that read it (a pick another worker changed meanwhile is made again), so
//!   concurrent requests spread evenly;
//! - `lowest_cost`: the lowest estimated cost, `prompt tokens × prompt price + completion tokens ×
//!   completion price` (the token estimate every policy shares, the request's `max_tokens` or 256),
//!   ties broken by the lower latency average (an unmeasured target first, so it gets measured);
//! - `priority` and `weighted` read the breakers and the weights (in `proxy.rs`).
//!
//! Targets of weight 0 are drained: no balancer picks them.

use crate::config::Balancing;
use shared::host::{update_shared, Host, LogLevel};
use shared::rand::Rng;

/// The weight of each new sample in the moving averages, when samples come close together.
pub const ALPHA: f64 = 0.3;
/// The least an answer that failed for the target's sake counts as, in milliseconds.
pub const FAILURE_SAMPLE_MS: u64 = 10_000;
/// An in-flight count unchanged for this long reads as 0.
pub const IN_FLIGHT_STALE_MS: u64 = 600_000;
/// Picks made again when another worker changed the claimed target in between.
const MAX_PICKS: usize = 4;

/// Which balancer a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Weighted,
    Priority,
    LowestLatency,
    LeastBusy,
    LowestCost,
}

impl Kind {
    /// The config name, in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Weighted => "weighted",
            Kind::Priority => "priority",
            Kind::LowestLatency => "lowest_latency",
            Kind::LeastBusy => "least_busy",
            Kind::LowestCost => "lowest_cost",
        }
    }

    /// Whether it reads the shared statistics.
    pub fn uses_stats(self) -> bool {
        matches!(self, Kind::LowestLatency | Kind::LeastBusy | Kind::LowestCost)
    }
}

/// Why a target was chosen: the `x-ai-target-reason` header, the log's `reason=` and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A weighted random draw.
    Weighted,
    /// The sticky header's hash.
    Sticky,
    /// `priority`: the first target.
    Primary,
    /// `priority`: an earlier target's breaker is open.
    Failover,
    /// `lowest_latency`: the lowest average.
    Fastest,
    /// `lowest_latency`: the exploration share.
    Explore,
    /// `lowest_latency`: no recent sample.
    Probe,
    LeastBusy,
    Cheapest,
    /// `lowest_cost`: as cheap as another, and faster.
    CheapestFaster,
    /// Callout mode: the pick failed and a later target of the chain answered.
    Fallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Weighted => "weighted",
            Reason::Sticky => "sticky",
            Reason::Primary => "primary",
            Reason::Failover => "failover",
            Reason::Fastest => "fastest",
            Reason::Explore => "explore",
            Reason::Probe => "probe",
            Reason::LeastBusy => "least-busy",
            Reason::Cheapest => "cheapest",
            Reason::CheapestFaster => "cheapest-faster",
            Reason::Fallback => "fallback",
        }
    }
}

/// One target's statistics, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Moving average of whole answers, ms (meaningless while `samples` is 0).
    pub latency_ms: f64,
    /// Moving average of the time to the first byte of the answer, ms.
    pub ttft_ms: f64,
    pub samples: u32,
    pub last_sample_ms: u64,
    pub in_flight: u32,
    pub in_flight_at_ms: u64,
    /// A probe is out until then.
    pub probe_until_ms: u64,
}

/// One observed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub latency_ms: u64,
    pub ttft_ms: u64,
    /// It failed for the target's sake (5xx, 429, no answer, a timeout).
    pub failed: bool,
}

impl Sample {
    pub fn answer(latency_ms: u64, ttft_ms: u64, failed: bool) -> Sample {
        Sample {
            latency_ms,
            ttft_ms,
            failed,
        }
    }
}

impl Stats {
    /// Reads a stored record; anything unreadable is no data.
    pub fn decode(raw: Option<&[u8]>) -> Stats {
        let text = raw.and_then(|r| std::str::from_utf8(r).ok()).unwrap_or("");
        let mut parts = text.split(',');
        if parts.next() != Some("1") {
            return Stats::default();
        }
        let mut n = || parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let (lat, ttft, samples, last, in_flight, at, probe) = (n(), n(), n(), n(), n(), n(), n());
        Stats {
            latency_ms: lat as f64 / 1000.0,
            ttft_ms: ttft as f64 / 1000.0,
            samples: small(samples),
            last_sample_ms: last,
            in_flight: small(in_flight),
            in_flight_at_ms: at,
            probe_until_ms: probe,
        }
    }

    /// `1,<latency µs>,<ttft µs>,<samples>,<last sample ms>,<in flight>,<in flight changed ms>,<probe until ms>`.
    pub fn encode(&self) -> String {
        let us = |ms: f64| (ms.max(0.0) * 1000.0).round() as u64;
        format!(
            "1,{},{},{},{},{},{},{}",
            us(self.latency_ms),
            us(self.ttft_ms),
            self.samples,
            self.last_sample_ms,
            self.in_flight,
            self.in_flight_at_ms,
            self.probe_until_ms
        )
    }

    /// Adds one answer to the averages.
    pub fn observe(&mut self, s: Sample, now_ms: u64, half_life_ms: u64) {
        let floor = |v: u64| if s.failed { v.max(FAILURE_SAMPLE_MS) } else { v };
        let (lat, ttft) = (floor(s.latency_ms) as f64, floor(s.ttft_ms) as f64);
        if self.samples == 0 {
            self.latency_ms = lat;
            self.ttft_ms = ttft;
        } else {
            let dt = now_ms.saturating_sub(self.last_sample_ms) as f64;
            let keep = (1.0 - ALPHA) * (-dt / half_life_ms.max(1) as f64).exp2();
            self.latency_ms = keep * self.latency_ms + (1.0 - keep) * lat;
            self.ttft_ms = keep * self.ttft_ms + (1.0 - keep) * ttft;
        }
        self.samples = self.samples.saturating_add(1);
        self.last_sample_ms = self.last_sample_ms.max(now_ms);
    }

    /// Requests in flight now (a count unchanged for [`IN_FLIGHT_STALE_MS`] reads as 0).
    pub fn in_flight_now(&self, now_ms: u64) -> u32 {
        if now_ms.saturating_sub(self.in_flight_at_ms) > IN_FLIGHT_STALE_MS {
            0
        } else {
            self.in_flight
        }
    }

    fn add_in_flight(&mut self, now_ms: u64, up: bool) {
        let n = self.in_flight_now(now_ms);
        self.in_flight = if up {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        self.in_flight_at_ms = now_ms;
    }

    /// No sample for `probe_after` (or none yet).
    pub fn stale(&self, now_ms: u64, probe_after_ms: u64) -> bool {
        self.samples == 0 || now_ms.saturating_sub(self.last_sample_ms) > probe_after_ms
    }

    /// Stale, and no probe is out.
    pub fn probe_due(&self, now_ms: u64, probe_after_ms: u64) -> bool {
        self.stale(now_ms, probe_after_ms) && self.probe_until_ms <= now_ms
    }

    /// The average a pick compares: time to first byte for streams, else the whole answer; an
    /// unmeasured target counts as 0.
    fn speed(&self, stream: bool) -> f64 {
        match (self.samples, stream) {
            (0, _) => 0.0,
            (_, true) => self.ttft_ms,
            (_, false) => self.latency_ms,
        }
    }
}

/// A target as a pick sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Its index in the config's targets.
    pub target: usize,
    pub stats: Stats,
    /// `lowest_cost`: the request's estimated cost on it, micro-dollars.
    pub cost: f64,
}

/// What a pick chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub target: usize,
    pub reason: Reason,
}

/// Chooses among `candidates` (the model's targets of weight > 0, in config order) for one of the
/// statistics balancers; `None` for an empty list or another balancer.
pub fn choose(
    kind: Kind,
    candidates: &[Candidate],
    balancing: &Balancing,
    stream: bool,
    now_ms: u64,
    rng: &mut Rng,
) -> Option<Pick> {
    let pick = |c: &Candidate, reason| Pick {
        target: c.target,
        reason,
    };
    match kind {
        Kind::LowestLatency => {
            if let Some(c) = candidates
                .iter()
                .find(|c| c.stats.probe_due(now_ms, balancing.probe_after_ms))
            {
                return Some(pick(c, Reason::Probe));
            }
            let best = min_by(candidates, |c| c.stats.speed(stream))?;
            let others: Vec<&Candidate> = candidates.iter().filter(|c| c.target != best.target).collect();
            if !others.is_empty() && rng.below(100) < u64::from(balancing.explore_percent) {
                let i = usize::try_from(rng.below(others.len() as u64)).unwrap_or(0);
                if let Some(c) = others.get(i) {
                    return Some(pick(c, Reason::Explore));
                }
            }
            Some(pick(best, Reason::Fastest))
        }
        Kind::LeastBusy => {
            let least = candidates.iter().map(|c| c.stats.in_flight_now(now_ms)).min()?;
            let tied: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| c.stats.in_flight_now(now_ms) == least)
                .collect();
            let i = usize::try_from(rng.below(tied.len() as u64)).unwrap_or(0);
            tied.get(i).map(|c| pick(c, Reason::LeastBusy))
        }
        Kind::LowestCost => {
            let cheapest = min_by(candidates, |c| c.cost)?;
            let tolerance = cheapest.cost.abs() * 1e-9;
            let tied: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| (c.cost - cheapest.cost).abs() <= tolerance)
                .collect();
            if tied.len() < 2 {
                return Some(pick(cheapest, Reason::Cheapest));
            }
            let fastest = tied.iter().copied().reduce(|a, b| {
                if b.stats.speed(stream) < a.stats.speed(stream) {
                    b
                } else {
                    a
                }
            })?;
            Some(pick(fastest, Reason::CheapestFaster))
        }
        Kind::Weighted | Kind::Priority => None,
    }
}

/// The first of the lowest `key` (config order breaks ties).
fn min_by(candidates: &[Candidate], key: impl Fn(&Candidate) -> f64) -> Option<&Candidate> {
    candidates
        .iter()
        .reduce(|a, b| if key(b) < key(a) { b } else { a })
}

/// The shared-data key of a target's statistics.
pub fn key(target: &str) -> String {
    format!("ai-proxy:lb:{target}")
}

/// A target's statistics as stored now.
pub fn read(host: &dyn Host, target: &str) -> Stats {
    Stats::decode(host.shared_get(&key(target)).0.as_deref())
}

/// Claims a pick: counts the request in flight on `target` if `still` holds for its stored
/// statistics (and lets `still` mark them, as a probe does). `Ok(false)`: another worker changed what
/// the pick was made on; pick again.
fn claim(
    host: &mut dyn Host,
    target: &str,
    now_ms: u64,
    still: impl Fn(&mut Stats) -> bool,
) -> Result<bool, shared::host::UpdateError> {
    update_shared(host, &key(target), |raw| {
        let mut s = Stats::decode(raw);
        if !still(&mut s) {
            return (false, None);
        }
        s.add_in_flight(now_ms, true);
        (true, Some(s.encode().into_bytes()))
    })
}

/// A statistics balancer's pick, counted in flight on its target (`counted`), or `None` when there is
/// nothing to pick from.
pub fn pick(
    host: &mut dyn Host,
    kind: Kind,
    targets: &[(usize, &str, f64)],
    balancing: &Balancing,
    stream: bool,
    rng: &mut Rng,
) -> Option<(Pick, bool)> {
    let now = host.now_ms();
    let mut last = None;
    for _ in 0..MAX_PICKS {
        let candidates: Vec<Candidate> = targets
            .iter()
            .map(|&(target, name, cost)| Candidate {
                target,
                stats: read(host, name),
                cost,
            })
            .collect();
        let p = choose(kind, &candidates, balancing, stream, now, rng)?;
        let seen = candidates.iter().find(|c| c.target == p.target).map(|c| c.stats);
        let name = targets.iter().find(|t| t.0 == p.target).map_or("", |t| t.1);
        let probe_after = balancing.probe_after_ms;
        let claimed = claim(host, name, now, |s| match p.reason {
            Reason::Probe if s.probe_due(now, probe_after) => {
                s.probe_until_ms = now.saturating_add(probe_after);
                true
            }
            Reason::Probe => false,
            Reason::LeastBusy => Some(s.in_flight_now(now)) == seen.map(|x| x.in_flight_now(now)),
            _ => true,
        });
        match claimed {
            Ok(true) => return Some((p, true)),
            Ok(false) => last = Some(p),
            Err(e) => {
                log_failure(host, name, e);
                return Some((p, false));
            }
        }
    }
    // Contended every time: go with the last pick, uncounted rather than wrongly counted.
    last.map(|p| (p, false))
}

fn log_failure(host: &mut dyn Host, target: &str, e: shared::host::UpdateError) {
    host.log(
        LogLevel::Warn,
        &format!("ai-proxy: balancer statistics of `{target}` not updated: {e}"),
    );
}

/// Counts one request in flight on `target`; whether it was counted.
pub fn begin(host: &mut dyn Host, target: &str) -> bool {
    let now = host.now_ms();
    match claim(host, target, now, |_| true) {
        Ok(counted) => counted,
        Err(e) => {
            log_failure(host, target, e);
            false
        }
    }
}

/// A request counted on `target` is over: one fewer in flight, and its answer added when there was one
/// that says something about the target.
pub fn end(host: &mut dyn Host, target: &str, sample: Option<Sample>, half_life_ms: u64) {
    let now = host.now_ms();
    let result = update_shared(host, &key(target), |raw| {
        let mut s = Stats::decode(raw);
        s.add_in_flight(now, false);
        if let Some(sample) = sample {
            s.observe(sample, now, half_life_ms);
            // An answer ends a probe.
            s.probe_until_ms = 0;
        }
        ((), Some(s.encode().into_bytes()))
    });
    if let Err(e) = result {
        log_failure(host, target, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::host::{FakeHost, HostKind};

    fn balancing(explore_percent: u32) -> Balancing {
        Balancing {
            explore_percent,
            half_life_ms: 10_000,
            probe_after_ms: 30_000,
        }
    }

    fn measured(latency_ms: f64, ttft_ms: f64, at: u64) -> Stats {
        Stats {
            latency_ms,
            ttft_ms,
            samples: 5,
            last_sample_ms: at,
            ..Stats::default()
        }
    }

    fn cand(target: usize, stats: Stats, cost: f64) -> Candidate {
        Candidate { target, stats, cost }
    }

    #[test]
    fn records_round_trip_and_garbage_is_no_data() {
        let s = Stats {
            latency_ms: 12.345,
            ttft_ms: 3.5,
            samples: 7,
            last_sample_ms: 1_000,
            in_flight: 2,
            in_flight_at_ms: 999,
            probe_until_ms: 5,
        };
        assert_eq!(s.encode(), "1,12345,3500,7,1000,2,999,5");
        assert_eq!(Stats::decode(Some(s.encode().as_bytes())), s);
        for bad in [&b""[..], b"x", b"2,1,2,3", b"\xff\xfe", b"1,a,b"] {
            let d = Stats::decode(Some(bad));
            assert_eq!((d.samples, d.in_flight), (0, 0), "{bad:?}");
        }
        assert_eq!(Stats::decode(None), Stats::default());
    }

    #[test]
    fn averages_smooth_bursts_and_forget_after_quiet_spells() {
        let half_life = 10_000;
        // (gap since the last sample ms, new sample ms, expected average after it)
        let cases: [(u64, u64, f64); 4] = [
            (0, 200, 100.0 * 0.7 + 200.0 * 0.3),        // a burst: α alone
            (10_000, 200, 100.0 * 0.35 + 200.0 * 0.65), // one half-life: the old half as heavy
            (100_000, 200, 100.0 * 0.7 / 1024.0 + 200.0 * (1.0 - 0.7 / 1024.0)),
            (1_000_000, 0, 0.0), // long quiet: the new sample alone
        ];
        for (gap, x, want) in cases {
            let mut s = measured(100.0, 100.0, 1_000);
            s.observe(
                Sample {
                    latency_ms: x,
                    ttft_ms: x,
                    failed: false,
                },
                1_000 + gap,
                half_life,
            );
            assert!(
                (s.latency_ms - want).abs() < 1e-6,
                "gap {gap}: {} vs {want}",
                s.latency_ms
            );
            assert!((s.ttft_ms - want).abs() < 1e-6);
            assert_eq!(s.samples, 6);
            assert_eq!(s.last_sample_ms, 1_000 + gap);
        }
        // The first sample is the average; a failure counts as at least FAILURE_SAMPLE_MS.
        let mut s = Stats::default();
        s.observe(
            Sample {
                latency_ms: 3,
                ttft_ms: 2,
                failed: true,
            },
            50,
            half_life,
        );
        assert_eq!((s.latency_ms, s.ttft_ms, s.samples), (10_000.0, 10_000.0, 1));
        s.observe(
            Sample {
                latency_ms: 20_000,
                ttft_ms: 1,
                failed: true,
            },
            50,
            half_life,
        );
        assert!(
            (s.latency_ms - (7_000.0 + 6_000.0)).abs() < 1e-6,
            "{}",
            s.latency_ms
        );
    }

    #[test]
    fn in_flight_counts_never_go_negative_and_go_stale() {
        let mut s = Stats::default();
        s.add_in_flight(10, false);
        assert_eq!(s.in_flight_now(10), 0);
        s.add_in_flight(10, true);
        s.add_in_flight(11, true);
        assert_eq!(s.in_flight_now(11), 2);
        assert_eq!(s.in_flight_now(11 + IN_FLIGHT_STALE_MS), 2);
        assert_eq!(s.in_flight_now(12 + IN_FLIGHT_STALE_MS), 0, "unchanged too long");
        s.add_in_flight(12 + IN_FLIGHT_STALE_MS, true);
        assert_eq!(s.in_flight, 1, "a stale count restarts from 0");
    }

    #[test]
    fn lowest_latency_probes_then_explores_then_takes_the_fastest() {
        let now = 100_000;
        let b = balancing(0);
        let mut rng = Rng::new(1);
        let fast = measured(10.0, 50.0, now - 1_000);
        let slow = measured(200.0, 20.0, now - 1_000);
        let pick = |cands: &[Candidate], stream: bool, rng: &mut Rng| {
            choose(Kind::LowestLatency, cands, &b, stream, now, rng).unwrap()
        };
        let p = pick(&[cand(0, slow, 0.0), cand(1, fast, 0.0)], false, &mut rng);
        assert_eq!((p.target, p.reason), (1, Reason::Fastest));
        // Streams compare the time to the first byte.
        let p = pick(&[cand(0, slow, 0.0), cand(1, fast, 0.0)], true, &mut rng);
        assert_eq!((p.target, p.reason), (0, Reason::Fastest));
        // Unmeasured, or not measured for probe_after: probed, unless a probe is out.
        let new = Stats::default();
        let p = pick(&[cand(0, fast, 0.0), cand(1, new, 0.0)], false, &mut rng);
        assert_eq!((p.target, p.reason), (1, Reason::Probe));
        let old = measured(5_000.0, 5_000.0, now - 30_001);
        let p = pick(&[cand(0, fast, 0.0), cand(1, old, 0.0)], false, &mut rng);
        assert_eq!((p.target, p.reason), (1, Reason::Probe));
        let probing = Stats {
            probe_until_ms: now + 1,
            ..old
        };
        let p = pick(&[cand(0, fast, 0.0), cand(1, probing, 0.0)], false, &mut rng);
        assert_eq!((p.target, p.reason), (0, Reason::Fastest));
        // The exploration share goes to the others, about as often as configured.
        let b = balancing(10);
        let cands = [cand(0, fast, 0.0), cand(1, slow, 0.0), cand(2, slow, 0.0)];
        let mut explored = [0u32; 3];
        for _ in 0..10_000 {
            let p = choose(Kind::LowestLatency, &cands, &b, false, now, &mut rng).unwrap();
            if p.reason == Reason::Explore {
                explored[p.target] += 1;
            } else {
                assert_eq!((p.target, p.reason), (0, Reason::Fastest));
            }
        }
        assert_eq!(explored[0], 0, "never the best");
        let total = explored[1] + explored[2];
        assert!((800..1200).contains(&total), "{explored:?}");
        assert!(explored[1] > 350 && explored[2] > 350, "{explored:?}");
        assert_eq!(choose(Kind::LowestLatency, &[], &b, false, now, &mut rng), None);
    }

    #[test]
    fn least_busy_takes_the_fewest_in_flight_and_splits_ties() {
        let now = 1_000_000;
        let b = balancing(0);
        let mut rng = Rng::new(7);
        let busy = |n: u32| Stats {
            in_flight: n,
            in_flight_at_ms: now,
            ..Stats::default()
        };
        let p = choose(
            Kind::LeastBusy,
            &[
                cand(0, busy(3), 0.0),
                cand(1, busy(1), 0.0),
                cand(2, busy(2), 0.0),
            ],
            &b,
            false,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!((p.target, p.reason), (1, Reason::LeastBusy));
        let mut seen = [0u32; 3];
        for _ in 0..3_000 {
            let p = choose(
                Kind::LeastBusy,
                &[
                    cand(0, busy(1), 0.0),
                    cand(1, busy(5), 0.0),
                    cand(2, busy(1), 0.0),
                ],
                &b,
                false,
                now,
                &mut rng,
            )
            .unwrap();
            seen[p.target] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 1_300 && seen[2] > 1_300, "{seen:?}");
        // A stale count is no load.
        let stale = Stats {
            in_flight: 9,
            in_flight_at_ms: 0,
            ..Stats::default()
        };
        let p = choose(
            Kind::LeastBusy,
            &[cand(0, busy(1), 0.0), cand(1, stale, 0.0)],
            &b,
            false,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!(p.target, 1);
    }

    #[test]
    fn lowest_cost_takes_the_cheapest_and_breaks_ties_by_latency() {
        let now = 1_000;
        let b = balancing(50);
        let mut rng = Rng::new(3);
        let fast = measured(10.0, 10.0, now);
        let slow = measured(90.0, 90.0, now);
        let cases = [
            (
                vec![cand(0, fast, 30.0), cand(1, slow, 12.5)],
                (1, Reason::Cheapest),
            ),
            (
                vec![cand(0, slow, 12.5), cand(1, fast, 12.5)],
                (1, Reason::CheapestFaster),
            ),
            (
                vec![cand(0, fast, 12.5), cand(1, slow, 12.5), cand(2, slow, 99.0)],
                (0, Reason::CheapestFaster),
            ),
            // An unmeasured target of the same cost goes first, to be measured.
            (
                vec![cand(0, fast, 1.0), cand(1, Stats::default(), 1.0)],
                (1, Reason::CheapestFaster),
            ),
            (
                vec![cand(0, slow, 0.0), cand(1, fast, 0.0)],
                (1, Reason::CheapestFaster),
            ),
        ];
        for (cands, (target, reason)) in cases {
            // Exploration never applies to cost.
            for _ in 0..50 {
                let p = choose(Kind::LowestCost, &cands, &b, false, now, &mut rng).unwrap();
                assert_eq!((p.target, p.reason), (target, reason), "{cands:?}");
            }
        }
        for kind in [Kind::Weighted, Kind::Priority] {
            assert_eq!(
                choose(kind, &[cand(0, fast, 0.0)], &b, false, now, &mut rng),
                None
            );
        }
    }

    /// Through shared data: a pick is counted in flight, a probe claimed once, an answer recorded.
    #[test]
    fn picks_claim_in_shared_data() {
        let mut host = FakeHost::new(HostKind::Envoy);
        host.now_ms = 1_000_000;
        let b = balancing(0);
        let mut rng = Rng::new(9);
        let targets = [(0, "a", 0.0), (1, "b", 0.0)];
        // Nothing measured: the first request probes a, the second (a's probe still out) probes b.
        let (p, counted) = pick(&mut host, Kind::LowestLatency, &targets, &b, false, &mut rng).unwrap();
        assert_eq!((p.target, p.reason, counted), (0, Reason::Probe, true));
        let (p, _) = pick(&mut host, Kind::LowestLatency, &targets, &b, false, &mut rng).unwrap();
        assert_eq!((p.target, p.reason), (1, Reason::Probe));
        assert_eq!(read(&host, "a").in_flight, 1);
        assert_eq!(read(&host, "a").probe_until_ms, 1_030_000);
        // Their answers: a slow, b fast; then b is the fastest, and nothing is in flight.
        let sample = |ms| Sample {
            latency_ms: ms,
            ttft_ms: ms,
            failed: false,
        };
        end(&mut host, "a", Some(sample(300)), b.half_life_ms);
        end(&mut host, "b", Some(sample(20)), b.half_life_ms);
        let (p, _) = pick(&mut host, Kind::LowestLatency, &targets, &b, false, &mut rng).unwrap();
        assert_eq!((p.target, p.reason), (1, Reason::Fastest));
        let (a, bb) = (read(&host, "a"), read(&host, "b"));
        assert_eq!(
            (a.in_flight, bb.in_flight, a.samples, a.probe_until_ms),
            (0, 1, 1, 0)
        );
        // least_busy: b has one in flight, so a is picked, then they are even.
        let (p, counted) = pick(&mut host, Kind::LeastBusy, &targets, &b, false, &mut rng).unwrap();
        assert_eq!((p.target, counted), (0, true));
        assert_eq!((read(&host, "a").in_flight, read(&host, "b").in_flight), (1, 1));
        assert!(begin(&mut host, "a"));
        assert_eq!(read(&host, "a").in_flight, 2);
        // A store that refuses writes: the pick still goes, uncounted.
        host.refuse_shared_writes = true;
        let (_, counted) = pick(&mut host, Kind::LeastBusy, &targets, &b, false, &mut rng).unwrap();
        assert!(!counted);
        assert!(host.logged(LogLevel::Warn, "balancer statistics"));
        assert!(pick(&mut host, Kind::LeastBusy, &[], &b, false, &mut rng).is_none());
    }
}
