//! Canary analysis of two arms (two `target`s) from ai-audit-log's records: the statistics, the
//! per-metric comparison and the verdict, as pure functions (`canary-report` reads the records from
//! ClickHouse and prints [`Report::render`]). See `docs/canary.md`.
//!
//! Per arm, from each record: an error (status ≥ 500, no status, or the provider answered ≥ 500 — the
//! `proxy` decision's `status` — or named an `error`), the latency, the tokens (prompt + completion),
//! the cost, and a guard block (`guard_verdict` = `block`). Rates are compared with a two-proportion
//! z-test (pooled variance); latency, tokens and cost with a Mann-Whitney U test (normal approximation,
//! tie-corrected variance, continuity correction: scipy's `mannwhitneyu(method="asymptotic")`). Both
//! two-sided. The p-values are not corrected for the five comparisons.
//!
//! The verdict, at significance `alpha`:
//! - **keep** collecting while an arm has fewer than `min_samples` records (and say how many more);
//! - **roll back** when B is significantly worse on error rate, latency or guard blocks;
//! - **promote** when B is significantly worse on nothing (better on some, or equal on all);
//! - **keep** otherwise: B is worse only on cost, a trade-off for a person to weigh.
//!
//! Tokens per request are reported and tested but do not weigh in the verdict (more tokens can be a
//! longer, better answer; their price is in the cost).

use std::fmt::Write as _;

use serde_json::{json, Value};

/// One request, as the comparison reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub error: bool,
    pub latency_ms: f64,
    pub tokens: f64,
    pub cost_usd: f64,
    pub blocked: bool,
}

impl Sample {
    /// A record (a `JSONEachRow` row of the audit table: `status`, `latency_ms`, `prompt_tokens`,
    /// `completion_tokens`, `cost_usd`, `guard_verdict`, `decisions`); missing fields count as 0/empty.
    pub fn from_record(r: &Value) -> Sample {
        let num = |k: &str| r.get(k).and_then(value_f64).unwrap_or(0.0);
        let status = num("status");
        let decisions: Value = r
            .get("decisions")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let proxy = decisions.get("proxy");
        let provider_status = proxy
            .and_then(|p| p.get("status"))
            .and_then(value_f64)
            .unwrap_or(0.0);
        let provider_error = proxy
            .and_then(|p| p.get("error"))
            .is_some_and(|e| !e.is_null() && e != "" && e != false);
        Sample {
            error: status >= 500.0 || status == 0.0 || provider_status >= 500.0 || provider_error,
            latency_ms: num("latency_ms"),
            tokens: num("prompt_tokens") + num("completion_tokens"),
            cost_usd: num("cost_usd"),
            blocked: r.get("guard_verdict").and_then(Value::as_str) == Some("block"),
        }
    }
}

/// A number, or a number written as a string (ClickHouse quotes 64-bit integers by default).
fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The standard normal's upper tail P(Z > z), from the complementary error function.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// erfc(x) by Chebyshev fitting (Numerical Recipes' `erfcc`): fractional error below 1.2e-7 everywhere.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// A two-sided test's statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// z: positive when B is higher.
    pub z: f64,
    pub p: f64,
}

/// The two-proportion z-test of `xa` of `na` against `xb` of `nb` (pooled variance). Equal rates of
/// 0 or 1 (no variance) give z = 0, p = 1.
pub fn two_proportion(xa: u64, na: u64, xb: u64, nb: u64) -> Test {
    let (na_f, nb_f) = (na as f64, nb as f64);
    if na == 0 || nb == 0 {
        return Test { z: 0.0, p: 1.0 };
    }
    let (pa, pb) = (xa as f64 / na_f, xb as f64 / nb_f);
    let pooled = (xa + xb) as f64 / (na_f + nb_f);
    let se = (pooled * (1.0 - pooled) * (1.0 / na_f + 1.0 / nb_f)).sqrt();
    if se == 0.0 {
        return Test { z: 0.0, p: 1.0 };
    }
    let z = (pb - pa) / se;
    Test {
        z,
        p: (2.0 * normal_sf(z.abs())).min(1.0),
    }
}

/// The Mann-Whitney U test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of `b`: the number of (a, b) pairs where b is larger, ties counting one half.
    pub u_b: f64,
    /// `u_b / (na·nb)`: the probability that a B value exceeds an A value (ties half).
    pub prob_b_higher: f64,
    pub test: Test,
}

/// Mann-Whitney U with the normal approximation: mid-ranks for ties, the tie-corrected variance, and a
/// continuity correction of ½ (as scipy's `mannwhitneyu(a, b, method="asymptotic")`). No variance (all
/// values equal, or an empty side) gives p = 1.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> MannWhitney {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let none = MannWhitney {
        u_b: na * nb / 2.0,
        prob_b_higher: 0.5,
        test: Test { z: 0.0, p: 1.0 },
    };
    if a.is_empty() || b.is_empty() {
        return none;
    }
    // (value, from b) sorted by value; NaN sorts last and is never produced by the records.
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, false))
        .chain(b.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_b = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let value = all.get(i).map_or(0.0, |x| x.0);
        let j = all.iter().skip(i).take_while(|x| x.0 == value).count() + i;
        // Ranks i+1 ..= j share their mean.
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        let from_b = all.get(i..j).map_or(0, |run| run.iter().filter(|x| x.1).count());
        rank_sum_b += mid_rank * from_b as f64;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let u_b = rank_sum_b - nb * (nb + 1.0) / 2.0;
    let nf = n as f64;
    let mu = na * nb / 2.0;
    let var = na * nb / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let prob_b_higher = u_b / (na * nb);
    if var <= 0.0 {
        return MannWhitney {
            u_b,
            prob_b_higher,
            test: Test { z: 0.0, p: 1.0 },
        };
    }
    let sd = var.sqrt();
    let z = ((u_b - mu).abs() - 0.5).max(0.0) / sd;
    let signed = if u_b >= mu { z } else { -z };
    MannWhitney {
        u_b,
        prob_b_higher,
        test: Test {
            z: signed,
            p: (2.0 * normal_sf(z)).min(1.0),
        },
    }
}

/// The `q` quantile (0..=1) of `sorted` by linear interpolation between closest ranks (numpy's
/// default); 0 for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let at = |i: usize| sorted.get(i.min(sorted.len() - 1)).copied().unwrap_or(0.0);
    at(lo) + (h - lo as f64) * (at(lo + 1) - at(lo))
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// How B compares on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Better,
    Worse,
    Same,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Better => "B better",
            Direction::Worse => "B worse",
            Direction::Same => "no significant difference",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric, as the verdict names it (`latency`).
    pub name: &'static str,
    /// What the values are, as the table shows it (`latency ms p50 / p95`).
    pub label: &'static str,
    /// A's and B's values, as printed (rates in %, latencies `p50 / p95` ms, means).
    pub a: String,
    pub b: String,
    pub test: &'static str,
    pub p: f64,
    /// Lower is better for every metric here.
    pub direction: Direction,
    /// Whether a B-worse result is a roll-back.
    pub regression_rolls_back: bool,
    /// Whether the metric weighs in the verdict at all.
    pub in_verdict: bool,
}

/// The recommendation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Promote,
    RollBack,
    Keep,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::RollBack => "roll back",
            Verdict::Keep => "keep",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub alpha: f64,
    pub min_samples: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: 0.05,
            min_samples: 30,
        }
    }
}

/// The comparison of arm B against arm A.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub a: String,
    pub b: String,
    pub na: usize,
    pub nb: usize,
    pub alpha: f64,
    pub metrics: Vec<Metric>,
    pub verdict: Verdict,
    /// Why, in a sentence.
    pub reason: String,
}

fn direction(p: f64, b_higher: bool, alpha: f64) -> Direction {
    match (p < alpha, b_higher) {
        (false, _) => Direction::Same,
        (true, true) => Direction::Worse,
        (true, false) => Direction::Better,
    }
}

fn rate_metric(
    (name, label): (&'static str, &'static str),
    a: &[Sample],
    b: &[Sample],
    pick: fn(&Sample) -> bool,
    alpha: f64,
    rolls_back: bool,
) -> Metric {
    let (xa, xb) = (
        a.iter().filter(|s| pick(s)).count(),
        b.iter().filter(|s| pick(s)).count(),
    );
    let t = two_proportion(xa as u64, a.len() as u64, xb as u64, b.len() as u64);
    let pct = |x: usize, n: usize| if n == 0 { 0.0 } else { 100.0 * x as f64 / n as f64 };
    Metric {
        name,
        label,
        a: format!("{:.2}% ({xa}/{})", pct(xa, a.len()), a.len()),
        b: format!("{:.2}% ({xb}/{})", pct(xb, b.len()), b.len()),
        test: "two-proportion z",
        p: t.p,
        direction: direction(t.p, t.z > 0.0, alpha),
        regression_rolls_back: rolls_back,
        in_verdict: true,
    }
}

fn rank_metric(
    (name, label): (&'static str, &'static str),
    a: &[Sample],
    b: &[Sample],
    pick: fn(&Sample) -> f64,
    show: fn(&[f64]) -> String,
    alpha: f64,
    (rolls_back, in_verdict): (bool, bool),
) -> Metric {
    let mut va: Vec<f64> = a.iter().map(pick).collect();
    let mut vb: Vec<f64> = b.iter().map(pick).collect();
    va.sort_by(f64::total_cmp);
    vb.sort_by(f64::total_cmp);
    let mw = mann_whitney(&va, &vb);
    Metric {
        name,
        label,
        a: show(&va),
        b: show(&vb),
        test: "Mann-Whitney U",
        p: mw.test.p,
        direction: direction(mw.test.p, mw.prob_b_higher > 0.5, alpha),
        regression_rolls_back: rolls_back,
        in_verdict,
    }
}

/// Compares arm `b_name` (samples `b`) against `a_name` (samples `a`).
pub fn compare(a_name: &str, a: &[Sample], b_name: &str, b: &[Sample], opts: Options) -> Report {
    let alpha = opts.alpha;
    let metrics = vec![
        rate_metric(("error rate", "error rate"), a, b, |s| s.error, alpha, true),
        rank_metric(
            ("latency", "latency ms p50 / p95"),
            a,
            b,
            |s| s.latency_ms,
            |v| format!("{:.0} / {:.0}", quantile(v, 0.5), quantile(v, 0.95)),
            alpha,
            (true, true),
        ),
        rank_metric(
            ("tokens", "tokens per request"),
            a,
            b,
            |s| s.tokens,
            |v| format!("{:.1}", mean(v)),
            alpha,
            (false, false),
        ),
        rank_metric(
            ("cost", "cost per request USD"),
            a,
            b,
            |s| s.cost_usd,
            |v| format!("{:.6}", mean(v)),
            alpha,
            (false, true),
        ),
        rate_metric(
            ("guard blocks", "guard block rate"),
            a,
            b,
            |s| s.blocked,
            alpha,
            true,
        ),
    ];
    let (verdict, reason) = decide(a.len(), b.len(), &metrics, opts);
    Report {
        a: a_name.to_string(),
        b: b_name.to_string(),
        na: a.len(),
        nb: b.len(),
        alpha,
        metrics,
        verdict,
        reason,
    }
}

fn names(metrics: &[&Metric]) -> String {
    metrics.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

fn decide(na: usize, nb: usize, metrics: &[Metric], opts: Options) -> (Verdict, String) {
    let min = opts.min_samples;
    if na < min || nb < min {
        let more = |n: usize| min.saturating_sub(n);
        return (
            Verdict::Keep,
            format!(
                "too few samples: at least {min} per arm are needed (A has {na}, {} more; B has {nb}, {} more)",
                more(na),
                more(nb)
            ),
        );
    }
    let weighed: Vec<&Metric> = metrics.iter().filter(|m| m.in_verdict).collect();
    let worse: Vec<&Metric> = weighed
        .iter()
        .copied()
        .filter(|m| m.direction == Direction::Worse)
        .collect();
    let better: Vec<&Metric> = weighed
        .iter()
        .copied()
        .filter(|m| m.direction == Direction::Better)
        .collect();
    let regressions: Vec<&Metric> = worse
        .iter()
        .copied()
        .filter(|m| m.regression_rolls_back)
        .collect();
    if !regressions.is_empty() {
        return (
            Verdict::RollBack,
            format!("B is significantly worse on {}", names(&regressions)),
        );
    }
    if !worse.is_empty() {
        return (
            Verdict::Keep,
            format!(
                "B is significantly worse on {} only{}: a trade-off to weigh, not a regression",
                names(&worse),
                if better.is_empty() {
                    String::new()
                } else {
                    format!(" and better on {}", names(&better))
                }
            ),
        );
    }
    if better.is_empty() {
        (
            Verdict::Promote,
            format!("no significant difference on any metric with {na} and {nb} samples"),
        )
    } else {
        (
            Verdict::Promote,
            format!(
                "B is significantly better on {} and worse on none",
                names(&better)
            ),
        )
    }
}

/// A p-value as printed: four decimals, or `<0.0001`.
fn p_text(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

impl Report {
    /// The report as a table and a verdict line (`verdict: promote|keep|roll back — reason`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "canary: A = {} ({} requests), B = {} ({} requests), alpha = {}",
            self.a, self.na, self.b, self.nb, self.alpha
        );
        let _ = writeln!(
            out,
            "{:<22} {:>22} {:>22}  {:<17} {:>8}  result",
            "metric", "A", "B", "test", "p"
        );
        for m in &self.metrics {
            let note = if m.in_verdict { "" } else { " (not in the verdict)" };
            let _ = writeln!(
                out,
                "{:<22} {:>22} {:>22}  {:<17} {:>8}  {}{note}",
                m.label,
                m.a,
                m.b,
                m.test,
                p_text(m.p),
                m.direction.word()
            );
        }
        let _ = writeln!(out, "verdict: {} — {}", self.verdict.as_str(), self.reason);
        out
    }

    /// The report as JSON (`--json`).
    pub fn to_json(&self) -> Value {
        json!({
            "a": {"target": self.a, "requests": self.na},
            "b": {"target": self.b, "requests": self.nb},
            "alpha": self.alpha,
            "metrics": self.metrics.iter().map(|m| json!({
                "metric": m.name, "label": m.label, "a": m.a, "b": m.b, "test": m.test, "p": m.p,
                "result": match m.direction { Direction::Better => "better", Direction::Worse => "worse", Direction::Same => "same" },
                "in_verdict": m.in_verdict,
            })).collect::<Vec<_>>(),
            "verdict": self.verdict.as_str(),
            "reason": self.reason,
        })
    }
}

/// A ClickHouse string literal: `'…'` with `\` and `'` escaped.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The query that reads both arms' records (`since`: a SQL condition on `ts`, already built).
pub fn records_query(table_sql: &str, a: &str, b: &str, since: Option<&str>) -> String {
    let mut sql = format!(
        "SELECT target, status, latency_ms, prompt_tokens, completion_tokens, cost_usd, guard_verdict, decisions \
         FROM {table_sql} FINAL WHERE target IN ({}, {})",
        sql_string(a),
        sql_string(b)
    );
    if let Some(cond) = since {
        sql.push_str(" AND ");
        sql.push_str(cond);
    }
    sql.push_str(" FORMAT JSONEachRow");
    sql
}

/// `--since`: a duration back from now (`90s`, `30m`, `6h`, `7d`) or a UTC time (RFC 3339, or
/// `YYYY-MM-DD hh:mm:ss`), as a condition on `ts`.
pub fn since_condition(since: &str) -> Result<String, String> {
    let s = since.trim();
    let unit = s.chars().last().and_then(|c| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    });
    if let (Some(mult), Some(n)) = (
        unit,
        s.get(..s.len().saturating_sub(1))
            .and_then(|n| n.parse::<u64>().ok()),
    ) {
        let secs = n.checked_mul(mult).ok_or("--since: too far back")?;
        return Ok(format!("ts >= now() - {secs}"));
    }
    match shared::sink::utc_millis(s) {
        Some(ms) => Ok(format!("ts >= toDateTime({})", ms / 1000)),
        None => Err(format!(
            "--since {since:?}: expected a duration (30m, 6h, 7d) or a UTC time (2026-12-01T00:00:00Z)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want.abs().max(1e-300) || (got - want).abs() < 1e-12
    }

    #[test]
    fn normal_tail_against_scipy() {
        // scipy.stats.norm.sf(z)
        let cases = [
            (0.0, 0.5),
            (1.0, 0.15865525393145707),
            (1.959963984540054, 0.025),
            (2.5, 0.006209665325776132),
            (4.0, 3.167124183311986e-05),
            (-1.0, 0.8413447460685429),
            (8.0, 6.22096057427174e-16),
        ];
        for (z, want) in cases {
            assert!(
                close(normal_sf(z), want, 2e-7),
                "sf({z}) = {} want {want}",
                normal_sf(z)
            );
        }
    }

    #[test]
    fn two_proportion_against_reference() {
        // statsmodels.stats.proportion.proportions_ztest([xb, xa], [nb, na]) (pooled variance).
        let cases: &[(u64, u64, u64, u64, f64, f64)] = &[
            (20, 200, 5, 200, -3.098386676965934, 0.0019457736937391447),
            (10, 100, 25, 100, 2.7914526311954124, 0.00524720373911564),
            (3, 50, 4, 60, 0.14262579510557016, 0.8865857242021732),
            (0, 40, 0, 40, 0.0, 1.0),
            (40, 40, 40, 40, 0.0, 1.0),
            (0, 0, 1, 10, 0.0, 1.0),
        ];
        for &(xa, na, xb, nb, z, p) in cases {
            let t = two_proportion(xa, na, xb, nb);
            assert!(close(t.z, z, 1e-9), "{xa}/{na} vs {xb}/{nb}: z {} want {z}", t.z);
            assert!(close(t.p, p, 1e-6), "{xa}/{na} vs {xb}/{nb}: p {} want {p}", t.p);
        }
    }

    #[test]
    fn mann_whitney_against_scipy() {
        // scipy.stats.mannwhitneyu(b, a, method="asymptotic") → (U of b, p).
        let cases: &[(&[f64], &[f64], f64, f64)] = &[
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                &[6.0, 7.0, 8.0, 9.0, 10.0],
                25.0,
                0.012185780355344813,
            ),
            (
                &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0],
                &[2.0, 3.0, 4.0, 4.0, 5.0, 5.0],
                33.5,
                0.07826242947714618,
            ),
            (&[10.0, 20.0, 30.0], &[15.0, 25.0], 3.0, 1.0),
            (&[5.0, 5.0, 5.0], &[5.0, 5.0], 3.0, 1.0),
        ];
        for (a, b, u, p) in cases {
            let mw = mann_whitney(a, b);
            assert!(close(mw.u_b, *u, 1e-12), "{a:?} {b:?}: U {} want {u}", mw.u_b);
            assert!(
                close(mw.test.p, *p, 1e-6),
                "{a:?} {b:?}: p {} want {p}",
                mw.test.p
            );
        }
        assert_eq!(mann_whitney(&[], &[1.0]).test.p, 1.0);
        assert!(
            mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0])
                .test
                .z
                > 0.0
        );
        assert!(
            mann_whitney(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0])
                .test
                .z
                < 0.0
        );
    }

    #[test]
    fn quantiles_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.quantile(v, q)
        let cases = [(0.0, 1.0), (0.5, 3.0), (0.95, 8.8), (1.0, 10.0), (0.25, 2.0)];
        for (q, want) in cases {
            assert!(close(quantile(&v, q), want, 1e-12), "q {q}: {}", quantile(&v, q));
        }
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[7.0], 0.95), 7.0);
    }

    #[test]
    fn samples_from_records() {
        let cases = [
            (
                json!({"status": 200, "latency_ms": 120, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5,
                    "guard_verdict": "allow", "decisions": "{\"proxy\":{\"status\":200}}"}),
                Sample {
                    error: false,
                    latency_ms: 120.0,
                    tokens: 15.0,
                    cost_usd: 0.5,
                    blocked: false,
                },
            ),
            (
                json!({"status": 503, "latency_ms": "7"}),
                Sample {
                    error: true,
                    latency_ms: 7.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
            (
                json!({"status": 400, "guard_verdict": "block"}),
                Sample {
                    error: false,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: true,
                },
            ),
            (
                json!({"status": 200, "decisions": "{\"proxy\":{\"status\":502}}"}),
                Sample {
                    error: true,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
            (
                json!({"status": 200, "decisions": "{\"proxy\":{\"error\":\"timeout\"}}"}),
                Sample {
                    error: true,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
            (
                json!({"status": 200, "decisions": "{\"proxy\":{\"error\":null}}"}),
                Sample {
                    error: false,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
            (
                json!({"status": 0}),
                Sample {
                    error: true,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
            (
                json!({"status": 200, "decisions": "not json"}),
                Sample {
                    error: false,
                    latency_ms: 0.0,
                    tokens: 0.0,
                    cost_usd: 0.0,
                    blocked: false,
                },
            ),
        ];
        for (record, want) in cases {
            assert_eq!(Sample::from_record(&record), want, "{record}");
        }
    }

    fn arm(n: usize, errors: usize, latency: impl Fn(usize) -> f64, blocked: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                error: i < errors,
                latency_ms: latency(i),
                tokens: 100.0,
                cost_usd: 0.001,
                blocked: i >= n - blocked,
            })
            .collect()
    }

    #[test]
    fn verdicts() {
        let opts = Options::default();
        let slow = |i: usize| 400.0 + (i % 50) as f64 * 4.0;
        let fast = |i: usize| 300.0 + (i % 50) as f64 * 4.0;
        // (A, B, verdict, reason contains)
        let cases: Vec<(Vec<Sample>, Vec<Sample>, Verdict, &str)> = vec![
            (
                arm(200, 20, slow, 0),
                arm(200, 2, fast, 0),
                Verdict::Promote,
                "better on error rate, latency",
            ),
            (
                arm(200, 2, fast, 0),
                arm(200, 20, fast, 0),
                Verdict::RollBack,
                "worse on error rate",
            ),
            (
                arm(200, 2, fast, 0),
                arm(200, 2, slow, 0),
                Verdict::RollBack,
                "worse on latency",
            ),
            (
                arm(200, 2, fast, 1),
                arm(200, 2, fast, 15),
                Verdict::RollBack,
                "worse on guard blocks",
            ),
            (
                arm(200, 4, fast, 0),
                arm(200, 5, fast, 0),
                Verdict::Promote,
                "no significant difference",
            ),
            (
                arm(12, 0, fast, 0),
                arm(40, 0, fast, 0),
                Verdict::Keep,
                "A has 12, 18 more; B has 40, 0 more",
            ),
        ];
        for (i, (a, b, want, text)) in cases.iter().enumerate() {
            let r = compare("a", a, "b", b, opts);
            assert_eq!(&r.verdict, want, "case {i}: {}", r.render());
            assert!(r.reason.contains(text), "case {i}: {}", r.reason);
            assert!(r.render().contains(&format!("verdict: {}", want.as_str())));
        }
        // Worse on cost only: keep, a trade-off.
        let a = arm(100, 1, fast, 0);
        let b: Vec<Sample> = arm(100, 1, fast, 0)
            .into_iter()
            .map(|s| Sample { cost_usd: 0.002, ..s })
            .collect();
        let r = compare("a", &a, "b", &b, opts);
        assert_eq!(r.verdict, Verdict::Keep, "{}", r.render());
        assert!(r.reason.contains("worse on cost only"), "{}", r.reason);
        // More tokens alone change nothing.
        let b: Vec<Sample> = arm(100, 1, fast, 0)
            .into_iter()
            .map(|s| Sample { tokens: 500.0, ..s })
            .collect();
        let r = compare("a", &a, "b", &b, opts);
        assert_eq!(r.verdict, Verdict::Promote, "{}", r.render());
        assert_eq!(r.metrics[2].direction, Direction::Worse);
    }

    #[test]
    fn queries_and_since() {
        assert_eq!(sql_string("it's a \\ test"), "'it\\'s a \\\\ test'");
        assert_eq!(
            records_query("`audit`", "gpt-4o", "o'x", Some("ts >= now() - 60")),
            "SELECT target, status, latency_ms, prompt_tokens, completion_tokens, cost_usd, guard_verdict, decisions \
             FROM `audit` FINAL WHERE target IN ('gpt-4o', 'o\\'x') AND ts >= now() - 60 FORMAT JSONEachRow"
        );
        let cases = [
            ("90s", Ok("ts >= now() - 90")),
            ("30m", Ok("ts >= now() - 1800")),
            ("6h", Ok("ts >= now() - 21600")),
            ("7d", Ok("ts >= now() - 604800")),
            ("2026-12-01T00:00:00Z", Ok("ts >= toDateTime(1796083200)")),
            ("2026-12-01 00:00:00", Ok("ts >= toDateTime(1796083200)")),
            ("yesterday", Err("--since")),
            ("5w", Err("--since")),
        ];
        for (since, want) in cases {
            match (since_condition(since), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{since}: {got:?} want {want:?}"),
            }
        }
    }
}
