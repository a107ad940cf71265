//! Writing texts back where the walker found them: a plain string is replaced; a text inside JSON in a
//! string (tool-call arguments) is replaced in the embedded document, which is serialised again, so
//! the arguments stay valid JSON.

use serde_json::Value;
use std::collections::BTreeMap;

/// A new text for one location of [`super::walk::Text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub pointer: String,
    pub inner: Option<String>,
    pub text: String,
}

/// Applies `edits` to `body`; returns how many were applied (an edit whose location no longer holds a
/// string is skipped). Edits of one embedded document are applied together, and the document is
/// serialised once.
pub fn apply(body: &mut Value, edits: Vec<Edit>) -> usize {
    let mut applied = 0;
    let mut embedded: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in edits {
        match e.inner {
            None => {
                if let Some(slot @ Value::String(_)) = body.pointer_mut(&e.pointer) {
                    *slot = Value::String(e.text);
                    applied += 1;
                }
            }
            Some(inner) => embedded.entry(e.pointer).or_default().push((inner, e.text)),
        }
    }
    for (pointer, edits) in embedded {
        let Some(Value::String(raw)) = body.pointer_mut(&pointer) else {
            continue;
        };
        let Ok(mut doc) = serde_json::from_str::<Value>(raw) else {
            continue;
        };
        let mut n = 0;
        for (inner, text) in edits {
            if let Some(slot @ Value::String(_)) = doc.pointer_mut(&inner) {
                *slot = Value::String(text);
                n += 1;
            }
        }
        if n > 0 {
            *raw = doc.to_string();
            applied += n;
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{texts, Api};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn arguments_stay_valid_json() {
        let mut body = json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
            "function": {"name": "f", "arguments": "{\"to\": \"a@b.io\", \"note\": \"say \\\"hi\\\" to a@b.io\", \"n\": 2}"}}]}]});
        let edits: Vec<Edit> = texts(Some(Api::ChatCompletions), &body)
            .into_iter()
            .filter(|t| t.text.contains("a@b.io"))
            .map(|t| Edit {
                pointer: t.pointer.clone(),
                inner: t.inner.clone(),
                text: t.text.replace("a@b.io", "<EMAIL_1> \"quoted\" \\"),
            })
            .collect();
        assert_eq!(edits.len(), 2);
        assert_eq!(apply(&mut body, edits), 2);
        let raw = body["messages"][0]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let doc: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(
            doc,
            json!({"to": "<EMAIL_1> \"quoted\" \\", "note": "say \"hi\" to <EMAIL_1> \"quoted\" \\", "n": 2})
        );
        // Plain strings, and locations that are gone.
        let mut body = json!({"user": "u", "messages": []});
        let n = apply(
            &mut body,
            vec![
                Edit {
                    pointer: "/user".into(),
                    inner: None,
                    text: "v".into(),
                },
                Edit {
                    pointer: "/messages/0/content".into(),
                    inner: None,
                    text: "x".into(),
                },
                Edit {
                    pointer: "/user".into(),
                    inner: Some("/a".into()),
                    text: "x".into(),
                },
            ],
        );
        assert_eq!((n, body), (1, json!({"user": "v", "messages": []})));
        // A bare JSON string as the whole document.
        let mut body = json!({"a": "\"x@y.io\""});
        let n = apply(
            &mut body,
            vec![Edit {
                pointer: "/a".into(),
                inner: Some(String::new()),
                text: "<E>".into(),
            }],
        );
        assert_eq!((n, body), (1, json!({"a": "\"<E>\""})));
    }
}
