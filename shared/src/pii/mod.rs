//! The PII redaction engine: find personal data and secrets in text, replace them, and put them back.
//!
//! - [`detect`]: built-in detectors (email, phone, card, SSN, IBAN, IP, secrets) with validators
//!   ([`validate`]: Luhn, mod-97, SSN ranges), custom regexes and term lists, compiled into an [`Engine`].
//!   Matching runs on folded text ([`crate::text::fold`]), so full-width digits and zero-width characters
//!   do not hide a value, and the original bytes are what gets replaced.
//! - [`Rules`] say what to do per entity type ([`Action`]: mask, partial, hash, block); a [`Session`]
//!   holds one request's placeholders (`<EMAIL_1>`) and the map back to the originals, so a model's
//!   answer can be restored. The map lives only in the session, i.e. in one request's policy state.
//! - [`stream`]: the same over a stream of text pieces (SSE deltas), holding back only what might be the
//!   start of a value or a placeholder, never more than a bound, so nothing leaves half-redacted.
//! - [`redact_for_log`]: the log-safe form of any text, for other filters' audit records and error logs.
//! - The `hash` action is HMAC-SHA256 ([`crate::crypto`]): keyed, so hashes join across requests
//!   without being reversible by whoever lacks the key.

pub mod detect;
pub mod stream;
pub mod validate;

pub use detect::{Builtin, Detection, Engine, EngineError, EngineErrorKind, EngineSpec, PRIORITY_NER};

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// What happens to a detected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A typed placeholder, `<EMAIL_1>`, the same for the same value within a request; restorable.
    Mask,
    /// Every letter and digit but the last four replaced by `*`; separators kept.
    Partial,
    /// `<EMAIL_9f86d081884c>`: a keyed HMAC-SHA256 of the normalised value, stable across requests
    /// under one key so logs and analytics still join; restorable within the request.
    Hash,
    /// The request is refused with a 400 naming the entity types. In a response (which cannot be
    /// refused half-sent) it acts as `mask`.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mask => "mask",
            Action::Partial => "partial",
            Action::Hash => "hash",
            Action::Block => "block",
        }
    }
}

/// Which way the text travels; counted apart in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// Actions per entity type and the key for `hash`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub default: Action,
    pub per_kind: HashMap<String, Action>,
    pub hash_key: Vec<u8>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            default: Action::Mask,
            per_kind: HashMap::new(),
            hash_key: Vec::new(),
        }
    }
}

impl Rules {
    pub fn action(&self, kind: &str) -> Action {
        self.per_kind.get(kind).copied().unwrap_or(self.default)
    }
}

/// The placeholder stem for an entity type: `email` → `EMAIL`, `employee-id` → `EMPLOYEE_ID`.
pub fn stem(kind: &str) -> String {
    kind.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Keeps the last four letters/digits, stars the others, keeps separators.
pub fn partial(value: &str) -> String {
    let total = value.chars().filter(|c| c.is_alphanumeric()).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen + 4 > total {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// One request's redaction state: placeholders given out, the map back to originals, and counts.
#[derive(Debug, Default)]
pub struct Session {
    /// `kind \0 canonical value` → token, so one value gets one placeholder.
    tokens: HashMap<String, String>,
    /// Token → original text, for the tokens that may be restored (those sent upstream).
    originals: HashMap<String, String>,
    next: HashMap<String, u32>,
    counts: BTreeMap<(Direction, String, Action), u64>,
    restored: u64,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// The replacement text for one detection whose original text is `original`.
    pub fn replace(&mut self, rules: &Rules, det: &Detection, original: &str, dir: Direction) -> String {
        let mut action = rules.action(&det.kind);
        if action == Action::Block {
            action = Action::Mask;
        }
        *self.counts.entry((dir, det.kind.clone(), action)).or_default() += 1;
        match action {
            Action::Partial => partial(original),
            Action::Mask | Action::Hash | Action::Block => {
                let key = format!("{}\0{}", det.kind, det.canonical);
                let token = match self.tokens.get(&key) {
                    Some(t) => t.clone(),
                    None => {
                        let token = if action == Action::Hash {
                            let mac = crate::crypto::hmac_sha256(&rules.hash_key, key.as_bytes());
                            let hex = crate::crypto::hex(&mac);
                            format!("<{}_{}>", stem(&det.kind), hex.get(..12).unwrap_or(&hex))
                        } else {
                            let n = self.next.entry(det.kind.clone()).or_insert(0);
                            *n += 1;
                            format!("<{}_{}>", stem(&det.kind), n)
                        };
                        self.tokens.insert(key, token.clone());
                        token
                    }
                };
                // Only what was sent upstream comes back: values the model produced stay masked.
                if dir == Direction::Request {
                    self.originals
                        .entry(token.clone())
                        .or_insert_with(|| original.to_string());
                }
                token
            }
        }
    }

    /// `text` with every detection replaced (detections sorted, non-overlapping, as from [`Engine`]).
    pub fn redact(&mut self, rules: &Rules, text: &str, dets: &[Detection], dir: Direction) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for d in dets {
            let (Some(before), Some(original)) = (text.get(at..d.start), text.get(d.start..d.end)) else {
                continue;
            };
            out.push_str(before);
            out.push_str(&self.replace(rules, d, original, dir));
            at = d.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        out
    }

    /// The original behind a placeholder handed out for the request, if any.
    pub fn original(&self, token: &str) -> Option<&str> {
        self.originals.get(token).map(String::as_str)
    }

    pub fn has_restorable(&self) -> bool {
        !self.originals.is_empty()
    }

    /// Restorable placeholders in `text`, as detections (for merging with fresh detections).
    pub fn find_tokens(&self, text: &str) -> Vec<Detection> {
        let mut out = Vec::new();
        if self.originals.is_empty() {
            return out;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(off) = bytes.get(i..).and_then(|b| b.iter().position(|&c| c == b'<')) {
            let start = i + off;
            let body = bytes.get(start + 1..).unwrap_or_default();
            let len = body
                .iter()
                .take(MAX_TOKEN)
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .unwrap_or(body.len().min(MAX_TOKEN));
            let end = start + 1 + len;
            if bytes.get(end) == Some(&b'>') {
                if let Some(tok) = text.get(start..=end) {
                    if self.originals.contains_key(tok) {
                        out.push(Detection {
                            kind: RESTORE_KIND.to_string(),
                            start,
                            end: end + 1,
                            priority: u8::MAX,
                            canonical: String::new(),
                        });
                        i = end + 1;
                        continue;
                    }
                }
            }
            i = start + 1;
        }
        out
    }

    /// `text` with every restorable placeholder replaced by its original.
    pub fn restore(&mut self, text: &str) -> String {
        let tokens = self.find_tokens(text);
        self.apply_restore(text, &tokens)
    }

    /// Counts of replacements: `(direction, entity type, action) → n`.
    pub fn counts(&self) -> &BTreeMap<(Direction, String, Action), u64> {
        &self.counts
    }

    pub fn restored(&self) -> u64 {
        self.restored
    }

    /// `email=2,phone=1` for one direction: types and counts, never values.
    pub fn summary(&self, dir: Direction) -> String {
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for ((d, kind, _), n) in &self.counts {
            if *d == dir {
                *per.entry(kind.as_str()).or_default() += n;
            }
        }
        per.iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Applies a mix of placeholders ([`RESTORE_KIND`]) and fresh detections to `text`. With `json`,
    /// `text` is JSON text (a stream of tool-call arguments) and restored originals are escaped for a
    /// JSON string, so the arguments stay valid JSON.
    pub(crate) fn apply_mixed(
        &mut self,
        rules: &Rules,
        text: &str,
        dets: &[Detection],
        dir: Direction,
        json: bool,
    ) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for d in dets {
            let (Some(before), Some(original)) = (text.get(at..d.start), text.get(d.start..d.end)) else {
                continue;
            };
            out.push_str(before);
            if d.kind == RESTORE_KIND {
                match self.originals.get(original) {
                    Some(o) => {
                        if json {
                            out.push_str(&json_escape(o));
                        } else {
                            out.push_str(o);
                        }
                        self.restored += 1;
                    }
                    None => out.push_str(original),
                }
            } else {
                let r = self.replace(rules, d, original, dir);
                out.push_str(&r);
            }
            at = d.end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        out
    }

    fn apply_restore(&mut self, text: &str, tokens: &[Detection]) -> String {
        self.apply_mixed(&Rules::default(), text, tokens, Direction::Response, false)
    }
}

/// `s` as it appears inside a JSON string literal (without the quotes).
fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// Longest placeholder body looked for (`EMPLOYEE_ID_123`, hash tokens).
pub(crate) const MAX_TOKEN: usize = 64;
/// The detection kind used for a placeholder to restore.
pub(crate) const RESTORE_KIND: &str = "\0restore";

/// The engine with every built-in detector, built on first use.
pub fn default_engine() -> &'static Engine {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    static EMPTY: OnceLock<Engine> = OnceLock::new();
    match ENGINE.get_or_init(|| Engine::new(&EngineSpec::builtins()).ok()) {
        Some(e) => e,
        // Unreachable: the built-in patterns are compiled by the unit tests. Never panic in a filter.
        None => EMPTY.get_or_init(Engine::empty),
    }
}

/// The log-safe form of `text`: every value the built-in detectors find becomes `<TYPE>` (no numbering,
/// no hash, nothing reversible). For audit records and error logs in any filter.
pub fn redact_for_log(text: &str) -> String {
    redact_for_log_with(default_engine(), text)
}

/// [`redact_for_log`] with a given engine (a filter's own, with its custom detectors).
pub fn redact_for_log_with(engine: &Engine, text: &str) -> String {
    let dets = engine.detect(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for d in &dets {
        out.push_str(text.get(at..d.start).unwrap_or_default());
        out.push('<');
        out.push_str(&stem(&d.kind));
        out.push('>');
        at = d.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn log_safe() {
        assert_eq!(
            redact_for_log("user bob@example.com from 10.0.0.1 paid with 4111 1111 1111 1111"),
            "user <EMAIL> from <IP> paid with <CARD>"
        );
        assert_eq!(redact_for_log("nothing here"), "nothing here");
    }

    #[test]
    fn actions_and_restore() {
        let engine = Engine::new(&EngineSpec::builtins()).unwrap();
        let mut rules = Rules {
            hash_key: b"k".to_vec(),
            ..Rules::default()
        };
        rules.per_kind.insert("card".into(), Action::Partial);
        rules.per_kind.insert("ssn".into(), Action::Hash);
        let mut s = Session::new();
        let text = "a@x.io, A@X.io, b@x.io, 4111 1111 1111 1111, 123-45-6789";
        let dets = engine.detect(text);
        let out = s.redact(&rules, text, &dets, Direction::Request);
        let hash = crate::crypto::hex(&crate::crypto::hmac_sha256(b"k", b"ssn\x00123456789"));
        assert_eq!(
            out,
            format!(
                "<EMAIL_1>, <EMAIL_1>, <EMAIL_2>, **** **** **** 1111, <SSN_{}>",
                &hash[..12]
            )
        );
        assert_eq!(s.summary(Direction::Request), "card=1,email=3,ssn=1");
        assert_eq!(s.summary(Direction::Response), "");
        let answer = format!("Sure <EMAIL_2> and <EMAIL_9> and <SSN_{}>", &hash[..12]);
        assert_eq!(s.restore(&answer), "Sure b@x.io and <EMAIL_9> and 123-45-6789");
        assert_eq!(s.restored(), 2);
        // Values produced in a response get placeholders but are never restored.
        let resp = "write to c@x.io";
        let d = engine.detect(resp);
        assert_eq!(
            s.redact(&rules, resp, &d, Direction::Response),
            "write to <EMAIL_3>"
        );
        assert_eq!(s.restore("<EMAIL_3>"), "<EMAIL_3>");
        assert_eq!(partial("4111-1111"), "****-1111");
        assert_eq!(stem("employee-id"), "EMPLOYEE_ID");
    }
}
