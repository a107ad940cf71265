//! Detectors: built-in patterns with validators, custom regexes and term lists, compiled once into an
//! [`Engine`] that finds non-overlapping [`Detection`]s in a text.
//!
//! Matching runs on [`crate::text::fold`]ed text (full-width digits, zero-width characters and look-alike
//! letters normalised), and every detection is mapped back to the byte range of the *original* text,
//! which is what gets redacted.
//!
//! One engine, the small `regex_lite` (the `regex` crate's syntax, ASCII classes, no `\p{..}`; about
//! 400 KB less in a module than `regex`, see bench/README.md, "The regex question"). A built-in pattern
//! is never searched for: its [`Gate`] (a byte scan) names the places where a match may start, and
//! the pattern is tried anchored there, where a failing try ends within a few bytes. So the leftmost
//! match is the one `regex` finds (property-tested against it), at the cost of a short anchored run per
//! place. A user's pattern runs as written, from every position; terms are matched by hand.

use super::validate;
use crate::text::{fold, fold_pattern, is_word_byte};
use regex_lite::{Regex, RegexBuilder};
use std::ops::Range;
use std::sync::LazyLock;

/// A built-in entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    Ip,
    Secret,
}

impl Builtin {
    pub const ALL: [Builtin; 7] = [
        Builtin::Email,
        Builtin::Phone,
        Builtin::Card,
        Builtin::Ssn,
        Builtin::Iban,
        Builtin::Ip,
        Builtin::Secret,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Card => "card",
            Builtin::Ssn => "ssn",
            Builtin::Iban => "iban",
            Builtin::Ip => "ip",
            Builtin::Secret => "secret",
        }
    }
}

/// One found value: its entity type and the byte range in the text that was scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Entity type: a built-in name, a custom detector's name, or an NER type in lower case.
    pub kind: String,
    pub start: usize,
    pub end: usize,
    /// Higher wins when two detections overlap.
    pub priority: u8,
    /// The normalised value (folded, and for numbers only digits), so one value written two ways gets
    /// one placeholder and one hash.
    pub canonical: String,
}

impl Detection {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Priorities: precise, validated detectors beat loose ones; NER comes last.
pub const PRIORITY_NER: u8 = 20;
const PRIORITY_CUSTOM: u8 = 85;

/// What a candidate must pass besides its regex.
#[derive(Debug, Clone, Copy)]
enum Check {
    None,
    Card,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    Phone,
    /// A phone shape the strict check rejects (any area code): kept only when a cue word is near.
    PhoneCued,
    /// Not glued to letters or digits on either side.
    Standalone,
}

#[derive(Debug)]
struct Detector {
    kind: String,
    matcher: Matcher,
    check: Check,
    priority: u8,
    /// The pattern has a `value` group: only that part is the secret (`password=<value>`).
    value_group: bool,
    canonical: Canon,
}

#[derive(Debug)]
enum Matcher {
    /// A built-in pattern, tried where `gate` says a match may start. `boundary`: the pattern began
    /// with `\b`, checked before the try (which starts at the place, so it cannot see the byte before).
    Anchored { at: Try, boundary: bool, gate: Gate },
    /// The e-mail pattern, by hand ([`find_email`]): on the small engine its counted repetitions
    /// (`{0,63}`, `{0,61}`) keep dozens of threads alive for every byte of an address.
    Email,
    /// A user's pattern, searched from every position.
    Search(Regex),
    /// A term list.
    Terms(Terms),
    /// The `regex` crate, searched from every position: what the tests hold the engine to.
    #[cfg(test)]
    Full(regex::Regex),
}

/// How a built-in pattern is tried at a place.
#[derive(Debug)]
enum Try {
    /// As `\A(?flags:body)` on the text from the place.
    Regex(Regex),
    /// By hand ([`BY_HAND`]): the end of the match.
    Hand(HandMatch),
}

/// Where a candidate was found: the whole match, and its `value` group if the pattern has one.
type Found = (Range<usize>, Option<Range<usize>>);

impl Matcher {
    /// The leftmost match starting at or after `pos` (a character boundary).
    fn find_at(&self, text: &str, pos: usize, value_group: bool) -> Option<Found> {
        match self {
            Matcher::Search(regex) => found(regex, text, pos, value_group),
            Matcher::Terms(terms) => terms.find_at(text, pos).map(|r| (r, None)),
            Matcher::Email => find_email(text.as_bytes(), pos).map(|r| (r, None)),
            #[cfg(test)]
            Matcher::Full(regex) => {
                if value_group {
                    let caps = regex.captures_at(text, pos)?;
                    Some((caps.get(0)?.range(), Some(caps.name("value")?.range())))
                } else {
                    regex.find_at(text, pos).map(|m| (m.range(), None))
                }
            }
            Matcher::Anchored { at, boundary, gate } => {
                let b = text.as_bytes();
                let try_at = |s: usize| -> Option<Found> {
                    if !text.is_char_boundary(s)
                        || (*boundary
                            && is_word_byte(s.checked_sub(1).and_then(|i| b.get(i)))
                                == is_word_byte(b.get(s)))
                    {
                        return None;
                    }
                    match at {
                        Try::Hand(end) => end(b, s).map(|e| (s..e, None)),
                        Try::Regex(regex) => {
                            let (m, v) = found(regex, text.get(s..)?, 0, value_group)?;
                            Some((s + m.start..s + m.end, v.map(|v| s + v.start..s + v.end)))
                        }
                    }
                };
                let mut pos = pos;
                while pos < b.len() {
                    let (from, until) = gate.earliest(text, pos)?;
                    let from = from.max(pos);
                    match until {
                        // Every place in the window may start a match: each is tried, in order.
                        Some(until) => {
                            if let Some(m) = (from..until.min(b.len())).find_map(|s| {
                                b.get(s)
                                    .is_some_and(|&c| gate.may_start(c))
                                    .then(|| try_at(s))
                                    .flatten()
                            }) {
                                return Some(m);
                            }
                            pos = until.max(pos + 1);
                        }
                        None => {
                            if let Some(m) = try_at(from) {
                                return Some(m);
                            }
                            pos = from + 1;
                        }
                    }
                }
                None
            }
        }
    }
}

/// `regex`'s leftmost match in `text` from `pos`, and its `value` group when asked for.
fn found(regex: &Regex, text: &str, pos: usize, value_group: bool) -> Option<Found> {
    if value_group {
        let caps = regex.captures_at(text, pos)?;
        Some((caps.get(0)?.range(), Some(caps.name("value")?.range())))
    } else {
        regex.find_at(text, pos).map(|m| (m.range(), None))
    }
}

#[derive(Debug, Clone, Copy)]
enum Canon {
    AsIs,
    Lower,
    Digits,
    Alnum,
}

impl Canon {
    fn apply(self, s: &str) -> String {
        match self {
            Canon::AsIs => s.to_string(),
            Canon::Lower => s.to_lowercase(),
            Canon::Digits => s.chars().filter(char::is_ascii_digit).collect(),
            Canon::Alnum => s
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        }
    }
}

/// A regex that failed to compile, or a bad term list; `index` is its position in the config list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub what: EngineErrorKind,
    pub index: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineErrorKind {
    Regex,
    Terms,
}

/// What to build an [`Engine`] from.
#[derive(Debug, Clone, Default)]
pub struct EngineSpec {
    pub builtins: Vec<Builtin>,
    /// `(entity type, pattern)`; a named group `value` narrows the detection to that group.
    pub regexes: Vec<(String, String)>,
    /// `(entity type, terms, case_sensitive)`: whole-word matches of any of the terms.
    pub terms: Vec<(String, Vec<String>, bool)>,
}

impl EngineSpec {
    /// Every built-in detector, nothing custom.
    pub fn builtins() -> Self {
        EngineSpec {
            builtins: Builtin::ALL.to_vec(),
            ..Default::default()
        }
    }
}

/// The compiled detectors. Build once at configuration time; [`Engine::detect`] is `&self`.
#[derive(Debug)]
pub struct Engine {
    detectors: Vec<Detector>,
    /// Per detector, the bytes its gate cannot do without ([`Gate::needs`]): a text with none of
    /// them is skipped without running the gate.
    needs: Vec<Option<Bytes>>,
    /// Most words in any configured term: the stream hold-back must keep that many words.
    pub(crate) max_term_words: usize,
}

/// Compiled regexes are capped so a config cannot make the VM allocate without bound.
const REGEX_SIZE_LIMIT: usize = 2 * 1024 * 1024;

fn compile(pattern: &str) -> Result<Regex, regex_lite::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()
}

/// A built-in pattern made to match only at the start of the text it is given: `(?flags)\bbody`
/// becomes `\A(?flags:body)`, and whether it began with `\b` (a built-in pattern has no top-level
/// `|`, so the `\b` belongs to every match).
fn anchored(pattern: &str) -> (String, bool) {
    let (flags, rest) = match pattern.strip_prefix("(?").and_then(|r| r.split_once(')')) {
        Some((flags, rest)) if !flags.contains(':') => (flags, rest),
        _ => ("", pattern),
    };
    let (boundary, body) = match rest.strip_prefix(r"\b") {
        Some(body) => (true, body),
        None => (false, rest),
    };
    (format!(r"\A(?{flags}:{body})"), boundary)
}

/// Does a flag group of `pattern` turn case-insensitivity on (`(?i)`, `(?xi:`, not `(?-i)`)? Used to
/// fold its letters for both cases; a pattern that turns it on anywhere is treated as caseless.
fn ignores_case(pattern: &str) -> bool {
    pattern.split("(?").skip(1).any(|group| {
        let flags = group.split([':', ')']).next().unwrap_or_default();
        flags.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
            && flags.split('-').next().is_some_and(|on| on.contains('i'))
    })
}

const PHONE_NA: &str =
    r"(?-u)(?:\+?1[ .\-]?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .\-]?[2-9][0-9]{2}[ .\-]?[0-9]{4}";
const PHONE_NA_ANY: &str = r"(?-u)(?:\+?1[ .\-]?)?(?:\([0-9]{3}\)|[0-9]{3})[ .\-]?[0-9]{3}[ .\-]?[0-9]{4}";
const PHONE_INTL: &str = r"(?-u)\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,7}";
const CARD: &str = r"(?-u)\b(?:[0-9][ \-]?){11,18}[0-9]\b";
const SSN: &str = r"(?-u)\b[0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4}\b";

/// The end of a hand-matched pattern's match starting at a place, if one does.
type HandMatch = fn(&[u8], usize) -> Option<usize>;

/// The built-in patterns matched by hand, where the small engine's threads make every try cost a
/// microsecond or more (phone numbers are common in the texts scanned): the end of the pattern's match
/// starting at a place (its leading `\b` is checked by the caller, as for the others). A test holds each
/// to its regex (`hand_matchers_are_their_regex`).
const BY_HAND: &[(&str, HandMatch)] = &[
    (PHONE_NA, |b, s| north_american(b, s, true)),
    (PHONE_NA_ANY, |b, s| north_american(b, s, false)),
    (PHONE_INTL, international),
    (CARD, card),
    (SSN, ssn),
];

fn digits_at(b: &[u8], i: usize, n: usize) -> bool {
    (i..i + n).all(|k| is_digit_at(b, k))
}

/// `[ .\-]` at `i`.
fn phone_sep_at(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), Some(b' ' | b'.' | b'-'))
}

/// [`PHONE_NA`] (`strict`) or [`PHONE_NA_ANY`]. An optional separator comes before a digit or a `(`,
/// so it is taken whenever it is there; the only choice is the optional `+1` prefix, tried first.
fn north_american(b: &[u8], s: usize, strict: bool) -> Option<usize> {
    let lead = |i: usize| {
        b.get(i).is_some_and(|&c| {
            if strict {
                (b'2'..=b'9').contains(&c)
            } else {
                c.is_ascii_digit()
            }
        })
    };
    let rest = |mut i: usize| {
        if b.get(i) == Some(&b'(') {
            if !(lead(i + 1) && digits_at(b, i + 2, 2) && b.get(i + 4) == Some(&b')')) {
                return None;
            }
            i += 5;
        } else {
            if !(lead(i) && digits_at(b, i + 1, 2)) {
                return None;
            }
            i += 3;
        }
        i += usize::from(phone_sep_at(b, i));
        if !(lead(i) && digits_at(b, i + 1, 2)) {
            return None;
        }
        i += 3;
        i += usize::from(phone_sep_at(b, i));
        digits_at(b, i, 4).then_some(i + 4)
    };
    let plus = usize::from(b.get(s) == Some(&b'+'));
    if b.get(s + plus) == Some(&b'1') {
        let i = s + plus + 1;
        if let Some(end) = rest(i + usize::from(phone_sep_at(b, i))) {
            return Some(end);
        }
    }
    rest(s)
}

/// [`PHONE_INTL`]: after `+` and the country code's first digit, the greedy `{0,2}` takes up to two more
/// digits and the groups (`[ .\-]?\(?[0-9]{1,5}\)?`) are taken greedily up to seven; a group fails
/// only where no digit follows its optional separator and `(`, which ends the repetition. Only when no
/// group follows does the country code give digits back, one at a time.
fn international(b: &[u8], s: usize) -> Option<usize> {
    if b.get(s) != Some(&b'+') || !b.get(s + 1).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return None;
    }
    let code = s + 2;
    let more = (0..2).take_while(|&k| is_digit_at(b, code + k)).count();
    let groups = |mut i: usize| {
        let mut n = 0;
        while n < 7 {
            let mut j = i + usize::from(phone_sep_at(b, i));
            j += usize::from(b.get(j) == Some(&b'('));
            let d = (0..5).take_while(|&k| is_digit_at(b, j + k)).count();
            if d == 0 {
                break;
            }
            j += d;
            j += usize::from(b.get(j) == Some(&b')'));
            i = j;
            n += 1;
        }
        (n > 0).then_some(i)
    };
    (0..=more).rev().find_map(|k| groups(code + k))
}

/// [`CARD`]: digits, each followed by at most one space or dash, 12 to 19 of them; the greedy `{11,18}`
/// gives digits back until the last one taken has a word edge after it.
fn card(b: &[u8], s: usize) -> Option<usize> {
    let mut ends = Vec::with_capacity(19);
    let mut i = s;
    while ends.len() < 19 && is_digit_at(b, i) {
        ends.push(i + 1);
        i += 1;
        if matches!(b.get(i), Some(b' ' | b'-')) && is_digit_at(b, i + 1) {
            i += 1;
        }
    }
    ends.iter()
        .skip(11)
        .rev()
        .copied()
        .find(|&e| !is_word_byte(b.get(e)))
}

/// [`SSN`]: nine digits as 3, 2 and 4, with an optional space or dash between the groups, then a word
/// edge.
fn ssn(b: &[u8], s: usize) -> Option<usize> {
    let sep = |i: usize| usize::from(matches!(b.get(i), Some(b' ' | b'-')));
    let mut i = s;
    for (k, n) in [3, 2, 4].into_iter().enumerate() {
        if k > 0 {
            i += sep(i);
        }
        if !digits_at(b, i, n) {
            return None;
        }
        i += n;
    }
    (!is_word_byte(b.get(i))).then_some(i)
}

/// The built-in patterns: `(type, pattern, check, priority, canonical form, gate)`.
fn builtin_patterns(b: Builtin) -> Vec<(&'static str, Check, u8, Canon, Gate)> {
    match b {
        Builtin::Email => vec![(
            r"(?i-u)\b[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
            Check::None,
            80,
            Canon::Lower,
            Gate::At,
        )],
        Builtin::Phone => vec![
            // North American: +1 (555) 123-4567, 555.123.4567, 1-555-123-4567, 5551234567 (with context).
            (PHONE_NA, Check::Phone, 40, Canon::Digits, Gate::PhoneRun),
            // The same ten digits with any area and exchange code (123.456.7890): a phone only when the
            // text says so nearby ("phone:", "call me at", "Telefon"), see `phone_score`.
            (PHONE_NA_ANY, Check::PhoneCued, 39, Canon::Digits, Gate::PhoneRun),
            // International E.164 with separators: +44 20 7183 8750, +49 (30) 1234-5678, +33612345678.
            (PHONE_INTL, Check::Phone, 41, Canon::Digits, prefix(&["+"], false)),
        ],
        Builtin::Card => vec![(CARD, Check::Card, 70, Canon::Digits, Gate::DigitRun(12))],
        Builtin::Ssn => vec![(SSN, Check::Ssn, 60, Canon::Digits, Gate::DigitRun(9))],
        Builtin::Iban => vec![(
            r"(?i-u)\b[a-z]{2}[0-9]{2}(?: ?[a-z0-9]){11,32}",
            Check::Iban,
            75,
            Canon::Alnum,
            Gate::Iban,
        )],
        Builtin::Ip => vec![
            (
                r"(?-u)\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b",
                Check::Ipv4,
                50,
                Canon::AsIs,
                Gate::Ipv4,
            ),
            (
                r"(?i-u)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:\.[0-9]{1,3}){0,3}",
                Check::Ipv6,
                55,
                Canon::Lower,
                Gate::Ipv6,
            ),
        ],
        Builtin::Secret => vec![
            // Anthropic and OpenAI API keys.
            (
                r"(?-u)\bsk-ant-[a-z]{3,5}[0-9]{2}-[A-Za-z0-9_\-]{20,}",
                Check::None,
                92,
                Canon::AsIs,
                prefix(&["sk-ant-"], false),
            ),
            (
                r"(?-u)\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}",
                Check::None,
                91,
                Canon::AsIs,
                prefix(&["sk-"], false),
            ),
            // AWS access key ids, and a secret access key next to its name.
            (
                r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
                Check::None,
                90,
                Canon::AsIs,
                prefix(
                    &[
                        "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
                    ],
                    false,
                ),
            ),
            (
                r#"(?i-u)aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?(?P<value>[A-Za-z0-9/+]{40})"#,
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["aws"], true),
            ),
            // Google API keys.
            (
                r"(?-u)\bAIza[0-9A-Za-z_\-]{35}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["AIza"], false),
            ),
            // GitHub tokens (classic and fine-grained).
            (
                r"(?-u)\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], false),
            ),
            (
                r"(?-u)\bgithub_pat_[A-Za-z0-9_]{22,255}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["github_pat_"], false),
            ),
            // Slack tokens and webhooks.
            (
                r"(?-u)\bxox[abposr]-[A-Za-z0-9\-]{10,}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["xox"], false),
            ),
            (
                r"(?-u)\bxapp-[0-9]-[A-Za-z0-9\-]{10,}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["xapp-"], false),
            ),
            (
                r"(?-u)https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["https://hooks.slack.com/services/"], false),
            ),
            // Stripe secret and restricted keys.
            (
                r"(?-u)\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"], false),
            ),
            // JSON Web Tokens.
            (
                r"(?-u)\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
                Check::None,
                90,
                Canon::AsIs,
                prefix(&["eyJ"], false),
            ),
            // PEM private key blocks, whole.
            (
                r"(?s)-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----.*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
                Check::None,
                95,
                Canon::AsIs,
                prefix(&["-----BEGIN"], false),
            ),
            // Credentials assigned to a telling name: password=..., api_key: ..., Bearer ...
            (
                r#"(?i-u)\b(?:password|passwd|pwd|secret|client_secret|api_?key|access_?token|auth_?token)["']?\s*[:=]\s*["']?(?P<value>[A-Za-z0-9!#$%&()*+./:<=>?@\[\]^_{|}~\-]{8,})"#,
                Check::None,
                89,
                Canon::AsIs,
                Gate::Assigned(&[
                    "password",
                    "passwd",
                    "pwd",
                    "secret",
                    "client_secret",
                    "apikey",
                    "api_key",
                    "accesstoken",
                    "access_token",
                    "authtoken",
                    "auth_token",
                ]),
            ),
            (
                r"(?i-u)\bbearer\s+(?P<value>[A-Za-z0-9._~+/\-]{16,}=*)",
                Check::None,
                89,
                Canon::AsIs,
                prefix(&["bearer"], true),
            ),
        ],
    }
}

/// A necessary condition for a built-in pattern to match, checked with a fast byte scan: where the
/// earliest match at or after a position could start. It never rules out a position where the regex
/// could match, so the anchored tries find the match a search would (see [`Matcher::Anchored`]).
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// At least this many digits, each separated from the next by at most one space or dash.
    DigitRun(usize),
    /// At least 10 digits, each separated from the next by at most two of ` .-()`, the first digit at
    /// most one byte after the start.
    PhoneRun,
    /// Two ASCII letters, then two digits.
    Iban,
    /// A digit, a dot, a digit, the dot at most 3 bytes after the start.
    Ipv4,
    /// Two colons with at most 4 hex digits between them, at most 4 bytes after the start.
    Ipv6,
    /// One of these words (ASCII case ignored), then an optional quote, white space and `:` or `=`.
    Assigned(&'static [&'static str]),
    /// An `@`: the e-mail matcher's ([`find_email`]), which does its own scan.
    At,
    /// The match starts with one of `lits` (ASCII case ignored with `nocase`); `anchor` is their
    /// [`literal_anchor`], found once when the gate is made ([`prefix`]).
    Prefix {
        lits: &'static [&'static str],
        nocase: bool,
        anchor: Option<(usize, u8)>,
    },
}

/// The gate of a match that starts with one of `lits`.
fn prefix(lits: &'static [&'static str], nocase: bool) -> Gate {
    Gate::Prefix {
        lits,
        nocase,
        anchor: literal_anchor(lits, nocase),
    }
}

/// ASCII `\s` as the regex crate reads it: `[\t\n\v\f\r ]` (Rust's `is_ascii_whitespace` leaves out `\v`).
fn regex_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// A byte of an e-mail's local part, `[a-z0-9._%+-]` with case ignored.
fn local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The leftmost match at or after `pos` of the built-in e-mail pattern,
/// `(?i-u)\b[a-z0-9][a-z0-9._%+\-]{0,63}@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b`,
/// as the regex crate finds it (tested against it):
/// - the local part holds no `@`, so a match belongs to the first `@` after its start, and starts in the
///   at most 64 local-part bytes right before it, at a letter or digit with a word edge before it; the
///   earliest such place is the start;
/// - after the `@`, a label holds no dot, so each is a whole dot-ended segment (1-63 of `[a-z0-9-]`,
///   not starting or ending with `-`); the greedy `+` takes as many as are valid, then gives them back
///   one by one until what follows is 2-24 letters with a word edge after them (no shorter run of letters
///   can end at an edge, as a letter follows it);
/// - the domain does not depend on the start: when it fails, no match uses this `@`.
fn find_email(b: &[u8], pos: usize) -> Option<Range<usize>> {
    let word = |i: usize| is_word_byte(b.get(i));
    let mut from = pos;
    loop {
        let at = find_byte(b, from, |c| c == b'@')?;
        from = at + 1;
        let local = b
            .get(at.saturating_sub(64)..at)
            .unwrap_or_default()
            .iter()
            .rev()
            .take_while(|&&c| local_part_byte(c))
            .count();
        let Some(start) = (at - local..at).find(|&s| {
            s >= pos && b.get(s).is_some_and(u8::is_ascii_alphanumeric) && (s == 0 || !word(s - 1))
        }) else {
            continue;
        };
        // The label ends (just after each valid `label.`), then the longest choice whose rest is a TLD.
        let mut ends = Vec::new();
        let mut q = at + 1;
        loop {
            let len = b
                .get(q..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&c| c != b'.')
                .count();
            let label = b.get(q..q + len).unwrap_or_default();
            let valid = (1..=63).contains(&len)
                && label.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && label.first().is_some_and(u8::is_ascii_alphanumeric)
                && label.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.get(q + len) == Some(&b'.');
            if !valid {
                break;
            }
            q += len + 1;
            ends.push(q);
        }
        let tld = ends.iter().rev().find_map(|&q| {
            let letters = b
                .get(q..)
                .unwrap_or_default()
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            ((2..=24).contains(&letters) && !word(q + letters)).then_some(q + letters)
        });
        if let Some(end) = tld {
            return Some(start..end);
        }
    }
}

/// How common a byte is in chat text, for picking what [`find_literal`] scans for: 0 for anything
/// but a lower-case letter, else the letter's place from the rarest.
fn commonness(b: u8) -> usize {
    const RAREST_FIRST: &[u8] = b"zqxjkvbpygfwmucldrhsnioate";
    RAREST_FIRST.iter().position(|&c| c == b).map_or(0, |i| i + 1)
}

/// The first position at or after `from` where one of `lits` starts (ASCII case ignored with
/// `nocase`). Scans for one byte all the literals have at the same offset, the rarest such byte in
/// chat text (`-` of `sk-`, `_` of `ghp_`; `(off, anchor)`, their [`literal_anchor`]), then checks
/// the literals there.
fn find_literal(
    b: &[u8],
    from: usize,
    lits: &[&str],
    nocase: bool,
    (off, anchor): (usize, u8),
) -> Option<usize> {
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    let letter = nocase && anchor.is_ascii_alphabetic();
    let hit = |start: usize| {
        lits.iter().any(|l| {
            b.get(start..start + l.len())
                .is_some_and(|w| w.iter().zip(l.as_bytes()).all(|(x, y)| fold(*x) == fold(*y)))
        })
    };
    let mut i = from;
    loop {
        let at = if letter {
            find_byte(b, i + off, |c| (c | 0x20) == anchor)?
        } else {
            find_byte(b, i + off, |c| c == anchor)?
        };
        let start = at - off;
        if hit(start) {
            return Some(start);
        }
        i = start + 1;
    }
}

/// The offset and (ASCII-lowered with `nocase`) value of the byte [`find_literal`] scans for: one all
/// of `lits` have at the same offset, the rarest such.
fn literal_anchor(lits: &[&str], nocase: bool) -> Option<(usize, u8)> {
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    let shortest = lits.iter().map(|l| l.len()).min()?;
    (0..shortest)
        .filter_map(|k| {
            let a = fold(*lits.first()?.as_bytes().get(k)?);
            lits.iter()
                .all(|l| l.as_bytes().get(k).is_some_and(|&c| fold(c) == a))
                .then_some((k, a))
        })
        .min_by_key(|&(_, a)| commonness(a))
}

/// A set of byte values.
#[derive(Debug, Clone, Copy, Default)]
struct Bytes([u64; 4]);

impl Bytes {
    fn of(text: &[u8]) -> Bytes {
        // One store a byte (a `u8` index is always in the table), then the table to bits.
        let mut seen = [false; 256];
        for &b in text {
            if let Some(s) = seen.get_mut(usize::from(b)) {
                *s = true;
            }
        }
        let mut set = Bytes::default();
        for (b, _) in (0..=u8::MAX).zip(seen).filter(|(_, s)| *s) {
            set.add(b);
        }
        set
    }

    fn add(&mut self, b: u8) {
        if let Some(w) = self.0.get_mut(usize::from(b >> 6)) {
            *w |= 1 << (b & 63);
        }
    }

    fn meets(&self, other: &Bytes) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }
}

fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}

fn is_digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

fn is_letter_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_alphabetic)
}

/// The first `i >= from` with `want(b[i])`. Skips whole blocks with a branch-free test that the
/// compiler vectorises: the bytes wanted are rare in prose.
fn find_byte(b: &[u8], from: usize, want: impl Fn(u8) -> bool) -> Option<usize> {
    const BLOCK: usize = 32;
    let rest = b.get(from..)?;
    let mut base = from;
    for block in rest.chunks(BLOCK) {
        if block.iter().fold(false, |acc, &c| acc | want(c)) {
            return block.iter().position(|&c| want(c)).map(|i| base + i);
        }
        base += block.len();
    }
    None
}

/// The first run at or after `pos` of at least `min` digits, each separated from the next by at most
/// `gap` bytes for which `sep` holds: `(first digit, just after the last digit that has `min - 1`
/// more after it)`. A match made of at least `min` such digits lies in one run, so it starts before
/// that end (or in a later run); a run with fewer digits holds no such match.
fn digit_run(
    b: &[u8],
    pos: usize,
    min: usize,
    gap: usize,
    sep: impl Fn(u8) -> bool,
) -> Option<(usize, usize)> {
    let mut i = pos;
    loop {
        let start = find_byte(b, i, is_digit)?;
        let (mut j, mut n) = (start, 1);
        'run: loop {
            for k in 1..=gap + 1 {
                if is_digit_at(b, j + k) {
                    j += k;
                    n += 1;
                    continue 'run;
                }
                if !b.get(j + k).is_some_and(|&c| sep(c)) {
                    break;
                }
            }
            break;
        }
        if n >= min {
            // The (n - min)th digit of the run, counted from 0, is the last that may start a match.
            let last = (start..=j)
                .filter(|&k| is_digit_at(b, k))
                .nth(n - min)
                .unwrap_or(j);
            return Some((start, last + 1));
        }
        // Every start inside this run has fewer digits after it.
        i = j + 1;
    }
}

impl Gate {
    /// Bytes of which every text the gate lets through has one. Each is a byte [`Gate::earliest`]
    /// scans for before anything else, so without one it returns `None`.
    fn needs(self) -> Bytes {
        let mut set = Bytes::default();
        let mut add = |bytes: &[u8]| bytes.iter().for_each(|&b| set.add(b));
        match self {
            Gate::DigitRun(_) | Gate::PhoneRun | Gate::Iban | Gate::Ipv4 => add(b"0123456789"),
            Gate::Ipv6 => add(b":"),
            Gate::Assigned(_) => add(b":="),
            Gate::At => add(b"@"),
            Gate::Prefix { nocase, anchor, .. } => {
                // No anchor: `find_literal` finds nothing, and the empty set lets nothing through.
                if let Some((_, a)) = anchor {
                    if nocase && a.is_ascii_alphabetic() {
                        add(&[a, a.to_ascii_uppercase()]);
                    } else {
                        add(&[a]);
                    }
                }
            }
        }
        set
    }

    /// Where the earliest match at or after `pos` could start (`None`: no match can). With a window
    /// end, every place before it may start one (those [`Gate::may_start`] allows are tried) and the
    /// next match after them starts at or after that end; without, only that place is tried and the
    /// gate asked again from the next byte.
    fn earliest(self, text: &str, pos: usize) -> Option<(usize, Option<usize>)> {
        let b = text.as_bytes();
        match self {
            Gate::DigitRun(min) => {
                digit_run(b, pos, min, 1, |c| matches!(c, b' ' | b'-')).map(|(start, end)| (start, Some(end)))
            }
            Gate::PhoneRun => {
                // `+1 (`: the match may start up to one byte before its first digit.
                digit_run(b, pos, 10, 2, |c| matches!(c, b' ' | b'.' | b'-' | b'(' | b')'))
                    .map(|(start, end)| (start.saturating_sub(1).max(pos), Some(end)))
            }
            Gate::Iban => {
                let mut i = pos + 2;
                loop {
                    let d = find_byte(b, i, is_digit)?;
                    if is_digit_at(b, d + 1) && is_letter_at(b, d - 1) && is_letter_at(b, d - 2) {
                        return Some((d - 2, None));
                    }
                    i = d + 1;
                }
            }
            Gate::Ipv4 => {
                // Digits are rarer than dots in prose: look for the digit before the first dot.
                let mut i = pos;
                loop {
                    let d = find_byte(b, i, is_digit)?;
                    if b.get(d + 1) == Some(&b'.') && is_digit_at(b, d + 2) {
                        // An address is digits and dots: no match starts past the end of this word.
                        let end = b
                            .get(d..)
                            .unwrap_or_default()
                            .iter()
                            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
                            .map_or(b.len(), |n| d + n);
                        return Some((d.saturating_sub(2).max(pos), Some(end)));
                    }
                    i = d + 1;
                }
            }
            Gate::Ipv6 => {
                let mut i = pos;
                loop {
                    let colon = find_byte(b, i, |c| c == b':')?;
                    let hex = b
                        .get(colon + 1..)
                        .unwrap_or_default()
                        .iter()
                        .take(5)
                        .take_while(|c| c.is_ascii_hexdigit())
                        .count();
                    if hex <= 4 && b.get(colon + 1 + hex) == Some(&b':') {
                        return Some((colon.saturating_sub(4).max(pos), None));
                    }
                    i = colon + 1;
                }
            }
            Gate::At => find_byte(b, pos, |c| c == b'@').map(|at| (at, None)),
            Gate::Assigned(words) => {
                // The word ends before the white space and the optional quote that come before a
                // `:` or `=`; the first `:` or `=` after a match's start is its own.
                let mut i = pos;
                loop {
                    let op = find_byte(b, i, |c| c == b':' || c == b'=')?;
                    let spaces = b
                        .get(..op)
                        .unwrap_or_default()
                        .iter()
                        .rev()
                        .take_while(|&&c| regex_space(c))
                        .count();
                    let mut end = op - spaces;
                    if end > 0 && matches!(b.get(end - 1), Some(b'"' | b'\'')) {
                        end -= 1;
                    }
                    let start = words
                        .iter()
                        .filter_map(|w| {
                            let start = end.checked_sub(w.len())?;
                            (start >= pos && b.get(start..end)?.eq_ignore_ascii_case(w.as_bytes()))
                                .then_some(start)
                        })
                        .min();
                    if let Some(start) = start {
                        return Some((start, None));
                    }
                    i = op + 1;
                }
            }
            Gate::Prefix { lits, nocase, anchor } => {
                find_literal(b, pos, lits, nocase, anchor?).map(|at| (at, None))
            }
        }
    }

    /// Whether a place inside a window, holding `b`, may start a match.
    fn may_start(self, b: u8) -> bool {
        match self {
            Gate::DigitRun(_) | Gate::Ipv4 => b.is_ascii_digit(),
            Gate::PhoneRun => b.is_ascii_digit() || b == b'+' || b == b'(',
            _ => true,
        }
    }
}

/// Cue words that say a nearby number is a phone number, in the languages the templates use; matched
/// case-insensitively in the [`CUE_WINDOW`] bytes before the candidate.
const PHONE_CUES: &[&str] = &[
    "phone",
    "tel",
    "call",
    "ring",
    "mobile",
    "cell",
    "fax",
    "whatsapp",
    "sms",
    "text me",
    "reach me",
    "contact number",
    "phone number",
    "telefon",
    "téléphone",
    "portable",
    "handy",
    "teléfono",
    "llámame",
    "llamame",
    "móvil",
    "movil",
    "celular",
    "telefone",
    "telefono",
    "cellulare",
    "numéro",
    "рабочий",
    "телефон",
    "звони",
    "电话",
    "手机",
    "電話",
    "携帯",
];
/// Words that say a nearby number is something else (a version, an identifier): they outweigh the
/// shape, so a strict-looking number after "SKU" or "build" is not masked.
const NOT_PHONE_CUES: &[&str] = &[
    "version",
    "build",
    "release",
    "sku",
    "order",
    "invoice",
    "ticket",
    "serial",
    "part number",
    "tracking",
    "checksum",
    "coordinates",
    "package",
    "ratio",
    "scored",
    "points",
    "firmware",
    "tag ",
];
/// How far before a candidate a cue counts, in bytes.
const CUE_WINDOW: usize = 32;
/// A "not a phone" word must stand right before the number ("SKU 123...", "build 123...").
const NOT_WINDOW: usize = 14;

/// A phone candidate's score: its shape (strict North American 0.6, any ten digits 0.3), plus 0.4
/// for a phone cue nearby, minus 0.5 for a "not a phone" cue with no phone cue; kept at 0.5 or more.
fn phone_score(text: &str, start: usize, strict: bool) -> f32 {
    let from = floor_char(text, start.saturating_sub(CUE_WINDOW));
    let before = lower(text.get(from..start).unwrap_or_default());
    let cue = has_cue(&before, &PHONE);
    let not = || {
        let near = floor_char(text, start.saturating_sub(NOT_WINDOW));
        let right_before = lower(text.get(near..start).unwrap_or_default());
        has_cue(&right_before, &NOT_PHONE)
    };
    let mut score = if strict { 0.6 } else { 0.3 };
    if cue {
        score += 0.4;
    } else if not() {
        score -= 0.5;
    }
    score
}

/// A cue list prepared for [`has_cue`]: each non-ASCII cue's skeleton, and the ASCII cues grouped
/// by their first byte (a word start is compared only with the cues that begin with its byte).
struct Cues {
    words: &'static [&'static str],
    /// Each cue's skeleton when the cue is not ASCII, in the order of `words`.
    skeletons: Vec<Option<String>>,
    /// The ASCII cues, sorted by first byte.
    ascii: Vec<&'static [u8]>,
    /// For each ASCII byte, the range of `ascii` that begins with it.
    by_first: [(u8, u8); 128],
}

impl Cues {
    fn new(words: &'static [&'static str]) -> Cues {
        let mut ascii: Vec<&'static [u8]> = Vec::new();
        let mut by_first = [(0u8, 0u8); 128];
        // Grouped byte by byte rather than sorted (no sort is instantiated for a few dozen cues).
        for (b, range) in (0u8..).zip(by_first.iter_mut()) {
            let start = ascii.len();
            ascii.extend(
                words
                    .iter()
                    .map(|w| w.as_bytes())
                    .filter(|w| w.is_ascii() && w.first() == Some(&b)),
            );
            // The lists hold a few dozen cues.
            *range = (
                u8::try_from(start).unwrap_or(u8::MAX),
                u8::try_from(ascii.len()).unwrap_or(u8::MAX),
            );
        }
        Cues {
            words,
            skeletons: words
                .iter()
                .map(|w| (!w.is_ascii()).then(|| skeleton(w)))
                .collect(),
            ascii,
            by_first,
        }
    }

    /// The ASCII cues that begin with `b`.
    fn starting_with(&self, b: u8) -> &[&'static [u8]] {
        let (start, end) = self.by_first.get(usize::from(b)).copied().unwrap_or_default();
        self.ascii
            .get(usize::from(start)..usize::from(end))
            .unwrap_or_default()
    }
}

static PHONE: LazyLock<Cues> = LazyLock::new(|| Cues::new(PHONE_CUES));
static NOT_PHONE: LazyLock<Cues> = LazyLock::new(|| Cues::new(NOT_PHONE_CUES));

/// Upper-cased, folded, lower-cased: Cyrillic and Greek capitals that folding turns into Latin
/// look-alikes compare equal to their lower-case forms.
fn skeleton(s: &str) -> String {
    crate::text::fold(&s.to_uppercase()).text.to_lowercase()
}

/// Does `text` hold one of `cues` starting a word ("tel" in "tel." but not in "hotel")?
/// The text is scanned after folding, which turns some Cyrillic and Greek capitals into Latin
/// look-alikes ("Телефон" → "Teлeфoн"), so non-ASCII cues (`skeletons`, in the order of `cues`) are
/// compared on a skeleton of both sides. On ASCII text only ASCII cues can occur: each word start is
/// tried once against the cues that begin with its byte. (No cue can occur again at a word start inside an occurrence of itself, so a cue
/// at a word start is also one of its non-overlapping occurrences: `cues_have_no_border_at_a_word_start`.)
fn has_cue(text: &str, cues: &Cues) -> bool {
    if text.is_ascii() {
        let h = text.as_bytes();
        return (0..h.len()).any(|i| {
            let word_start = i
                .checked_sub(1)
                .and_then(|p| h.get(p))
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            word_start
                && h.get(i..).is_some_and(|rest| {
                    rest.first()
                        .is_some_and(|&b| cues.starting_with(b).iter().any(|w| rest.starts_with(w)))
                })
        });
    }
    let at_word = |hay: &str, w: &str| {
        occurrences(hay, w).any(|i| {
            hay.get(..i)
                .and_then(|b| b.chars().next_back())
                .is_none_or(|c| !c.is_alphanumeric())
        })
    };
    let text_skeleton = skeleton(text);
    cues.words
        .iter()
        .zip(&cues.skeletons)
        .any(|(w, sk)| at_word(text, w) || sk.as_deref().is_some_and(|sk| at_word(&text_skeleton, sk)))
}

/// `str::to_lowercase`, without its Unicode tables for ASCII text (the same result there).
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(s.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

/// The starts of the non-overlapping occurrences of `needle` in `hay`, left to right: what
/// `str::match_indices` yields, by a plain scan (the haystacks here are a few dozen bytes, where
/// building a substring searcher per needle costs more than the search). A UTF-8 needle can only
/// match at a character boundary, so byte positions are the same.
fn occurrences<'h>(hay: &'h str, needle: &'h str) -> impl Iterator<Item = usize> + 'h {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *n.first()?;
        while i + n.len() <= h.len() {
            let at = i;
            if h.get(at) == Some(&first) && h.get(at..at + n.len()) == Some(n) {
                i = at + n.len();
                return Some(at);
            }
            i += 1;
        }
        None
    })
}

/// Words that make a bare number (no separators) a phone number or an SSN.
const PHONE_CONTEXT: &[&str] = &[
    "phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "number",
];
const SSN_CONTEXT: &[&str] = &["ssn", "social security", "ss#", "ss #", "taxpayer"];

fn context_has(text: &str, start: usize, words: &[&str]) -> bool {
    let from = floor_char(text, start.saturating_sub(40));
    let before = text.get(from..start).unwrap_or_default().to_ascii_lowercase();
    words.iter().any(|w| before.contains(w))
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i.min(text.len())
}

fn standalone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let before = start.checked_sub(1).and_then(|i| bytes.get(i));
    !is_word_byte(before) && !is_word_byte(bytes.get(end))
}

/// The candidate is one group of a longer run of digit groups ("1234 [5678 9012 3456]"), not a value.
fn inside_digit_run(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let sep = |i: usize| matches!(b.get(i), Some(b' ' | b'-' | b'.'));
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (start >= 2 && sep(start - 1) && digit(start - 2)) || (sep(end) && digit(end + 1))
}

/// `+34 150.73.11.45` is a phone number written with dots, not an address after a stray `+34`.
fn after_country_code(text: &str, start: usize) -> bool {
    let before = text.get(..start).unwrap_or_default().as_bytes();
    let Some((sep, rest)) = before.split_last() else {
        return false;
    };
    if !matches!(sep, b' ' | b'.' | b'-') {
        return false;
    }
    let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    (1..=3).contains(&digits) && rest.len() > digits && rest.get(rest.len() - digits - 1) == Some(&b'+')
}

fn has_separator(s: &str) -> bool {
    s.bytes().any(|b| !b.is_ascii_digit() && b != b'+')
}

impl Check {
    /// Whether the candidate `text[start..end]` is a value, and its final range (some checks trim it).
    fn accept(self, text: &str, start: usize, end: usize) -> Option<Range<usize>> {
        let cand = text.get(start..end)?;
        let ok = match self {
            Check::None => true,
            Check::Standalone => standalone(text, start, end),
            Check::Card => validate::card(cand) && !inside_digit_run(text, start, end),
            Check::Ssn => {
                validate::ssn(cand)
                    && !inside_digit_run(text, start, end)
                    && (has_separator(cand) || context_has(text, start, SSN_CONTEXT))
            }
            Check::Iban => return validate::iban_prefix(cand).map(|n| start..start + n),
            Check::Ipv4 => {
                validate::ipv4(text, end) && !after_country_code(text, start) && {
                    let bytes = text.as_bytes();
                    // Not the tail of a longer dotted number (1.2.3.4.5) either.
                    !(start >= 2
                        && bytes.get(start - 1) == Some(&b'.')
                        && bytes.get(start - 2).is_some_and(u8::is_ascii_digit))
                }
            }
            Check::Ipv6 => {
                let bytes = text.as_bytes();
                let before = start.checked_sub(1).and_then(|i| bytes.get(i));
                let glued =
                    |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b':' || *b == b'_');
                !glued(before) && !glued(bytes.get(end)) && validate::ipv6(cand)
            }
            Check::Phone => return phone(text, start, end).filter(|_| phone_score(text, start, true) >= 0.5),
            Check::PhoneCued => {
                return phone(text, start, end).filter(|_| phone_score(text, start, false) >= 0.5)
            }
        };
        ok.then_some(start..end)
    }
}

/// Phone candidates: standalone, 10-15 digits, and a bare digit run needs `+`, or a word like "call".
fn phone(text: &str, start: usize, mut end: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    // Trailing separators and unbalanced parentheses belong to the prose, not the number.
    while end > start && matches!(bytes.get(end - 1), Some(b' ' | b'.' | b'-' | b'(')) {
        end -= 1;
    }
    let mut cand = text.get(start..end)?;
    // A greedy international match may run into a following number: drop groups until <= 15 digits.
    while validate::phone_digits(cand) > 15 {
        let cut = cand.rfind([' ', '.', '-'])?;
        end = start + cut;
        cand = text.get(start..end)?;
    }
    // A closing parenthesis with no opening one inside belongs to the prose: "(call +1 555 ...)".
    while cand.ends_with(')') && cand.matches('(').count() < cand.matches(')').count() {
        end -= 1;
        cand = text.get(start..end)?;
    }
    let n = validate::phone_digits(cand);
    let before = start.checked_sub(1).and_then(|i| bytes.get(i));
    let glued_before = is_word_byte(before) || before == Some(&b'+');
    if glued_before || is_word_byte(bytes.get(end)) || !(10..=15).contains(&n) {
        return None;
    }
    // "(555) 123-4567" must have its "(" inside; a bare ")" would be part of the prose.
    let international = cand.starts_with('+');
    if !international && !has_separator(cand) && !context_has(text, start, PHONE_CONTEXT) {
        return None;
    }
    Some(start..end)
}

impl Engine {
    pub fn new(spec: &EngineSpec) -> Result<Engine, EngineError> {
        let mut detectors = Vec::new();
        // Per built-in detector, the bytes its gate needs; custom ones run on every text.
        let mut needs = Vec::new();
        let mut seen = Vec::new();
        for b in &spec.builtins {
            if seen.contains(b) {
                continue;
            }
            seen.push(*b);
            for (pattern, check, priority, canonical, gate) in builtin_patterns(*b) {
                let matcher = match gate {
                    Gate::At => Matcher::Email,
                    gate => {
                        let (body, boundary) = anchored(pattern);
                        let at = match BY_HAND.iter().find(|(p, _)| *p == pattern) {
                            Some((_, end)) => Try::Hand(*end),
                            // Built-in patterns are tested; a failure here is a bug, reported like a
                            // config error.
                            None => Try::Regex(compile(&body).map_err(|e| EngineError {
                                what: EngineErrorKind::Regex,
                                index: 0,
                                message: format!("built-in {} pattern: {e}", b.name()),
                            })?),
                        };
                        Matcher::Anchored { at, boundary, gate }
                    }
                };
                needs.push(Some(gate.needs()));
                detectors.push(Detector {
                    kind: b.name().to_string(),
                    value_group: pattern.contains("(?P<value>"),
                    matcher,
                    check,
                    priority,
                    canonical,
                });
            }
        }
        for (i, (kind, pattern)) in spec.regexes.iter().enumerate() {
            let error = |e: regex_lite::Error| EngineError {
                what: EngineErrorKind::Regex,
                index: i,
                message: e.to_string(),
            };
            // Checked as written (errors quote the user's pattern), then matched folded like the text.
            let mut regex = compile(pattern).map_err(error)?;
            if !pattern.is_ascii() {
                regex = compile(&fold_pattern(pattern, ignores_case(pattern))).map_err(error)?;
            }
            if regex.is_match("") {
                return Err(EngineError {
                    what: EngineErrorKind::Regex,
                    index: i,
                    message: "pattern matches the empty string".into(),
                });
            }
            detectors.push(Detector {
                kind: kind.clone(),
                value_group: has_value_group(&regex),
                matcher: Matcher::Search(regex),
                check: Check::None,
                priority: PRIORITY_CUSTOM,
                canonical: Canon::AsIs,
            });
        }
        let mut max_term_words = 1;
        for (i, (kind, terms, case_sensitive)) in spec.terms.iter().enumerate() {
            let error = |message: &str| EngineError {
                what: EngineErrorKind::Terms,
                index: i,
                message: message.into(),
            };
            let terms = Terms::new(terms, !*case_sensitive).map_err(error)?;
            max_term_words = max_term_words.max(terms.max_words());
            detectors.push(Detector {
                kind: kind.clone(),
                matcher: Matcher::Terms(terms),
                check: Check::Standalone,
                priority: PRIORITY_CUSTOM,
                value_group: false,
                canonical: Canon::Lower,
            });
        }
        needs.resize(detectors.len(), None);
        Ok(Engine {
            needs,
            detectors,
            max_term_words,
        })
    }

    /// An engine that finds nothing.
    pub fn empty() -> Engine {
        Engine {
            detectors: Vec::new(),
            needs: Vec::new(),
            max_term_words: 1,
        }
    }

    /// Non-overlapping detections in `text`, sorted by start, with ranges in `text`'s own bytes.
    pub fn detect(&self, text: &str) -> Vec<Detection> {
        let folded = fold(text);
        let mut found = Vec::new();
        // One pass for the bytes present; a gate whose bytes are all absent finds nothing.
        let present = Bytes::of(folded.text.as_bytes());
        for (i, d) in self.detectors.iter().enumerate() {
            if self
                .needs
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|need| !need.meets(&present))
            {
                continue;
            }
            d.find(&folded.text, &mut found);
        }
        if !folded.is_identity() {
            for det in &mut found {
                let r = folded.original_range(det.range());
                det.start = r.start;
                det.end = r.end;
            }
        }
        resolve_overlaps(found)
    }
}

fn has_value_group(regex: &Regex) -> bool {
    regex.capture_names().any(|n| n == Some("value"))
}

impl Detector {
    fn find(&self, text: &str, out: &mut Vec<Detection>) {
        let mut pos = 0;
        while pos < text.len() {
            let Some((m, value)) = self.matcher.find_at(text, pos, self.value_group) else {
                break;
            };
            let range = match value {
                Some(v) => Some(v),
                None => self.check.accept(text, m.start, m.end),
            };
            match range {
                Some(r) if r.start < r.end => {
                    let value = text.get(r.clone()).unwrap_or_default();
                    out.push(Detection {
                        kind: self.kind.clone(),
                        start: r.start,
                        end: r.end,
                        priority: self.priority,
                        canonical: self.canonical.apply(value),
                    });
                    // Go on after the value, not after the candidate: a check may have trimmed a
                    // greedy match (an IBAN, a phone) that ran into the next value.
                    pos = r.end.max(m.start + 1);
                }
                // Not a value: the next one may start inside this candidate.
                _ => pos = m.start + 1,
            }
            pos = ceil_char(text, pos);
        }
    }
}

/// Term lists: whole-word matches of any of the terms, any run of white space between a term's words,
/// each character compared as folded (and, without case, on its [`caseless`] key). Word edges are
/// Unicode's (letters, digits and `_`), so `Москва` is found in "в Москве" no more than `Ann` in "Anna".
#[derive(Debug)]
struct Terms {
    /// Each term's words, as keys.
    list: Vec<Vec<Vec<char>>>,
    nocase: bool,
}

impl Terms {
    fn new(terms: &[String], nocase: bool) -> Result<Terms, &'static str> {
        let mut list = Vec::new();
        for t in terms {
            let words: Vec<Vec<char>> = t
                .split(char::is_whitespace)
                .map(|w| {
                    fold(w)
                        .text
                        .chars()
                        .map(|c| key(c, nocase))
                        .collect::<Vec<char>>()
                })
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                return Err("terms must not be empty");
            }
            list.push(words);
        }
        if list.is_empty() {
            return Err("at least one term is required");
        }
        Ok(Terms { list, nocase })
    }

    fn max_words(&self) -> usize {
        self.list.iter().map(Vec::len).max().unwrap_or(1)
    }

    /// The first place at or after `pos` where a term matches (the first term listed, where several
    /// do): its range.
    fn find_at(&self, text: &str, pos: usize) -> Option<Range<usize>> {
        let rest = text.get(pos..)?;
        rest.char_indices().find_map(|(i, c)| {
            let (at, k) = (pos + i, key(c, self.nocase));
            self.list
                .iter()
                .filter(|t| t.first().and_then(|w| w.first()) == Some(&k))
                .find_map(|t| self.match_at(t, text, at))
        })
    }

    /// Where `term` matches at `at`, if it does.
    fn match_at(&self, term: &[Vec<char>], text: &str, at: usize) -> Option<Range<usize>> {
        let edge = |i: usize, inner: Option<&char>| {
            // A word edge is only needed next to the term's own word characters.
            !inner.is_some_and(|&c| is_word_char(c)) || {
                let before = text.get(..i).and_then(|s| s.chars().next_back());
                let after = text.get(i..).and_then(|s| s.chars().next());
                before.is_some_and(is_word_char) != after.is_some_and(is_word_char)
            }
        };
        if !edge(at, term.first().and_then(|w| w.first())) {
            return None;
        }
        let mut chars = text.get(at..)?.char_indices().peekable();
        for (n, word) in term.iter().enumerate() {
            if n > 0 {
                let mut spaces = 0;
                while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {
                    spaces += 1;
                }
                if spaces == 0 {
                    return None;
                }
            }
            for &want in word {
                let (_, c) = chars.next()?;
                if key(c, self.nocase) != want {
                    return None;
                }
            }
        }
        let end = at + chars.peek().map_or(text.len() - at, |&(i, _)| i);
        edge(end, term.last().and_then(|w| w.last())).then_some(at..end)
    }
}

/// A word character at a term's edges: a letter, a digit or `_`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// What a character of folded text is compared on: itself, or without case its small form after
/// folding its capital (`М` and `м` fold differently, `M` and `м`; both keys are `m`), so that every
/// case form of a letter and of its look-alike compare equal. Only one-character case mappings count.
fn key(c: char, nocase: bool) -> char {
    if !nocase {
        return c;
    }
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        match (it.next(), it.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    let folded = crate::text::fold_one(upper).unwrap_or(upper);
    single(folded.to_lowercase()).unwrap_or(folded)
}

/// Keeps the best of overlapping detections: higher priority, then longer, then earlier.
pub fn resolve_overlaps(mut found: Vec<Detection>) -> Vec<Detection> {
    found.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Detection> = Vec::with_capacity(found.len());
    for d in found {
        // `kept` stays sorted by start, so one binary search finds the neighbours.
        let at = kept.partition_point(|k| k.start < d.start);
        let clash_prev = at
            .checked_sub(1)
            .and_then(|i| kept.get(i))
            .is_some_and(|p| p.end > d.start);
        let clash_next = kept.get(at).is_some_and(|n| n.start < d.end);
        if !clash_prev && !clash_next {
            kept.insert(at, d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `has_cue`: skeletons made per call, every cue searched on its own.
    fn has_cue_reference(text: &str, cues: &[&str]) -> bool {
        let at_word = |hay: &str, w: &str| {
            occurrences(hay, w).any(|i| {
                hay.get(..i)
                    .and_then(|b| b.chars().next_back())
                    .is_none_or(|c| !c.is_alphanumeric())
            })
        };
        let text_skeleton = (!text.is_ascii()).then(|| skeleton(text));
        cues.iter().any(|w| {
            at_word(text, w)
                || match (&text_skeleton, w.is_ascii()) {
                    (Some(t), false) => at_word(t, &skeleton(w)),
                    _ => false,
                }
        })
    }

    /// A cue whose start is also its end ("sms") occurs again inside an earlier occurrence of itself
    /// ("smsms"), which a non-overlapping search skips. `has_cue`'s ASCII scan tries every word start,
    /// so it agrees only if no such inner occurrence starts a word: the cue's byte before it must be
    /// alphanumeric ("m" in "sms").
    #[test]
    fn cues_have_no_border_at_a_word_start() {
        for w in PHONE_CUES.iter().chain(NOT_PHONE_CUES) {
            // An empty cue would match at every word start; `Cues` leaves it out.
            assert!(!w.is_empty());
            let b = w.as_bytes();
            for k in 1..b.len() {
                let d = b.len() - k;
                if b[..k] == b[d..] {
                    assert!(b[d - 1].is_ascii_alphanumeric(), "{w:?} overlaps itself at {d}");
                }
            }
        }
    }

    /// `has_cue` answers what the first version answers, on windows made of cue fragments, cues,
    /// separators, Latin look-alikes and other scripts.
    #[test]
    fn has_cue_is_its_reference() {
        let parts = [
            "phone",
            "Tel",
            "tel.",
            "hotel",
            "call",
            "recall",
            "ТЕЛЕФОН",
            "телефон",
            "Teлeфoн",
            "电话",
            "text me",
            "textme",
            "reach  me",
            "sku",
            "SKU-",
            "build",
            "rebuild",
            "tag ",
            "tag",
            "part number",
            " ",
            ":",
            "-",
            "(",
            "é",
            "ß",
            "1",
            "a",
            "x",
            "Ω",
            "mobile",
            "móvil",
            "MÓVIL",
            "numéro",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut t = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 7) as usize;
            let mut r = seed;
            for _ in 0..n {
                r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                t.push_str(parts[(r >> 33) as usize % parts.len()]);
            }
            let t = lower(&t).into_owned();
            assert_eq!(has_cue(&t, &PHONE), has_cue_reference(&t, PHONE_CUES), "{t:?}");
            assert_eq!(
                has_cue(&t, &NOT_PHONE),
                has_cue_reference(&t, NOT_PHONE_CUES),
                "{t:?}"
            );
        }
    }
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A small deterministic generator of numbers below its argument, for the generated texts.
    fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    /// The built-in detectors as the `regex` crate finds them, searching from every position: the
    /// engine's gates and anchored tries on `regex_lite` must find the same values.
    fn reference() -> Engine {
        let mut e = Engine::new(&EngineSpec::builtins()).unwrap();
        let mut patterns = Builtin::ALL.iter().flat_map(|b| builtin_patterns(*b));
        for d in &mut e.detectors {
            let (pattern, ..) = patterns.next().unwrap();
            d.matcher = Matcher::Full(regex::Regex::new(pattern).unwrap());
        }
        assert!(patterns.next().is_none());
        e.needs = vec![None; e.detectors.len()];
        e
    }

    /// Each hand matcher ends where its pattern's anchored match ends (the `regex` crate's), from
    /// every place of texts made of the bytes the patterns read.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn hand_matchers_are_their_regex() {
        let pieces = [
            "0", "1", "2", "5", "9", " ", ".", "-", "(", ")", "+", "a", "_", "415", "555", "0134", "1 (",
            ") ",
        ];
        let mut next = xorshift(0x0bad_cafe_u64);
        for (pattern, end) in BY_HAND {
            let re = regex::Regex::new(&anchored(pattern).0).unwrap();
            let mut matched = 0;
            for _ in 0..4000 {
                let text: String = (0..next(40)).map(|_| pieces[next(pieces.len())]).collect();
                let b = text.as_bytes();
                for s in 0..b.len() {
                    let want = re.find(&text[s..]).map(|m| s + m.end());
                    matched += usize::from(want.is_some());
                    assert_eq!(end(b, s), want, "{pattern} at {s} of {text:?}");
                }
            }
            assert!(matched > 200, "{pattern}: {matched}");
        }
    }

    /// The hand-written e-mail matcher finds the e-mail pattern's matches, one after another, as the
    /// `regex` crate does: texts of the bytes the pattern cares about, with runs long enough to cross
    /// its 64-byte local part, 63-byte label and 24-letter TLD limits.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn email_by_hand_is_the_regex() {
        let (pattern, ..) = builtin_patterns(Builtin::Email).remove(0);
        let re = regex::Regex::new(pattern).unwrap();
        let pieces = [
            "a", "Z", "0", ".", "-", "_", "@", "%", "+", " ", "é", "com", "x.io", "@b.co",
        ];
        let mut next = xorshift(0x1234_5678_u64);
        let a = |n: usize| "a".repeat(n);
        let edges = [
            format!("x@{}.com", a(63)),
            format!("x@{}.com", a(64)),
            format!("x@b.{}-c.com", a(62)),
            format!("{}@b.com", a(64)),
            format!("{}@b.com", a(65)),
            format!("x.{}@b.com", a(63)),
            format!("x@b.{}", a(24)),
            format!("x@b.{} y", a(25)),
        ];
        let mut matched = 0;
        for i in 0..20_000 {
            let mut text = edges.get(i).cloned().unwrap_or_default();
            for _ in 0..next(12) {
                let piece = pieces[next(pieces.len())];
                let times = if next(4) == 0 { 1 + next(70) } else { 1 };
                text.push_str(&piece.repeat(times));
            }
            let all = |f: &dyn Fn(usize) -> Option<Range<usize>>| {
                let mut out = Vec::new();
                let mut pos = 0;
                while let Some(r) = f(pos) {
                    pos = r.end.max(r.start + 1);
                    out.push(r);
                    pos = ceil_char(&text, pos);
                }
                out
            };
            let want = all(&|pos| re.find_at(&text, pos).map(|m| m.range()));
            matched += usize::from(!want.is_empty());
            assert_eq!(all(&|pos| find_email(text.as_bytes(), pos)), want, "{text:?}");
        }
        assert!(matched > 1000, "{matched}");
    }

    #[test]
    fn builtins_find_what_the_regex_crate_finds() {
        let gated = Engine::new(&EngineSpec::builtins()).unwrap();
        let ungated = reference();
        assert!(gated.needs.iter().all(Option::is_some));
        let pieces = [
            "a@b.io",
            "x@y.com+bob@z.com",
            "a@b+c@d.com",
            "@",
            "jane.doe@example.com",
            "AKIAIOSFODNN7EXAMPLE",
            "AKIA",
            "sk-",
            "sk-proj-abcdefghijklmnopqrstuvwx",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "desk-top",
            "ghp_",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
            "github_pat_0123456789abcdefghijklm",
            "xoxb-1234567890-abc",
            "xapp-1-ABCDEFGHIJKL",
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXX",
            "sk_live_0123456789abcdefgh",
            "rk_test_",
            "eyJhbGciOi.eyJzdWIiOi.sig",
            "eyJ",
            "AIzaSyA-0123456789abcdefghijklmnopqrstu",
            "aws_secret_access_key = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"",
            "AWS_SECRET_KEY:\x0b'abc'",
            "Bearer abcdefghijklmnop1234",
            "bearer\x0bshort",
            "BEARER  abcdefghijklmnopqrstuv==",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN",
            "+44 20 7183 8750",
            "+1 (415) 555-0134",
            "+",
            "++33612345678",
            "call +49 (30) 1234-5678)",
            " ",
            "_",
            "-",
            ".",
            "\n",
            "é",
            "x",
            "1234",
            "password = hunter2hunter2",
            "client_secret: 's3cr3t-value!'",
            "api_key=\"abcdefgh12\"",
            "PWD\x0b:\x0bzzzzzzzzzz",
            "my_secret: abcdefghij",
            "secret'  =x",
            "auth_token",
            ":",
            "=",
            "\"",
            "555.123.4567",
            "(555) 123-4567",
            "1-555-123-4567",
            "123.456.7890",
            "phone:",
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "192.168.0.1",
            "1.2.3.4.5",
            "999.1.1.1",
            "fe80::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
            "12:30:45",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "123-45-6789",
            "ssn 078051120",
            "0",
            "9",
            "a.b-c_d%e+f",
        ];
        let mut next = xorshift(0x2545_f491_u64);
        for _ in 0..6000 {
            let mut text = String::new();
            for _ in 0..1 + next(6) {
                text.push_str(pieces[next(pieces.len())]);
                if next(3) == 0 {
                    text.push_str(pieces[next(pieces.len())]);
                } else {
                    text.push(' ');
                }
            }
            assert_eq!(gated.detect(&text), ungated.detect(&text), "{text:?}");
        }
        for text in pieces {
            assert_eq!(gated.detect(text), ungated.detect(text), "{text:?}");
        }
    }

    #[test]
    fn cue_scan_is_match_indices() {
        let hays = [
            "",
            "sms",
            "smsmsms",
            "call me, cell: tel.",
            "téléphone téléphone",
            "aaaa",
            "电话 电话电话",
        ];
        let needles = ["sms", "s", "tel", "téléphone", "aa", "电话", "x"];
        for h in hays {
            for n in needles {
                let want: Vec<usize> = h.match_indices(n).map(|(i, _)| i).collect();
                assert_eq!(occurrences(h, n).collect::<Vec<_>>(), want, "{h:?} {n:?}");
            }
            assert_eq!(lower(h), h.to_lowercase());
        }
        assert_eq!(lower("Call ME"), "call me");
        assert_eq!(lower("TÉL"), "TÉL".to_lowercase());
    }

    fn found(engine: &Engine, text: &str) -> Vec<(String, String)> {
        engine
            .detect(text)
            .into_iter()
            .map(|d| (d.kind, text[d.start..d.end].to_string()))
            .collect()
    }

    #[test]
    fn builtins_find_values_and_skip_look_alikes() {
        let e = Engine::new(&EngineSpec::builtins()).unwrap();
        // (text, expected (type, value) list)
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "mail john.doe+x@example.co.uk now",
                &[("email", "john.doe+x@example.co.uk")],
            ),
            ("call +1 (415) 555-0132 today", &[("phone", "+1 (415) 555-0132")]),
            ("call (415) 555-0132.", &[("phone", "(415) 555-0132")]),
            ("(or +1 (415) 555-0132)", &[("phone", "+1 (415) 555-0132")]),
            ("415.555.0132", &[("phone", "415.555.0132")]),
            ("phone: 4155550132", &[("phone", "4155550132")]),
            ("id 4155550132", &[]),
            ("uk +44 20 7183 8750 ok", &[("phone", "+44 20 7183 8750")]),
            ("de +49 (30) 1234-5678", &[("phone", "+49 (30) 1234-5678")]),
            ("fr +33612345678", &[("phone", "+33612345678")]),
            ("card 4111 1111 1111 1111 exp", &[("card", "4111 1111 1111 1111")]),
            ("card 4111-1111-1111-1112", &[]),
            ("4468 5072 6241 7656", &[]), // fails Luhn; its last 12 digits must not pass as Maestro
            ("ssn 123-45-6789-1234", &[]),
            ("amex 3782 822463 10005", &[("card", "3782 822463 10005")]),
            ("ssn 123-45-6789", &[("ssn", "123-45-6789")]),
            ("ssn 666-45-6789", &[]),
            ("my ssn is 123456789", &[("ssn", "123456789")]),
            ("order 123456789", &[]),
            (
                "iban DE89 3704 0044 0532 0130 00 thanks",
                &[("iban", "DE89 3704 0044 0532 0130 00")],
            ),
            ("iban DE89 3704 0044 0532 0130 01", &[]),
            // The first candidate's greedy match runs into the second value (found by proptest).
            (
                "DE89 3704 0044 0532 0130 00 DE89 3704 0044 0532 0130 00",
                &[
                    ("iban", "DE89 3704 0044 0532 0130 00"),
                    ("iban", "DE89 3704 0044 0532 0130 00"),
                ],
            ),
            ("host 192.168.1.20 up", &[("ip", "192.168.1.20")]),
            ("v1.2.3.4.5 and 999.1.1.1", &[]),
            ("tel +34 150.73.11.45", &[("phone", "+34 150.73.11.45")]),
            ("ip 2001:db8::8a2e:370:7334", &[("ip", "2001:db8::8a2e:370:7334")]),
            ("at 10:30:00 std::vector", &[]),
            ("date 2024-01-15 amount $1,234.56", &[]),
            ("uuid 123e4567-e89b-12d3-a456-426614174000", &[]),
            (
                "key sk-proj-abcdefghijklmnopqrstuvwxyz012345",
                &[("secret", "sk-proj-abcdefghijklmnopqrstuvwxyz012345")],
            ),
            ("aws AKIAIOSFODNN7EXAMPLE", &[("secret", "AKIAIOSFODNN7EXAMPLE")]),
            (
                "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                &[("secret", "ghp_0123456789abcdefghijklmnopqrstuvwxyz")],
            ),
            (
                "xoxb-1234567890-abcdefghij",
                &[("secret", "xoxb-1234567890-abcdefghij")],
            ),
            ("password=hunter2hunter2", &[("secret", "hunter2hunter2")]),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-x",
                &[("secret", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-x")],
            ),
            (
                "k: -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- end",
                &[(
                    "secret",
                    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
                )],
            ),
        ];
        for (text, want) in cases {
            let want: Vec<(String, String)> =
                want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(found(&e, text), want, "{text}");
        }
    }

    /// Context decides what a phone-like shape means: cue words raise a shape the strict check rejects
    /// over the threshold; "not a phone" words sink even a strict one; with no cue the strict check
    /// stands.
    #[test]
    fn context_scores_phone_candidates() {
        let e = Engine::new(&EngineSpec::builtins()).unwrap();
        let phone = |v: &str| vec![("phone".to_string(), v.to_string())];
        let cases: &[(&str, Vec<(String, String)>)] = &[
            ("phone: 123.456.7890", phone("123.456.7890")),
            ("Call me at 987.654.3210 after six.", phone("987.654.3210")),
            ("reach me at 100.200.3000", phone("100.200.3000")),
            ("Telefon: 123.456.7899", phone("123.456.7899")),
            ("电话：120.340.5600", phone("120.340.5600")),
            ("Телефон: 133.444.5555", phone("133.444.5555")),
            ("Upgrade to version 123.456.7890 now", vec![]),
            ("Build 100.200.3000 fixed it", vec![]),
            ("The SKU is 987.654.3210.", vec![]),
            ("Order 415.555.0132 shipped", vec![]),
            ("during 123.456.7890 runs", vec![]),
            ("at the hotel 123.456.7890", vec![]),
            // No cue: the strict North American check alone decides.
            ("415.555.0132", phone("415.555.0132")),
            ("123.456.7890", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(&found(&e, text), want, "{text}");
        }
    }

    #[test]
    fn evasion_is_folded_and_the_original_is_redacted() {
        let e = Engine::new(&EngineSpec::builtins()).unwrap();
        let text = "card ４１１１ １１１１ １１１１ １１１１ and j\u{200B}ohn@example.com";
        let got = found(&e, text);
        assert_eq!(
            got[0],
            ("card".into(), "４１１１ １１１１ １１１１ １１１１".into())
        );
        assert_eq!(got[1], ("email".into(), "j\u{200B}ohn@example.com".into()));
        assert_eq!(e.detect(text)[0].canonical, "4111111111111111");
    }

    #[test]
    fn custom_regexes_and_terms() {
        let spec = EngineSpec {
            builtins: vec![Builtin::Email],
            regexes: vec![("employee_id".into(), r"EMP-\d{6}".into())],
            terms: vec![(
                "project".into(),
                vec!["Falcon".into(), "Blue Harbor".into()],
                false,
            )],
        };
        let e = Engine::new(&spec).unwrap();
        assert_eq!(e.max_term_words, 2);
        assert_eq!(
            found(
                &e,
                "EMP-123456 works on project falcon and blue  harbor, not Falconry"
            ),
            vec![
                ("employee_id".into(), "EMP-123456".into()),
                ("project".into(), "falcon".into()),
                ("project".into(), "blue  harbor".into()),
            ]
        );
        let bad = EngineSpec {
            regexes: vec![("a".into(), "x".into()), ("b".into(), "(".into())],
            ..Default::default()
        };
        assert_eq!(Engine::new(&bad).unwrap_err().index, 1);
        let empty = EngineSpec {
            regexes: vec![("a".into(), "x*".into())],
            ..Default::default()
        };
        assert!(Engine::new(&empty).is_err());
    }

    /// What a user pattern means on the small engine: `\d`, `\s` and `(?i)` still reach other scripts'
    /// digits, Unicode spaces and non-ASCII letters (the text is folded first, and a caseless pattern's
    /// letters are expanded to both cases), while `\w` and `\b` are ASCII (`Ärger` has no `\b` before it)
    /// and `\p{..}` classes are refused. The README's PII section says the same.
    #[test]
    fn user_patterns_on_the_small_engine() {
        let spec = |p: &str| EngineSpec {
            regexes: vec![("x".into(), p.into())],
            ..Default::default()
        };
        let cases: &[(&str, &str, &[&str])] = &[
            (r"ID-\d{3}", "id ID-٣٤٥ and ID-12", &["ID-٣٤٥"]),
            (r"(?i)müller", "Herr MÜLLER kommt", &["MÜLLER"]),
            (r"a\sb", "a\u{3000}b", &["a\u{3000}b"]),
            (r"(?i)éclair", "un ÉCLAIR", &["ÉCLAIR"]),
            (r"Ärger\w+", "viel Ärgernis heute", &["Ärgernis"]),
            (r"\bÄrger\w+\b", "viel Ärgernis heute", &[]),
            (r"\bÄrger", "Ärger", &[]),
            (
                r"(?i)\bproject\s+falcon\b",
                "the PROJECT  Falcon plan",
                &["PROJECT  Falcon"],
            ),
        ];
        for (pattern, text, want) in cases {
            let e = Engine::new(&spec(pattern)).unwrap();
            let got: Vec<String> = found(&e, text).into_iter().map(|(_, v)| v).collect();
            assert_eq!(got, *want, "{pattern}");
        }
        for pattern in [r"\p{L}+", r"\P{N}", r"\p{Greek}"] {
            let err = Engine::new(&spec(pattern)).unwrap_err();
            assert_eq!((err.what, err.index), (EngineErrorKind::Regex, 0), "{pattern}");
        }
    }

    /// Term lists as the `regex` crate read them before (each term `\b`-edged where it starts or
    /// ends with a word character, `\s+` between its words, its letters folded as classes of both
    /// cases): the hand matcher finds the same, on texts of letters whose case forms fold apart.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn terms_find_what_the_regex_crate_found() {
        let old = |terms: &[String], nocase: bool| {
            let alts: Vec<String> = terms
                .iter()
                .map(|t| {
                    let folded = fold(t.trim()).text;
                    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    let lead = if word(folded.chars().next()) { r"\b" } else { "" };
                    let trail = if word(folded.chars().last()) { r"\b" } else { "" };
                    let body: Vec<String> = t
                        .split(char::is_whitespace)
                        .map(|w| fold_pattern(&regex::escape(w), nocase))
                        .filter(|w| !w.is_empty())
                        .collect();
                    format!("{lead}{}{trail}", body.join(r"\s+"))
                })
                .collect();
            regex::Regex::new(&format!(
                "{}(?:{})",
                if nocase { "(?i)" } else { "" },
                alts.join("|")
            ))
            .unwrap()
        };
        let alphabet: Vec<char> = "aAbмМoOоОσΣςπΠé _-.\u{3000}".chars().collect();
        let mut next = xorshift(0x9e37_79b9_u64);
        let word = |next: &mut dyn FnMut(usize) -> usize, len: usize| -> String {
            (0..len).map(|_| alphabet[next(alphabet.len())]).collect()
        };
        let (mut compared, mut matched) = (0, 0);
        for _ in 0..4000 {
            let count = 1 + next(3);
            let terms: Vec<String> = (0..count)
                .map(|_| {
                    let len = 1 + next(4);
                    word(&mut next, len)
                })
                .collect();
            let nocase = next(2) == 0;
            let len = next(30);
            let text = word(&mut next, len);
            let (Ok(ours), re) = (Terms::new(&terms, nocase), old(&terms, nocase)) else {
                continue;
            };
            let text = fold(&text).text;
            let mut want = Vec::new();
            let mut pos = 0;
            while let Some(m) = re.find_at(&text, pos) {
                want.push(m.range());
                pos = ceil_char(&text, m.start() + 1);
            }
            let mut got = Vec::new();
            let mut pos = 0;
            while let Some(r) = ours.find_at(&text, pos) {
                pos = ceil_char(&text, r.start + 1);
                got.push(r);
            }
            assert_eq!(got, want, "{terms:?} nocase={nocase} in {text:?}");
            compared += 1;
            matched += usize::from(!want.is_empty());
        }
        assert!(
            compared > 3000 && matched > 200,
            "{compared} compared, {matched} with matches"
        );
    }

    /// Patterns and terms with letters that folding changes (Greek and Cyrillic look-alikes, other
    /// digits) match the folded text: the user's `(?i)ΣΟΦΙΑ` did not match "σοφια" while only the text
    /// was folded (σoφia against ΣΟΦΙΑ).
    #[test]
    fn user_patterns_and_terms_fold_like_the_text() {
        let regex = |p: &str| EngineSpec {
            regexes: vec![("x".into(), p.into())],
            ..Default::default()
        };
        let terms = |t: &str, case_sensitive| EngineSpec {
            terms: vec![("x".into(), vec![t.into()], case_sensitive)],
            ..Default::default()
        };
        let cases: Vec<(EngineSpec, &str, Vec<&str>)> = vec![
            (
                regex("(?i)ΣΟΦΙΑ"),
                "η σοφια, η ΣΟΦΙΑ, η Σοφια",
                vec!["σοφια", "ΣΟΦΙΑ", "Σοφια"],
            ),
            (regex("ΣΟΦΙΑ"), "σοφια ΣΟΦΙΑ", vec!["ΣΟΦΙΑ"]),
            (regex(r"(?i)Москва"), "МОСКВА и москва", vec!["МОСКВА", "москва"]),
            (regex("Москва"), "МОСКВА и Москва", vec!["Москва"]),
            (regex("(?i)[ΑΒ]{2}-٣"), "κωδ. αβ-3 ok", vec!["αβ-3"]),
            (regex("[Α-Ω]{3}"), "ΑΒΓ", vec!["ΑΒΓ"]),
            (
                terms("Москва", false),
                "в МОСКВА, москва",
                vec!["МОСКВА", "москва"],
            ),
            (
                terms("Σοφία Παππά", false),
                "η ΣΟΦΊΑ  ΠΑΠΠΆ ήρθε",
                vec!["ΣΟΦΊΑ  ΠΑΠΠΆ"],
            ),
            (terms("Москва", true), "МОСКВА и Москва", vec!["Москва"]),
        ];
        for (spec, text, want) in cases {
            let e = Engine::new(&spec).unwrap();
            let got: Vec<String> = found(&e, text).into_iter().map(|(_, v)| v).collect();
            assert_eq!(got, want, "{:?} {:?}", spec.regexes, spec.terms);
        }
    }

    #[test]
    fn overlaps_keep_the_best() {
        let d = |kind: &str, start, end, priority| Detection {
            kind: kind.into(),
            start,
            end,
            priority,
            canonical: String::new(),
        };
        let kept = resolve_overlaps(vec![
            d("phone", 0, 10, 40),
            d("card", 2, 20, 70),
            d("x", 20, 22, 1),
        ]);
        assert_eq!(
            kept.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>(),
            vec!["card", "x"]
        );
    }
}
