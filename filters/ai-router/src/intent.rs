//! The intent classifier: the labels, the built-in local classifier (no model, no key), and the task a
//! model classifier runs on `shared::llm`.
//!
//! **Local rules**, over the last user message, in this order (the first that gives a label wins):
//! 1. **code**: the first label with `"code": true`, when the message holds source code
//!    (`shared::lang::looks_like_code`: a fenced block, or two lines or more that read as code);
//! 2. **keywords**: the label with the most of its `keywords` in the message (whole words, any case;
//!    a tie goes to the label listed first);
//! 3. **short**: the first label whose `max_words` is at least the message's word count (small talk:
//!    "hi", "thanks!");
//! 4. otherwise no label: rules on the intent do not match (this is not a failure).
//!
//! **Model**: one task, `intent`, asks the configured target to pick one label; the system prompt lists
//! each label with its description, the user prompt is the last user message, and the answer must be
//! `{"intent": <one of the labels>}` (structured output, checked against that schema). It inherits the
//! task governance: cache per prompt (`cache_ttl`), timeout, token budget, breaker, metrics and cost.

use crate::rules::keyword_hits;

/// One label as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub name: String,
    pub description: String,
    /// Lower-cased.
    pub keywords: Vec<String>,
    pub code: bool,
    pub max_words: Option<u64>,
}

/// The local classifier's verdict on `text` (the last user message).
pub fn classify_local(labels: &[Label], text: &str) -> Option<String> {
    if let Some(l) = labels.iter().find(|l| l.code) {
        if shared::lang::looks_like_code(text) {
            return Some(l.name.clone());
        }
    }
    let lower = text.to_lowercase();
    let mut best: Option<(&Label, usize)> = None;
    for l in labels {
        let hits = keyword_hits(&lower, &l.keywords);
        if hits > 0 && best.is_none_or(|(_, b)| hits > b) {
            best = Some((l, hits));
        }
    }
    if let Some((l, _)) = best {
        return Some(l.name.clone());
    }
    let words = text.split_whitespace().count() as u64;
    labels
        .iter()
        .find(|l| l.max_words.is_some_and(|m| words <= m))
        .map(|l| l.name.clone())
}

/// The declared variable the model task's prompt reads: the last user message.
pub const PROMPT_VAR: &str = "router.prompt";
/// The task's name (metric label `task=intent`).
pub const TASK: &str = "intent";

/// The system prompt of the model classifier.
pub fn system_prompt(labels: &[Label], extra: Option<&str>) -> String {
    let mut s = String::from(
        "Classify the intent of the user's message. Answer with the one label that fits best, \
         as JSON {\"intent\": \"<label>\"}. The labels:\n",
    );
    for l in labels {
        s.push_str(&format!("- {}: {}\n", l.name, l.description));
    }
    if let Some(e) = extra {
        s.push_str(e);
        s.push('\n');
    }
    // A template opens a reference at `{{`: a description may not smuggle one in.
    s.replace("{{", "{ {")
}

/// The output schema: `{"intent": <one of the labels>}`.
pub fn output_schema(labels: &[Label]) -> serde_json::Value {
    let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["intent"],
        "properties": {"intent": {"type": "string", "enum": names}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, keywords: &[&str], code: bool, max_words: Option<u64>) -> Label {
        Label {
            name: name.into(),
            description: format!("{name} things"),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            code,
            max_words,
        }
    }

    #[test]
    fn local_rules_in_order() {
        let labels = vec![
            label("smalltalk", &[], false, Some(4)),
            label("billing", &["invoice", "refund", "charged"], false, None),
            label("code", &["python", "compile", "bug"], true, None),
        ];
        let cases = [
            ("def f(x):\n    return x", Some("code")),
            // Code wins over keywords.
            ("refund?\n```\nSELECT * FROM invoices;\n```", Some("code")),
            ("I was charged twice, please refund the invoice", Some("billing")),
            // The most keywords win; a tie goes to the first label.
            ("a python bug on my invoice", Some("code")),
            ("python invoice", Some("billing")),
            ("hi there!", Some("smalltalk")),
            ("Tell me about the history of Rome in detail", None),
            ("", Some("smalltalk")),
        ];
        for (text, want) in cases {
            assert_eq!(classify_local(&labels, text).as_deref(), want, "{text}");
        }
        assert_eq!(classify_local(&[], "hi"), None);
    }

    #[test]
    fn the_model_is_told_the_labels() {
        let labels = vec![label("code", &[], false, None), label("chat", &[], false, None)];
        let s = system_prompt(&labels, Some("Prefer {{code}}."));
        assert!(s.contains("- code: code things\n- chat: chat things\n"), "{s}");
        assert!(!s.contains("{{"));
        assert_eq!(
            output_schema(&labels)["properties"]["intent"]["enum"],
            serde_json::json!(["code", "chat"])
        );
    }
}
