//! Redaction and restore over a stream of text pieces (SSE deltas), cut anywhere.
//!
//! A value or a placeholder may arrive split across pieces (`"j.doe@exa"`, `"mple.com"`; `"<EMA"`,
//! `"IL_1>"`). [`StreamScrubber`] releases text only once nothing after it can change how it is
//! redacted: it holds back the tail that could still be part of a value (letters, digits and the
//! punctuation values are made of, spaces between digit groups, an open `-----BEGIN` block, an open
//! `<PLACEHOLDER`, and for term lists as many words as the longest term) and any detection touching that
//! tail. The hold-back is bounded by `max_hold` bytes; past it, the oldest text is released anyway, and a
//! value straddling the cut is redacted on both sides of it (fail closed). A few already released bytes
//! are kept as left context so word boundaries are judged as in the whole text.

use super::{Detection, Direction, Engine, Rules, Session, RESTORE_KIND};

/// Default bound on held-back bytes: room for a PEM private key block.
pub const DEFAULT_MAX_HOLD: usize = 8192;
/// Bytes of released text kept as left context.
const CONTEXT: usize = 32;

/// What to do to the text: the engine and rules for fresh values, and whether to restore placeholders.
pub struct Scrub<'a> {
    pub engine: &'a Engine,
    pub rules: &'a Rules,
    pub session: &'a mut Session,
    /// Mask values found in the text (the model's own PII).
    pub redact: bool,
    /// Put the originals back for the request's placeholders.
    pub restore: bool,
}

impl Scrub<'_> {
    fn detections(&self, text: &str, restore: bool) -> Vec<Detection> {
        let mut dets = if self.redact {
            self.engine.detect(text)
        } else {
            Vec::new()
        };
        if self.restore && restore {
            dets.extend(self.session.find_tokens(text));
            dets = super::detect::resolve_overlaps(dets);
        }
        dets
    }

    /// Redacts and restores a whole text at once (a JSON answer).
    pub fn whole(&mut self, text: &str) -> String {
        self.whole_with(text, true, false)
    }

    /// [`Scrub::whole`], restoring only if `restore` too; with `json`, `text` is JSON text and restored
    /// originals are escaped for a JSON string.
    pub fn whole_with(&mut self, text: &str, restore: bool, json: bool) -> String {
        let dets = self.detections(text, restore);
        self.session
            .apply_mixed(self.rules, text, &dets, Direction::Response, json)
    }
}

/// One stream's held-back text.
#[derive(Debug)]
pub struct StreamScrubber {
    /// `pending[..context]` was already released (left context); the rest is held.
    pending: String,
    context: usize,
    max_hold: usize,
    /// A private key block was cut by the bound and released as a placeholder: the rest of it, up to
    /// its END line, is dropped.
    in_block: bool,
    /// Restore placeholders (when the [`Scrub`] restores too).
    restore: bool,
    /// The pieces are JSON text (streamed tool-call arguments): restored originals are escaped.
    json: bool,
}

impl Default for StreamScrubber {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HOLD)
    }
}

/// Bytes that can be inside a value or a placeholder.
fn value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || b >= 0x80
        || matches!(
            b,
            b'@' | b'.'
                | b'_'
                | b'%'
                | b'+'
                | b'-'
                | b':'
                | b'/'
                | b'='
                | b'#'
                | b'~'
                | b'<'
                | b'>'
                | b'('
                | b')'
        )
}

fn floor_char(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The start of a `-----BEGIN` block whose `-----END ...-----` line has not arrived yet.
fn open_block(text: &str) -> Option<usize> {
    // Most texts have no dash at all: a byte search settles them.
    if !text.as_bytes().contains(&b'-') {
        return None;
    }
    let begin = text.rfind("-----BEGIN")?;
    let rest = text.get(begin..)?;
    match rest.find("-----END") {
        // The END line itself must be complete (`-----END RSA PRIVATE KEY-----`).
        Some(end) if rest.get(end + 8..).is_some_and(|r| r.contains("-----")) => None,
        _ => Some(begin),
    }
}

/// Where the tail that might still grow into (or be part of) a value starts.
fn tail_start(text: &str, term_words: usize) -> usize {
    let b = text.as_bytes();
    let mut i = b.len();
    let mut words = 1;
    while i > 0 {
        let Some(&c) = b.get(i - 1) else { break };
        if value_byte(c) {
            i -= 1;
            continue;
        }
        // Spaces between digit groups: "4111 1111", "+1 (415) 555", "DE89 3704".
        // At the very end the next byte is unknown, so a space after a value byte may be inside one.
        if c == b' ' {
            let prev = i.checked_sub(2).and_then(|p| b.get(p)).copied();
            let prev_digit = prev.is_some_and(|p| p.is_ascii_digit() || p == b')');
            let next = b.get(i);
            let next_digit = next.is_some_and(u8::is_ascii_digit);
            let at_end = next.is_none() && prev.is_some_and(value_byte);
            if prev_digit || next_digit || at_end {
                i -= 1;
                continue;
            }
        }
        // Multi-word terms: keep as many words as the longest term has.
        if c.is_ascii_whitespace() && words < term_words {
            words += 1;
            i -= 1;
            continue;
        }
        break;
    }
    if let Some(begin) = open_block(text) {
        i = i.min(begin);
    }
    floor_char(text, i)
}

impl StreamScrubber {
    pub fn new(max_hold: usize) -> Self {
        StreamScrubber {
            pending: String::new(),
            context: 0,
            max_hold: max_hold.max(64),
            in_block: false,
            restore: true,
            json: false,
        }
    }

    /// A scrubber for JSON text arriving in fragments (OpenAI `delta.tool_calls[].function.arguments`,
    /// Anthropic `input_json_delta.partial_json`): a placeholder split across fragments is restored
    /// (when `restore`) with its original escaped for the JSON string it sits in.
    pub fn json(max_hold: usize, restore: bool) -> Self {
        StreamScrubber {
            restore,
            json: true,
            ..StreamScrubber::new(max_hold)
        }
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.pending.len() - self.context
    }

    /// Takes the next piece; returns the text that may be released now (possibly empty).
    pub fn push(&mut self, scrub: &mut Scrub<'_>, piece: &str) -> String {
        self.pending.push_str(piece);
        self.release(scrub, false)
    }

    /// Ends the stream: releases everything held, redacted.
    pub fn finish(&mut self, scrub: &mut Scrub<'_>) -> String {
        self.release(scrub, true)
    }

    fn release(&mut self, scrub: &mut Scrub<'_>, all: bool) -> String {
        let mut text = std::mem::take(&mut self.pending);
        let ctx = self.context;
        if self.in_block {
            let held = text.get(ctx..).unwrap_or_default();
            let end_line = held
                .find("-----END")
                .and_then(|e| Some(e + 8 + held.get(e + 8..)?.find("-----")? + 5));
            match end_line {
                Some(e) => {
                    self.in_block = false;
                    let rest = held.get(e..).unwrap_or_default().to_string();
                    text.truncate(ctx);
                    text.push_str(&rest);
                }
                None => {
                    // Keep only what might be the start of the END line.
                    let keep = floor_char(held, held.len().saturating_sub(64));
                    let tail = if all {
                        String::new()
                    } else {
                        held.get(keep..).unwrap_or_default().to_string()
                    };
                    text.truncate(ctx);
                    text.push_str(&tail);
                    self.pending = text;
                    return String::new();
                }
            }
        }
        if text.len() == ctx {
            self.pending = text;
            return String::new();
        }
        let mut dets = scrub.detections(&text, self.restore);
        // A key block still open at the end of the stream, or cut by the bound, is a secret from its
        // BEGIN line on.
        if let Some(begin) = open_block(&text).filter(|b| *b >= ctx) {
            let forced = text.len() - begin > self.max_hold;
            if all || forced {
                dets.retain(|d| d.end <= begin);
                dets.push(Detection {
                    kind: "secret".into(),
                    start: begin,
                    end: text.len(),
                    priority: u8::MAX,
                    canonical: text.get(begin..).unwrap_or_default().to_string(),
                });
                self.in_block = !all;
            }
        }
        let mut cut = if all {
            text.len()
        } else {
            tail_start(&text, scrub.engine.max_term_words).max(ctx)
        };
        // Keep whole any detection that reaches into the held tail: it may still grow.
        if !all {
            for d in &dets {
                if d.end > cut && d.start < cut && d.start >= ctx {
                    cut = d.start;
                }
            }
        }
        // The bound: release the oldest text even if it might be part of a value.
        let forced = !all && text.len() - cut > self.max_hold;
        if forced {
            cut = floor_char(&text, text.len() - self.max_hold).max(ctx);
            // A detection straddling the forced cut is released whole, redacted.
            for d in &dets {
                if d.start < cut && d.end > cut {
                    cut = d.end;
                }
            }
        }
        // Detections inside the released part; one that began in the context (after a forced cut) is
        // redacted from the context boundary on.
        let mut out_dets = Vec::new();
        for d in &dets {
            if d.end <= ctx || d.start >= cut {
                continue;
            }
            let mut d = d.clone();
            if d.start < ctx {
                if d.kind == RESTORE_KIND {
                    continue;
                }
                d.start = ctx;
            }
            if d.end > cut {
                continue;
            }
            out_dets.push(d);
        }
        let released = text.get(..cut).unwrap_or_default();
        let shifted: Vec<Detection> = out_dets
            .into_iter()
            .map(|mut d| {
                d.start -= ctx;
                d.end -= ctx;
                d
            })
            .collect();
        let body = released.get(ctx..).unwrap_or_default();
        let out = scrub
            .session
            .apply_mixed(scrub.rules, body, &shifted, Direction::Response, self.json);
        // New pending: a little released context, then the held tail.
        let keep_from = floor_char(&text, cut.saturating_sub(CONTEXT));
        self.pending = text.get(keep_from..).unwrap_or_default().to_string();
        self.context = cut - keep_from;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::EngineSpec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn engine() -> Engine {
        Engine::new(&EngineSpec::builtins()).unwrap()
    }

    /// Feeds `pieces` and returns every release, so tests see what left when.
    fn run(engine: &Engine, session: &mut Session, restore: bool, pieces: &[&str]) -> Vec<String> {
        let rules = Rules::default();
        let mut s = StreamScrubber::default();
        let mut scrub = Scrub {
            engine,
            rules: &rules,
            session,
            redact: true,
            restore,
        };
        let mut out: Vec<String> = pieces.iter().map(|p| s.push(&mut scrub, p)).collect();
        out.push(s.finish(&mut scrub));
        out
    }

    fn whole(engine: &Engine, session: &mut Session, restore: bool, text: &str) -> String {
        let rules = Rules::default();
        let mut scrub = Scrub {
            engine,
            rules: &rules,
            session,
            redact: true,
            restore,
        };
        scrub.whole(text)
    }

    /// Every split of the text into two and three pieces gives the same output as the whole text, and no
    /// release ever contains a fragment of a value.
    #[test]
    fn every_split_offset_masks_the_same() {
        let e = engine();
        let texts = [
            "Contact me at jane.doe@example.com or +1 (415) 555-0132, card 4111 1111 1111 1111.",
            "IBAN DE89 3704 0044 0532 0130 00; key sk-proj-abcdefghijklmnopqrstuvwxyz0123 ok",
            "ip 192.168.10.20 ssn 123-45-6789 end",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY----- done",
        ];
        let secrets = [
            "jane",
            "doe@",
            "example.com",
            "555-0132",
            "4111",
            "DE89",
            "3704",
            "abcdefghij",
            "192.168",
            "6789",
            "MIIE",
        ];
        for text in texts {
            let want = whole(&e, &mut Session::new(), false, text);
            for s in secrets {
                assert!(!want.contains(s), "{want}");
            }
            for i in 0..=text.len() {
                if !text.is_char_boundary(i) {
                    continue;
                }
                let (a, b) = text.split_at(i);
                let out = run(&e, &mut Session::new(), false, &[a, b]);
                assert_eq!(out.concat(), want, "split at {i}");
                for piece in &out {
                    for s in secrets {
                        assert!(!piece.contains(s), "split at {i}: {piece:?}");
                    }
                }
                for j in (i..=text.len()).step_by(7) {
                    if !text.is_char_boundary(j) {
                        continue;
                    }
                    let out = run(
                        &e,
                        &mut Session::new(),
                        false,
                        &[&text[..i], &text[i..j], &text[j..]],
                    );
                    assert_eq!(out.concat(), want, "split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn char_by_char_stream() {
        let e = engine();
        let text = "mail bob@example.org now, call 415-555-0132 and bye";
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let out = run(&e, &mut Session::new(), false, &refs);
        assert_eq!(out.concat(), "mail <EMAIL_1> now, call <PHONE_1> and bye");
        // Plain words are released as soon as the next word starts.
        assert_eq!(out[..5].concat(), "");
        assert_eq!(out[..6].concat(), "mail ");
    }

    #[test]
    fn restores_placeholders_split_anywhere() {
        let e = engine();
        let rules = Rules::default();
        let mut session = Session::new();
        let prompt = "email a@b.io and c@d.io";
        let dets = e.detect(prompt);
        assert_eq!(
            session.redact(&rules, prompt, &dets, Direction::Request),
            "email <EMAIL_1> and <EMAIL_2>"
        );
        let answer = "Sure: <EMAIL_1>, <EMAIL_2>; not <EMAIL_3> or <EMAIL_1";
        let want = "Sure: a@b.io, c@d.io; not <EMAIL_3> or <EMAIL_1";
        for i in 0..=answer.len() {
            let (a, b) = answer.split_at(i);
            let out = run(&e, &mut session, true, &[a, b]);
            assert_eq!(out.concat(), want, "split at {i}");
        }
        let pieces: Vec<String> = answer.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(run(&e, &mut session, true, &refs).concat(), want);
    }

    /// Tool-call arguments streamed as JSON fragments, cut at every offset and one character at a
    /// time: placeholders come back, escaped for the JSON string they sit in, so the arguments still
    /// parse; with `restore` off the placeholders stay.
    #[test]
    fn json_fragments_restore_escaped_at_every_split() {
        let spec = EngineSpec {
            regexes: vec![("quoted".into(), r#"say "[a-z]+""#.into())],
            ..EngineSpec::builtins()
        };
        let e = Engine::new(&spec).unwrap();
        let rules = Rules::default();
        let mut session = Session::new();
        let prompt = r#"mail a@b.io and say "hello""#;
        let dets = e.detect(prompt);
        assert_eq!(
            session.redact(&rules, prompt, &dets, Direction::Request),
            "mail <EMAIL_1> and <QUOTED_1>"
        );
        let args = r#"{"to":"<EMAIL_1>","note":"<QUOTED_1> to <EMAIL_1>","cc":"x@y.io"}"#;
        let want = serde_json::json!({"to": "a@b.io", "note": "say \"hello\" to a@b.io", "cc": "<EMAIL_2>"});
        let feed = |session: &mut Session, pieces: &[&str], restore: bool| -> String {
            let mut s = StreamScrubber::json(4096, restore);
            let mut scrub = Scrub {
                engine: &e,
                rules: &rules,
                session,
                redact: true,
                restore: true,
            };
            let mut out: String = pieces.iter().map(|p| s.push(&mut scrub, p)).collect();
            out.push_str(&s.finish(&mut scrub));
            out
        };
        for i in 0..=args.len() {
            let (a, b) = args.split_at(i);
            let out = feed(&mut session, &[a, b], true);
            let got: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("{i}: {e}: {out}"));
            assert_eq!(got, want, "split at {i}");
        }
        let pieces: Vec<String> = args.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let got: serde_json::Value = serde_json::from_str(&feed(&mut session, &refs, true)).unwrap();
        assert_eq!(got, want);
        let kept = feed(&mut session, &refs, false);
        assert_eq!(
            kept,
            r#"{"to":"<EMAIL_1>","note":"<QUOTED_1> to <EMAIL_1>","cc":"<EMAIL_2>"}"#
        );
        // The whole-text form escapes the same way.
        let mut scrub = Scrub {
            engine: &e,
            rules: &rules,
            session: &mut session,
            redact: false,
            restore: true,
        };
        assert_eq!(
            scrub.whole_with(r#"{"n":"<QUOTED_1>"}"#, true, true),
            r#"{"n":"say \"hello\""}"#
        );
        assert_eq!(scrub.whole_with("<QUOTED_1>", false, false), "<QUOTED_1>");
    }

    #[test]
    fn hold_back_is_bounded() {
        let e = engine();
        let long = "x".repeat(20_000);
        let mut session = Session::new();
        let out = run(&e, &mut session, false, &[&long, "y"]);
        assert!(out[0].len() >= 20_000 - DEFAULT_MAX_HOLD);
        assert_eq!(out.concat(), format!("{long}y"));
        // An unterminated key block is held up to the bound, then released redacted from there on.
        let block = format!("-----BEGIN PRIVATE KEY-----\n{}", "A".repeat(100));
        let out = run(&e, &mut session, false, &["key: ", &block]);
        assert_eq!(out, vec!["", "key: ", "<SECRET_1>"]);
        let big = "B".repeat(DEFAULT_MAX_HOLD);
        let out = run(
            &e,
            &mut Session::new(),
            false,
            &[&block, &big, "BBB\n-----END PRIVATE KEY----- after"],
        );
        assert_eq!(out.concat(), "<SECRET_1> after");
    }
}
