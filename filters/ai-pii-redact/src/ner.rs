//! The NER callout, Presidio analyzer contract: `POST /analyze {"text", "language"}` answers
//! `[{"entity_type", "start", "end", "score"}]` with offsets in characters (Python string indices).
//!
//! All of a request's text segments go in one call, joined by blank lines; the answer's character
//! offsets are mapped back to byte ranges in each segment.

use crate::body::Segment;
use crate::config::Ner;
use serde_json::{json, Value};
use shared::pii::{Detection, PRIORITY_NER};

const SEPARATOR: &str = "\n\n";

/// The call body, and each segment's start in characters within it.
pub fn request_body(segments: &[Segment], ner: &Ner) -> (Vec<u8>, Vec<usize>) {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(segments.len());
    let mut chars = 0;
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            text.push_str(SEPARATOR);
            chars += SEPARATOR.len();
        }
        starts.push(chars);
        text.push_str(&s.text);
        chars += s.text.chars().count();
    }
    let body = json!({"text": text, "language": ner.language});
    (body.to_string().into_bytes(), starts)
}

/// Our entity type for a Presidio one: the built-in name where there is one, else lower case.
fn kind(entity_type: &str) -> Option<String> {
    let k = match entity_type {
        "EMAIL_ADDRESS" => "email".to_string(),
        "PHONE_NUMBER" => "phone".to_string(),
        "CREDIT_CARD" => "card".to_string(),
        "US_SSN" => "ssn".to_string(),
        "IBAN_CODE" => "iban".to_string(),
        "IP_ADDRESS" => "ip".to_string(),
        other => other
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect(),
    };
    (1..=32).contains(&k.len()).then_some(k)
}

/// Byte offset of character `c` in `s` (the end of `s` for `c == s.chars().count()`).
fn byte_at(s: &str, c: usize) -> Option<usize> {
    s.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(s.len()))
        .nth(c)
}

/// Detections per segment from the service's answer; `Err` when the answer is not the contract.
pub fn parse_response(
    body: &[u8],
    segments: &[Segment],
    starts: &[usize],
    ner: &Ner,
) -> Result<Vec<Vec<Detection>>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let list = v.as_array().ok_or("answer is not a JSON array")?;
    let mut out: Vec<Vec<Detection>> = vec![Vec::new(); segments.len()];
    for e in list {
        let (Some(t), Some(start), Some(end), Some(score)) = (
            e.get("entity_type").and_then(Value::as_str),
            e.get("start").and_then(Value::as_u64),
            e.get("end").and_then(Value::as_u64),
            e.get("score").and_then(Value::as_f64),
        ) else {
            return Err(format!("entity without entity_type/start/end/score: {e}"));
        };
        if score < ner.threshold || (!ner.entities.is_empty() && !ner.entities.iter().any(|x| x == t)) {
            continue;
        }
        let Some(kind) = kind(t) else { continue };
        let (start, end) = (
            usize::try_from(start).unwrap_or(usize::MAX),
            usize::try_from(end).unwrap_or(0),
        );
        // The segment holding the start; an entity running past its segment is cut at the segment end.
        let Some(i) = starts.iter().rposition(|s| *s <= start) else {
            continue;
        };
        let (Some(seg), Some(seg_start)) = (segments.get(i), starts.get(i)) else {
            continue;
        };
        let seg_chars = seg.text.chars().count();
        let (a, b) = (start - seg_start, end.saturating_sub(*seg_start).min(seg_chars));
        if a >= b {
            continue;
        }
        let (Some(bs), Some(be)) = (byte_at(&seg.text, a), byte_at(&seg.text, b)) else {
            continue;
        };
        if let Some(list) = out.get_mut(i) {
            list.push(Detection {
                kind,
                start: bs,
                end: be,
                priority: PRIORITY_NER,
                canonical: seg.text.get(bs..be).unwrap_or_default().to_lowercase(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::callout::{RawService, Service, NAMES, TIMEOUTS};
    use shared::host::Upstream;

    fn ner() -> Ner {
        let raw = RawService {
            upstream: Upstream {
                cluster: "c".into(),
                host: "h:1".into(),
            },
            path: "/analyze".into(),
            headers: Default::default(),
            timeout: None,
            retries: None,
            failure_mode: Default::default(),
        };
        Ner {
            service: Service::compile("ner", NAMES, raw, TIMEOUTS).unwrap(),
            language: "en".into(),
            threshold: 0.5,
            entities: vec![],
        }
    }

    #[test]
    fn maps_character_offsets_to_segments() {
        let segs = vec![
            Segment {
                pointer: "/a".into(),
                text: "héllo Jane Roe".into(),
                ..Segment::default()
            },
            Segment {
                pointer: "/b".into(),
                text: "in Zürich now".into(),
                ..Segment::default()
            },
        ];
        let (body, starts) = request_body(&segs, &ner());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["text"], "héllo Jane Roe\n\nin Zürich now");
        assert_eq!(starts, vec![0, 16]);
        let answer = json!([
            {"entity_type": "PERSON", "start": 6, "end": 14, "score": 0.9},
            {"entity_type": "LOCATION", "start": 19, "end": 25, "score": 0.8},
            {"entity_type": "NRP", "start": 0, "end": 5, "score": 0.2}
        ]);
        let dets = parse_response(answer.to_string().as_bytes(), &segs, &starts, &ner()).unwrap();
        assert_eq!(&segs[0].text[dets[0][0].start..dets[0][0].end], "Jane Roe");
        assert_eq!(dets[0][0].kind, "person");
        assert_eq!(&segs[1].text[dets[1][0].start..dets[1][0].end], "Zürich");
        assert_eq!(dets[0].len(), 1, "below the threshold is dropped");
        assert!(parse_response(b"{}", &segs, &starts, &ner()).is_err());
        assert!(parse_response(b"[{\"start\":1}]", &segs, &starts, &ner()).is_err());
    }
}
