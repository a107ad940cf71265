//! `bench`: the overhead of the policy filters against bare Envoy (run by `make bench`, never by tests).
//!
//! One run, all on 127.0.0.1: the fast upstream (`bench-upstream`), a bare Envoy (no filters, a static
//! route), one Envoy per calibration filter (`bench/noop-filter`: the floor any proxy-wasm filter costs),
//! one per policy filter alone and one with the whole chain (the filters of `bench/arms.json` whose
//! `.wasm` loads and answers), all started at once and idle while another is measured. Load comes from
//! wrk (Debian's package) with `bench/wrk.lua`, in two modes:
//!
//! - paced: a few connections, each pausing `paced_delay_ms` after every response, so the rate is steady
//!   and modest, far below saturation: latency is service time, not queueing (added p50/p99). wrk has no
//!   open-loop rate (wrk2 is not packaged); at this load nothing queues, so closed loop with a pause
//!   measures the same thing without coordinated omission.
//! - max: many connections, no pause: requests per second.
//!
//! Every arm run sits between two bare runs of the same workload and is compared with their mean, so
//! drift (other processes, CPU frequency) cancels out; the gap between the two bare runs is reported as
//! the noise. Then Envoy's memory with the chain for 1 and 2 workers, each `.wasm`'s size (raw and after
//! a pinned `wasm-opt`, measured only: the build is unchanged), and the native engine throughput from
//! `bench-native`. Writes `bench/results.md` and prints it.
//!
//! `bench --peers` (`make bench-peers`) is the comparison with other gateways instead (`peers.rs`): bare
//! Envoy, ai-proxy alone and the bundle chain against LiteLLM's proxy and Portkey's gateway, on the same
//! upstream, workloads, load and interleaving; writes `bench/results-peers.md`.
//!
//! Environment: `BENCH_QUICK=1` (about a minute), `BENCH_SECONDS` (per run, default 2), `BENCH_ARMS`
//! (default `bench/arms.json`), `BENCH_OUT` (default `bench/results.md`, `bench/results-peers.md` with
//! `--peers`), `BENCH_WASM_LOG` (Envoy's `wasm` log level, default `info`, a production level; the demo runs at
//! `debug`, where the per-request lines of ai-proxy, ai-pii-redact and the rate limit are part of the cost), `WRK`, `ENVOY_BIN`; for `--peers`,
//! `BENCH_LITELLM`, `BENCH_PORTKEY` and `NODE` (see `peers.rs`).
//!
//! Envoy is launched here rather than with `e2e::envoy::Envoy::start` because the bench needs its own
//! config variants: the same `render_config` output, minus the per-request access log (it would add the
//! same cost to every arm and blur the ratios), and for the bare arm a static route.

mod launch;
mod peers;
mod report;
#[allow(dead_code)]
mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::envoy::{render_config, EnvoyOptions, Filter};
use serde_json::Value;

use launch::{BenchEnvoy, Guard};
use report::{render, render_peers};

type Res<T> = Result<T, String>;

/// One request shape: a body size and a response kind.
#[derive(Clone)]
struct Workload {
    label: String,
    stream: bool,
    body: PathBuf,
    body_len: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Paced,
    Max,
}

struct Settings {
    quick: bool,
    /// `--peers`: the comparison with other gateways (`peers.rs`).
    peers: bool,
    seconds: u32,
    paced_conns: u32,
    paced_delay_ms: u32,
    max_conns: u32,
    wasm_log: String,
    wrk: String,
    root: PathBuf,
    dir: PathBuf,
}

/// A filter from `bench/arms.json`.
#[derive(Clone)]
struct BenchFilter {
    name: String,
    stem: String,
    config: Value,
    /// Its bench config was written before the filter existed (a failure may be the config's fault).
    draft: bool,
    /// A calibration filter (bench/noop-filter): measured alone, never part of the chain.
    calibration: bool,
}

/// One wrk run's summary.
#[derive(Clone, Copy, Default, Debug)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

/// The headers every bench request carries (the same as `bench/wrk.lua`).
fn request_headers(stream: bool) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        ("content-type", "application/json"),
        ("authorization", "Bearer bench-client-key"),
        ("x-consumer-id", "bench"),
        ("x-ai-cluster", "mock_openai"),
    ];
    if stream {
        h.push(("x-bench-stream", "1"));
    }
    h
}

/// Headers an arm needs besides the bench's own (`request_headers`): none for Envoy, the routing
/// headers of a peer gateway.
type Extra = [(String, String)];

/// One request of each workload must answer 200 with the canned answer, or the arm measures nothing.
fn preflight(port: u16, extra: &Extra, workloads: &[Workload]) -> Res<()> {
    for w in workloads {
        let body = fs::read(&w.body).map_err(|e| e.to_string())?;
        // An extra header replaces the bench's own of that name, as in bench/wrk.lua.
        let mut headers = request_headers(w.stream);
        headers.retain(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)));
        headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let resp = e2e::http::request(port, "POST", "/v1/chat/completions", &headers, &body)
            .map_err(|e| format!("{}: request failed: {e}", w.label))?;
        let text = resp.text();
        let marker = if w.stream { "[DONE]" } else { "\"chat.completion\"" };
        if resp.status != 200 || !text.contains(marker) {
            let snippet: String = text.chars().take(300).collect();
            return Err(format!(
                "{}: status {} (want 200 with {marker}): {snippet}",
                w.label, resp.status
            ));
        }
    }
    Ok(())
}

fn wrk(s: &Settings, port: u16, extra: &Extra, w: &Workload, mode: Mode, seconds: u32) -> Res<Run> {
    let (conns, delay) = match mode {
        Mode::Paced => (s.paced_conns, s.paced_delay_ms),
        Mode::Max => (s.max_conns, 0),
    };
    let out = Command::new(&s.wrk)
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(s.root.join("bench/wrk.lua"))
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .env("BENCH_BODY", &w.body)
        .env("BENCH_STREAM", if w.stream { "1" } else { "0" })
        .env("BENCH_DELAY_MS", delay.to_string())
        .env(
            "BENCH_HEADERS",
            extra
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect::<String>(),
        )
        .output()
        .map_err(|e| format!("cannot run {}: {e}", s.wrk))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let kv: BTreeMap<&str, f64> = line
        .split_whitespace()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect();
    let get = |k: &str| kv.get(k).copied().unwrap_or(0.0);
    let secs = get("duration_us") / 1e6;
    Ok(Run {
        rps: if secs > 0.0 { get("requests") / secs } else { 0.0 },
        p50: get("p50"),
        p99: get("p99"),
        errors: ["connect", "read", "write", "status", "timeout"]
            .iter()
            .map(|k| get(k) as u64)
            .sum(),
    })
}

fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_string(),
    }
}

/// `bench/arms.json`: the VM environment, the calibration filters and the policy filters.
struct ArmsFile {
    env: Vec<(String, String)>,
    /// Whether to measure the chain of the filters that work alone (default true; false for A/B runs
    /// of variants of one filter).
    chain: bool,
    calibration: Vec<BenchFilter>,
    filters: Vec<BenchFilter>,
}

fn read_filter_list(doc: &Value, key: &str, root: &Path, path: &Path) -> Res<Vec<BenchFilter>> {
    let Some(list) = doc.get(key) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("{}: `{key}` must be an array", path.display()))?;
    let mut filters = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let field = |k: &str| {
            f.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{}: {key}[{i}].{k} missing", path.display()))
        };
        let config = match (f.get("config"), f.get("config_file").and_then(Value::as_str)) {
            (_, Some(file)) => {
                let p = root.join(file);
                let t = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?
            }
            (Some(c), None) => c.clone(),
            (None, None) => Value::Null,
        };
        filters.push(BenchFilter {
            name: field("name")?,
            stem: field("wasm")?,
            config,
            draft: f.get("draft").and_then(Value::as_bool).unwrap_or(false),
            calibration: key == "calibration",
        });
    }
    Ok(filters)
}

fn read_arms(root: &Path, path: &Path) -> Res<ArmsFile> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let env = doc
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(ArmsFile {
        env,
        chain: doc.get("chain").and_then(Value::as_bool).unwrap_or(true),
        calibration: read_filter_list(&doc, "calibration", root, path)?,
        filters: read_filter_list(&doc, "filters", root, path)?,
    })
}

/// How an arm's filters are loaded: each its own module, or all in the bundle (`ai-gateway`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Packing {
    Separate,
    Bundle,
}

fn options(
    filters: &[BenchFilter],
    env: &[(String, String)],
    upstream: u16,
    workers: u32,
    packing: Packing,
) -> EnvoyOptions {
    let opts = EnvoyOptions {
        filters: filters
            .iter()
            .map(|f| Filter::new(&f.name, e2e::wasm_path(&f.stem), f.config.clone()))
            .collect(),
        mock_port: upstream,
        concurrency: workers,
        env: env.to_vec(),
        ..EnvoyOptions::default()
    };
    match packing {
        Packing::Separate => opts,
        // The e2e suites' own packing: one ai-gateway filter whose chain holds the same configs.
        Packing::Bundle => e2e::envoy::bundled(opts),
    }
}

/// The bundle module as a bench filter (for its size and state).
fn bundle_module() -> BenchFilter {
    BenchFilter {
        name: "ai-gateway (bundle)".into(),
        stem: "ai_gateway".into(),
        config: Value::Null,
        draft: false,
        calibration: false,
    }
}

fn sibling_exe(name: &str) -> Res<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p e2e --bin {name}`",
            path.display()
        ))
    }
}

/// `stream_from_body`: the upstream also streams when the body says `"stream": true` (the peers'
/// comparison: other gateways do not forward `x-bench-stream`).
fn start_upstream(stream_from_body: bool) -> Res<(Guard, u16)> {
    let mut child = Command::new(sibling_exe("bench-upstream")?)
        .args(["--port", "0"])
        .args(stream_from_body.then_some("--stream-from-body"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("bench-upstream: {e}"))?;
    let stdout = child.stdout.take().ok_or("bench-upstream: no stdout")?;
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("bench-upstream: {e}"))?;
    let port = line
        .trim()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| format!("bench-upstream printed {line:?}"))?;
    Ok((guard, port))
}

/// The first non-empty line a command prints (stdout, then stderr), or "" if it cannot run.
fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// The size of a filter's `.wasm`, or why it cannot be measured.
fn wasm_state(f: &BenchFilter) -> Res<u64> {
    let path = e2e::wasm_path(&f.stem);
    match fs::metadata(&path) {
        Err(_) => Err(format!("{} missing (not built)", path.display())),
        // A crate whose lib.rs is a doc comment only builds a module of a few dozen bytes.
        Ok(m) if m.len() < 1024 => Err(format!("stub ({} bytes: the filter is not written yet)", m.len())),
        Ok(m) => Ok(m.len()),
    }
}

/// The size of a module as cargo built it, before `make build`'s wasm-opt (`None` if it is not there).
fn cargo_size(f: &BenchFilter) -> Option<u64> {
    // The bundle is built in its own target dir (Makefile: BUNDLE_TARGET).
    let dir = if f.stem == "ai_gateway" {
        e2e::target_dir().join("bundle")
    } else {
        e2e::target_dir()
    };
    let path = dir
        .join("wasm32-wasip1")
        .join("wasm")
        .join(format!("{}.wasm", f.stem));
    fs::metadata(path).ok().map(|m| m.len())
}

fn mean(a: f64, b: f64) -> f64 {
    (a + b) / 2.0
}

/// Results of one (mode, workload, arm): the arm run and the bare runs just before and after it.
struct Cell {
    arm: Run,
    before: Run,
    after: Run,
}

impl Cell {
    fn bare_rps(&self) -> f64 {
        mean(self.before.rps, self.after.rps).max(1e-9)
    }
    fn ratio(&self) -> f64 {
        self.arm.rps / self.bare_rps()
    }
    /// Extra time per request at saturation: 1/arm rps − 1/bare rps (the filter's CPU cost, roughly,
    /// since the one Envoy worker is the bottleneck).
    fn added_us_per_request(&self) -> f64 {
        1e6 / self.arm.rps.max(1e-9) - 1e6 / self.bare_rps()
    }
    fn bare_p50(&self) -> f64 {
        mean(self.before.p50, self.after.p50)
    }
    fn added_p50(&self) -> f64 {
        self.arm.p50 - self.bare_p50()
    }
    fn bare_p99(&self) -> f64 {
        mean(self.before.p99, self.after.p99)
    }
    fn added_p99(&self) -> f64 {
        self.arm.p99 - self.bare_p99()
    }
    /// How far apart the two bare runs are, in percent of their mean (throughput).
    fn noise_rps(&self) -> f64 {
        100.0 * (self.before.rps - self.after.rps).abs() / self.bare_rps()
    }
}

type Cells = BTreeMap<(Mode, usize, usize), Cell>;

/// What an arm measures: an Envoy the bench started, or another gateway (`bench --peers`).
enum Server {
    Envoy(BenchEnvoy),
    Peer(peers::Peer),
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Envoy(e) => e.port,
            Server::Peer(p) => p.port,
        }
    }
    fn extra(&self) -> &Extra {
        match self {
            Server::Envoy(_) => &[],
            Server::Peer(p) => &p.headers,
        }
    }
    /// Resident memory (kB): Envoy's process, or the peer's process and its children.
    fn rss_kib(&self) -> Option<u64> {
        match self {
            Server::Envoy(e) => e.rss_kib(),
            Server::Peer(p) => p.rss_kib(),
        }
    }
}

/// One measured configuration: a label, its filters, how they are packed and its running server.
struct Arm {
    label: String,
    filters: Vec<BenchFilter>,
    packing: Packing,
    server: Server,
}

/// Envoy's memory for one config and worker count (bytes).
struct MemoryRow {
    label: String,
    workers: u32,
    rss: u64,
    allocated: u64,
    heap: u64,
}

/// Everything the report shows.
struct Report {
    date: String,
    machine: String,
    workloads: Vec<Workload>,
    labels: Vec<String>,
    cells: Cells,
    measured_secs: u64,
    filters: Vec<BenchFilter>,
    memory: Vec<MemoryRow>,
    /// Per (arm, workload): the first warm-up run right after the arm's Envoy started (1 s, max mode).
    cold: BTreeMap<(usize, usize), Run>,
    native: String,
    notes: Vec<String>,
}

fn make_workloads(s: &Settings) -> Res<Vec<Workload>> {
    let sizes: &[(usize, &str)] = &[(1024, "1 KB"), (8 * 1024, "8 KB"), (64 * 1024, "64 KB")];
    let mut workloads = Vec::new();
    for &(size, label) in sizes {
        for stream in [false, true] {
            // The quick run and the peers' keep the three that bound the others: small JSON, small SSE,
            // large JSON.
            if (s.quick || s.peers) && (size == 8 * 1024 || size == 64 * 1024 && stream) {
                continue;
            }
            let body = workload::chat_request(size, stream);
            let kind = if stream { "sse" } else { "json" };
            let path = s.dir.join(format!("req-{size}-{kind}.json"));
            fs::write(&path, &body).map_err(|e| format!("{}: {e}", path.display()))?;
            workloads.push(Workload {
                label: format!("{label} {}", if stream { "SSE" } else { "JSON" }),
                stream,
                body: path,
                body_len: body.len(),
            });
        }
    }
    Ok(workloads)
}

/// Starts an arm's Envoy and checks it serves every workload.
fn start_arm(s: &Settings, label: &str, filters: &[BenchFilter], packing: Packing, ctx: &Ctx) -> Res<Arm> {
    let opts = options(filters, &ctx.env, ctx.upstream, 1, packing);
    let envoy = BenchEnvoy::start(s, label, &opts, false)?;
    preflight(envoy.port, &[], &ctx.workloads)?;
    Ok(Arm {
        label: label.to_string(),
        filters: filters.to_vec(),
        packing,
        server: Server::Envoy(envoy),
    })
}

/// What the arms share: the upstream port, the VM environment and the workloads.
struct Ctx {
    upstream: u16,
    env: Vec<(String, String)>,
    workloads: Vec<Workload>,
}

/// Bare Envoy (no filter) on the bench's upstream, checked to serve every workload: the floor of
/// every ratio, in `make bench` and `make bench-peers` alike.
fn start_bare(s: &Settings, ctx: &Ctx) -> Res<BenchEnvoy> {
    let bare = BenchEnvoy::start(
        s,
        "bare",
        &options(&[], &ctx.env, ctx.upstream, 1, Packing::Separate),
        true,
    )?;
    preflight(bare.port, &[], &ctx.workloads)
        .map_err(|e| format!("bare Envoy does not serve the bench: {e}"))?;
    Ok(bare)
}

/// Calibration arms, each policy filter alone, then the chain of the filters that worked alone.
fn start_arms(s: &Settings, arms: &ArmsFile, ctx: &Ctx, notes: &mut Vec<String>) -> Vec<Arm> {
    let mut skip = |f: &BenchFilter, why: String| {
        let draft = if f.draft {
            " (its bench config is a draft written before the filter: see bench/arms.json)"
        } else {
            ""
        };
        let note = format!("skipped `{}`{draft}: {why}", f.name);
        eprintln!("bench: {note}");
        notes.push(note.lines().next().unwrap_or_default().to_string());
    };
    let mut out = Vec::new();
    let mut working = Vec::new();
    // The quick run is a smoke test of the policies: no calibration arms.
    let calibration = if s.quick { &[][..] } else { &arms.calibration[..] };
    for f in calibration.iter().chain(&arms.filters) {
        if let Err(why) = wasm_state(f) {
            skip(f, why);
            continue;
        }
        let label = if f.calibration {
            format!("{} (calibration)", f.name)
        } else {
            f.name.clone()
        };
        match start_arm(s, &label, std::slice::from_ref(f), Packing::Separate, ctx) {
            Ok(arm) => {
                if !f.calibration {
                    working.push(f.clone());
                }
                out.push(arm);
            }
            Err(why) => skip(f, why),
        }
    }
    let names: Vec<&str> = working.iter().map(|f| f.name.as_str()).collect();
    let mut combined = |label: String, packing: Packing, out: &mut Vec<Arm>| match start_arm(
        s, &label, &working, packing, ctx,
    ) {
        Ok(arm) => out.push(arm),
        Err(why) => {
            let note = format!("skipped `{label}`: {why}");
            eprintln!("bench: {note}");
            notes.push(note.lines().next().unwrap_or_default().to_string());
        }
    };
    if arms.chain && working.len() >= 2 {
        combined(
            format!("chain: {}", names.join(" → ")),
            Packing::Separate,
            &mut out,
        );
    }
    // The same policies in one module: one VM, one body read, one parse.
    if arms.chain && !working.is_empty() {
        match wasm_state(&bundle_module()) {
            Ok(_) => combined(
                format!("bundle: {}", names.join(" → ")),
                Packing::Bundle,
                &mut out,
            ),
            Err(why) => {
                let note = format!("skipped the bundle: {why}");
                eprintln!("bench: {note}");
                notes.push(note);
            }
        }
    }
    out
}

/// For each mode and workload: bare, arm 1, bare, arm 2, ..., bare.
fn measure(s: &Settings, bare: &BenchEnvoy, arms: &[Arm], workloads: &[Workload]) -> Res<Cells> {
    let mut cells = Cells::new();
    for mode in [Mode::Paced, Mode::Max] {
        for (wi, w) in workloads.iter().enumerate() {
            // The quick run measures latency on the 1 KB JSON request only (the target's workload).
            if s.quick && mode == Mode::Paced && wi != 0 {
                continue;
            }
            eprintln!("bench: {mode:?} {}", w.label);
            let mut before = wrk(s, bare.port, &[], w, mode, s.seconds)?;
            for (ai, arm) in arms.iter().enumerate() {
                let run = wrk(s, arm.server.port(), arm.server.extra(), w, mode, s.seconds)?;
                let after = wrk(s, bare.port, &[], w, mode, s.seconds)?;
                eprintln!(
                    "bench:   {:<44} {:>7.0} rps (bare {:.0}/{:.0})  p50 {:.0} µs (bare {:.0}/{:.0})",
                    arm.label, run.rps, before.rps, after.rps, run.p50, before.p50, after.p50
                );
                cells.insert(
                    (mode, wi, ai),
                    Cell {
                        arm: run,
                        before,
                        after,
                    },
                );
                before = after;
            }
        }
    }
    Ok(cells)
}

/// Envoy's memory, bare, with `chain` as separate modules and, when `bundle`, as the bundle, for 1 and
/// 2 workers, after a second of each workload.
fn measure_memory(s: &Settings, chain: &[BenchFilter], bundle: bool, ctx: &Ctx) -> Res<Vec<MemoryRow>> {
    let mut rows = Vec::new();
    let names: Vec<&str> = chain.iter().map(|f| f.name.as_str()).collect();
    let mut configs: Vec<(&[BenchFilter], Packing)> = vec![(&[], Packing::Separate)];
    if !chain.is_empty() {
        configs.push((chain, Packing::Separate));
        if bundle {
            configs.push((chain, Packing::Bundle));
        }
    }
    for workers in [1u32, 2] {
        for (filters, packing) in configs.iter().copied() {
            let bare = filters.is_empty();
            let opts = options(filters, &ctx.env, ctx.upstream, workers, packing);
            let slug = match (bare, packing) {
                (true, _) => "mem-bare",
                (false, Packing::Separate) => "mem-chain",
                (false, Packing::Bundle) => "mem-bundle",
            };
            let envoy = BenchEnvoy::start(s, slug, &opts, bare)?;
            let traffic = if s.quick {
                &ctx.workloads[..1]
            } else {
                &ctx.workloads[..]
            };
            for w in traffic {
                wrk(s, envoy.port, &[], w, Mode::Max, 1)?;
            }
            let stats = envoy.memory_stats();
            rows.push(MemoryRow {
                label: match (bare, packing) {
                    (true, _) => "bare".to_string(),
                    (false, Packing::Separate) => format!("{} (separate modules)", names.join(" → ")),
                    (false, Packing::Bundle) => format!("{} (bundle)", names.join(" → ")),
                },
                workers,
                rss: envoy.rss_kib().unwrap_or(0) * 1024,
                allocated: stats.get("server.memory_allocated").copied().unwrap_or(0),
                heap: stats.get("server.memory_heap_size").copied().unwrap_or(0),
            });
        }
    }
    Ok(rows)
}

fn run_native(quick: bool) -> String {
    let exe = match sibling_exe("bench-native") {
        Ok(exe) => exe,
        Err(e) => return format!("{e}\n"),
    };
    let mut cmd = Command::new(exe);
    if quick {
        cmd.arg("--quick");
    }
    match cmd.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => format!("bench-native failed: {}\n", String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("bench-native: {e}\n"),
    }
}

/// Warm-up: V8 compiles hot wasm functions with its optimising tier; pools connect. The first second
/// of each is kept, per (arm, workload) with arm 0 bare and then the arms in order: what V8 costs
/// before every hot function is compiled (Envoy gives V8 `--no-liftoff`: each function is compiled by
/// the optimising tier on its first call).
fn warm_up(
    s: &Settings,
    bare: &BenchEnvoy,
    arms: &[Arm],
    workloads: &[Workload],
) -> Res<BTreeMap<(usize, usize), Run>> {
    let warm: Vec<&Workload> = if s.quick {
        workloads.iter().filter(|w| w.stream).take(1).collect()
    } else {
        workloads
            .iter()
            .filter(|w| w.body_len < 2048 || w.body_len > 60_000)
            .collect()
    };
    let mut cold = BTreeMap::new();
    let targets =
        std::iter::once((bare.port, &[][..])).chain(arms.iter().map(|a| (a.server.port(), a.server.extra())));
    for (ai, (port, extra)) in targets.enumerate() {
        for w in &warm {
            let run = wrk(s, port, extra, w, Mode::Max, 1)?;
            if let Some(wi) = workloads.iter().position(|x| x.label == w.label) {
                cold.insert((ai, wi), run);
            }
        }
    }
    Ok(cold)
}

fn run(s: &Settings) -> Res<Report> {
    let wrk_version = command_line(&s.wrk, &["--version"]);
    if !wrk_version.starts_with("wrk") {
        return Err(format!(
            "{} not found: `make bench` installs it (apt-get install wrk)",
            s.wrk
        ));
    }
    let arms_file = read_arms(&s.root, &s.root.join(env_or("BENCH_ARMS", "bench/arms.json")))?;
    let workloads = make_workloads(s)?;
    let (_upstream, upstream) = start_upstream(false)?;
    eprintln!("bench: upstream on 127.0.0.1:{upstream}; {wrk_version}");
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let envoy_version = command_line(&e2e::envoy_bin().to_string_lossy(), &["--version"]);
    let machine = format!(
        "{} cores, load average {} at start; Envoy {}; {wrk_version}",
        thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        envoy_version.split(": ").last().unwrap_or_default()
    );
    let ctx = Ctx {
        upstream,
        env: arms_file.env.clone(),
        workloads,
    };

    let bare = start_bare(s, &ctx)?;
    let mut notes = Vec::new();
    let arms = start_arms(s, &arms_file, &ctx, &mut notes);
    if arms.is_empty() {
        notes.push("no filter arm could run: only bare Envoy was measured".into());
    }

    let cold = warm_up(s, &bare, &arms, &ctx.workloads)?;

    let started = Instant::now();
    let cells = measure(s, &bare, &arms, &ctx.workloads)?;
    let measured_secs = started.elapsed().as_secs();
    let labels: Vec<String> = arms.iter().map(|a| a.label.clone()).collect();
    // The widest policy arm (the chain when there is one) for the memory figures.
    let chain: Vec<BenchFilter> = arms
        .iter()
        .filter(|a| a.filters.iter().all(|f| !f.calibration))
        .max_by_key(|a| a.filters.len())
        .map(|a| a.filters.clone())
        .unwrap_or_default();
    let bundle = arms.iter().any(|a| a.packing == Packing::Bundle);
    drop(arms);
    drop(bare);
    let memory = measure_memory(s, &chain, bundle, &ctx)?;
    Ok(Report {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine,
        workloads: ctx.workloads,
        labels,
        cells,
        measured_secs,
        filters: arms_file
            .calibration
            .into_iter()
            .chain(arms_file.filters)
            .chain(std::iter::once(bundle_module()))
            .collect(),
        memory,
        cold,
        native: run_native(s.quick),
        notes,
    })
}

fn main() -> ExitCode {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let peers = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--peers") => true,
        Some(other) => {
            eprintln!("bench: unknown argument {other:?} (usage: bench [--peers])");
            return ExitCode::from(2);
        }
    };
    let root = e2e::repo_root();
    let dir = e2e::target_dir().join(if peers { "bench-peers" } else { "bench" });
    let seconds = match env_or("BENCH_SECONDS", if quick { "1" } else { "2" }).parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("bench: BENCH_SECONDS must be a whole number of seconds ≥ 1");
            return ExitCode::from(2);
        }
    };
    let s = Settings {
        quick,
        peers,
        seconds,
        paced_conns: 2,
        paced_delay_ms: 2,
        max_conns: 16,
        wasm_log: env_or("BENCH_WASM_LOG", "info"),
        wrk: env_or("WRK", "wrk"),
        root: root.clone(),
        dir: dir.clone(),
    };
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("bench: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let (text, default_out) = if peers {
        (
            peers::run(&s).map(|r| render_peers(&s, &r)),
            "bench/results-peers.md",
        )
    } else {
        (run(&s).map(|r| render(&s, &r)), "bench/results.md")
    };
    match text {
        Ok(text) => {
            let out = root.join(env_or("BENCH_OUT", default_out));
            if let Err(e) = fs::write(&out, &text) {
                eprintln!("bench: cannot write {}: {e}", out.display());
            }
            println!("{text}");
            eprintln!("bench: written to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
