//! guard-train: prepares the injection corpora, freezes the test split (once), trains the learned
//! detector with a fixed seed, exports its weights into `shared/src/injection/model.bin` and prints
//! the evaluation (frozen test, leave-one-source-out).
//!
//! Usage (after `make guard-data`, which `make train-guard` runs first):
//! `cargo run --release -p e2e --bin guard-train [-- --freeze] [--no-loso]`
//! - `--freeze` writes a new frozen split (`tests/corpus/injection/frozen/test.jsonl` and its hash).
//!   Only for a new corpus generation: a frozen split is never re-drawn to improve a number.
//! - Without the public data (`target/guard-data/public.jsonl`) it stops and says how to get it.

use e2e::guard::{self, Record, Settings};
use shared::injection::Detector;
use std::collections::HashSet;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let refreeze = args.iter().any(|a| a == "--freeze");
    let run_loso = !args.iter().any(|a| a == "--no-loso");
    let s = Settings::default();
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
    let held: HashSet<&str> = test.iter().map(|r| r.text.trim()).collect();
    let train_set: Vec<Record> = all
        .iter()
        .filter(|r| !held.contains(r.text.trim()))
        .cloned()
        .collect();
    println!(
        "records: {} ({} attacks, {} benign); training on {}, frozen test {}",
        all.len(),
        all.iter().filter(|r| r.attack).count(),
        all.iter().filter(|r| !r.attack).count(),
        train_set.len(),
        test.len()
    );
    for (k, v) in counts(&train_set) {
        println!("  train {k:<40} {v}");
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
    if let Err(e) = std::fs::write(&out, &bytes) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
    println!("wrote {}", out.display());
    let Some(m) = guard::load_model(bytes) else {
        fail("the exported model does not read back");
    };

    let data = guard::prepare(&detector, &test, (1u32 << s.bits) - 1);
    let flagged: Vec<bool> = guard::model_scores(&m, &data).iter().map(|p| *p >= 0.5).collect();
    let refs: Vec<&Record> = test.iter().collect();
    let (h, text) = guard::report(
        "frozen test split, learned detector (threshold 0.50)",
        &refs,
        &flagged,
    );
    print!("{text}");
    let baseline = format!(
        "# Frozen-test rates of the committed model (guard-train); the gate in `make test` allows a few points of slack.\n\
         direct {:.1}\nindirect {:.1}\nbenign_fpr {:.1}\n",
        h.direct.rate(),
        h.indirect.rate(),
        h.benign.rate()
    );
    if let Err(e) = std::fs::write(dir.join("baseline.txt"), baseline) {
        fail(&format!("cannot write the baseline: {e}"));
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
