//! `bench-prof`: one bench arm's request path, natively, for instruction-count profiles.
//!
//! Plays the bench's requests (`bench/workload.rs`: 1 KB and 64 KB chat requests with a JSON answer, a
//! 1 KB request with the 17 KB SSE answer of 67 events) through the real driver and policies on the
//! fake Envoy host (`shared::host::fake::Runtime`), with the configs of `bench/arms.json`: each policy
//! alone, the four as separate filters (`chain`), or as one bundle module (`bundle`, the ai-gateway
//! chain of the same four). The same code the `.wasm` runs, minus the host itself.
//!
//! ```text
//! bench-prof [--arm NAME] [--workload 1k|64k|sse] [--iters N] [--repeat R] [--arms bench/arms.json]
//! ```
//! Run it from the repository root. The same program builds for wasm32-wasip1 (`bench/prof-wasm`) and
//! runs under Node's V8 with Envoy's V8 flags, to compare builds as Envoy would run them.
//!
//! Without `--arm`/`--workload` it runs every pair and prints µs per request (noisy on a shared
//! machine). For repeatable numbers count instructions with callgrind, only inside the measured loop:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*bench_prof*measured*' \
//!   target/release/bench-prof --arm bundle --workload 1k --iters 200
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//! (total ÷ iterations = instructions per request). `bench/README.md` has the breakdown this gave.

#[allow(dead_code)]
#[path = "bench/workload.rs"]
mod workload;

use serde_json::{json, Value};
use shared::host::fake::{ClientRequest, FakeFilter, Named, Runtime, UpstreamResponse};
use shared::host::HostKind;
use shared::wasm::Filter;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

type Res<T> = Result<T, String>;

/// `bench/arms.json`'s policy filters: (name, config), in chain order. Paths are relative to the
/// working directory, the repository root (the wasm build under Node sees only that folder).
fn arms(path: &str) -> Res<Vec<(String, Value)>> {
    let path = std::path::Path::new(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let list = doc
        .get("filters")
        .and_then(Value::as_array)
        .ok_or("arms.json: no filters")?;
    let mut out = Vec::new();
    for f in list {
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or("arms.json: a filter without name")?;
        let config = match (f.get("config"), f.get("config_file").and_then(Value::as_str)) {
            (_, Some(file)) => {
                let p = std::path::Path::new(file);
                let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&t).map_err(|e| format!("{}: {e}", p.display()))?
            }
            (Some(c), None) => c.clone(),
            (None, None) => Value::Null,
        };
        out.push((name.to_string(), config));
    }
    Ok(out)
}

fn env(name: &str) -> Option<String> {
    (name == "OPENAI_API_KEY").then(|| "bench-upstream-key".to_string())
}

fn filter<F: Filter>(config: &Value) -> Res<Box<dyn FakeFilter>> {
    let c = F::configure(config.to_string().as_bytes(), &env).map_err(|e| format!("{}: {e}", F::NAME))?;
    Ok(Named::new(F::NAME, F::new_policy(&Rc::new(c), 7)))
}

fn one(name: &str, config: &Value) -> Res<Box<dyn FakeFilter>> {
    match name {
        "ai-prompt-guard" => filter::<ai_prompt_guard::config::Config>(config),
        "ai-pii-redact" => filter::<ai_pii_redact::config::Config>(config),
        "ai-token-ratelimit" => filter::<ai_token_ratelimit::config::Config>(config),
        "ai-proxy" => filter::<ai_proxy::config::Config>(config),
        other => Err(format!("unknown filter {other}")),
    }
}

/// The filters of an arm: one policy, the separate chain, or the bundle.
fn build(arm: &str, arms: &[(String, Value)]) -> Res<Vec<Box<dyn FakeFilter>>> {
    match arm {
        "chain" => arms.iter().map(|(n, c)| one(n, c)).collect(),
        "bundle" => {
            let chain: Vec<Value> = arms
                .iter()
                .map(|(n, c)| json!({"policy": n, "config": c}))
                .collect();
            Ok(vec![filter::<ai_gateway::config::Bundle>(
                &json!({ "chain": chain }),
            )?])
        }
        name => {
            let (n, c) = arms
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| format!("no arm {name} in bench/arms.json"))?;
            Ok(vec![one(n, c)?])
        }
    }
}

struct Load {
    request: ClientRequest,
    answer: UpstreamResponse,
}

fn load(workload: &str) -> Res<Load> {
    let (size, stream) = match workload {
        "1k" => (1024, false),
        "64k" => (64 * 1024, false),
        "sse" => (1024, true),
        other => return Err(format!("unknown workload {other} (1k, 64k, sse)")),
    };
    let request = ClientRequest::post("/v1/chat/completions", &workload::chat_request(size, stream))
        .header("authorization", "Bearer bench-client-key")
        .header("x-consumer-id", "bench")
        .header("x-ai-cluster", "mock_openai");
    let answer = if stream {
        let events = workload::openai_sse_events();
        UpstreamResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: events,
        }
    } else {
        let body = workload::openai_json();
        UpstreamResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            chunks: vec![body],
        }
    };
    Ok(Load { request, answer })
}

fn once(rt: &mut Runtime, l: &Load) -> Res<usize> {
    let answer = l.answer.clone();
    let ex = rt.run(l.request.clone(), move |_| answer);
    if ex.status != Some(200) {
        let text = String::from_utf8_lossy(&ex.body);
        return Err(format!("status {:?}: {text}", ex.status));
    }
    Ok(ex.body.len())
}

/// The loop callgrind counts (`--toggle-collect='*bench_prof*measured*'`).
#[inline(never)]
fn measured(rt: &mut Runtime, l: &Load, iters: u32) -> Res<usize> {
    let mut n = 0;
    for _ in 0..iters {
        n += black_box(once(rt, l)?);
    }
    Ok(n)
}

/// The arm's filters on a fake Envoy with the workload, after a warm-up: the first request detects
/// the host and fills caches (lazy DFA states, allocations). Arm `none` has no filter at all.
fn warmed(arm: &str, workload: &str, arms: &[(String, Value)]) -> Res<(Runtime, Load)> {
    let filters = if arm == "none" {
        Vec::new()
    } else {
        build(arm, arms)?
    };
    let mut rt = Runtime::new(HostKind::Envoy, filters);
    let l = load(workload)?;
    for _ in 0..3 {
        once(&mut rt, &l)?;
    }
    Ok((rt, l))
}

/// The host calls one request makes (after the warm-up), in all and by ABI operation: each is a
/// crossing out of the VM in Envoy or Kong.
fn calls(arm: &str, workload: &str, arms: &[(String, Value)]) -> Res<(u64, String)> {
    let (mut rt, l) = warmed(arm, workload, arms)?;
    rt.host.count_calls = true;
    once(&mut rt, &l)?;
    let by_op = rt.host.calls.borrow();
    let total = by_op.values().sum();
    let mut ops: Vec<(&String, &u64)> = by_op.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1));
    let text: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
    Ok((total, text.join(", ")))
}

/// µs per request: the best of `repeat` timed loops of `iters` requests (the least disturbed by the
/// rest of the machine). Arm `none` is the fake host's own share: no filter at all.
fn run(arm: &str, workload: &str, iters: u32, repeat: u32, arms: &[(String, Value)]) -> Res<f64> {
    let (mut rt, l) = warmed(arm, workload, arms)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        measured(&mut rt, &l, iters)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / f64::from(iters.max(1)));
    }
    Ok(best)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: u32 = opt("--iters").and_then(|s| s.parse().ok()).unwrap_or(200);
    let repeat: u32 = opt("--repeat").and_then(|s| s.parse().ok()).unwrap_or(1);
    let result = (|| -> Res<()> {
        let arms = arms(&opt("--arms").unwrap_or_else(|| "bench/arms.json".to_string()))?;
        let names: Vec<String> = match opt("--arm") {
            Some(a) => vec![a],
            None => ["none"]
                .iter()
                .map(|s| s.to_string())
                .chain(arms.iter().map(|(n, _)| n.clone()))
                .chain(["chain".to_string(), "bundle".to_string()])
                .collect(),
        };
        let loads: Vec<String> = match opt("--workload") {
            Some(w) => vec![w],
            None => vec!["1k".into(), "64k".into(), "sse".into()],
        };
        let target = if cfg!(target_arch = "wasm32") {
            "wasm32"
        } else {
            "native"
        };
        if args.iter().any(|a| a == "--calls") {
            println!("| arm | workload | host calls per request | by operation |\n|---|---|---:|---|");
            for a in &names {
                for w in &loads {
                    let (total, by_op) = calls(a, w, &arms).map_err(|e| format!("{a} {w}: {e}"))?;
                    println!("| {a} | {w} | {total} | {by_op} |");
                }
            }
            return Ok(());
        }
        println!("| arm | workload | µs per request ({target}) |\n|---|---|---:|");
        for a in &names {
            for w in &loads {
                let us = run(a, w, iters, repeat, &arms).map_err(|e| format!("{a} {w}: {e}"))?;
                println!("| {a} | {w} | {us:.1} |");
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-prof: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
