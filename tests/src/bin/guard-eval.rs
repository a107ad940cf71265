//! guard-eval: the injection detector's evaluation report.
//!
//! 1. The frozen test split (`tests/corpus/injection/frozen/test.jsonl`, drawn before training and
//!    never trained or tuned on; its hash is checked) scored by the detector compiled into this build:
//!    the learned model (what the guard runs by default), the rules alone, and both; per family and
//!    per source, with 95% Wilson intervals.
//! 2. Leave-one-source-out (a model trained without each source, tested on it): needs the public
//!    corpora in `target/guard-data/` (`make guard-data`); skipped with a note otherwise.
//! 3. The development sets (`tests/corpus/injection/*.txt`, `dev1`..`dev4`): the rules were tuned on
//!    them and the model trained on most of them, so they are no estimate of anything.
//! 4. Native scoring cost, in µs per KB.
//!
//! Usage: `cargo run -q --release -p e2e --bin guard-eval [-- --gate] [--no-loso] [--verbose]
//! [--corpus DIR]`.
//! - `--gate` (part of `make test`): the frozen parts only; exits 1 when a rate is worse than
//!   `frozen/baseline.txt` (written with the model) by more than the slack (3 points).
//! - `--corpus DIR`: one folder of `*.txt` sets instead (file name = family).
//! - `--dump-scores FILE`: writes the exact bits of every score (rules per family, rules alone, the
//!   model) for every frozen and team record and for long texts made of them, one line each, and
//!   exits: `diff` two builds' files to prove a change leaves every verdict bit-identical.

use e2e::guard::{self, Record, Settings};
use shared::injection::Detector;
use std::time::Instant;

const SLACK: f64 = 3.0;

/// The three ways the guard can decide, on one text.
fn flags(d: &Detector, text: &str) -> (bool, bool, bool) {
    let (rules, model) = d.score_with_model(text, &[]);
    let total = rules.total();
    let model = model.unwrap_or(0.0);
    (model >= 0.5, total >= 0.5, model.max(total) >= 0.5)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    let detector = Detector::new().unwrap_or_else(|e| fail(&format!("detector does not compile: {e}")));
    if detector.model().is_none() {
        fail("no learned model compiled in (shared/src/injection/model.bin)");
    }
    if let Some(path) = args
        .iter()
        .position(|a| a == "--dump-scores")
        .and_then(|i| args.get(i + 1))
    {
        dump_scores(&detector, path);
        return;
    }
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--corpus")
        .and_then(|i| args.get(i + 1))
    {
        let recs = guard::team_records(&e2e::repo_root().join(dir), dir);
        let refs: Vec<&Record> = recs.iter().collect();
        let f: Vec<(bool, bool, bool)> = recs.iter().map(|r| flags(&detector, &r.text)).collect();
        for (name, pick) in [("learned", 0), ("rules", 1)] {
            let fl: Vec<bool> = f.iter().map(|t| if pick == 0 { t.0 } else { t.1 }).collect();
            print!(
                "{}",
                guard::report(&format!("{dir}, {name} detector"), &refs, &fl).1
            );
        }
        verbose(&args, &refs, &f);
        return;
    }

    let test = guard::frozen_test().unwrap_or_else(|e| fail(&e));
    let refs: Vec<&Record> = test.iter().collect();
    let f: Vec<(bool, bool, bool)> = test.iter().map(|r| flags(&detector, &r.text)).collect();
    let learned: Vec<bool> = f.iter().map(|t| t.0).collect();
    let (h, text) = guard::report(
        "frozen test split (drawn before training, never trained or tuned on), learned detector, threshold 0.50",
        &refs,
        &learned,
    );
    print!("{text}");
    for (name, pick) in [("rules only", 1usize), ("both (max)", 2)] {
        let fl: Vec<bool> = f.iter().map(|t| if pick == 1 { t.1 } else { t.2 }).collect();
        let o = guard::Headline::of(&refs, &fl);
        println!(
            "  {name:<12} direct {}  indirect {}  benign FPR {}",
            o.direct.cell(),
            o.indirect.cell(),
            o.benign.cell()
        );
    }
    verbose(&args, &refs, &f);

    let new_part = guard::frozen_new().unwrap_or_else(|e| fail(&e));
    let frozen: Vec<Record> = test.iter().chain(&new_part).cloned().collect();
    let all_refs: Vec<&Record> = frozen.iter().collect();
    let mut all_learned = learned.clone();
    all_learned.extend(new_part.iter().map(|r| flags(&detector, &r.text).0));
    let ha = if new_part.is_empty() {
        h
    } else {
        let (ha, text) = guard::report(
            &format!(
                "every frozen part: the split above and the {} records drawn from sources added later (frozen/test-new.jsonl), learned detector",
                new_part.len()
            ),
            &all_refs,
            &all_learned,
        );
        print!("{text}");
        ha
    };

    if has("--gate") {
        let path = guard::frozen_dir().join("baseline.txt");
        let base = guard::read_baseline(&path);
        let mut failed = Vec::new();
        for (key, got, higher_is_better, required) in [
            ("direct", h.direct.rate(), true, true),
            ("indirect", h.indirect.rate(), true, true),
            ("benign_fpr", h.benign.rate(), false, true),
            ("all_direct", ha.direct.rate(), true, false),
            ("all_indirect", ha.indirect.rate(), true, false),
            ("all_benign_fpr", ha.benign.rate(), false, false),
        ] {
            let Some(want) = base.get(key).copied() else {
                if required {
                    failed.push(format!("{key}: missing from {}", path.display()));
                }
                continue;
            };
            let bad = if higher_is_better {
                got < want - SLACK
            } else {
                got > want + SLACK
            };
            if bad {
                failed.push(format!(
                    "{key} {got:.1}% against baseline {want:.1}% (slack {SLACK})"
                ));
            }
        }
        if failed.is_empty() {
            println!(
                "gate: frozen-test rates within {SLACK} points of {}",
                path.display()
            );
            return;
        }
        for f in failed {
            eprintln!("gate failed: {f}");
        }
        std::process::exit(1);
    }

    if has("--no-loso") {
        println!("leave-one-source-out: skipped (--no-loso)");
    } else {
        match guard::read_jsonl(&guard::public_path()) {
            Ok(public) => {
                let mut all = guard::all_team_records();
                all.extend(public);
                let all = guard::dedup(all);
                let held: std::collections::HashSet<&str> = frozen.iter().map(|r| r.text.trim()).collect();
                let train: Vec<Record> = all
                    .iter()
                    .filter(|r| !held.contains(r.text.trim()))
                    .cloned()
                    .collect();
                print!("{}", guard::loso(&detector, &train, &all, &Settings::default()).1);
            }
            Err(e) => {
                println!("leave-one-source-out: skipped, no public corpora ({e}); run `make guard-data`")
            }
        }
    }

    println!(
        "development sets (the rules were tuned on them, the model trained on most of them: not estimates)"
    );
    for (name, dir) in guard::dev_sets() {
        let recs = guard::team_records(&dir, &name);
        let refs: Vec<&Record> = recs.iter().collect();
        let f: Vec<(bool, bool, bool)> = recs.iter().map(|r| flags(&detector, &r.text)).collect();
        for (label, pick) in [("learned", 0usize), ("rules", 1)] {
            let fl: Vec<bool> = f.iter().map(|t| if pick == 0 { t.0 } else { t.1 }).collect();
            let o = guard::Headline::of(&refs, &fl);
            println!(
                "  {name:<5} {label:<8} direct {:>5.1}% ({}/{})  indirect {:>5.1}% ({}/{})  benign FPR {:>4.1}% ({}/{})",
                o.direct.rate(),
                o.direct.flagged,
                o.direct.n,
                o.indirect.rate(),
                o.indirect.flagged,
                o.indirect.n,
                o.benign.rate(),
                o.benign.flagged,
                o.benign.n
            );
        }
    }
    cost(&detector, &test);
}

/// Native cost of the rules and of rules + model, per KB of prompt.
fn cost(d: &Detector, test: &[Record]) {
    let kb: String = test
        .iter()
        .filter(|r| !r.attack)
        .map(|r| r.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let kb: String = kb.chars().take(1024).collect();
    let prompts: Vec<&str> = test.iter().map(|r| r.text.as_str()).collect();
    let bytes: usize = prompts.iter().map(|p| p.len()).sum();
    let time = |f: &dyn Fn(&str) -> f32, texts: &[&str]| {
        let start = Instant::now();
        let mut n = 0usize;
        let mut sink = 0f32;
        while start.elapsed().as_millis() < 700 || n == 0 {
            for t in texts {
                sink += f(t);
            }
            n += 1;
        }
        (start.elapsed().as_secs_f64() / n as f64, sink)
    };
    let rules = |t: &str| d.score(t).total();
    let model = |t: &str| d.score_with_model(t, &[]).1.unwrap_or(0.0);
    let (r1, _) = time(&rules, &[kb.as_str()]);
    let (m1, _) = time(&model, &[kb.as_str()]);
    let (ra, _) = time(&rules, &prompts);
    let (ma, _) = time(&model, &prompts);
    let per_kb = |secs: f64, b: usize| secs * 1e6 / (b as f64 / 1024.0);
    println!(
        "native cost, one 1 KB benign prompt: rules {:.1} µs, rules + model {:.1} µs (model alone {:.1} µs)",
        r1 * 1e6,
        m1 * 1e6,
        (m1 - r1) * 1e6
    );
    println!(
        "native cost over the frozen split ({} prompts, {} KB): rules {:.1} µs/KB, rules + model {:.1} µs/KB",
        prompts.len(),
        bytes / 1024,
        per_kb(ra, bytes),
        per_kb(ma, bytes)
    );
}

/// The texts `--dump-scores` scores: every frozen and team record, then runs of them joined by a
/// line break or a space into texts of about 1, 8 and 64 KB (several chunks for the model, blobs and
/// cues across records).
fn dump_texts() -> Vec<String> {
    let mut records = guard::frozen_test().unwrap_or_else(|e| fail(&e));
    records.extend(guard::frozen_new().unwrap_or_else(|e| fail(&e)));
    records.extend(guard::all_team_records());
    let mut texts: Vec<String> = records.iter().map(|r| r.text.clone()).collect();
    // Punctuation around words, and upper case: other tokens for the words view.
    for r in &records {
        texts.push(r.text.replace(' ', "\" (").replace('.', ".) '") + "!|");
        texts.push(r.text.to_uppercase());
    }
    for (size, sep) in [(1024, "\n"), (8 * 1024, " "), (64 * 1024, "\n"), (64 * 1024, " ")] {
        let mut cur = String::new();
        for r in &records {
            if !cur.is_empty() {
                cur.push_str(sep);
            }
            cur.push_str(&r.text);
            if cur.len() >= size {
                texts.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            texts.push(cur);
        }
    }
    texts
}

fn dump_scores(d: &Detector, path: &str) {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (k, t) in dump_texts().iter().enumerate() {
        let (rules, model) = d.score_with_model(t, &[]);
        let alone = d.score(t);
        let _ = write!(out, "{k} {}", t.len());
        for s in [rules, alone] {
            for (_, v) in s.iter() {
                let _ = write!(out, " {:08x}", v.to_bits());
            }
        }
        let _ = writeln!(out, " {:08x}", model.unwrap_or(f32::NAN).to_bits());
    }
    std::fs::write(path, out).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
}

fn verbose(args: &[String], refs: &[&Record], f: &[(bool, bool, bool)]) {
    if !args.iter().any(|a| a == "--verbose") {
        return;
    }
    for (r, (m, rules, _)) in refs.iter().zip(f) {
        if *m != r.attack {
            let kind = if r.attack { "MISS" } else { "FP" };
            let short: String = r.text.chars().take(160).collect();
            println!("  {kind} [{}/{}] rules={rules}: {short:?}", r.source, r.family);
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("guard-eval: {msg}");
    std::process::exit(2);
}
