//! guard-eval: scores the labelled injection corpus with the guard's detector and prints detection and
//! false-positive rates per family, then the detector's native scoring throughput.
//!
//! Corpus: `tests/corpus/injection/*.txt`, one prompt per line (`# ` comments; `\n`, `\t` and `\u{..}`
//! escapes). The file name is the label: an injection family (`instruction_override.txt`, ...),
//! `indirect.txt` (attacks hidden in documents), or `benign.txt` / `hard_negatives.txt`.
//!
//! Usage: `cargo run -q --release -p e2e --bin guard-eval [-- --threshold 0.5] [--verbose] [--corpus DIR]`
//! (`--corpus tests/corpus/injection/heldout`: the held-out set, never used for tuning).
//! `--verbose` lists every miss and false positive with its scores. Exits 1 when a target is missed
//! (≥ 90% detection of direct and of indirect injections, ≤ 3% false positives on benign prompts).

use shared::injection::{Detector, Family};
use std::path::Path;
use std::time::Instant;

const BENIGN: &[&str] = &["benign", "hard_negatives"];

fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            Some('t') => {
                chars.next();
                out.push('\t');
            }
            Some('u') => {
                chars.next();
                let mut hex = String::new();
                if chars.peek() == Some(&'{') {
                    chars.next();
                    for h in chars.by_ref() {
                        if h == '}' {
                            break;
                        }
                        hex.push(h);
                    }
                }
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&format!("\\u{{{hex}}}")),
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

fn load(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut sets = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("guard-eval: cannot read {}", dir.display());
        std::process::exit(2);
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
    {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let prompts: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
            .map(unescape)
            .collect();
        sets.push((label, prompts));
    }
    sets
}

/// Direct, indirect and benign counts and hits of one corpus.
fn totals(
    detector: &Detector,
    sets: &[(String, Vec<String>)],
    threshold: f32,
) -> (usize, usize, usize, usize, usize, usize) {
    let mut t = (0, 0, 0, 0, 0, 0);
    for (label, prompts) in sets {
        let hit = prompts
            .iter()
            .filter(|p| detector.score(p).total() >= threshold)
            .count();
        if BENIGN.contains(&label.as_str()) {
            t.4 += prompts.len();
            t.5 += hit;
        } else if label == "indirect" {
            t.2 += prompts.len();
            t.3 += hit;
        } else {
            t.0 += prompts.len();
            t.1 += hit;
        }
    }
    t
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threshold = args
        .iter()
        .position(|a| a == "--threshold")
        .and_then(|i| args.get(i + 1))
        .and_then(|t| t.parse::<f32>().ok())
        .unwrap_or(0.5);
    let verbose = args.iter().any(|a| a == "--verbose");
    let dir = args
        .iter()
        .position(|a| a == "--corpus")
        .and_then(|i| args.get(i + 1))
        .map(|d| e2e::repo_root().join(d))
        .unwrap_or_else(|| e2e::repo_root().join("tests").join("corpus").join("injection"));
    let sets = load(&dir);
    let detector = match Detector::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("guard-eval: detector does not compile: {e}");
            std::process::exit(2);
        }
    };

    println!(
        "prompt-injection detector, threshold {threshold:.2}, corpus {}",
        dir.display()
    );
    println!(
        "{:<22} {:>5} {:>8} {:>7} {:>14}",
        "set", "n", "flagged", "rate", "family match"
    );
    let (mut direct, mut direct_hit) = (0usize, 0usize);
    let (mut indirect, mut indirect_hit) = (0usize, 0usize);
    let (mut benign, mut benign_hit) = (0usize, 0usize);
    for (label, prompts) in &sets {
        let family = Family::parse(label);
        let (mut hit, mut matched) = (0usize, 0usize);
        for p in prompts {
            let s = detector.score(p);
            let flagged = s.total() >= threshold;
            if flagged {
                hit += 1;
            }
            if family.is_some_and(|f| s.get(f) >= threshold) {
                matched += 1;
            }
            let is_benign = BENIGN.contains(&label.as_str());
            if verbose && flagged == is_benign {
                let scores: Vec<String> = s
                    .iter()
                    .filter(|(_, v)| *v > 0.0)
                    .map(|(f, v)| format!("{}={v:.2}", f.as_str()))
                    .collect();
                println!(
                    "  {} [{label}] total={:.2} {}: {p:?}",
                    if is_benign { "FP" } else { "MISS" },
                    s.total(),
                    scores.join(" ")
                );
            }
        }
        let n = prompts.len();
        let rate = if n == 0 {
            0.0
        } else {
            100.0 * hit as f64 / n as f64
        };
        let kind = if BENIGN.contains(&label.as_str()) {
            benign += n;
            benign_hit += hit;
            "FPR"
        } else if label == "indirect" {
            indirect += n;
            indirect_hit += hit;
            "TPR"
        } else {
            direct += n;
            direct_hit += hit;
            "TPR"
        };
        let fam = match family {
            Some(_) => format!("{:.1}%", 100.0 * matched as f64 / n.max(1) as f64),
            None => "-".into(),
        };
        println!("{label:<22} {n:>5} {hit:>8} {kind} {rate:>5.1}% {fam:>10}");
    }
    let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    let (tpr_direct, tpr_indirect, fpr) = (
        pct(direct_hit, direct),
        pct(indirect_hit, indirect),
        pct(benign_hit, benign),
    );
    println!("{:-<60}", "");
    println!("direct injections      {direct:>5} {direct_hit:>8} TPR {tpr_direct:>5.1}%   (target >= 90%)");
    println!(
        "indirect injections    {indirect:>5} {indirect_hit:>8} TPR {tpr_indirect:>5.1}%   (target >= 90%)"
    );
    println!("benign + hard negative {benign:>5} {benign_hit:>8} FPR {fpr:>5.1}%   (target <= 3%)");

    // The main corpus was used to tune the rules; the held-out sets were each scored before any tuning on
    // them (heldout4 never tuned on). Print them by default so the tuned figures are not read alone.
    if !args.iter().any(|a| a == "--corpus") {
        println!("{:-<60}", "");
        println!("held-out sets (not the tuning corpus)   direct TPR   indirect TPR   benign FPR");
        let mut held: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        held.sort();
        for h in held {
            let (d, dh, i, ih, b, bh) = totals(&detector, &load(&h), threshold);
            let name = h
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            println!(
                "{name:<38} {:>5.1}% ({dh}/{d}) {:>6.1}% ({ih}/{i}) {:>6.1}% ({bh}/{b})",
                pct(dh, d),
                pct(ih, i),
                pct(bh, b)
            );
        }
    }

    // Throughput: score the whole corpus repeatedly for about a second.
    let all: Vec<&String> = sets.iter().flat_map(|(_, p)| p.iter()).collect();
    let bytes_per_pass: usize = all.iter().map(|p| p.len()).sum();
    let start = Instant::now();
    let mut passes = 0usize;
    let mut sink = 0.0f32;
    while start.elapsed().as_millis() < 1000 || passes == 0 {
        for p in &all {
            sink += detector.score(p).total();
        }
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (bytes_per_pass * passes) as f64 / 1_000_000.0;
    let per_prompt_us = secs * 1e6 / (all.len() * passes).max(1) as f64;
    println!(
        "native scoring: {:.2} MB/s ({} prompts x {passes} passes, {:.1} µs/prompt avg){}",
        mb / secs,
        all.len(),
        per_prompt_us,
        if sink < 0.0 { "!" } else { "" }
    );
    // A long benign document, the realistic case for indirect-injection scanning.
    let doc: String = sets
        .iter()
        .filter(|(l, _)| l == "benign")
        .flat_map(|(_, p)| p.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n")
        .repeat(20);
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_millis() < 1000 || n == 0 {
        sink += detector.score(&doc).total();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "native scoring, one {} KB document: {:.2} MB/s{}",
        doc.len() / 1000,
        (doc.len() * n) as f64 / 1_000_000.0 / secs,
        if sink < 0.0 { "!" } else { "" }
    );
    if tpr_direct < 90.0 || tpr_indirect < 90.0 || fpr > 3.0 {
        std::process::exit(1);
    }
}
