//! The remote classifier's wire mapping and its per-VM result cache.
//!
//! Hosted prompt-injection models disagree on their JSON (`{"text": ..}` → `{"score": ..}`, Hugging
//! Face's `{"inputs": ..}` → `[{"label": "INJECTION", "score": ..}]`, ...), so the request field and the
//! response fields are JSON pointers from the config. Results are cached by a hash of the prompt: a
//! retried or repeated prompt costs no second call. The cache is per VM (one per Envoy worker); it is a
//! cache, not shared state, so that is fine.

use serde_json::{Map, Value};
use std::collections::VecDeque;

/// Segments of a JSON pointer (`/a/b` → `["a", "b"]`), with `~1` and `~0` unescaped. `None` when the
/// pointer is not absolute or has an empty segment.
pub fn pointer_segments(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    rest.split('/')
        .map(|s| (!s.is_empty()).then(|| s.replace("~1", "/").replace("~0", "~")))
        .collect()
}

/// The request body: `extra` with the prompt placed at `field` (objects created on the way).
pub fn request_body(field: &[String], extra: &Map<String, Value>, prompt: &str) -> Vec<u8> {
    let mut root = Value::Object(extra.clone());
    let mut at = &mut root;
    for (i, key) in field.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(obj) = at else { break };
        let last = i + 1 == field.len();
        let slot = obj.entry(key.clone()).or_insert(Value::Null);
        if last {
            *slot = Value::String(prompt.to_string());
            break;
        }
        at = slot;
    }
    root.to_string().into_bytes()
}

/// Reads the injection score from a classifier answer: the number (or numeric string) at
/// `score_pointer`, in 0..=1. With a label mapping, a label other than the positive one means the
/// score is the classifier's confidence in "safe", so the injection score is 1 − score.
pub fn read_score(body: &[u8], score_pointer: &str, label: Option<(&str, &str)>) -> Option<f32> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let raw = v.pointer(score_pointer)?;
    let score = match raw {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !(0.0..=1.0).contains(&score) {
        return None;
    }
    let score = score as f32;
    match label {
        None => Some(score),
        Some((pointer, positive)) => {
            let l = v.pointer(pointer)?.as_str()?;
            Some(if l.eq_ignore_ascii_case(positive) {
                score
            } else {
                1.0 - score
            })
        }
    }
}

/// A small least-recently-used map from prompt hash to score. Linear scans: it holds a few hundred
/// entries at most, where a scan beats hashing and keeps the code obvious.
#[derive(Debug, Default)]
pub struct Lru {
    capacity: usize,
    entries: VecDeque<(u64, f32)>,
}

impl Lru {
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            entries: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    pub fn get(&mut self, key: u64) -> Option<f32> {
        let i = self.entries.iter().position(|(k, _)| *k == key)?;
        let entry = self.entries.remove(i)?;
        self.entries.push_front(entry);
        Some(entry.1)
    }

    pub fn put(&mut self, key: u64, score: f32) {
        if self.capacity == 0 {
            return;
        }
        if let Some(i) = self.entries.iter().position(|(k, _)| *k == key) {
            self.entries.remove(i);
        }
        self.entries.push_front((key, score));
        self.entries.truncate(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_requests_and_responses() {
        let field = pointer_segments("/input/text").unwrap();
        let extra = json!({"model": "pg"}).as_object().unwrap().clone();
        let body: Value = serde_json::from_slice(&request_body(&field, &extra, "hi")).unwrap();
        assert_eq!(body, json!({"model": "pg", "input": {"text": "hi"}}));
        assert_eq!(pointer_segments("x"), None);
        assert_eq!(pointer_segments("/a//b"), None);
        assert_eq!(pointer_segments("/a~1b").unwrap(), vec!["a/b"]);

        assert_eq!(read_score(br#"{"score": 0.9}"#, "/score", None), Some(0.9));
        assert_eq!(read_score(br#"{"score": "0.25"}"#, "/score", None), Some(0.25));
        assert_eq!(read_score(br#"{"score": 1.5}"#, "/score", None), None);
        assert_eq!(read_score(br#"{"nope": 1}"#, "/score", None), None);
        assert_eq!(read_score(b"not json", "/score", None), None);
        let hf = br#"[{"label": "SAFE", "score": 0.75}]"#;
        assert_eq!(
            read_score(hf, "/0/score", Some(("/0/label", "INJECTION"))),
            Some(0.25)
        );
        let hf = br#"[{"label": "INJECTION", "score": 0.75}]"#;
        assert_eq!(
            read_score(hf, "/0/score", Some(("/0/label", "injection"))),
            Some(0.75)
        );
    }

    #[test]
    fn lru_evicts_the_least_recent() {
        let mut c = Lru::new(2);
        c.put(1, 0.1);
        c.put(2, 0.2);
        assert_eq!(c.get(1), Some(0.1));
        c.put(3, 0.3);
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(1), Some(0.1));
        assert_eq!(c.get(3), Some(0.3));
        let mut off = Lru::new(0);
        off.put(1, 0.5);
        assert_eq!(off.get(1), None);
    }
}
