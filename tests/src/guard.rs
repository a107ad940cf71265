//! The learned injection detector's data, training and evaluation, shared by `guard-train` and
//! `guard-eval`.
//!
//! Records are `(text, label, family, source)`. Team-written prompts come from
//! `tests/corpus/injection/**.txt` (one prompt per line, the file name is the family); public corpora
//! from `target/guard-data/public.jsonl` (written by `tests/guard/extract_public.py` from pinned
//! registry packages, see `make train-guard` and the data card). The frozen test split lives in
//! `tests/corpus/injection/frozen/test.jsonl` with its hash beside it; training drops every record
//! whose text is in it.

use serde_json::{json, Value};
use shared::injection::model::{self, Features, Model, DENSE};
use shared::injection::{Detector, Scores};
use shared::rand::{stable_hash, Rng};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// One labelled prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub text: String,
    pub attack: bool,
    /// An injection family, `indirect`, `benign` or `hard_negative`.
    pub family: String,
    pub source: String,
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({"text": self.text, "label": if self.attack { "attack" } else { "benign" },
               "family": self.family, "source": self.source})
    }

    pub fn from_json(v: &Value) -> Option<Record> {
        Some(Record {
            text: v.get("text")?.as_str()?.to_string(),
            attack: v.get("label")?.as_str()? == "attack",
            family: v.get("family")?.as_str()?.to_string(),
            source: v.get("source")?.as_str()?.to_string(),
        })
    }

    /// Direct attack (every family but `indirect`).
    pub fn direct(&self) -> bool {
        self.attack && self.family != "indirect"
    }
}

pub fn corpus_dir() -> PathBuf {
    crate::repo_root().join("tests").join("corpus").join("injection")
}

pub fn frozen_dir() -> PathBuf {
    corpus_dir().join("frozen")
}

pub fn public_path() -> PathBuf {
    crate::target_dir().join("guard-data").join("public.jsonl")
}

/// Undoes the corpus line escapes: `\n`, `\t`, `\u{..}`.
pub fn unescape(line: &str) -> String {
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

/// The `*.txt` sets of one corpus folder: (file stem, prompts).
pub fn load_dir(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|path| {
            let label = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let prompts = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
                .map(unescape)
                .collect();
            (label, prompts)
        })
        .collect()
}

/// Records of a corpus folder, `source` naming it.
pub fn team_records(dir: &Path, source: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for (label, prompts) in load_dir(dir) {
        let (attack, family) = match label.as_str() {
            "benign" => (false, "benign".to_string()),
            "hard_negatives" => (false, "hard_negative".to_string()),
            other => (true, other.to_string()),
        };
        for text in prompts {
            out.push(Record {
                text,
                attack,
                family: family.clone(),
                source: source.to_string(),
            });
        }
    }
    out
}

/// The development sets: the main corpus and `dev1`..`dev4` (the rules were tuned on them).
pub fn dev_sets() -> Vec<(String, PathBuf)> {
    let root = corpus_dir();
    let mut sets = vec![("main".to_string(), root.clone())];
    for k in 1..=4 {
        sets.push((format!("dev{k}"), root.join(format!("dev{k}"))));
    }
    sets
}

/// Every team-written record: the development sets (source `team-dev`), `written/`
/// (`team-written`), `written2/` (`team-written-2`), `written3/` (`team-written-3`), `written4/`
/// (`team-written-4`), `written5/` (`team-written-5`) and `written6/` (`team-written-6`).
pub fn all_team_records() -> Vec<Record> {
    let mut out = Vec::new();
    for (_, dir) in dev_sets() {
        out.extend(team_records(&dir, "team-dev"));
    }
    out.extend(team_records(&corpus_dir().join("written"), "team-written"));
    out.extend(team_records(&corpus_dir().join("written2"), "team-written-2"));
    out.extend(team_records(&corpus_dir().join("written3"), "team-written-3"));
    out.extend(team_records(&corpus_dir().join("written4"), "team-written-4"));
    out.extend(team_records(&corpus_dir().join("written5"), "team-written-5"));
    out.extend(team_records(&corpus_dir().join("written6"), "team-written-6"));
    out
}

pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l)
                .ok()
                .as_ref()
                .and_then(Record::from_json)
                .ok_or_else(|| format!("{}:{}: not a record", path.display(), i + 1))
        })
        .collect()
}

pub fn jsonl(records: &[Record]) -> String {
    records.iter().map(|r| format!("{}\n", r.to_json())).collect()
}

/// The content hash written beside the frozen split.
pub fn content_hash(text: &str) -> String {
    format!("{:016x}", stable_hash(text.as_bytes()))
}

/// Every record, deduplicated by text (first wins): team-written first, then public.
pub fn dedup(records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::new();
    records
        .into_iter()
        .filter(|r| seen.insert(r.text.trim().to_string()))
        .collect()
}

/// The stratified test split: within each (source, family) stratum, ordered by a seeded hash of the
/// text, the first `share` of it (at least one record in strata of four or more).
pub fn freeze(records: &[Record], share: f64, seed: u64) -> Vec<Record> {
    let mut strata: BTreeMap<(String, String), Vec<&Record>> = BTreeMap::new();
    for r in records {
        strata
            .entry((r.source.clone(), r.family.clone()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for (_, mut rs) in strata {
        rs.sort_by_key(|r| stable_hash(format!("{seed}:{}", r.text).as_bytes()));
        let n = rs.len();
        let mut k = (n as f64 * share).round() as usize;
        if k == 0 && n >= 4 {
            k = 1;
        }
        out.extend(rs.into_iter().take(k).cloned());
    }
    out
}

/// A record prepared for the model: its chunks' hashed features and dense features.
pub struct Prepared {
    pub attack: bool,
    pub chunks: Vec<(Vec<u32>, Vec<u32>, [f32; DENSE])>,
    /// The rules' overall score (for the rules-only rows of the report).
    pub rules: f32,
}

pub fn prepare(detector: &Detector, records: &[Record], mask: u32) -> Vec<Prepared> {
    let mut f = Features::default();
    records
        .iter()
        .map(|r| {
            let scores: Scores = detector.score(&r.text);
            let chunks = detector
                .model_inputs(&r.text)
                .into_iter()
                .map(|(c, decoded)| {
                    f.extract(&c);
                    (
                        f.words.iter().map(|h| h & mask).collect(),
                        f.chars.iter().map(|h| h & mask).collect(),
                        model::dense(&scores, decoded),
                    )
                })
                .collect();
            Prepared {
                attack: r.attack,
                chunks,
                rules: scores.total(),
            }
        })
        .collect()
}

/// Training settings; the defaults are the ones the committed model was trained with.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub bits: u8,
    pub epochs: usize,
    pub rate: f32,
    pub l2: f32,
    pub seed: u64,
    /// False-positive rate on out-of-fold benign training records that the exported threshold
    /// (moved to 0.5 through the bias) aims at.
    pub target_fpr: f64,
    /// How much more a hard negative weighs in training than another benign record of a stratum
    /// of the same size.
    pub hard_weight: f32,
    /// Share of a record's hashed features left out of each training step (input dropout: the
    /// kept ones weigh `1 / (1 - dropout)`, so the expected logit is the whole one's); 0 for none.
    pub dropout: f32,
}

impl Default for Settings {
    fn default() -> Settings {
        // Chosen on 5-fold cross-validation of the training records (`guard-train --cv`), never on
        // the frozen split: rate 3 and 20 epochs over 0.5 and 12 (+4 points direct, +12 indirect at
        // the same false positives), and the operating point at 1.5% out-of-fold false positives,
        // under the 2% budget with some room (1% cost about 5 points of recall). With the
        // sources added on 2026-12-01 (evening), l2 3e-4 over 1e-5: 85.7% direct, 79.4% indirect at
        // 1.4% against 83.6%, 76.0% at 1.5% (1e-4: 84.5/78.6, 5e-4: 85.4/79.4, 1e-3: 85.5/78.4; bits
        // 18, 40 epochs, rate 1.5 and hard-negative weight 2 within a point of the default).
        // 2026-12-04, input dropout (`--dropout`; the fitted model scores its own training records
        // 99.6%, so regularising was the question): 0.2-0.5 with l2 1e-4 or 3e-4 and 20 or 40 epochs
        // gave 78.3-81.7% direct, 62.1-66.4% indirect at 1.1-1.6% against 79.8%, 62.8% at 1.4%; the
        // best at the same false positives (0.3, 3e-4, 40 epochs: 81.3%, 64.7%) is inside the
        // intervals, so none is taken.
        Settings {
            bits: 17,
            epochs: 20,
            rate: 3.0,
            l2: 3e-4,
            seed: 15,
            target_fpr: 0.015,
            hard_weight: 1.0,
            dropout: 0.0,
        }
    }
}

/// Float weights while training.
#[derive(Debug, Clone)]
pub struct Weights {
    pub bias: f32,
    pub dense: [f32; DENSE],
    pub hashed: Vec<f32>,
}

impl Weights {
    fn chunk_logit(&self, words: &[u32], chars: &[u32], dense: &[f32; DENSE]) -> f32 {
        self.dropout_logit(words, words.len(), chars, chars.len(), dense, 0.0)
    }

    /// A chunk's logit over the kept part of its features (`n_words` and `n_chars` of them before
    /// dropout), the kept ones scaled up by `1 / (1 - dropout)`; with 0, over all of them.
    fn dropout_logit(
        &self,
        words: &[u32],
        n_words: usize,
        chars: &[u32],
        n_chars: usize,
        dense: &[f32; DENSE],
        dropout: f32,
    ) -> f32 {
        let part = |hs: &[u32], whole: usize| {
            if whole == 0 {
                0.0
            } else {
                hs.iter()
                    .map(|h| self.hashed.get(*h as usize).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    / (whole as f32).sqrt()
                    / (1.0 - dropout)
            }
        };
        let d: f32 = self.dense.iter().zip(dense).map(|(w, x)| w * x).sum();
        self.bias + part(words, n_words) + part(chars, n_chars) + d
    }

    /// The record's logit (its highest chunk) and that chunk's index.
    pub fn logit(&self, p: &Prepared) -> (f32, usize) {
        p.chunks
            .iter()
            .enumerate()
            .map(|(i, (w, c, d))| (self.chunk_logit(w, c, d), i))
            .fold((f32::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a })
    }
}

/// Logistic regression by SGD with L2 on the records' highest chunk (the score the detector uses is
/// the highest chunk's, so the loss is taken there: multiple-instance learning). Classes are
/// balanced, and within a class each (source, family) stratum weighs as the square root of its size,
/// so one large source does not drown the others.
pub fn train(data: &[Prepared], strata: &[String], s: &Settings) -> Weights {
    let size = 1usize << s.bits;
    let mut w = Weights {
        bias: 0.0,
        dense: [0.0; DENSE],
        hashed: vec![0.0; size],
    };
    let mut count: BTreeMap<(&str, bool), usize> = BTreeMap::new();
    for (p, st) in data.iter().zip(strata) {
        *count.entry((st.as_str(), p.attack)).or_default() += 1;
    }
    let raw: Vec<f32> = data
        .iter()
        .zip(strata)
        .map(|(p, st)| {
            let n = count.get(&(st.as_str(), p.attack)).copied().unwrap_or(1) as f32;
            let hard = if st.ends_with("/hard_negative") {
                s.hard_weight
            } else {
                1.0
            };
            hard / n.sqrt()
        })
        .collect();
    let class_total = |attack: bool| -> f32 {
        data.iter()
            .zip(&raw)
            .filter(|(p, _)| p.attack == attack)
            .map(|(_, r)| r)
            .sum::<f32>()
    };
    let (pos, neg) = (class_total(true).max(1e-6), class_total(false).max(1e-6));
    let n = data.len() as f32;
    let weight: Vec<f32> = data
        .iter()
        .zip(&raw)
        .map(|(p, r)| r * n / 2.0 / if p.attack { pos } else { neg })
        .collect();
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng::new(s.seed);
    let mut step = 0f32;
    for _ in 0..s.epochs {
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        for &i in &order {
            let (Some(p), Some(&wt)) = (data.get(i), weight.get(i)) else {
                continue;
            };
            let (z, k) = w.logit(p);
            let Some((words, chars, dense)) = p.chunks.get(k) else {
                continue;
            };
            let (n_words, n_chars) = (words.len(), chars.len());
            let dropped;
            let (words, chars, z) = if s.dropout > 0.0 {
                let cut = (f64::from(s.dropout) * (1u64 << 32) as f64) as u64;
                let mut keep = |hs: &[u32]| -> Vec<u32> {
                    hs.iter()
                        .copied()
                        .filter(|_| (rng.next_u64() >> 32) >= cut)
                        .collect()
                };
                dropped = (keep(words), keep(chars));
                let z = w.dropout_logit(&dropped.0, n_words, &dropped.1, n_chars, dense, s.dropout);
                (&dropped.0, &dropped.1, z)
            } else {
                (words, chars, z)
            };
            let y = if p.attack { 1.0 } else { 0.0 };
            let g = (model::sigmoid(z) - y) * wt;
            let lr = s.rate / (1.0 + step / (4.0 * n));
            step += 1.0;
            w.bias -= lr * g;
            for (d, x) in w.dense.iter_mut().zip(dense) {
                *d -= lr * (g * x + s.l2 * *d);
            }
            for (hs, whole) in [(words, n_words), (chars, n_chars)] {
                if hs.is_empty() {
                    continue;
                }
                let x = 1.0 / (whole as f32).sqrt() / (1.0 - s.dropout);
                for h in hs {
                    if let Some(v) = w.hashed.get_mut(*h as usize) {
                        *v -= lr * (g * x + s.l2 * *v);
                    }
                }
            }
        }
    }
    w
}

/// The threshold on out-of-fold scores that keeps benign false positives at `target_fpr`.
pub fn pick_threshold(data: &[Prepared], strata: &[String], s: &Settings) -> f32 {
    let folds = 5usize;
    let mut scores: Vec<(f32, bool)> = Vec::new();
    for fold in 0..folds {
        let pick = |i: usize| i % folds == fold;
        let (mut tr, mut tr_st) = (Vec::new(), Vec::new());
        let mut te = Vec::new();
        for (i, (p, st)) in data.iter().zip(strata).enumerate() {
            if pick(i) {
                te.push(p);
            } else {
                tr.push(Prepared {
                    attack: p.attack,
                    chunks: p.chunks.clone(),
                    rules: p.rules,
                });
                tr_st.push(st.clone());
            }
        }
        let w = train(&tr, &tr_st, s);
        scores.extend(te.iter().map(|p| (w.logit(p).0, p.attack)));
    }
    let mut benign: Vec<f32> = scores.iter().filter(|(_, a)| !a).map(|(z, _)| *z).collect();
    benign.sort_by(|a, b| b.total_cmp(a));
    let allowed = (benign.len() as f64 * s.target_fpr).floor() as usize;
    // Just above the (allowed+1)-th highest benign logit.
    benign.get(allowed).map_or(0.0, |z| z + 1e-3)
}

/// Quantises the weights to i8 (one scale) and writes the model format `shared` reads, with the
/// threshold folded into the bias so that 0.5 is the operating point.
pub fn export(w: &Weights, threshold_logit: f32, bits: u8) -> Vec<u8> {
    let max = w.hashed.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-9);
    let scale = max / 127.0;
    let mut out = Vec::with_capacity(64 + w.hashed.len());
    out.extend_from_slice(b"PGM1");
    out.push(bits);
    out.extend_from_slice(&(w.bias - threshold_logit).to_le_bytes());
    out.extend_from_slice(&scale.to_le_bytes());
    for d in &w.dense {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend(
        w.hashed
            .iter()
            .map(|v| ((v / scale).round().clamp(-127.0, 127.0) as i8) as u8),
    );
    out
}

/// Scores records with a model in its exported form (what the filter runs).
pub fn model_scores(m: &Model, data: &[Prepared]) -> Vec<f32> {
    data.iter()
        .map(|p| {
            let best = p
                .chunks
                .iter()
                .map(|(words, chars, dense)| {
                    let f = Features {
                        words: words.clone(),
                        chars: chars.clone(),
                    };
                    m.logit(&f, dense)
                })
                .fold(f32::NEG_INFINITY, f32::max);
            model::sigmoid(best)
        })
        .collect()
}

/// Wilson score interval (95%) of `k` successes in `n`, in percent.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_964f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    (100.0 * (centre - half).max(0.0), 100.0 * (centre + half).min(1.0))
}

/// Flag counts of one group of records.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub n: usize,
    pub flagged: usize,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            100.0 * self.flagged as f64 / self.n as f64
        }
    }

    pub fn cell(&self) -> String {
        if self.n == 0 {
            return format!("{:>24}", "-");
        }
        let (lo, hi) = wilson(self.flagged, self.n);
        format!(
            "{:>5.1}% [{lo:>5.1},{hi:>5.1}] {:>4}/{:<4}",
            self.rate(),
            self.flagged,
            self.n
        )
    }
}

/// The headline rates of a scored set: direct, indirect, benign (false positives).
#[derive(Debug, Default, Clone, Copy)]
pub struct Headline {
    pub direct: Tally,
    pub indirect: Tally,
    pub benign: Tally,
}

impl Headline {
    pub fn of(records: &[&Record], flagged: &[bool]) -> Headline {
        let mut h = Headline::default();
        for (r, f) in records.iter().zip(flagged) {
            let t = if !r.attack {
                &mut h.benign
            } else if r.direct() {
                &mut h.direct
            } else {
                &mut h.indirect
            };
            t.n += 1;
            t.flagged += usize::from(*f);
        }
        h
    }
}

/// A table of rates per `key` (family or source): detection for attacks, false positives for
/// benign prompts.
pub fn table(title: &str, records: &[&Record], flagged: &[bool], key: fn(&Record) -> String) -> String {
    let mut rows: BTreeMap<(bool, String), Tally> = BTreeMap::new();
    for (r, f) in records.iter().zip(flagged) {
        let t = rows.entry((!r.attack, key(r))).or_default();
        t.n += 1;
        t.flagged += usize::from(*f);
    }
    let mut out = format!("{title}\n{:<34} {}\n", "", "flagged  [95% Wilson]    k/n");
    for ((benign, name), t) in rows {
        let kind = if benign { "FPR" } else { "TPR" };
        out.push_str(&format!("  {kind} {name:<30} {}\n", t.cell()));
    }
    out
}

/// The committed frozen split (the first generation, drawn before the first model), after checking
/// it against its hash file.
pub fn frozen_test() -> Result<Vec<Record>, String> {
    read_frozen("test")
}

/// The frozen parts of the sources added after the first generation (`frozen/test-new.jsonl`),
/// each drawn from its source before any model trained on it; empty when there are none.
pub fn frozen_new() -> Result<Vec<Record>, String> {
    if !frozen_dir().join("test-new.jsonl").exists() {
        return Ok(Vec::new());
    }
    read_frozen("test-new")
}

/// `frozen/<stem>.jsonl`, checked against `frozen/<stem>.hash`.
fn read_frozen(stem: &str) -> Result<Vec<Record>, String> {
    let dir = frozen_dir();
    let path = dir.join(format!("{stem}.jsonl"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let want = std::fs::read_to_string(dir.join(format!("{stem}.hash"))).unwrap_or_default();
    let got = content_hash(&text);
    if want.split_whitespace().next() != Some(got.as_str()) {
        return Err(format!(
            "frozen test split changed: {stem}.jsonl hashes to {got}, {stem}.hash says {}",
            want.trim()
        ));
    }
    read_jsonl(&path)
}

/// Writes `frozen/<stem>.jsonl` and its hash file.
pub fn write_frozen(stem: &str, records: &[Record]) -> Result<(), String> {
    let dir = frozen_dir();
    let body = jsonl(records);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{stem}.jsonl")), &body))
        .and_then(|()| {
            std::fs::write(
                dir.join(format!("{stem}.hash")),
                format!("{}  {stem}.jsonl\n", content_hash(&body)),
            )
        })
        .map_err(|e| format!("cannot write the frozen split {stem}: {e}"))
}

/// The sources of `records` that no frozen split has drawn from yet.
pub fn unfrozen_sources(records: &[Record], frozen: &[Record]) -> Vec<String> {
    let known: std::collections::BTreeSet<&str> = frozen.iter().map(|r| r.source.as_str()).collect();
    let new: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r.source.as_str())
        .filter(|s| !known.contains(s))
        .collect();
    new.into_iter().map(str::to_string).collect()
}

/// The gate's baseline: `key value` lines (`direct 97.5` ...), written with the model.
pub fn read_baseline(path: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The strata keys `train` balances on.
pub fn strata(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}/{}", r.source, r.family))
        .collect()
}

/// Trains on `records` (threshold picked on out-of-fold scores) and returns the exported model.
pub fn fit(detector: &Detector, records: &[Record], s: &Settings) -> Vec<u8> {
    let mask = (1u32 << s.bits) - 1;
    let data = prepare(detector, records, mask);
    let st = strata(records);
    let threshold = pick_threshold(&data, &st, s);
    let w = train(&data, &st, s);
    export(&w, threshold, s.bits)
}

/// Reads exported bytes as a model (leaked: a model lives as long as the process).
pub fn load_model(bytes: Vec<u8>) -> Option<Model> {
    Model::from_bytes(Box::leak(bytes.into_boxed_slice()))
}

/// The report on one scored set: headline rates, then per family and per source.
pub fn report(title: &str, records: &[&Record], flagged: &[bool]) -> (Headline, String) {
    let h = Headline::of(records, flagged);
    let mut out = format!("{title}\n");
    out.push_str(&format!(
        "  direct injections        {}   (target >= 95%)\n",
        h.direct.cell()
    ));
    out.push_str(&format!(
        "  indirect injections      {}   (target >= 95%)\n",
        h.indirect.cell()
    ));
    out.push_str(&format!(
        "  benign + hard negatives  {}   (target <= 2%)\n",
        h.benign.cell()
    ));
    out.push_str(&table("  per family", records, flagged, |r| r.family.clone()));
    out.push_str(&table("  per source", records, flagged, |r| r.source.clone()));
    (h, out)
}

/// K-fold cross-validation on training records (folds by a hash of the text): each fold scored by a
/// model trained on the others, threshold and all. What training choices are compared on, so the
/// frozen split is never used for tuning.
pub fn cross_val<'a>(
    detector: &Detector,
    records: &'a [Record],
    s: &Settings,
    folds: u64,
) -> (Headline, Vec<(&'a Record, bool)>) {
    let fold_of = |r: &Record| stable_hash(format!("cv:{}", r.text).as_bytes()) % folds.max(1);
    let mut refs: Vec<&Record> = Vec::new();
    let mut flagged = Vec::new();
    for k in 0..folds.max(1) {
        let train: Vec<Record> = records.iter().filter(|r| fold_of(r) != k).cloned().collect();
        let test: Vec<Record> = records.iter().filter(|r| fold_of(r) == k).cloned().collect();
        let Some(m) = load_model(fit(detector, &train, s)) else {
            continue;
        };
        let data = prepare(detector, &test, (1u32 << s.bits) - 1);
        flagged.extend(model_scores(&m, &data).iter().map(|p| *p >= 0.5));
        refs.extend(records.iter().filter(|r| fold_of(r) == k));
    }
    let h = Headline::of(&refs, &flagged);
    (h, refs.into_iter().zip(flagged).collect())
}

/// Leave-one-source-out: for each source, a model trained on every other source's training
/// records, tested on all of that source's records. Returns the overall detection rate and the table.
pub fn loso(detector: &Detector, train_set: &[Record], all: &[Record], s: &Settings) -> (Tally, String) {
    let sources: std::collections::BTreeSet<&str> = all.iter().map(|r| r.source.as_str()).collect();
    let mut out = String::from("leave-one-source-out (train without the source, test on all of it)\n");
    out.push_str(&format!(
        "  {:<22} {:<30} {:<30}\n",
        "source", "attacks detected [95%]", "benign flagged [95%]"
    ));
    let mut total = Tally::default();
    for src in sources {
        let train: Vec<Record> = train_set.iter().filter(|r| r.source != src).cloned().collect();
        let test: Vec<&Record> = all.iter().filter(|r| r.source == src).collect();
        let Some(m) = load_model(fit(detector, &train, s)) else {
            continue;
        };
        let owned: Vec<Record> = test.iter().map(|r| (*r).clone()).collect();
        let data = prepare(detector, &owned, (1u32 << s.bits) - 1);
        let flagged: Vec<bool> = model_scores(&m, &data).iter().map(|p| *p >= 0.5).collect();
        let h = Headline::of(&test, &flagged);
        let attacks = Tally {
            n: h.direct.n + h.indirect.n,
            flagged: h.direct.flagged + h.indirect.flagged,
        };
        total.n += attacks.n;
        total.flagged += attacks.flagged;
        out.push_str(&format!("  {src:<22} {} {}\n", attacks.cell(), h.benign.cell()));
    }
    out.push_str(&format!(
        "  {:<22} {}   (target >= 85%)\n",
        "all attacks",
        total.cell()
    ));
    (total, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every team-written folder parses into known families, and the lines of `written4/`..`written6/` survive
    /// deduplication (none repeats a line of an earlier team set).
    #[test]
    fn team_sets_parse_into_known_families() {
        let known = [
            "instruction_override",
            "prompt_extraction",
            "role_play",
            "exfiltration",
            "fake_delimiter",
            "encoded_payload",
            "indirect",
            "benign",
            "hard_negative",
        ];
        let all = all_team_records();
        for r in &all {
            assert!(known.contains(&r.family.as_str()), "{} {}", r.source, r.family);
            assert!(!r.text.trim().is_empty(), "{}", r.source);
            assert_eq!(r.attack, !matches!(r.family.as_str(), "benign" | "hard_negative"));
        }
        let kept = dedup(all.clone());
        for (source, least) in [
            ("team-written-4", 600),
            ("team-written-5", 780),
            ("team-written-6", 930),
        ] {
            let set: Vec<&Record> = all.iter().filter(|r| r.source == source).collect();
            assert!(set.len() >= least, "{source}: {}", set.len());
            let kept_n = kept.iter().filter(|r| r.source == source).count();
            assert_eq!(
                kept_n,
                set.len(),
                "{source}: a line repeats an earlier team set's"
            );
            assert!(
                set.iter().any(|r| r.text.contains('\n')),
                "{source}: escaped line breaks decode"
            );
        }
    }

    #[test]
    fn wilson_matches_known_values() {
        let (lo, hi) = wilson(95, 100);
        assert!((lo - 88.8).abs() < 0.2 && (hi - 97.8).abs() < 0.2, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 0.0));
        let (lo, hi) = wilson(0, 50);
        assert!(lo == 0.0 && hi > 5.0 && hi < 8.0, "{hi}");
    }

    #[test]
    fn freeze_is_stratified_and_deterministic() {
        let mk = |i: usize, source: &str, family: &str| Record {
            text: format!("text {i} {source} {family}"),
            attack: family != "benign",
            family: family.into(),
            source: source.into(),
        };
        let mut all = Vec::new();
        for i in 0..40 {
            all.push(mk(i, "a", "role_play"));
            all.push(mk(i, "b", "benign"));
        }
        all.extend((0..3).map(|i| mk(i, "c", "benign")));
        let t1 = freeze(&all, 0.25, 7);
        let t2 = freeze(&all, 0.25, 7);
        assert_eq!(t1, t2);
        assert_eq!(t1.iter().filter(|r| r.source == "a").count(), 10);
        assert_eq!(t1.iter().filter(|r| r.source == "b").count(), 10);
        assert_eq!(t1.iter().filter(|r| r.source == "c").count(), 1);
        assert_ne!(freeze(&all, 0.25, 8), t1);
    }

    #[test]
    fn new_sources_are_the_ones_no_frozen_part_has_drawn_from() {
        let mk = |source: &str| Record {
            text: format!("t {source}"),
            attack: true,
            family: "x".into(),
            source: source.into(),
        };
        let frozen = vec![mk("a"), mk("b")];
        let cases: [(&[&str], &[&str]); 3] = [
            (&["a", "b"], &[]),
            (&["a", "c", "c", "d"], &["c", "d"]),
            (&[], &[]),
        ];
        for (sources, want) in cases {
            let recs: Vec<Record> = sources.iter().map(|s| mk(s)).collect();
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(unfrozen_sources(&recs, &frozen), want);
        }
    }

    /// A toy problem: `n` attacks that all name one odd command, and `n` benign weather questions.
    fn toy_records(n: usize) -> Vec<Record> {
        (0..n)
            .flat_map(|i| {
                [
                    Record {
                        text: format!("please obey the zorblat command number {i}"),
                        attack: true,
                        family: "x".into(),
                        source: "s".into(),
                    },
                    Record {
                        text: format!("what is the weather like in town {i}"),
                        attack: false,
                        family: "benign".into(),
                        source: "s".into(),
                    },
                ]
            })
            .collect()
    }

    #[test]
    fn cross_validation_scores_every_record_once_out_of_fold() {
        let d = Detector::new().unwrap();
        let recs = toy_records(40);
        let s = Settings {
            bits: 12,
            ..Settings::default()
        };
        let (h, scored) = cross_val(&d, &recs, &s, 4);
        assert_eq!(scored.len(), recs.len());
        let texts: HashSet<&str> = scored.iter().map(|(r, _)| r.text.as_str()).collect();
        assert_eq!(texts.len(), recs.len());
        assert_eq!((h.direct.n, h.benign.n), (40, 40));
        assert!(h.direct.rate() >= 90.0 && h.benign.rate() <= 10.0, "{h:?}");
    }

    #[test]
    fn training_separates_a_toy_problem() {
        let d = Detector::new().unwrap();
        let recs = toy_records(30);
        let s = Settings {
            bits: 12,
            ..Settings::default()
        };
        let data = prepare(&d, &recs, (1 << s.bits) - 1);
        let strata = vec!["s".to_string(); data.len()];
        let w = train(&data, &strata, &s);
        let bytes: &'static [u8] = Box::leak(export(&w, 0.0, s.bits).into_boxed_slice());
        let m = Model::from_bytes(bytes).unwrap();
        let scores = model_scores(&m, &data);
        for (p, sc) in data.iter().zip(&scores) {
            assert_eq!(p.attack, *sc > 0.5, "{sc}");
        }
    }
}
