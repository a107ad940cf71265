//! `soak` (run by `make soak`, never by tests): mixed traffic for ten minutes through the demo chain of
//! `envoy/demo.yaml` (guard → rate limit → PII → proxy) on two Envoy workers, then a report of what held.
//!
//! Envoy is started by the e2e harness from the shipped `envoy/demo.yaml` with its ports moved to free
//! ones, and the mock providers run in this process. A few client threads send paced requests (the
//! loops are bounded by the deadline and by a request count) from the mix in `scenario.rs`: JSON and
//! streams to OpenAI, Anthropic and Azure, the canary split, PII that must be masked upstream and
//! restored, prompt injections that must be blocked, consumers over their token budget, and the mock's
//! faults (error statuses, resets before headers, a malformed answer, delays, drips, a cut stream).
//! Every answer is judged against what its kind allows; anything else is an unexpected error.
//!
//! The report (`target/soak/report.md`, also printed): requests by kind and outcome, unexpected errors
//! (must be 0), panics in Envoy's log (0), Envoy's RSS after the warm-up and at the end (growth ≤ 10%),
//! and counters checked for exact equality with what the clients saw:
//! - Envoy's own `downstream_rq_total` and `downstream_rq_{2,4,5}xx` against the clients' count;
//! - the rate limit's refusals against the 429s clients got, its admissions against the chat requests
//!   the guard passed and it did not refuse, and its settled tokens against the usage the clients read
//!   in their answers. This is exact because every admitted request either ends with usage the client
//!   sees (JSON `usage`; streams ask `include_usage`, so the usage chunk reaches the client) or with
//!   none settled at all: provider errors, resets and malformed answers release the reservation, and
//!   the only cut stream is an OpenAI one cut before its usage chunk;
//! - ai-proxy's requests by status and tokens, the guard's blocks, and the PII filter's masked emails
//!   and restored placeholders against the clients' counts; the mock's records against ai-proxy's
//!   forwarded requests, and no email or injection in any of them.
//!
//! Environment: `SOAK_SECS` (default 600), `SOAK_QUICK=1` (30 s), `SOAK_RPS` (total pace, default 80),
//! `SOAK_CLIENTS` (threads, default 4), `SOAK_WARMUP_SECS` (default 10% of the run, at most 60),
//! `SOAK_OUT` (default `target/soak/report.md`), `ENVOY_BIN`.

mod scenario;

use e2e::envoy::Envoy;
use e2e::mock::MockServer;
use scenario::{Kind, Outcome, Usage};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

struct Settings {
    duration: Duration,
    warmup: Duration,
    rps: u64,
    clients: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("SOAK_QUICK").is_ok_and(|v| v == "1");
        let secs = env_u64("SOAK_SECS")
            .unwrap_or(if quick { 30 } else { 600 })
            .max(5);
        let warmup = env_u64("SOAK_WARMUP_SECS")
            .unwrap_or((secs / 10).min(60))
            .min(secs / 2);
        Settings {
            duration: Duration::from_secs(secs),
            warmup: Duration::from_secs(warmup),
            rps: env_u64("SOAK_RPS").unwrap_or(80).max(1),
            clients: env_u64("SOAK_CLIENTS").unwrap_or(4).max(1),
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    /// (kind label, outcome name) → count.
    by_kind: BTreeMap<(String, String), u64>,
    by_outcome: BTreeMap<String, u64>,
    /// Status classes of every answer (2, 4, 5).
    classes: BTreeMap<u16, u64>,
    /// Statuses of the chat requests the rate limit admitted (all of them reach ai-proxy).
    admitted_status: BTreeMap<u16, u64>,
    refused: u64,
    admitted: u64,
    blocked: u64,
    usage: Usage,
    pii_admitted: u64,
    pii_answered: u64,
    unexpected: Vec<String>,
    unexpected_count: u64,
    io_errors: u64,
    latency_ms: Vec<u64>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `/stats` as name → value (counters and gauges).
fn stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .lines()
        .filter_map(|l| {
            let (n, v) = l.rsplit_once(": ")?;
            Some((n.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Sum of the counters whose name starts with `prefix` and contains every one of `parts`.
fn sum(stats: &BTreeMap<String, u64>, prefix: &str, parts: &[&str]) -> u64 {
    stats
        .iter()
        .filter(|(n, _)| n.starts_with(prefix) && parts.iter().all(|p| n.contains(p)))
        .map(|(_, v)| v)
        .sum()
}

fn start() -> Result<(MockServer, Envoy), String> {
    let mock = MockServer::start(0).map_err(|e| format!("mock: {e}"))?;
    let shipped = std::fs::read_to_string(e2e::repo_root().join("envoy/demo.yaml"))
        .map_err(|e| format!("envoy/demo.yaml: {e}"))?;
    let m = mock.port();
    let yaml = shipped
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 10001", &format!("port_value: {m}"))
        .replace("127.0.0.1:10001", &format!("127.0.0.1:{m}"));
    let envoy = Envoy::start_config(|_| yaml, 2).map_err(|e| e.0)?;
    Ok((mock, envoy))
}

fn client(id: u64, port: u16, settings: &Settings, deadline: Instant, tally: &Mutex<Tally>) {
    let interval = Duration::from_secs_f64(settings.clients as f64 / settings.rps as f64);
    // Bounded: never more than the pace allows over the whole run, with some slack.
    let max = (settings.duration.as_secs_f64() / interval.as_secs_f64() * 1.1) as u64 + 10;
    let mut rng = shared::rand::Rng::new(0x50a4 + id);
    let mut next = Instant::now();
    for n in 0..max {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if next > now {
            thread::sleep(next - now);
        }
        next += interval;
        let kind = scenario::pick(rng.next_u64());
        let consumer = match kind {
            Kind::OverBudget => format!("heavy-{id}"),
            _ => format!("client-{id}-{}", n % 16),
        };
        let req = scenario::request(kind, &consumer, id * 1_000_000 + n);
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let t = Instant::now();
        let answer = e2e::http::request(port, req.method, req.path, &headers, &req.body);
        let ms = t.elapsed().as_millis() as u64;
        let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
        tl.sent += 1;
        tl.latency_ms.push(ms);
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                tl.io_errors += 1;
                tl.unexpected_count += 1;
                if tl.unexpected.len() < 20 {
                    tl.unexpected
                        .push(format!("{}: connection error: {e}", kind.label()));
                }
                continue;
            }
        };
        let (outcome, usage) = scenario::judge(&req, &r);
        *tl.classes.entry(r.status / 100).or_default() += 1;
        *tl.by_kind
            .entry((kind.label(), outcome.name().to_string()))
            .or_default() += 1;
        *tl.by_outcome.entry(outcome.name().to_string()).or_default() += 1;
        if let Some(u) = usage {
            tl.usage.prompt += u.prompt;
            tl.usage.completion += u.completion;
        }
        match &outcome {
            Outcome::Blocked => tl.blocked += 1,
            Outcome::RateLimited => tl.refused += 1,
            Outcome::Unexpected(why) => {
                tl.unexpected_count += 1;
                if tl.unexpected.len() < 20 {
                    tl.unexpected.push(why.clone());
                }
            }
            _ => {}
        }
        if kind.reaches_rate_limit() && outcome != Outcome::RateLimited {
            tl.admitted += 1;
            *tl.admitted_status.entry(r.status).or_default() += 1;
            if matches!(kind, Kind::Pii { .. }) {
                tl.pii_admitted += 1;
                if outcome == Outcome::Answered {
                    tl.pii_answered += 1;
                }
            }
        }
    }
}

struct Check {
    what: String,
    expected: String,
    got: String,
    ok: bool,
}

fn exact(checks: &mut Vec<Check>, what: &str, expected: u64, got: u64) {
    checks.push(Check {
        what: what.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
        ok: expected == got,
    });
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn main() -> ExitCode {
    let settings = Settings::from_env();
    let (mock, envoy) = match start() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("soak: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = envoy.pid();
    let started = Instant::now();
    let deadline = started + settings.duration;
    println!(
        "soak: {} s of mixed traffic ({} clients, {} req/s) through envoy/demo.yaml on 2 workers (port {}, admin {})",
        settings.duration.as_secs(),
        settings.clients,
        settings.rps,
        envoy.port(),
        envoy.admin_port()
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let done = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let monitor = {
        let (done, samples) = (Arc::clone(&done), Arc::clone(&samples));
        thread::spawn(move || {
            let mut next = 0u64;
            while !done.load(Ordering::SeqCst) {
                let t = started.elapsed().as_secs();
                if t >= next {
                    if let Some(kib) = rss_kib(pid) {
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push((t, kib));
                    }
                    next = t + 10;
                }
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let port = envoy.port();
    let settings = Arc::new(settings);
    let workers: Vec<_> = (0..settings.clients)
        .map(|id| {
            let (tally, settings) = (Arc::clone(&tally), Arc::clone(&settings));
            thread::spawn(move || client(id, port, &settings, deadline, &tally))
        })
        .collect();
    // RSS once the warm-up is over.
    thread::sleep(settings.warmup);
    let rss_start = rss_kib(pid);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib(pid);
    done.store(true, Ordering::SeqCst);
    let _ = monitor.join();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));

    // Let the last requests finish their logs and counters.
    let quiet_by = Instant::now() + Duration::from_secs(10);
    let mut st = stats(&envoy);
    while Instant::now() < quiet_by {
        let total = st
            .get("http.ai_gateway.downstream_rq_total")
            .copied()
            .unwrap_or(0);
        let active = st
            .get("http.ai_gateway.downstream_rq_active")
            .copied()
            .unwrap_or(0);
        if total >= tally.sent && active == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        st = stats(&envoy);
    }
    thread::sleep(Duration::from_millis(500));
    st = stats(&envoy);

    let mut checks = Vec::new();
    exact(
        &mut checks,
        "unexpected answers (and connection errors)",
        0,
        tally.unexpected_count,
    );
    let logs = envoy.logs();
    let panics = logs
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("panic"))
        .count() as u64;
    exact(&mut checks, "panics in Envoy's log", 0, panics);
    let growth = match (rss_start, rss_end) {
        (Some(a), Some(b)) if a > 0 => Some((b as f64 - a as f64) / a as f64 * 100.0),
        _ => None,
    };
    checks.push(Check {
        what: "Envoy RSS growth after the warm-up".into(),
        expected: "≤ 10%".into(),
        got: growth.map_or("unknown".into(), |g| format!("{g:+.1}%")),
        ok: growth.is_some_and(|g| g <= 10.0),
    });
    let g = |n: &str| st.get(n).copied().unwrap_or(0);
    exact(
        &mut checks,
        "Envoy downstream_rq_total = requests sent",
        tally.sent,
        g("http.ai_gateway.downstream_rq_total"),
    );
    for class in [2u16, 4, 5] {
        exact(
            &mut checks,
            &format!("Envoy downstream_rq_{class}xx = answers {class}xx"),
            tally.classes.get(&class).copied().unwrap_or(0),
            g(&format!("http.ai_gateway.downstream_rq_{class}xx")),
        );
    }
    let per_worker: Vec<u64> = (0..2)
        .map(|i| sum(&st, "listener.", &[&format!(".worker_{i}.downstream_cx_total")]))
        .collect();
    checks.push(Check {
        what: "connections per Envoy worker (both serve)".into(),
        expected: "> 0 each".into(),
        got: format!("{per_worker:?}"),
        ok: per_worker.iter().all(|n| *n > 0),
    });
    let w = "wasmcustom.";
    checks.push(Check {
        what: "rate limit CAS conflicts retried (workers racing on one counter; information)".into(),
        expected: "any".into(),
        got: sum(&st, &format!("{w}ai_token_ratelimit_cas_conflicts_total"), &[]).to_string(),
        ok: true,
    });
    exact(
        &mut checks,
        "guard blocks = prompt_injection 400s",
        tally.blocked,
        sum(
            &st,
            &format!("{w}ai_prompt_guard_requests_total"),
            &["result=blocked"],
        ),
    );
    exact(
        &mut checks,
        "rate limit refusals = rate_limit_exceeded 429s",
        tally.refused,
        sum(
            &st,
            &format!("{w}ai_token_ratelimit_requests_total"),
            &["decision=refused"],
        ),
    );
    exact(
        &mut checks,
        "rate limit admissions = chat requests past the guard, not refused",
        tally.admitted,
        sum(
            &st,
            &format!("{w}ai_token_ratelimit_requests_total"),
            &["decision=admitted"],
        ),
    );
    exact(
        &mut checks,
        "rate limit settled prompt tokens = usage clients read",
        tally.usage.prompt,
        sum(
            &st,
            &format!("{w}ai_token_ratelimit_tokens_total"),
            &["kind=prompt"],
        ),
    );
    exact(
        &mut checks,
        "rate limit settled completion tokens = usage clients read",
        tally.usage.completion,
        sum(
            &st,
            &format!("{w}ai_token_ratelimit_tokens_total"),
            &["kind=completion"],
        ),
    );
    exact(
        &mut checks,
        "ai-proxy prompt tokens = usage clients read",
        tally.usage.prompt,
        sum(&st, &format!("{w}ai_proxy_tokens_total"), &["kind=prompt"]),
    );
    exact(
        &mut checks,
        "ai-proxy completion tokens = usage clients read",
        tally.usage.completion,
        sum(&st, &format!("{w}ai_proxy_tokens_total"), &["kind=completion"]),
    );
    exact(
        &mut checks,
        "ai-proxy requests = admitted chat requests",
        tally.admitted,
        sum(&st, &format!("{w}ai_proxy_requests_total"), &[]),
    );
    for (status, n) in &tally.admitted_status {
        exact(
            &mut checks,
            &format!("ai-proxy requests with status {status} = admitted answers {status}"),
            *n,
            sum(
                &st,
                &format!("{w}ai_proxy_requests_total"),
                &[&format!("status={status}")],
            ),
        );
    }
    exact(
        &mut checks,
        "PII emails masked in requests = admitted PII requests",
        tally.pii_admitted,
        sum(
            &st,
            &format!("{w}ai_pii_redact_entities_total"),
            &["type=email", "direction=request"],
        ),
    );
    exact(
        &mut checks,
        "PII placeholders restored = answered PII requests",
        tally.pii_answered,
        g(&format!("{w}ai_pii_redact_restored_total")),
    );
    let records = mock.requests();
    exact(
        &mut checks,
        "requests the providers got = ai-proxy requests",
        sum(&st, &format!("{w}ai_proxy_requests_total"), &[]),
        records.len() as u64,
    );
    let leaks = records
        .iter()
        .filter(|r| r.to_string().contains(scenario::PII))
        .count() as u64;
    exact(&mut checks, "provider requests holding the email", 0, leaks);
    let injected = records
        .iter()
        .filter(|r| r.to_string().contains(scenario::INJECTION))
        .count() as u64;
    exact(
        &mut checks,
        "provider requests holding the injection",
        0,
        injected,
    );

    let report = render(
        &settings,
        elapsed,
        &tally,
        rss_start,
        rss_end,
        &samples.lock().unwrap_or_else(|e| e.into_inner()),
        &checks,
    );
    println!("{report}");
    let out = std::env::var("SOAK_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| e2e::target_dir().join("soak/report.md"));
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("soak: cannot write {}: {e}", out.display());
    } else {
        println!("written to {}", out.display());
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        let _ = std::fs::write(out.with_extension("envoy.log"), logs);
        ExitCode::FAILURE
    }
}

fn render(
    s: &Settings,
    elapsed: Duration,
    t: &Tally,
    rss_start: Option<u64>,
    rss_end: Option<u64>,
    samples: &[(u64, u64)],
    checks: &[Check],
) -> String {
    let mut r = String::new();
    let mib = |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let _ = writeln!(r, "# Soak report\n");
    let _ = writeln!(
        r,
        "`make soak` ({}): {:.0} s through `envoy/demo.yaml` (guard → rate limit → PII → proxy) on 2 Envoy workers, {} client threads paced at {} req/s in all, warm-up {} s.\n",
        if s.duration.as_secs() <= 60 { "quick" } else { "full" },
        elapsed.as_secs_f64(),
        s.clients,
        s.rps,
        s.warmup.as_secs()
    );
    let mut lat = t.latency_ms.clone();
    lat.sort_unstable();
    let _ = writeln!(
        r,
        "Requests: {} ({:.1}/s), latency p50 {} ms, p99 {} ms, max {} ms. Envoy RSS {} after the warm-up, {} at the end.\n",
        t.sent,
        t.sent as f64 / elapsed.as_secs_f64().max(1.0),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        mib(rss_start),
        mib(rss_end)
    );
    let _ = writeln!(
        r,
        "## Checks\n\n| check | expected | got | |\n|---|---:|---:|---|"
    );
    for c in checks {
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} |",
            c.what,
            c.expected,
            c.got,
            if c.ok { "ok" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(
        r,
        "\n## Requests by outcome\n\n| outcome | requests |\n|---|---:|"
    );
    for (o, n) in &t.by_outcome {
        let _ = writeln!(r, "| {o} | {n} |");
    }
    let _ = writeln!(
        r,
        "\n## Requests by kind\n\n| kind | outcome | requests |\n|---|---|---:|"
    );
    for ((k, o), n) in &t.by_kind {
        let _ = writeln!(r, "| {k} | {o} | {n} |");
    }
    let _ = writeln!(r, "\n## Envoy RSS over time\n\n| s | MiB |\n|---:|---:|");
    for (sec, kib) in samples {
        let _ = writeln!(r, "| {sec} | {:.1} |", *kib as f64 / 1024.0);
    }
    if !t.unexpected.is_empty() {
        let _ = writeln!(r, "\n## Unexpected answers (first {})\n", t.unexpected.len());
        for u in &t.unexpected {
            let _ = writeln!(r, "- {u}");
        }
    }
    r
}
