//! PII (`shared::pii`): restoring a redacted prompt gives the prompt back (each value as first written);
//! a value the detectors find in a text is never emitted by the stream scrubber, however the stream is
//! cut and however small its hold-back bound; under the bound the stream's output is the whole text's;
//! placeholders split anywhere are restored; no text panics.

use super::{config, cut_str, cuts};
use proptest::prelude::*;
use shared::pii::stream::{Scrub, StreamScrubber, DEFAULT_MAX_HOLD};
use shared::pii::{Action, Direction, Engine, EngineSpec, Rules, Session};
use std::collections::HashMap;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&EngineSpec::builtins()).unwrap())
}

/// A card number that passes Luhn, from 15 digits.
fn card(digits: Vec<u8>, spaced: bool) -> String {
    let mut d: Vec<u8> = std::iter::once(4).chain(digits).take(15).collect();
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 0 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    d.push(((10 - sum % 10) % 10) as u8);
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    if spaced {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}

/// Values of every built-in type, some written with evasion tricks.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,6}(\\.[a-z]{1,5})?@[a-z]{2,8}\\.(com|io|org|co\\.uk)",
        "\\+1 \\(415\\) 555-0[0-9]{3}",
        "415\\.555\\.0[0-9]{3}",
        "\\+44 20 7183 [0-9]{4}",
        (prop::collection::vec(0u8..10, 14), any::<bool>()).prop_map(|(d, s)| card(d, s)),
        "[1-5][0-9]{2}-[1-9][0-9]-[1-9][0-9]{3}",
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("GB82WEST12345698765432".to_string()),
        "(1[0-9]{2}|[1-9][0-9]?)\\.[1-9][0-9]?\\.[1-9][0-9]?\\.[1-9][0-9]?",
        "2001:db8:[0-9a-f]{1,4}::[1-9a-f]{1,4}",
        "sk-proj-[A-Za-z0-9]{24}",
        "AKIA[0-9A-Z]{16}",
        "ghp_[A-Za-z0-9]{36}",
        "xoxb-[0-9]{10}-[A-Za-z0-9]{12}",
        "eyJ[A-Za-z0-9]{8}\\.eyJ[A-Za-z0-9]{8}\\.[A-Za-z0-9_-]{10}",
        "password=[A-Za-z0-9]{10,16}",
        "Bearer [A-Za-z0-9]{20,30}",
        Just(
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
                .to_string()
        ),
        // Full-width digits and a zero-width space: folded before matching.
        Just("\u{ff14}\u{ff11}\u{ff15}-555-0132".to_string()),
        Just("jane\u{200b}.doe@example.com".to_string()),
    ]
}

/// Prose words that hold no value and no digits.
fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,9}",
        Just("Hello".to_string()),
        Just("the".to_string()),
        Just("café".to_string()),
        Just("naïve".to_string()),
        Just("日本語".to_string()),
        Just("😀".to_string()),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", ", ", ". ", "\n", ": ", " (", ") ", "\t", " - "])
}

/// Text made of filler words and values, always apart: `(text, values inserted)`.
fn prose() -> impl Strategy<Value = String> {
    let token = prop_oneof![3 => filler(), 1 => value()];
    prop::collection::vec((token, separator()), 0..24).prop_map(|parts| {
        let mut s = String::new();
        for (t, sep) in parts {
            s.push_str(&t);
            s.push_str(sep);
        }
        s
    })
}

fn scrub_stream(
    text: &str,
    at: &[usize],
    max_hold: usize,
    session: &mut Session,
    redact: bool,
    restore: bool,
) -> String {
    let rules = Rules::default();
    let mut scrub = Scrub {
        engine: engine(),
        rules: &rules,
        session,
        redact,
        restore,
    };
    let mut s = StreamScrubber::new(max_hold);
    let mut out = String::new();
    for piece in cut_str(text, at) {
        out.push_str(&s.push(&mut scrub, piece));
        // The bound, give or take the bytes of one character.
        assert!(
            s.held() <= max_hold.max(64) + 3,
            "hold-back over its bound: {}",
            s.held()
        );
    }
    out.push_str(&s.finish(&mut scrub));
    out
}

fn scrub_whole(text: &str, session: &mut Session, redact: bool, restore: bool) -> String {
    let rules = Rules::default();
    let mut scrub = Scrub {
        engine: engine(),
        rules: &rules,
        session,
        redact,
        restore,
    };
    scrub.whole(text)
}

proptest! {
    #![proptest_config(config(4))]

    #[test]
    fn restore_of_redact_gives_the_prompt_back(text in prose(), hash in any::<bool>()) {
        let dets = engine().detect(&text);
        let mut rules = Rules { hash_key: b"k".to_vec(), ..Rules::default() };
        if hash {
            rules.default = Action::Hash;
        }
        let mut session = Session::new();
        let redacted = session.redact(&rules, &text, &dets, Direction::Request);
        for d in &dets {
            let value = &text[d.start..d.end];
            prop_assert!(!redacted.contains(value), "{:?} left in {:?}", value, redacted);
        }
        // One placeholder per value: a value written two ways comes back as first written.
        let mut first: HashMap<(String, String), &str> = HashMap::new();
        let mut expected = String::new();
        let mut at = 0;
        for d in &dets {
            let original = &text[d.start..d.end];
            let shown = *first.entry((d.kind.clone(), d.canonical.clone())).or_insert(original);
            expected.push_str(&text[at..d.start]);
            expected.push_str(shown);
            at = d.end;
        }
        expected.push_str(&text[at..]);
        prop_assert_eq!(session.restore(&redacted), expected);
    }

    #[test]
    fn a_found_value_is_never_emitted_for_any_chunking(text in prose(), at in cuts(16), small in any::<bool>()) {
        let max_hold = if small { 64 } else { DEFAULT_MAX_HOLD };
        let out = scrub_stream(&text, &at, max_hold, &mut Session::new(), true, false);
        for d in engine().detect(&text) {
            let value = &text[d.start..d.end];
            prop_assert!(!out.contains(value), "{} {:?} emitted: {:?}", d.kind, value, out);
        }
        if !small && text.len() < DEFAULT_MAX_HOLD {
            prop_assert_eq!(out, scrub_whole(&text, &mut Session::new(), true, false));
        }
    }

    #[test]
    fn placeholders_split_anywhere_are_restored(prompt in prose(), answer in prose(), at in cuts(16)) {
        let rules = Rules::default();
        let mut session = Session::new();
        let dets = engine().detect(&prompt);
        let redacted = session.redact(&rules, &prompt, &dets, Direction::Request);
        // The model answers with the placeholders it was given, among other words.
        let answer = format!("{answer} {redacted} <EMAIL_99> <EMAIL_1");
        let want = scrub_whole(&answer, &mut session, true, true);
        let mut again = Session::new();
        again.redact(&rules, &prompt, &dets, Direction::Request);
        let got = scrub_stream(&answer, &at, DEFAULT_MAX_HOLD, &mut again, true, true);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}", at in cuts(10)) {
        let dets = engine().detect(&text);
        for d in &dets {
            prop_assert!(d.start < d.end && d.end <= text.len() && text.is_char_boundary(d.start) && text.is_char_boundary(d.end));
        }
        let mut session = Session::new();
        let redacted = session.redact(&Rules::default(), &text, &dets, Direction::Request);
        let _ = session.restore(&redacted);
        let _ = scrub_stream(&text, &at, 64, &mut session, true, true);
        let _ = shared::pii::redact_for_log(&text);
    }
}
