//! guard-train: prepares the injection corpora, freezes the test split (once), trains the learned
//! detector with a fixed seed, exports its weights into `shared/src/injection/model.bin` and prints
//! the evaluation (frozen test, leave-one-source-out).
//!
//! Usage (after `make guard-data`, which `make train-guard` runs first):
//! `cargo run --release -p e2e --bin guard-train [-- --freeze] [--no-loso]`
//! - `--freeze` writes a new frozen split (`tests/corpus/injection/frozen/test.jsonl` and its hash).
//!   Only for a new corpus generation: a frozen split is never re-drawn to improve a number.
//! - `--freeze-new` draws the frozen part of each source that no frozen split has drawn from yet
//!   (a corpus or package added later) into `frozen/test-new.jsonl`, the same way, before anything
//!   trains on it. Without it, `guard-train` refuses to train on a source with no frozen part.
//! - `--cv` prints 5-fold cross-validation on the training records (what choices are compared on;
//!   the frozen split is never used for tuning). `--bits N`, `--epochs N`, `--target-fpr X`, `--l2 X`, `--rate X`, `--hard-weight X`,
//!   `--dropout X` override the settings for such a comparison.
//! - `--train-fit` also prints the report on the training records themselves (the fitted model
//!   scores them 99.6% / 99.8% / 0.0% on 2026-12-04: it has the capacity, what it lacks is transfer).
//! - Without the public data (`target/guard-data/public.jsonl`) it stops and says how to get it.

use e2e::guard::{self, Record, Settings};
use shared::injection::Detector;
use std::collections::HashSet;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let refreeze = args.iter().any(|a| a == "--freeze");
    let freeze_new = args.iter().any(|a| a == "--freeze-new");
    let run_loso = !args.iter().any(|a| a == "--no-loso");
    let run_cv = args.iter().any(|a| a == "--cv");
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut s = Settings::default();
    if let Some(v) = arg("--bits").and_then(|v| v.parse().ok()) {
        s.bits = v;
    }
    if let Some(v) = arg("--epochs").and_then(|v| v.parse().ok()) {
        s.epochs = v;
    }
    if let Some(v) = arg("--target-fpr").and_then(|v| v.parse().ok()) {
        s.target_fpr = v;
    }
    if let Some(v) = arg("--l2").and_then(|v| v.parse().ok()) {
        s.l2 = v;
    }
    if let Some(v) = arg("--rate").and_then(|v| v.parse().ok()) {
        s.rate = v;
    }
    if let Some(v) = arg("--hard-weight").and_then(|v| v.parse().ok()) {
        s.hard_weight = v;
    }
    if let Some(v) = arg("--dropout").and_then(|v| v.parse().ok()) {
        s.dropout = v;
    }
    let write = !args.iter().any(|a| a == "--dry-run");
    let detector = Detector::new().unwrap_or_else(|e| fail(&format!("detector does not compile: {e}")));

    let public = guard::read_jsonl(&guard::public_path()).unwrap_or_else(|e| {
        fail(&format!(
            "{e}\nthe public corpora are not prepared: run `make guard-data` (or `make train-guard`)"
        ))
    });
    let mut all = guard::all_team_records();
    all.extend(public);
    let all = guard::dedup(all);

    let dir = guard::frozen_dir();
    let test = if refreeze || !dir.join("test.jsonl").exists() {
        let test = guard::freeze(&all, 0.25, s.seed);
        let body = guard::jsonl(&test);
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("test.jsonl"), &body))
            .and_then(|()| {
                std::fs::write(
                    dir.join("test.hash"),
                    format!("{}  test.jsonl\n", guard::content_hash(&body)),
                )
            });
        if let Err(e) = written {
            fail(&format!("cannot write the frozen split: {e}"));
        }
        println!("froze a new test split: {} records", test.len());
        test
    } else {
        guard::frozen_test().unwrap_or_else(|e| fail(&e))
    };
    let mut new_part = guard::frozen_new().unwrap_or_else(|e| fail(&e));
    let mut frozen: Vec<Record> = test.iter().chain(&new_part).cloned().collect();
    let unfrozen = guard::unfrozen_sources(&all, &frozen);
    if !unfrozen.is_empty() {
        if !freeze_new {
            fail(&format!(
                "sources with no frozen test part: {}; run `guard-train --freeze-new` once to draw it before training",
                unfrozen.join(", ")
            ));
        }
        let fresh: Vec<Record> = all
            .iter()
            .filter(|r| unfrozen.contains(&r.source))
            .cloned()
            .collect();
        let drawn = guard::freeze(&fresh, 0.25, s.seed);
        println!(
            "froze the test part of new sources {}: {} records (frozen/test-new.jsonl)",
            unfrozen.join(", "),
            drawn.len()
        );
        new_part.extend(drawn);
        if let Err(e) = guard::write_frozen("test-new", &new_part) {
            fail(&e);
        }
        frozen = test.iter().chain(&new_part).cloned().collect();
    }
    let held: HashSet<&str> = frozen.iter().map(|r| r.text.trim()).collect();
    let train_set: Vec<Record> = all
        .iter()
        .filter(|r| !held.contains(r.text.trim()))
        .cloned()
        .collect();
    println!(
        "records: {} ({} attacks, {} benign); training on {}, frozen test {} + {} (new sources)",
        all.len(),
        all.iter().filter(|r| r.attack).count(),
        all.iter().filter(|r| !r.attack).count(),
        train_set.len(),
        test.len(),
        new_part.len()
    );
    for (k, v) in counts(&train_set) {
        println!("  train {k:<40} {v}");
    }

    if run_cv {
        let start = std::time::Instant::now();
        let (h, scored) = guard::cross_val(&detector, &train_set, &s, 5);
        if args.iter().any(|a| a == "--verbose") {
            for (r, flagged) in &scored {
                if *flagged != r.attack {
                    let kind = if r.attack { "MISS" } else { "FP" };
                    let short: String = r.text.chars().take(150).collect();
                    println!("  cv {kind} [{}/{}] {short:?}", r.source, r.family);
                }
            }
        }
        println!(
            "5-fold cross-validation on the training records ({:.1}s): direct {}  indirect {}  benign FPR {}",
            start.elapsed().as_secs_f64(),
            h.direct.cell(),
            h.indirect.cell(),
            h.benign.cell()
        );
    }
    let start = std::time::Instant::now();
    let bytes = guard::fit(&detector, &train_set, &s);
    println!(
        "trained in {:.1}s: {} bytes (2^{} i8 weights, seed {}, {} epochs)",
        start.elapsed().as_secs_f64(),
        bytes.len(),
        s.bits,
        s.seed,
        s.epochs
    );
    let out = e2e::repo_root().join("shared/src/injection/model.bin");
    if write {
        if let Err(e) = std::fs::write(&out, &bytes) {
            fail(&format!("cannot write {}: {e}", out.display()));
        }
        println!("wrote {}", out.display());
    }
    let Some(m) = guard::load_model(bytes) else {
        fail("the exported model does not read back");
    };

    let flags = |records: &[Record]| -> Vec<bool> {
        let data = guard::prepare(&detector, records, (1u32 << s.bits) - 1);
        guard::model_scores(&m, &data).iter().map(|p| *p >= 0.5).collect()
    };
    if args.iter().any(|a| a == "--train-fit") {
        let tr: Vec<&Record> = train_set.iter().collect();
        let (_, text) = guard::report(
            "the training records, scored by the model fitted on them (how far it memorises)",
            &tr,
            &flags(&train_set),
        );
        print!("{text}");
    }
    let refs: Vec<&Record> = test.iter().collect();
    let (h, text) = guard::report(
        "frozen test split, learned detector (threshold 0.50)",
        &refs,
        &flags(&test),
    );
    print!("{text}");
    let all_refs: Vec<&Record> = frozen.iter().collect();
    let (ha, text) = guard::report(
        "every frozen part (the split above and the new sources' parts), learned detector (threshold 0.50)",
        &all_refs,
        &flags(&frozen),
    );
    print!("{text}");
    let baseline = format!(
        "# Frozen-test rates of the committed model (guard-train); the gate in `make test` allows a few points of slack.\n\
         direct {:.1}\nindirect {:.1}\nbenign_fpr {:.1}\n\
         # every frozen part (frozen/test.jsonl and frozen/test-new.jsonl)\n\
         all_direct {:.1}\nall_indirect {:.1}\nall_benign_fpr {:.1}\n",
        h.direct.rate(),
        h.indirect.rate(),
        h.benign.rate(),
        ha.direct.rate(),
        ha.indirect.rate(),
        ha.benign.rate()
    );
    if write {
        if let Err(e) = std::fs::write(dir.join("baseline.txt"), baseline) {
            fail(&format!("cannot write the baseline: {e}"));
        }
    }
    if run_loso {
        let start = std::time::Instant::now();
        let (_, text) = guard::loso(&detector, &train_set, &all, &s);
        print!("{text}");
        println!(
            "(leave-one-source-out took {:.1}s)",
            start.elapsed().as_secs_f64()
        );
    }
}

fn counts(records: &[Record]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in records {
        *m.entry(format!("{} {}", r.source, r.family)).or_insert(0) += 1;
    }
    m
}

fn fail(msg: &str) -> ! {
    eprintln!("guard-train: {msg}");
    std::process::exit(2);
}
