//! Enrichers that need no model: the body's text (JSON, form, XML/HTML or plain), its language (script
//! and stop words), its size, and the counts of the PII engine's entity types. Usable alone (a user
//! with no LLM key) or as task inputs, as the variables `local.language`, `local.body_bytes` and
//! `local.pii`. The text and the language are `shared::lang`'s (ai-router reads them too).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use shared::lang::{body_text, language};

/// The variables this filter supplies to templates and mappings.
pub const VARS: [&str; 3] = ["local.language", "local.body_bytes", "local.pii"];

/// How many values of each PII entity type `text` holds (the built-in detectors), as a JSON object
/// `{"email": 1, "phone": 2}`; types never, values never.
pub fn pii_counts(text: &str) -> Value {
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for d in shared::pii::default_engine().detect(text) {
        *per.entry(d.kind).or_default() += 1;
    }
    Value::Object(
        per.into_iter()
            .map(|(k, n)| (k, Value::from(n)))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pii_types_are_counted_never_shown() {
        let v = pii_counts("mail a@x.io or b@x.io, call +1 415 555 0100");
        assert_eq!(v, json!({"email": 2, "phone": 1}));
        assert_eq!(pii_counts("nothing"), json!({}));
    }
}
