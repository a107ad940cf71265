//! The Markdown report (`bench/results.md`).

use super::*;

fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

fn mib(n: u64) -> String {
    format!("{:.1}", n as f64 / (1024.0 * 1024.0))
}

pub(crate) fn render(s: &Settings, rep: &Report) -> String {
    let mut r = String::new();
    let cmd = if s.quick {
        "BENCH_QUICK=1 make bench"
    } else {
        "make bench"
    };
    let _ = writeln!(r, "## Benchmark: overhead against bare Envoy\n");
    let _ = writeln!(
        r,
        "`{cmd}` on {}; {}; upstream: `bench-upstream` (fixed answers, 17 KB SSE in 67 events).\n",
        rep.date, rep.machine
    );
    let _ = writeln!(
        r,
        "One Envoy worker per arm; wasm log level `{}`. **Paced**: {} connections, each pausing {} ms after \
         every response (a steady, modest rate: no queueing); added latency = arm − mean of the bare runs just \
         before and after it. **Max**: {} connections, no pause; throughput ratio = arm ÷ that bare mean, and \
         µs/req = 1/arm − 1/bare (the worker time the filters add per request). {} s per run, {} s measured \
         in all; noise = gap between the two bare runs.{}\n",
        s.wasm_log,
        s.paced_conns,
        s.paced_delay_ms,
        s.max_conns,
        s.seconds,
        rep.measured_secs,
        if s.quick {
            " **Quick run (smoke test): 1 s runs, three workloads, latency on 1 KB JSON only, no \
             calibration arms: indicative only.**"
        } else {
            ""
        }
    );
    r.push_str(
        "| arm | workload | rps ÷ bare | +µs/req (max) | bare rps | noise | added p50 µs | added p99 µs | bare p50 µs | paced rps |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (ai, label) in rep.labels.iter().enumerate() {
        for (wi, w) in rep.workloads.iter().enumerate() {
            let Some(max) = rep.cells.get(&(Mode::Max, wi, ai)) else {
                continue;
            };
            let paced = rep.cells.get(&(Mode::Paced, wi, ai));
            let errors = max.arm.errors + paced.map_or(0, |p| p.arm.errors);
            let warn = if errors > 0 {
                format!(" ⚠ {errors} errors")
            } else {
                String::new()
            };
            let latency = match paced {
                Some(p) => format!(
                    "{:+.0} | {:+.0} | {:.0} | {:.0}",
                    p.added_p50(),
                    p.added_p99(),
                    p.bare_p50(),
                    p.arm.rps
                ),
                None => "– | – | – | –".to_string(),
            };
            let _ = writeln!(
                r,
                "| {label}{warn} | {} | {:.2} | {:+.0} | {:.0} | {:.1}% | {latency} |",
                w.label,
                max.ratio(),
                max.added_us_per_request(),
                max.bare_rps(),
                max.noise_rps(),
            );
        }
    }
    if rep.labels.is_empty() {
        r.push_str("| (no filter arm ran) | | | | | | | | | |\n");
    }
    render_rates(&mut r, rep);
    render_sizes(&mut r, rep);
    let _ = writeln!(
        r,
        "\n### Envoy memory\n\nAfter 1 s of traffic on each workload; RSS from /proc, the rest from the admin `/stats`.\n"
    );
    r.push_str(
        "| config | workers | RSS MiB | server.memory_allocated MiB | server.memory_heap_size MiB |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for m in &rep.memory {
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} |",
            m.label,
            m.workers,
            mib(m.rss),
            mib(m.allocated),
            mib(m.heap)
        );
    }
    let _ = writeln!(
        r,
        "\n### Native engine throughput\n\n`bench-native{}` (release build, one core, this machine).\n",
        if s.quick { " --quick" } else { "" }
    );
    r.push_str(&rep.native);
    render_targets(&mut r, rep);
    if !rep.notes.is_empty() {
        r.push_str("\nSkipped:\n\n");
        for n in &rep.notes {
            let _ = writeln!(r, "- {n}");
        }
    }
    r
}

/// In-Envoy rate: the largest JSON request's bytes over each arm's added p50.
fn render_rates(r: &mut String, rep: &Report) {
    let largest = rep
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.stream)
        .max_by_key(|(_, w)| w.body_len);
    let Some((wi, w)) = largest else {
        return;
    };
    let _ = writeln!(
        r,
        "\nIn-Envoy rate on {} requests ({} bytes): request bytes ÷ the time the arm adds, counting \
         everything its filters do per request as scanning (so a lower bound on the scanning speed): from \
         the added p50 (paced) and from the added worker time per request (max).\n",
        w.label, w.body_len
    );
    r.push_str(
        "| arm | added p50 µs | MB/s (p50) | added µs/req (max) | MB/s (max) |\n|---|---:|---:|---:|---:|\n",
    );
    let rate = |added: f64| {
        if added > 5.0 {
            format!("{:.0}", w.body_len as f64 / added)
        } else {
            "(within noise)".to_string()
        }
    };
    for (ai, label) in rep.labels.iter().enumerate() {
        let Some(max) = rep.cells.get(&(Mode::Max, wi, ai)) else {
            continue;
        };
        let paced = match rep.cells.get(&(Mode::Paced, wi, ai)) {
            Some(c) => format!("{:+.0} | {}", c.added_p50(), rate(c.added_p50())),
            None => "– | –".to_string(),
        };
        let added = max.added_us_per_request();
        let _ = writeln!(r, "| {label} | {paced} | {added:+.0} | {} |", rate(added));
    }
}

fn render_sizes(r: &mut String, rep: &Report) {
    r.push_str(
        "\n### .wasm sizes\n\nAs `make build` ships them (cargo's `wasm` profile, then binaryen's `wasm-opt -Oz`), \
         and as cargo built them.\n\n",
    );
    r.push_str("| module | bytes | cargo's output | limit |\n|---|---:|---:|---|\n");
    let mut seen = Vec::new();
    for f in &rep.filters {
        if seen.contains(&f.stem) {
            continue;
        }
        seen.push(f.stem.clone());
        let name = if f.calibration {
            format!("{} (calibration)", f.stem)
        } else {
            f.name.clone()
        };
        match wasm_state(f) {
            Ok(raw) => {
                let cargo = cargo_size(f).map_or_else(|| "–".to_string(), kib);
                let (limit, label) = size_limit(f);
                let ok = if raw <= limit {
                    format!("≤ {label}: yes")
                } else {
                    format!("≤ {label}: **no**")
                };
                let _ = writeln!(r, "| {name} | {} | {cargo} | {ok} |", kib(raw));
            }
            Err(why) => {
                let _ = writeln!(r, "| {name} | {why} | | |");
            }
        }
    }
}

/// The size target of a module: 1.5 MiB for the bundle, 1 MiB for each separate module.
fn size_limit(f: &BenchFilter) -> (u64, &'static str) {
    if f.stem == "ai_gateway" {
        (3 << 19, "1.5 MiB")
    } else {
        (1 << 20, "1 MiB")
    }
}

/// The first second after each Envoy started against its steady throughput (the max run of the same
/// workload): compile time and cold caches.
fn render_warmup(r: &mut String, rep: &Report) {
    if rep.cold.is_empty() {
        return;
    }
    let _ = writeln!(
        r,
        "\n### Warm-up\n\nThe first 1 s of traffic right after each Envoy started (max mode), against the measured \
         max run of the same workload. Envoy runs V8 with `--no-liftoff`: every wasm function is compiled \
         by the optimising compiler on its first call, so the first requests pay for compilation.\n"
    );
    r.push_str(
        "| arm | workload | first 1 s rps | steady rps | first ÷ steady |\n|---|---|---:|---:|---:|\n",
    );
    for (&(ai, wi), cold) in &rep.cold {
        let Some(w) = rep.workloads.get(wi) else {
            continue;
        };
        let (label, steady) = if ai == 0 {
            let any = rep
                .cells
                .iter()
                .find(|((m, w2, _), _)| *m == Mode::Max && *w2 == wi);
            ("bare".to_string(), any.map(|(_, c)| c.bare_rps()))
        } else {
            let label = rep.labels.get(ai - 1).cloned().unwrap_or_default();
            (label, rep.cells.get(&(Mode::Max, wi, ai - 1)).map(|c| c.arm.rps))
        };
        let Some(steady) = steady else {
            continue;
        };
        let _ = writeln!(
            r,
            "| {label} | {} | {:.0} | {steady:.0} | {:.2} |",
            w.label,
            cold.rps,
            cold.rps / steady.max(1e-9)
        );
    }
}

fn render_targets(r: &mut String, rep: &Report) {
    render_warmup(r, rep);
    r.push_str("\n### Targets (issue 16)\n\n");
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let wl = |label: &str| rep.workloads.iter().position(|w| w.label == label);
    let cell = |mode: Mode, ai: usize, wi: Option<usize>| wi.and_then(|wi| rep.cells.get(&(mode, wi, ai)));
    let bundle = rep.labels.iter().position(|l| l.starts_with("bundle:"));
    let (kb1, kb64, sse) = (wl("1 KB JSON"), wl("64 KB JSON"), wl("1 KB SSE"));
    match bundle {
        Some(ai) => {
            let label = rep.labels.get(ai).cloned().unwrap_or_default();
            let _ = writeln!(r, "The bundle (`{label}`):\n");
            match (cell(Mode::Max, ai, kb1), cell(Mode::Paced, ai, kb1)) {
                (Some(max), paced) => {
                    let _ = writeln!(
                        r,
                        "- 1 KB JSON: throughput {:.2}× bare (target ≥ 0.6×): {}; worker time {:+.0} µs per request \
                         (target ≤ +40 µs): {}; added p50 {} (target ≤ +100 µs): {}.",
                        max.ratio(),
                        verdict(max.ratio() >= 0.6),
                        max.added_us_per_request(),
                        verdict(max.added_us_per_request() <= 40.0),
                        paced.map_or("not measured".to_string(), |p| format!("{:+.0} µs", p.added_p50())),
                        paced.map_or("not measured", |p| verdict(p.added_p50() <= 100.0)),
                    );
                }
                _ => r.push_str("- 1 KB JSON: not measured.\n"),
            }
            for (wi, what, limit) in [
                (kb64, "64 KB JSON", 500.0),
                (sse, "17 KB SSE answers (1 KB request)", 150.0),
            ] {
                match cell(Mode::Max, ai, wi) {
                    Some(max) => {
                        let _ = writeln!(
                            r,
                            "- {what}: {:+.0} µs per request (target ≤ +{limit:.0} µs): {}.",
                            max.added_us_per_request(),
                            verdict(max.added_us_per_request() <= limit)
                        );
                    }
                    None => {
                        let _ = writeln!(r, "- {what}: not measured in this run.");
                    }
                }
            }
            let rss = |label_end: &str| {
                rep.memory
                    .iter()
                    .find(|m| m.workers == 1 && m.label.ends_with(label_end))
                    .map(|m| m.rss)
            };
            match (rss("(bundle)"), rss("bare")) {
                (Some(b), Some(bare)) => {
                    let added = b.saturating_sub(bare) as f64 / (1024.0 * 1024.0);
                    let _ = writeln!(
                        r,
                        "- RSS with one worker: bare + {added:.1} MiB (target ≤ +40 MiB): {}.",
                        verdict(added <= 40.0)
                    );
                }
                _ => r.push_str("- RSS: not measured.\n"),
            }
        }
        None => r.push_str("- The bundle did not run: its targets are not measured.\n"),
    }
    r.push_str("\nEach module alone, 1 KB JSON (target ≤ +20 µs worker time per request):\n\n");
    for (ai, label) in rep.labels.iter().enumerate() {
        if label.contains(':') || label.ends_with("(calibration)") {
            continue;
        }
        if let Some(max) = cell(Mode::Max, ai, kb1) {
            let _ = writeln!(
                r,
                "- {label}: {:+.0} µs: {}.",
                max.added_us_per_request(),
                verdict(max.added_us_per_request() <= 20.0)
            );
        }
    }
    let sizes: Vec<(String, u64, u64, &str)> = rep
        .filters
        .iter()
        .filter(|f| !f.calibration)
        .filter_map(|f| {
            let (limit, label) = size_limit(f);
            wasm_state(f).ok().map(|n| (f.name.clone(), n, limit, label))
        })
        .collect();
    let _ = writeln!(
        r,
        "\nSizes: {}.",
        sizes
            .iter()
            .map(|(name, n, limit, label)| format!("{name} {} (≤ {label}: {})", kib(*n), verdict(n <= limit)))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

/// The comparison with other gateways (`bench --peers`, `bench/results-peers.md`).
pub(crate) fn render_peers(s: &Settings, rep: &peers::PeersReport) -> String {
    let mut r = String::new();
    let cmd = if s.quick {
        "BENCH_QUICK=1 make bench-peers"
    } else {
        "make bench-peers"
    };
    let _ = writeln!(r, "## Compared with peers\n");
    let _ = writeln!(
        r,
        "`{cmd}` on {}; load average {} at the start of the run, {} at its end.\n",
        rep.date, rep.load_start, rep.load_end
    );
    for (k, v) in &rep.machine {
        let _ = writeln!(r, "- {k}: {v}");
    }
    let _ = writeln!(
        r,
        "\nOne worker each: Envoy `--concurrency 1`, LiteLLM `--num_workers 1`, Portkey one node process; \
         all against one `bench-upstream --stream-from-body` (canned OpenAI answers, 17 KB SSE in 67 \
         events), each arm run between two bare Envoy runs. Requests/s at **max** load ({} connections, \
         no pause), ÷ the mean of the two bare runs around it; latency at **paced** load ({} connections, \
         each pausing {} ms after every response: service time, not queueing); p99 at max load is \
         mostly queueing. {} s per run, {} s measured in all. wrk counts the requests that finish within a run: \
         a gateway that finishes few (under 100/s) gets a coarse rate, and its latency percentiles leave \
         out the requests still open at the end.{}\n",
        s.max_conns,
        s.paced_conns,
        s.paced_delay_ms,
        s.seconds,
        rep.measured_secs,
        if s.quick {
            " **Quick run: 1 s runs, latency on 1 KB JSON only: indicative only.**"
        } else {
            ""
        }
    );
    r.push_str(
        "| workload | gateway | rps | ÷ bare Envoy | p50 µs | p99 µs | p50 − bare µs | p99 µs at max load |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let n = |x: f64| format!("{x:.0}");
    for (wi, w) in rep.workloads.iter().enumerate() {
        let max: Vec<&Cell> = (0..rep.labels.len())
            .filter_map(|ai| rep.cells.get(&(Mode::Max, wi, ai)))
            .collect();
        let paced: Vec<&Cell> = (0..rep.labels.len())
            .filter_map(|ai| rep.cells.get(&(Mode::Paced, wi, ai)))
            .collect();
        let avg = |cells: &[&Cell], f: fn(&Cell) -> f64| {
            (!cells.is_empty()).then(|| cells.iter().map(|c| f(c)).sum::<f64>() / cells.len() as f64)
        };
        let dash = || "–".to_string();
        // Bare Envoy: the mean of all its runs of this workload.
        let _ = writeln!(
            r,
            "| {} | bare Envoy | {} | 1.00 | {} | {} | 0 | {} |",
            w.label,
            avg(&max, Cell::bare_rps).map_or_else(dash, n),
            avg(&paced, Cell::bare_p50).map_or_else(dash, n),
            avg(&paced, Cell::bare_p99).map_or_else(dash, n),
            avg(&max, |c| mean(c.before.p99, c.after.p99)).map_or_else(dash, n),
        );
        for (ai, label) in rep.labels.iter().enumerate() {
            let Some(m) = rep.cells.get(&(Mode::Max, wi, ai)) else {
                continue;
            };
            let p = rep.cells.get(&(Mode::Paced, wi, ai));
            let errors = m.arm.errors + p.map_or(0, |p| p.arm.errors);
            let warn = if errors > 0 {
                format!(" ⚠ {errors} errors")
            } else {
                String::new()
            };
            // A slow peer finishes few requests in a run: its rate gets a decimal, its ratio three.
            let (rps, ratio) = if m.arm.rps < 100.0 {
                (format!("{:.1}", m.arm.rps), format!("{:.3}", m.ratio()))
            } else {
                (format!("{:.0}", m.arm.rps), format!("{:.2}", m.ratio()))
            };
            let _ = writeln!(
                r,
                "| {} | {label}{warn} | {rps} | {ratio} | {} | {} | {} | {:.0} |",
                w.label,
                p.map_or_else(dash, |p| n(p.arm.p50)),
                p.map_or_else(dash, |p| n(p.arm.p99)),
                p.map_or_else(dash, |p| format!("{:+.0}", p.added_p50())),
                m.arm.p99,
            );
        }
    }
    r.push_str("\n### Memory\n\nResident memory (RSS, from /proc) of each server right after the load; a peer's counts its child processes too.\n\n");
    r.push_str("| gateway | RSS MiB | − bare Envoy MiB |\n|---|---:|---:|\n");
    let bare = rep.memory.first().and_then(|m| m.rss);
    for m in &rep.memory {
        let (rss, diff) = match (m.rss, bare) {
            (Some(x), Some(b)) => (
                mib(x),
                format!("{:+.1}", (x as f64 - b as f64) / (1024.0 * 1024.0)),
            ),
            (Some(x), None) => (mib(x), "–".into()),
            (None, _) => ("(not measured)".into(), "–".into()),
        };
        let _ = writeln!(r, "| {} | {rss} | {diff} |", m.label);
    }
    if !rep.notes.is_empty() {
        r.push_str("\nSkipped:\n\n");
        for n in &rep.notes {
            let _ = writeln!(r, "- {n}");
        }
    }
    r
}
