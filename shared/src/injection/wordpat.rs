//! The matcher of the words-view rules (`rules::WORDS`, `rules::DAMPENERS`): their small pattern
//! language, matched by backtracking, with no regex engine in the module.
//!
//! The language, as the rule tables write it: ASCII bytes match themselves; `\b` is an ASCII word
//! boundary; `(a|b c)` groups alternatives (nested groups too); `?` makes the group or byte before it
//! optional; `~N` (N ≤ 99) stands for "up to N more words", that is `(?: [a-z0-9]+){0,N}`. A pattern
//! means exactly what the same text means to the `regex` crate with Unicode off (`rules::expand` then
//! `regex`; the native tests compare the two on every rule).
//!
//! Why by hand: the words view is lower-case ASCII words and single spaces, every rule starts at a
//! word boundary and its alternatives are words, so a match is tried only where a word starts with
//! one of the pattern's first bytes, and a try fails within a word or two. Every step of a try
//! consumes a byte or passes a word boundary, and a gap takes at most N words, so a try's cost is
//! bounded by the pattern, not the text: matching stays linear in the text.

use crate::text::is_word_byte;
use std::fmt;

/// A rule that does not parse: the pattern and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Byte(u8),
    /// Two or more bytes in a row (what `Byte`s in a row would match, in one step).
    Lit(Vec<u8>),
    Boundary,
    /// Alternatives, each with the byte it must start with (`None`: it may start otherwise).
    Group(Vec<(Option<u8>, Vec<Node>)>),
    Optional(Box<Node>),
    /// Up to this many ` [a-z0-9]+` words; `whole` when a space or `\b` follows in the pattern, so
    /// only whole words can be taken (a word cut short could not go on).
    Gap {
        n: u8,
        whole: bool,
    },
}

/// A compiled words-view pattern.
#[derive(Debug, Clone)]
pub struct WordPattern {
    seq: Vec<Node>,
    /// Per byte: can a match start there (after the pattern's leading `\b`s)?
    first: [bool; 256],
    /// The pattern can match the empty string at a position where its leading assertions hold.
    nullable: bool,
}

impl WordPattern {
    pub fn new(pattern: &str) -> Result<WordPattern, PatternError> {
        let bytes = pattern.as_bytes();
        let mut p = Parser { bytes, pos: 0 };
        let alts = p.alternatives()?;
        if p.pos != bytes.len() {
            return Err(PatternError(format!(
                "unbalanced `)` at byte {} of `{pattern}`",
                p.pos
            )));
        }
        let seq = match <[Vec<Node>; 1]>::try_from(alts) {
            Ok([seq]) => seq,
            Err(alts) => vec![group(alts)],
        };
        let mut first = [false; 256];
        let nullable = first_bytes(&seq, &mut first);
        Ok(WordPattern { seq, first, nullable })
    }

    /// Does the pattern match anywhere in `text`?
    pub fn is_match(&self, text: &str) -> bool {
        let t = text.as_bytes();
        (0..=t.len()).any(|pos| {
            let can_start = match t.get(pos) {
                Some(b) => self.first.get(usize::from(*b)).copied().unwrap_or(false),
                None => false,
            };
            (can_start || self.nullable) && matches(&self.seq, None, t, pos)
        })
    }

    /// Does a match start at byte `pos` of `text`?
    pub fn matches_at(&self, text: &str, pos: usize) -> bool {
        matches(&self.seq, None, text.as_bytes(), pos)
    }

    /// The words a match can start with, when the pattern says: it starts with `\b`, and every way
    /// through its beginning spells a word (ASCII letters and digits) followed by a space, `\b` or
    /// `~N`. Then a match starts only where one of these is a whole word of the text. `None` when
    /// the beginning is anything else, or spells more than `LIMIT` words.
    pub fn first_words(&self) -> Option<Vec<String>> {
        const LIMIT: usize = 256;
        if self.seq.first() != Some(&Node::Boundary) {
            return None;
        }
        let mut out = Vec::new();
        let rest = self.seq.get(1..).unwrap_or_default();
        spell(rest, None, &mut Vec::new(), &mut out, LIMIT).then_some(())?;
        out.sort();
        out.dedup();
        Some(out)
    }
}

/// Adds to `out` every word the paths through `nodes` (then `k`) spell up to the word's end; false
/// when a path ends its word any other way, or when there are more than `limit` paths.
fn spell(
    nodes: &[Node],
    k: Option<&Cont<'_>>,
    word: &mut Vec<u8>,
    out: &mut Vec<String>,
    limit: usize,
) -> bool {
    let Some((node, rest)) = nodes.split_first() else {
        return match k {
            Some(c) => spell(c.nodes, c.next, word, out, limit),
            // The pattern ends inside its first word: the text's word may go on.
            None => false,
        };
    };
    let ends_word = |word: &Vec<u8>, out: &mut Vec<String>| {
        if word.is_empty() || out.len() >= limit {
            return false;
        }
        out.push(String::from_utf8_lossy(word).into_owned());
        true
    };
    match node {
        Node::Byte(b' ') | Node::Boundary => ends_word(word, out),
        // A gap of no words goes on with what follows it; a gap of some starts with a space.
        Node::Gap { .. } => ends_word(word, out) && spell(rest, k, word, out, limit),
        Node::Byte(b) => {
            word.push(*b);
            let ok = spell(rest, k, word, out, limit);
            word.pop();
            ok
        }
        Node::Lit(lit) => {
            // Its bytes up to a space: there the word ends.
            let letters = lit.iter().take_while(|b| **b != b' ').count();
            let before = word.len();
            word.extend(lit.iter().take(letters));
            let ok = if letters < lit.len() {
                ends_word(word, out)
            } else {
                spell(rest, k, word, out, limit)
            };
            word.truncate(before);
            ok
        }
        Node::Group(alts) => {
            let after = Cont { nodes: rest, next: k };
            alts.iter()
                .all(|(_, alt)| spell(alt, Some(&after), word, out, limit))
        }
        Node::Optional(inner) => {
            let after = Cont { nodes: rest, next: k };
            spell(
                std::slice::from_ref(inner.as_ref()),
                Some(&after),
                word,
                out,
                limit,
            ) && spell(rest, k, word, out, limit)
        }
    }
}

/// The rest of the enclosing sequences, innermost first: where to go on when a sequence ends.
struct Cont<'a> {
    nodes: &'a [Node],
    next: Option<&'a Cont<'a>>,
}

fn matches(nodes: &[Node], k: Option<&Cont<'_>>, t: &[u8], pos: usize) -> bool {
    let Some((node, rest)) = nodes.split_first() else {
        return match k {
            None => true,
            Some(c) => matches(c.nodes, c.next, t, pos),
        };
    };
    match node {
        Node::Byte(b) => t.get(pos) == Some(b) && matches(rest, k, t, pos + 1),
        Node::Lit(lit) => {
            t.get(pos..).is_some_and(|r| r.starts_with(lit)) && matches(rest, k, t, pos + lit.len())
        }
        Node::Boundary => is_boundary(t, pos) && matches(rest, k, t, pos),
        Node::Group(alts) => {
            let after = Cont { nodes: rest, next: k };
            let here = t.get(pos);
            alts.iter().any(|(head, alt)| {
                head.is_none_or(|h| here == Some(&h)) && matches(alt, Some(&after), t, pos)
            })
        }
        Node::Optional(inner) => {
            let after = Cont { nodes: rest, next: k };
            matches(std::slice::from_ref(inner.as_ref()), Some(&after), t, pos) || matches(rest, k, t, pos)
        }
        Node::Gap { n, whole } => gap(*n, *whole, rest, k, t, pos),
    }
}

/// `(?: [a-z0-9]+){0,n}` then `rest`: each word may end at any of its bytes, as in the regex (only at
/// its last when `whole`).
fn gap(n: u8, whole: bool, rest: &[Node], k: Option<&Cont<'_>>, t: &[u8], pos: usize) -> bool {
    if matches(rest, k, t, pos) {
        return true;
    }
    if n == 0 || t.get(pos) != Some(&b' ') {
        return false;
    }
    let start = pos + 1;
    let run = t
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    let shortest = if whole { run.max(1) } else { 1 };
    (shortest..=run).any(|len| gap(n - 1, whole, rest, k, t, start + len))
}

fn is_boundary(t: &[u8], pos: usize) -> bool {
    let before = pos.checked_sub(1).and_then(|i| t.get(i));
    is_word_byte(before) != is_word_byte(t.get(pos))
}

/// Adds to `first` the bytes a match of `seq` can begin with; true when `seq` can match empty.
fn first_bytes(seq: &[Node], first: &mut [bool; 256]) -> bool {
    for node in seq {
        let nullable = match node {
            Node::Byte(b) => {
                if let Some(slot) = first.get_mut(usize::from(*b)) {
                    *slot = true;
                }
                false
            }
            Node::Lit(lit) => {
                if let Some(slot) = lit.first().and_then(|b| first.get_mut(usize::from(*b))) {
                    *slot = true;
                }
                false
            }
            Node::Boundary => true,
            Node::Group(alts) => alts
                .iter()
                .fold(false, |any, (_, alt)| first_bytes(alt, first) | any),
            Node::Optional(inner) => {
                first_bytes(std::slice::from_ref(inner.as_ref()), first);
                true
            }
            Node::Gap { .. } => {
                if let Some(slot) = first.get_mut(usize::from(b' ')) {
                    *slot = true;
                }
                true
            }
        };
        if !nullable {
            return false;
        }
    }
    true
}

/// A group of alternatives, each with its first byte when it must start with one.
fn group(alts: Vec<Vec<Node>>) -> Node {
    Node::Group(
        alts.into_iter()
            .map(|alt| {
                let head = match alt.first() {
                    Some(Node::Byte(b)) => Some(*b),
                    Some(Node::Lit(lit)) => lit.first().copied(),
                    _ => None,
                };
                (head, alt)
            })
            .collect(),
    )
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> PatternError {
        PatternError(format!(
            "{what} at byte {} of `{}`",
            self.pos,
            String::from_utf8_lossy(self.bytes)
        ))
    }

    /// `a|b|c` up to a `)` or the end (not consumed).
    fn alternatives(&mut self) -> Result<Vec<Vec<Node>>, PatternError> {
        let mut alts = vec![self.sequence()?];
        while self.bytes.get(self.pos) == Some(&b'|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, PatternError> {
        let mut seq = Vec::new();
        while let Some(&b) = self.bytes.get(self.pos) {
            let node = match b {
                b'|' | b')' => break,
                b'(' => {
                    self.pos += 1;
                    let alts = self.alternatives()?;
                    if self.bytes.get(self.pos) != Some(&b')') {
                        return Err(self.error("unclosed `(`"));
                    }
                    self.pos += 1;
                    group(alts)
                }
                b'\\' => {
                    if self.bytes.get(self.pos + 1) != Some(&b'b') {
                        return Err(self.error("only `\\b` is an escape"));
                    }
                    self.pos += 2;
                    Node::Boundary
                }
                b'~' => {
                    // One or two digits, as `rules::expand` reads them.
                    let digits: Vec<u8> = self
                        .bytes
                        .get(self.pos + 1..)
                        .unwrap_or_default()
                        .iter()
                        .take(2)
                        .take_while(|d| d.is_ascii_digit())
                        .map(|d| d - b'0')
                        .collect();
                    if digits.is_empty() {
                        return Err(self.error("`~` needs a word count"));
                    }
                    self.pos += 1 + digits.len();
                    let follows = self.bytes.get(self.pos).copied();
                    let whole =
                        follows == Some(b' ') || self.bytes.get(self.pos..self.pos + 2) == Some(&b"\\b"[..]);
                    Node::Gap {
                        n: digits.iter().fold(0, |n, d| n * 10 + d),
                        whole,
                    }
                }
                b'?' => return Err(self.error("`?` with nothing before it")),
                b if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b' ' => {
                    self.pos += 1;
                    Node::Byte(b)
                }
                _ => return Err(self.error("a byte the words view never holds")),
            };
            if self.bytes.get(self.pos) == Some(&b'?') {
                self.pos += 1;
                if matches!(node, Node::Boundary | Node::Gap { .. }) {
                    return Err(self.error("`?` after `\\b` or `~N`"));
                }
                seq.push(Node::Optional(Box::new(node)));
            } else {
                seq.push(node);
            }
        }
        Ok(fuse(seq))
    }
}

/// `seq` with each run of two or more `Byte`s as one `Lit`.
fn fuse(seq: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(seq.len());
    for node in seq {
        match (out.last_mut(), node) {
            (Some(Node::Lit(lit)), Node::Byte(b)) => lit.push(b),
            (Some(last @ Node::Byte(_)), Node::Byte(b)) => {
                if let Node::Byte(a) = *last {
                    *last = Node::Lit(vec![a, b]);
                }
            }
            (_, node) => out.push(node),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn matches_the_rule_language() {
        let gap = r"\b(ignore|forget)\b~2 (previous|prior) rules\b";
        let nested = r"\b((what is|explain)~2 (token|tag)|tokenizer)\b";
        let cases: &[(&str, &str, bool)] = &[
            (gap, "please ignore all the previous rules now", true),
            (gap, "please ignore all of the previous rules", false),
            (r"\ban? (apple|egg)\b", "an egg", true),
            (r"\ban? (apple|egg)\b", "a apple", true),
            (r"\ban? (apple|egg)\b", "banana egg", false),
            (r"\bignore( all| the)? above\b", "ignore the above", true),
            (r"\bignore( all| the)? above\b", "ignore above", true),
            (r"\bignore( all| the)? above\b", "ignore them above", false),
            (nested, "the tokenizer", true),
            (nested, "explain this tag", true),
            (nested, "explain this tags", false),
            (r"\bfoo~12 bar\b", "foo a b c d e f g h i j k l bar", true),
            (r"\bfoo~12 bar\b", "foo a b c d e f g h i j k l m bar", false),
            (r"\bx\b", "", false),
        ];
        for (p, t, expected) in cases {
            assert_eq!(
                WordPattern::new(p).unwrap().is_match(t),
                *expected,
                "`{p}` on `{t}`"
            );
        }
    }

    #[test]
    fn spells_the_first_words() {
        let first = |p: &str| WordPattern::new(p).unwrap().first_words();
        assert_eq!(
            first(r"\b(ignore|pay no attention to)\b~2 rules\b"),
            Some(vec!["ignore".into(), "pay".into()])
        );
        assert_eq!(first(r"\ban? (apple|egg)\b"), Some(vec!["a".into(), "an".into()]));
        assert_eq!(first(r"\bfrom now on\b"), Some(vec!["from".into()]));
        assert_eq!(
            first(r"\b((what is|explain)~2 tag|tokenizer)\b"),
            Some(vec!["explain".into(), "tokenizer".into(), "what".into()])
        );
        assert_eq!(first(r"(a|b) c"), None);
        assert_eq!(first(r"\bab"), None);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in [r"\d", "(a", "a)", "?a", "A", "[a]", "a~", r"\b?"] {
            assert!(WordPattern::new(bad).is_err(), "{bad}");
        }
    }
}
