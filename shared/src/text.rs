//! Text folding before matching, so simple evasion does not hide a value or an attack.
//!
//! [`fold`] removes invisible characters (zero-width, bidi controls, soft hyphen, Unicode tags),
//! maps full-width ASCII, other scripts' decimal digits, Unicode spaces and dashes, and common
//! Cyrillic/Greek look-alikes to plain ASCII. It keeps, for every byte of the folded text, where its
//! character came from, so a match found in the folded text maps back to the exact original range
//! (which is what gets redacted). Case is kept: matchers decide about case themselves.

use std::ops::Range;

/// Folded text with a map back to the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub text: String,
    /// For each byte of `text`: the original byte range of the character it came from. `None` when
    /// nothing changed (the common, all-plain case), so the map costs nothing there.
    map: Option<Vec<(u32, u32)>>,
}

impl Folded {
    /// The original byte range of folded range `range`, including any removed invisible characters
    /// inside it. Out-of-range input is clamped.
    pub fn original_range(&self, range: Range<usize>) -> Range<usize> {
        let Some(map) = &self.map else {
            return range;
        };
        if range.start >= range.end {
            let at = map
                .get(range.start)
                .map_or_else(|| map.last().map_or(0, |m| m.1 as usize), |m| m.0 as usize);
            return at..at;
        }
        let start = map.get(range.start).map_or(0, |m| m.0 as usize);
        let end = map
            .get(range.end - 1)
            .or(map.last())
            .map_or(start, |m| m.1 as usize);
        start..end.max(start)
    }

    /// True when folding changed nothing.
    pub fn is_identity(&self) -> bool {
        self.map.is_none()
    }
}

/// What one character folds to.
enum Fold {
    Keep,
    Drop,
    To(char),
}

/// What [`fold`] makes of one character: itself, its look-alike, or `None` when it drops it.
pub(crate) fn fold_one(c: char) -> Option<char> {
    match fold_char(c) {
        Fold::Keep => Some(c),
        Fold::Drop => None,
        Fold::To(t) => Some(t),
    }
}

fn fold_char(c: char) -> Fold {
    // Nothing ASCII folds (every range and look-alike below is above U+009F).
    if c.is_ascii() {
        return Fold::Keep;
    }
    let u = c as u32;
    match u {
        // Invisible: zero-width, joiners, bidi marks and embeddings, word joiner, BOM, soft hyphen,
        // Mongolian vowel separator, Unicode tag characters.
        0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0xFEFF
        | 0x00AD
        | 0x180E
        | 0xE0000..=0xE007F => Fold::Drop,
        // Full-width ASCII.
        0xFF01..=0xFF5E => char::from_u32(u - 0xFEE0).map_or(Fold::Keep, Fold::To),
        // Spaces.
        0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Fold::To(' '),
        // Dashes and minus.
        0x2010..=0x2015 | 0x2212 | 0xFE63 => Fold::To('-'),
        // Decimal digits of other scripts, and mathematical digits.
        0x0660..=0x0669 => digit(u - 0x0660),
        0x06F0..=0x06F9 => digit(u - 0x06F0),
        0x0966..=0x096F => digit(u - 0x0966),
        0x09E6..=0x09EF => digit(u - 0x09E6),
        0x1D7CE..=0x1D7FF => digit((u - 0x1D7CE) % 10),
        // Circled and parenthesised digits are left alone: they are rarely used to hide numbers.
        _ => match homoglyph(c) {
            Some(a) => Fold::To(a),
            None => Fold::Keep,
        },
    }
}

fn digit(d: u32) -> Fold {
    char::from_digit(d, 10).map_or(Fold::Keep, Fold::To)
}

/// Cyrillic and Greek letters that look like Latin ones.
fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' => 'y',
        'х' => 'x',
        'і' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'һ' => 'h',
        'ԁ' => 'd',
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'І' => 'I',
        'ο' => 'o',
        'α' => 'a',
        'ν' => 'v',
        'ι' => 'i',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        _ => return None,
    })
}

/// Folds `s` for matching; see the module docs.
pub fn fold(s: &str) -> Folded {
    // Plain ASCII has nothing to fold: no copy of a map.
    if s.is_ascii() {
        return Folded {
            text: s.to_string(),
            map: None,
        };
    }
    let mut text = String::with_capacity(s.len());
    let mut map = Vec::with_capacity(s.len());
    let mut changed = false;
    for (i, c) in s.char_indices() {
        let span = (i as u32, (i + c.len_utf8()) as u32);
        let out = match fold_char(c) {
            Fold::Keep => c,
            Fold::Drop => {
                changed = true;
                continue;
            }
            Fold::To(to) => {
                changed = true;
                to
            }
        };
        text.push(out);
        map.extend(std::iter::repeat_n(span, out.len_utf8()));
    }
    if !changed {
        return Folded { text, map: None };
    }
    Folded { text, map: Some(map) }
}

/// `fold(s).text` without the offset map: for matching that never maps back (the injection views).
pub fn fold_text(s: &str) -> String {
    let mut text = String::with_capacity(s.len());
    for c in s.chars() {
        match fold_char(c) {
            Fold::Keep => text.push(c),
            Fold::Drop => {}
            Fold::To(to) => text.push(to),
        }
    }
    text
}

/// `pattern` (a regex) with its literal characters folded as [`fold`] folds text, so a pattern
/// written with characters folding changes (Greek or Cyrillic look-alikes, other scripts' digits,
/// full-width forms, Unicode spaces and dashes, invisible characters) still matches the folded text
/// it runs on: `ΣΟΦΙΑ` becomes `ΣOΦIA`, as the text `ΣΟΦΙΑ` does.
///
/// With `nocase` (the pattern is case-insensitive), a letter becomes the class of what its capital
/// and small forms fold to, because the look-alike table is not the same for both cases: `М` folds to
/// `M` but `м` stays, so `(?i)М` becomes `(?i)[Mм]`. A class range is kept and gets what its
/// characters fold to added (`[Α-Γ]` becomes `[Α-ΓAB]`). Escapes (`\x{..}`, `\p{..}`, `\.`) and group
/// names are kept as written, so an escaped look-alike never matches folded text. ASCII patterns come
/// back unchanged.
pub fn fold_pattern(pattern: &str, nocase: bool) -> String {
    if pattern.is_ascii() {
        return pattern.to_string();
    }
    let cs: Vec<char> = pattern.chars().collect();
    let at = |i: usize| cs.get(i).copied();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = 0usize;
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = at(i + 1) {
                    out.push(n);
                    i += 1;
                    if matches!(n, 'p' | 'P' | 'x' | 'u' | 'U') && at(i + 1) == Some('{') {
                        while let Some(m) = at(i + 1) {
                            out.push(m);
                            i += 1;
                            if m == '}' {
                                break;
                            }
                        }
                    }
                }
            }
            '[' => {
                in_class += 1;
                out.push(c);
            }
            ']' if in_class > 0 => {
                in_class -= 1;
                out.push(c);
            }
            // A class range: kept, plus what the characters in it fold to (`[Α-Ω]` also matches the
            // `A` that `Α` folds to). Ranges wider than `MAX_FOLDED_RANGE` are kept as written only.
            lo if in_class > 0
                && at(i + 1) == Some('-')
                && at(i + 2).is_some_and(|hi| hi != ']' && hi != '\\' && hi != '[') =>
            {
                let hi = at(i + 2).unwrap_or(lo);
                out.push(lo);
                out.push('-');
                out.push(hi);
                if !hi.is_ascii() && (hi as u32).saturating_sub(lo as u32) <= MAX_FOLDED_RANGE {
                    let mut seen = String::new();
                    for ch in (lo..=hi).filter(|ch| !ch.is_ascii()) {
                        let mut one = String::new();
                        push_folded_literal(&mut one, ch, nocase, true);
                        for img in one.chars() {
                            if !seen.contains(img) && img != ch {
                                seen.push(img);
                            }
                        }
                    }
                    for img in seen.chars() {
                        push_escaped(&mut out, img);
                    }
                }
                i += 2;
            }
            // Group names are kept: `(?P<name>` and `(?<name>`.
            '(' if in_class == 0
                && at(i + 1) == Some('?')
                && (at(i + 2) == Some('<') || at(i + 2) == Some('P')) =>
            {
                while let Some(m) = at(i) {
                    out.push(m);
                    if m == '>' {
                        break;
                    }
                    i += 1;
                }
            }
            c if c.is_ascii() => out.push(c),
            c => push_folded_literal(&mut out, c, nocase, in_class > 0),
        }
        i += 1;
    }
    out
}

/// One literal character of a pattern, folded (see [`fold_pattern`]).
fn push_folded_literal(out: &mut String, c: char, nocase: bool, in_class: bool) {
    let one = |v: char| match fold_char(v) {
        Fold::Keep => Some(v),
        Fold::Drop => None,
        Fold::To(t) => Some(t),
    };
    let mut images: Vec<char> = Vec::with_capacity(3);
    let mut forms = vec![c];
    if nocase {
        for case in [c.to_lowercase().collect::<Vec<_>>(), c.to_uppercase().collect()] {
            if let [v] = case.as_slice() {
                forms.push(*v);
            }
        }
    }
    for f in forms {
        if let Some(img) = one(f) {
            if !images.contains(&img) {
                images.push(img);
            }
        }
    }
    let class = images.len() > 1 && !in_class;
    if class {
        out.push('[');
    }
    for img in images {
        push_escaped(out, img);
    }
    if class {
        out.push(']');
    }
}

/// Ranges up to this many characters get their folded forms added (see [`fold_pattern`]).
const MAX_FOLDED_RANGE: u32 = 0x4000;

/// `c` as a literal that means itself anywhere in a pattern, in a class too and with `(?x)`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        ' ' => out.push_str(r"\x20"),
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' | '#' | '&'
        | '-' | '~' => {
            out.push('\\');
            out.push(c);
        }
        _ => out.push(c),
    }
}

/// Is `b` a word byte as `regex`'s ASCII `\w` and `\b` (and `regex_lite`'s) read it: an ASCII letter,
/// digit or `_`? `None` (before the start, past the end) is not.
pub fn is_word_byte(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// `s` cut to at most `max` characters (not bytes), so the cut never splits a character.
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s.get(..cut).unwrap_or(s),
        None => s,
    }
}

/// `message` as one log line: CR, LF and every other control character escaped (`\r`, `\n`,
/// `\u{1b}`), so text a client sent (a model name, a path) cannot end a log line and forge the next.
pub fn one_line(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Appends `v` as `format!("{v:.2}")` writes it (two decimals, exact ties to even), without the
/// formatting machinery for the usual case: a finite value under a million. The product of an `f32`
/// and 100 is exact in an `f64` (24 + 7 significant bits), so its fraction decides the rounding
/// exactly as the decimal expansion does.
pub fn push_fixed2(out: &mut String, v: f32) {
    if !v.is_finite() || v.abs() >= 1e6 {
        out.push_str(&format!("{v:.2}"));
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let t = f64::from(v.abs()) * 100.0;
    let whole = t.floor();
    let frac = t - whole;
    // `whole` is under 1e8: exact in a u64.
    let mut n = whole as u64;
    if frac > 0.5 || (frac == 0.5 && n % 2 == 1) {
        n += 1;
    }
    let cents = n % 100;
    out.push_str(&(n / 100).to_string());
    out.push('.');
    out.push(char::from(b'0' + (cents / 10) as u8));
    out.push(char::from(b'0' + (cents % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `push_fixed2` writes what `{:.2}` writes: ties (0.125, 2.675), values just around them, signs,
    /// negative zero, tiny and large values, and a sweep of every score-like value.
    #[test]
    fn push_fixed2_is_format() {
        let mut values: Vec<f32> = vec![
            0.0,
            -0.0,
            0.005,
            0.015,
            0.125,
            0.375,
            0.625,
            0.875,
            2.675,
            1.005,
            -0.125,
            -0.001,
            0.995,
            0.9951,
            0.99499,
            1.0,
            99.995,
            12_345.678,
            999_999.9,
            1e6,
            -1e7,
            1e-30,
            f32::MIN_POSITIVE,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::EPSILON,
        ];
        let mut x: u32 = 0x3f80_0000;
        for i in 0..200_000u32 {
            values.push(i as f32 / 100_000.0);
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(x);
            if v.is_finite() && v.abs() < 1e7 {
                values.push(v);
            }
        }
        for v in values {
            let mut out = String::new();
            push_fixed2(&mut out, v);
            assert_eq!(out, format!("{v:.2}"), "{v:e} ({:#x})", v.to_bits());
        }
    }

    #[test]
    fn folds_evasion_and_maps_back() {
        let cases = [
            ("plain text 123", "plain text 123"),
            ("４１１１\u{200B}１１１１", "41111111"),
            ("j\u{200D}o\u{00AD}hn@exa\u{FEFF}mple.com", "john@example.com"),
            ("ignоre previous", "ignore previous"), // Cyrillic о
            ("555\u{2011}0100", "555-0100"),
            ("١٢٣", "123"),
            ("a\u{00A0}b", "a b"),
            ("日本 ok", "日本 ok"),
        ];
        for (input, want) in cases {
            assert_eq!(fold(input).text, want, "{input:?}");
            assert_eq!(fold_text(input), want, "{input:?}");
        }
        let s = "mail: j\u{200B}ohn@example.com!";
        let f = fold(s);
        let start = f.text.find("john").unwrap();
        let end = start + "john@example.com".len();
        let r = f.original_range(start..end);
        assert_eq!(&s[r], "j\u{200B}ohn@example.com");
        assert!(fold("ascii").is_identity());
        assert!(fold("日本").is_identity());
        assert_eq!(fold("ab").original_range(0..2), 0..2);
        let g = fold("x\u{200B}");
        assert_eq!(g.original_range(1..1), 1..1);
        assert_eq!(g.original_range(5..9), 0..1);
    }

    /// Literals fold like text; escapes, group names and range ends stay as written.
    #[test]
    fn folds_pattern_literals() {
        let cases = [
            // (pattern, nocase, folded)
            (r"EMP-\d{6}", false, r"EMP-\d{6}"),
            ("ΣΟΦΙΑ", false, "ΣOΦIA"),
            ("(?i)Μ", true, "(?i)[Mμ]"),
            ("(?i)М", true, "(?i)[Mм]"),
            ("(?i)ο", true, "(?i)[oO]"),
            ("ι", false, "i"),
            ("[ΑΒ]x", false, "[AB]x"),
            ("(?i)[Μ]", true, "(?i)[Mμ]"),
            ("[Α-Γ]", false, "[Α-ΓAB]"),
            ("[^Α-Γ]", false, "[^Α-ΓAB]"),
            ("(?i)[Α-Β]", true, "(?i)[Α-ΒAaBβ]"),
            ("[a-c]", false, "[a-c]"),
            (r"\x{391}Α", false, r"\x{391}A"),
            (r"\p{Greek}Α", false, r"\p{Greek}A"),
            ("(?P<νame>Α)", false, "(?P<νame>A)"),
            ("(?<νame>Α)", false, "(?<νame>A)"),
            ("a\u{200B}b", false, "ab"),
            ("５５５\u{2011}０１", false, r"555\-01"),
            ("a\u{00A0}b", false, r"a\x20b"),
            ("（x）", false, r"\(x\)"),
            ("٣", false, "3"),
            ("日本", true, "日本"),
        ];
        for (pattern, nocase, want) in cases {
            assert_eq!(fold_pattern(pattern, nocase), want, "{pattern:?}");
        }
    }

    #[test]
    fn truncates_on_characters() {
        let cases = [
            ("hello", 3, "hel"),
            ("hello", 5, "hello"),
            ("hello", 9, "hello"),
            ("héllo", 2, "hé"),
            ("🦀🦀🦀", 1, "🦀"),
            ("", 0, ""),
            ("abc", 0, ""),
        ];
        for (s, max, want) in cases {
            assert_eq!(truncate_chars(s, max), want, "{s} {max}");
        }
    }

    #[test]
    fn log_lines_stay_one_line() {
        for (input, want) in [
            ("plain text, ünï", "plain text, ünï"),
            ("gpt\r\nx-evil: 1", "gpt\\r\\nx-evil: 1"),
            ("a\tb\u{1b}[31m\u{85}", "a\\tb\\u{1b}[31m\\u{85}"),
        ] {
            assert_eq!(one_line(input), want);
        }
        assert!(matches!(one_line("ok"), std::borrow::Cow::Borrowed(_)));
    }
}
