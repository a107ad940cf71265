//! The local injection verdict: the one function the policy calls to score a request's texts.
//!
//! `detector` picks the score the threshold (or the cascade's band) applies to: the rules' overall
//! score, the learned model's probability (which reads the rules' scores as features), or the larger
//! of the two. The rules' per-family scores are always computed: they name the family in errors,
//! headers and metrics.

use crate::config::{DetectorKind, Injection};
use shared::injection::Scores;

/// What the local detector says about a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Local {
    /// The rules' per-family scores (maximum over the texts), ignored families removed.
    pub rules: Scores,
    /// The learned model's probability (maximum over the texts), when the detector uses it.
    pub model: Option<f32>,
    /// The score the decision is taken on.
    pub score: f32,
}

impl Local {
    /// The family to name: the rules' strongest when it carries real weight, else `model` (the
    /// learned detector found an attack the rules have no family for).
    pub fn family(&self) -> &'static str {
        match self.rules.top() {
            Some((f, s)) if s >= 0.2 || self.model.is_none() => f.as_str(),
            _ => "model",
        }
    }
}

/// Scores `texts` (the messages of the scanned roles) under `inj`.
pub fn score(inj: &Injection, texts: &[&str]) -> Local {
    let mut rules = Scores::default();
    let mut model: Option<f32> = None;
    for t in texts {
        let s = if inj.kind == DetectorKind::Rules {
            inj.detector.score(t).without(&inj.ignore)
        } else {
            let (s, p) = inj.detector.score_with_model(t, &inj.ignore);
            let p = p.unwrap_or(0.0);
            model = Some(model.map_or(p, |m: f32| m.max(p)));
            s
        };
        rules.max_with(&s);
    }
    let total = rules.total();
    let score = match (inj.kind, model) {
        (DetectorKind::Rules, _) | (_, None) => total,
        (DetectorKind::Learned, Some(m)) => m,
        (DetectorKind::Both, Some(m)) => m.max(total),
    };
    Local { rules, model, score }
}
