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
    render_sizes(&mut r, s, rep);
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

fn render_sizes(r: &mut String, s: &Settings, rep: &Report) {
    let _ = writeln!(
        r,
        "\n### .wasm sizes\n\nAs built by the release profile (`make build`); {} run here to measure only (the \
         build is unchanged).\n",
        command_line(&env_or("WASM_OPT", "wasm-opt"), &["--version"])
    );
    r.push_str("| filter | release | wasm-opt -O3 | wasm-opt -Oz | ≤ 1 MiB |\n|---|---:|---:|---:|---|\n");
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
                // wasm-opt takes seconds per module: the smoke run skips it.
                let (o3, oz) = if s.quick {
                    ("(full run only)".to_string(), "(full run only)".to_string())
                } else {
                    match wasm_opt_sizes(s, f) {
                        Ok((a, b)) => (kib(a), kib(b)),
                        Err(e) => (e.clone(), e),
                    }
                };
                let ok = if raw <= 1 << 20 { "yes" } else { "**no**" };
                let _ = writeln!(r, "| {name} | {} | {o3} | {oz} | {ok} |", kib(raw));
            }
            Err(why) => {
                let _ = writeln!(r, "| {name} | {why} | | | |");
            }
        }
    }
}

fn render_targets(r: &mut String, rep: &Report) {
    r.push_str("\n### Targets\n\n");
    let chain = rep.labels.iter().position(|l| l.starts_with("chain:"));
    let policy = rep.labels.iter().rposition(|l| !l.ends_with("(calibration)"));
    let one_kb = rep.workloads.iter().position(|w| w.label == "1 KB JSON");
    let measured = chain.or(policy).zip(one_kb).and_then(|(ai, wi)| {
        let max = rep.cells.get(&(Mode::Max, wi, ai))?;
        let paced = rep.cells.get(&(Mode::Paced, wi, ai))?;
        Some((rep.labels.get(ai)?, max, paced))
    });
    match measured {
        Some((label, max, paced)) => {
            let which = if chain.is_some() {
                format!("Full chain (`{label}`)")
            } else {
                format!("`{label}` (no chain yet: one policy filter runs)")
            };
            let verdict = |ok: bool| if ok { "met" } else { "missed" };
            let _ = writeln!(
                r,
                "- {which}, 1 KB JSON: throughput {:.0}% of bare (target ≥ 80%): **{}**; added p50 {:+.0} µs \
                 (target ≤ 150 µs): **{}**.",
                100.0 * max.ratio(),
                verdict(max.ratio() >= 0.80),
                paced.added_p50(),
                verdict(paced.added_p50() <= 150.0)
            );
        }
        None => r.push_str("- Chain targets: not measurable in this run (no policy arm ran).\n"),
    }
    let sizes: Vec<u64> = rep
        .filters
        .iter()
        .filter(|f| !f.calibration)
        .filter_map(|f| wasm_state(f).ok())
        .collect();
    let all_small = sizes.iter().all(|&n| n <= 1 << 20);
    let _ = writeln!(
        r,
        "- Every built policy .wasm ≤ 1 MiB ({} built): **{}**.",
        sizes.len(),
        if all_small { "met" } else { "missed" }
    );
}
