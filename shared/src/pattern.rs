//! A user's pattern (the guard's allow and deny lists) on the small engine, `regex_lite`, with the
//! one shortcut that engine lacks: a literal the pattern must start with.
//!
//! `regex_lite` walks every position of the text (its PikeVM costs about 150 native instructions a
//! byte on `(?i)\bdrop\s+table\b`, 10 million on a 64 KB prompt). Most deny patterns start with a
//! word: when the pattern is an optional `(?i)`, an optional `\b`, then three or more plain
//! characters, and has no `|` anywhere (so no alternative can start otherwise), every match starts
//! with that literal. The text is then searched for the literal (ASCII case folded under `(?i)`, as
//! `regex_lite` folds), and the pattern is tried anchored at each place it occurs. Any other pattern
//! runs as it is. Same answers either way (property-tested against the plain regex).

use crate::text::is_word_byte;

/// A compiled user pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Searched from every position.
    Anywhere(regex_lite::Regex),
    /// Tried only where its literal occurs.
    Starting(Prefix),
}

#[derive(Debug, Clone)]
pub struct Prefix {
    /// `\A(?:pattern)`: tried where the literal occurs.
    anchored: regex_lite::Regex,
    /// Its first byte, then the rest; lower-cased when `fold`.
    first: u8,
    literal: Vec<u8>,
    fold: bool,
    /// The pattern starts with `\b`.
    boundary: bool,
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, regex_lite::Error> {
        // Compiled as written first: a bad pattern's error points into the user's text.
        let re = regex_lite::Regex::new(pattern)?;
        Ok(match literal_prefix(pattern) {
            Some((fold, boundary, first, literal)) => Pattern::Starting(Prefix {
                anchored: regex_lite::Regex::new(&format!(r"\A(?:{}{})", if fold { "(?i)" } else { "" }, {
                    // Without its leading `\b`, checked on the whole text: at the start of the
                    // slice it is tried on, `\b` would not see the byte before.
                    let body = pattern.strip_prefix("(?i)").unwrap_or(pattern);
                    if boundary {
                        body.strip_prefix(r"\b").unwrap_or(body)
                    } else {
                        body
                    }
                }))?,
                first,
                literal,
                fold,
                boundary,
            }),
            None => Pattern::Anywhere(re),
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        let p = match self {
            Pattern::Anywhere(re) => return re.is_match(text),
            Pattern::Starting(p) => p,
        };
        let t = text.as_bytes();
        let same = |a: u8, b: u8| {
            if p.fold {
                a.to_ascii_lowercase() == b
            } else {
                a == b
            }
        };
        // The first byte's places by a tight search (both cases under `fold`), then the rest there.
        let (first, other) = (
            p.first,
            if p.fold {
                p.first.to_ascii_uppercase()
            } else {
                p.first
            },
        );
        let mut from = 0;
        while let Some(i) = t
            .get(from..)
            .and_then(|r| r.iter().position(|&b| b == first || b == other))
        {
            let at = from + i;
            from = at + 1;
            if t.get(at..at + p.literal.len())
                .is_some_and(|w| w.iter().zip(&p.literal).all(|(&a, &b)| same(a, b)))
                && (!p.boundary
                    || is_word_byte(at.checked_sub(1).and_then(|i| t.get(i))) != is_word_byte(t.get(at)))
                && text.get(at..).is_some_and(|rest| p.anchored.is_match(rest))
            {
                return true;
            }
        }
        false
    }
}

/// `(fold, boundary, first byte, literal)` when every match of `pattern` starts with the literal (see the module
/// docs); `None` otherwise.
fn literal_prefix(pattern: &str) -> Option<(bool, bool, u8, Vec<u8>)> {
    if pattern.contains('|') {
        return None;
    }
    let (fold, rest) = match pattern.strip_prefix("(?i)") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (boundary, rest) = match rest.strip_prefix(r"\b") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let bytes = rest.as_bytes();
    let run = bytes
        .iter()
        .take_while(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b' ' | b'_'
                        | b'-'
                        | b','
                        | b'\''
                        | b'"'
                        | b':'
                        | b'/'
                        | b'@'
                        | b'='
                        | b'<'
                        | b'>'
                        | b'!'
                        | b'%'
                        | b'&'
                        | b';'
                        | b'~'
                        | b'`'
                )
        })
        .count();
    // A quantifier after the run applies to its last character only.
    let run = match bytes.get(run) {
        Some(b'?' | b'*' | b'+' | b'{') => run.saturating_sub(1),
        _ => run,
    };
    let literal: Vec<u8> = bytes
        .get(..run)?
        .iter()
        .map(|b| if fold { b.to_ascii_lowercase() } else { *b })
        .collect();
    if literal.len() < 3 {
        return None;
    }
    Some((fold, boundary, *literal.first()?, literal))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn finds_the_literal_a_match_starts_with() {
        assert_eq!(
            literal_prefix(r"(?i)\bdrop\s+table\b"),
            Some((true, true, b'd', b"drop".to_vec()))
        );
        assert_eq!(
            literal_prefix("password"),
            Some((false, false, b'p', b"password".to_vec()))
        );
        assert_eq!(
            literal_prefix("drops?"),
            Some((false, false, b'd', b"drop".to_vec()))
        );
        assert_eq!(literal_prefix("ab{2}"), None);
        assert_eq!(literal_prefix("drop|delete"), None);
        assert_eq!(literal_prefix(r"\d{3}-secret"), None);
        assert_eq!(literal_prefix("(?i)(?x)drop table"), None);
    }

    #[test]
    fn answers_as_the_plain_regex() {
        let texts = [
            "please DROP   TABLE users",
            "backdrop table",
            "drop\ttable",
            "a_drop table",
            "é drop table",
            "Password: x",
            "no match here",
            "drop",
            "a _a",
        ];
        for p in [
            r"(?i)\bdrop\s+table\b",
            "(?i)password",
            r"drop\s+table",
            "Pass",
            "(?i)drops?",
            r"\b _a",
        ] {
            let ours = Pattern::new(p).unwrap();
            let re = regex_lite::Regex::new(p).unwrap();
            for t in texts {
                assert_eq!(ours.is_match(t), re.is_match(t), "`{p}` on `{t}`");
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Patterns that start with a literal (and some that only look like it), on texts of the
        /// same letters: the shortcut answers as the plain regex.
        #[test]
        fn the_shortcut_is_the_regex(
            fold in proptest::bool::ANY,
            boundary in proptest::bool::ANY,
            literal in "[aAbB _-]{0,5}",
            tail in proptest::sample::select(vec!["", "s?", r"\s+b", r"\b", "a*", "b{2}", "[ab]", r"\d", "(a|b)", "$", ".b"]),
            text in "[aAbBé _\n1-]{0,24}",
        ) {
            let pattern = format!("{}{}{}{}", if fold { "(?i)" } else { "" }, if boundary { r"\b" } else { "" }, regex_lite::escape(&literal), tail);
            if let (Ok(ours), Ok(re)) = (Pattern::new(&pattern), regex_lite::Regex::new(&pattern)) {
                proptest::prop_assert_eq!(ours.is_match(&text), re.is_match(&text), "`{}` on `{:?}`", pattern, text);
            }
        }
    }
}
