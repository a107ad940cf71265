//! Canonical JSON: text exactly as `serde_json` writes a [`serde_json::Value`] back (compact, object
//! keys in sorted order and unique, strings escaped as serde_json escapes them, integers only), scanned
//! in one pass without building a `Value`.
//!
//! Stream events are small JSON documents read by the hundred per answer. Parsing each into a `Value`
//! and writing it out again costs more than everything else the stream paths do. For canonical text the
//! two are the same bytes (`Value::to_string(from_str(text)) == text`), and replacing one string value
//! by another gives the bytes serde_json would write for the changed `Value`: so a stream path can read
//! what it needs from [`Doc`], splice a changed string in ([`Doc::splice`]), and fall back to the `Value`
//! path whenever [`scan`] says `None` (anything not canonical: whitespace, floats, negative numbers,
//! escapes serde_json would not write, keys out of order or with escapes, nesting deeper than
//! [`MAX_DEPTH`]). [`scan`] never accepts text that is not JSON.

use std::cell::RefCell;

/// Deepest nesting scanned (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 64;

/// Longest integer accepted: every 18-digit integer fits a `u64`, as serde_json reads it.
const MAX_DIGITS: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    True,
    False,
    /// A non-negative integer.
    Int,
    Str,
    Array,
    Object,
}

/// One value of the document: its bytes are `text[start..end]`; for a member of an object, its key
/// (without quotes, never escaped) is `text[key.0..key.1]`.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    start: usize,
    end: usize,
    key: (usize, usize),
    /// Index of the first node after this one's subtree.
    next: usize,
}

/// A scanned canonical document: its values in document order.
#[derive(Debug)]
pub struct Doc<'a> {
    text: &'a str,
    nodes: Vec<Node>,
}

/// A value in a [`Doc`].
#[derive(Debug, Clone, Copy)]
pub struct Val<'d, 'a> {
    doc: &'d Doc<'a>,
    at: usize,
}

/// Longest text whose scan is remembered (stream events are a few hundred bytes).
const MEMO_MAX: usize = 8 << 10;

std::thread_local! {
    /// The last text scanned and what the scan found, once [`remember_scans`] was called.
    static LAST: RefCell<Option<(String, Option<Vec<Node>>)>> = const { RefCell::new(None) };
}

/// From now on [`scan`] remembers the last text it scanned, so scanning the same text again costs a
/// comparison. For a VM that runs several policies on the same bytes (the bundle's chain: each stream
/// event reaches ai-proxy, the token limit and ai-pii-redact in turn, and each scans it); a module with
/// one policy scans each text once and would pay a copy per text for nothing, so it is off by default.
pub fn remember_scans() {
    LAST.with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            last.get_or_insert_with(|| (String::new(), None));
        }
    });
}

/// Scans `text`; `None` unless it is canonical JSON (see the module's doc).
pub fn scan(text: &str) -> Option<Doc<'_>> {
    if text.len() > MEMO_MAX {
        return scan_uncached(text);
    }
    // Some(found) when remembered; None when not remembering or another text was scanned last.
    let remembered = LAST.with(|last| {
        let last = last.try_borrow().ok()?;
        let (t, nodes) = last.as_ref()?;
        (t == text).then(|| nodes.clone())
    });
    if let Some(nodes) = remembered {
        return nodes.map(|nodes| Doc { text, nodes });
    }
    let doc = scan_uncached(text);
    LAST.with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            if let Some((t, nodes)) = last.as_mut() {
                t.clear();
                t.push_str(text);
                *nodes = doc.as_ref().map(|d| d.nodes.clone());
            }
        }
    });
    doc
}

fn scan_uncached(text: &str) -> Option<Doc<'_>> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
        nodes: Vec::with_capacity(32),
    };
    p.value((0, 0), 0)?;
    (p.i == text.len()).then_some(Doc { text, nodes: p.nodes })
}

impl<'a> Doc<'a> {
    pub fn root(&self) -> Val<'_, 'a> {
        Val { doc: self, at: 0 }
    }

    /// The text with the string values at the given spans ([`Val::span`], in document order, not
    /// overlapping) replaced by `new` strings, escaped as serde_json escapes them.
    pub fn splice(&self, changes: &[((usize, usize), &str)]) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut from = 0;
        for ((start, end), new) in changes {
            out.push_str(self.text.get(from..*start).unwrap_or_default());
            push_escaped(&mut out, new);
            from = *end;
        }
        out.push_str(self.text.get(from..).unwrap_or_default());
        out
    }
}

impl<'d, 'a> Val<'d, 'a> {
    fn node(&self) -> Option<&'d Node> {
        self.doc.nodes.get(self.at)
    }

    pub fn kind(&self) -> Kind {
        self.node().map_or(Kind::Null, |n| n.kind)
    }

    /// Where the value's bytes are in the text (a string's include its quotes).
    pub fn span(&self) -> (usize, usize) {
        self.node().map_or((0, 0), |n| (n.start, n.end))
    }

    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The elements of an array or the members of an object (`(key, value)`), in order.
    pub fn children(&self) -> impl Iterator<Item = (&'a str, Val<'d, 'a>)> + 'd {
        let doc = self.doc;
        let (mut i, end) = match self.node() {
            Some(n) if matches!(n.kind, Kind::Array | Kind::Object) => (self.at + 1, n.next),
            _ => (0, 0),
        };
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let n = doc.nodes.get(i)?;
            let key = doc.text.get(n.key.0..n.key.1).unwrap_or_default();
            let v = Val { doc, at: i };
            i = n.next;
            Some((key, v))
        })
    }

    /// An object's member (its keys are unique).
    pub fn get(&self, key: &str) -> Option<Val<'d, 'a>> {
        if self.kind() != Kind::Object {
            return None;
        }
        self.children().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An integer's value, as `Value::as_u64` reads it.
    pub fn as_u64(&self) -> Option<u64> {
        let n = self.node().filter(|n| n.kind == Kind::Int)?;
        self.doc.text.get(n.start..n.end)?.parse().ok()
    }

    /// A string's decoded value.
    pub fn as_str(&self) -> Option<std::borrow::Cow<'a, str>> {
        let n = self.node().filter(|n| n.kind == Kind::Str)?;
        let inner = self.doc.text.get(n.start + 1..n.end - 1)?;
        if !inner.contains('\\') {
            return Some(std::borrow::Cow::Borrowed(inner));
        }
        let quoted = self.doc.text.get(n.start..n.end)?;
        serde_json::from_str::<String>(quoted)
            .ok()
            .map(std::borrow::Cow::Owned)
    }
}

/// Appends `s` as a JSON string, exactly as serde_json writes it.
pub fn push_escaped(out: &mut String, s: &str) {
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0..=0x1F => "",
            _ => continue,
        };
        out.push_str(s.get(from..i).unwrap_or_default());
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(*HEX.get(usize::from(b >> 4)).unwrap_or(&b'0')));
            out.push(char::from(*HEX.get(usize::from(b & 0xF)).unwrap_or(&b'0')));
        } else {
            out.push_str(esc);
        }
        from = i + 1;
    }
    out.push_str(s.get(from..).unwrap_or_default());
    out.push('"');
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// After an array item or object member: `Some(true)` past a comma (another follows), `Some(false)`
    /// past `close` (the container ends), `None` on anything else.
    fn another(&mut self, close: u8) -> Option<bool> {
        let more = match self.peek()? {
            b',' => true,
            c if c == close => false,
            _ => return None,
        };
        self.i += 1;
        Some(more)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn value(&mut self, key: (usize, usize), depth: usize) -> Option<()> {
        let at = self.nodes.len();
        let start = self.i;
        self.nodes.push(Node {
            kind: Kind::Null,
            start,
            end: start,
            key,
            next: at + 1,
        });
        let kind = match self.peek()? {
            b'n' => self.literal(b"null").map(|()| Kind::Null)?,
            b't' => self.literal(b"true").map(|()| Kind::True)?,
            b'f' => self.literal(b"false").map(|()| Kind::False)?,
            b'"' => self.string(false).map(|()| Kind::Str)?,
            b'0'..=b'9' => self.integer().map(|()| Kind::Int)?,
            b'[' if depth < MAX_DEPTH => {
                self.i += 1;
                if self.eat(b']').is_none() {
                    loop {
                        self.value((0, 0), depth + 1)?;
                        if !self.another(b']')? {
                            break;
                        }
                    }
                }
                Kind::Array
            }
            b'{' if depth < MAX_DEPTH => {
                self.i += 1;
                if self.eat(b'}').is_none() {
                    let mut prev: Option<&[u8]> = None;
                    loop {
                        let k0 = self.i + 1;
                        self.string(true)?;
                        let key = (k0, self.i - 1);
                        let name = self.b.get(key.0..key.1)?;
                        // serde_json's map is sorted by key: canonical text has them in order, once.
                        if prev.is_some_and(|p| p >= name) {
                            return None;
                        }
                        prev = Some(name);
                        self.eat(b':')?;
                        self.value(key, depth + 1)?;
                        if !self.another(b'}')? {
                            break;
                        }
                    }
                }
                Kind::Object
            }
            _ => return None,
        };
        let next = self.nodes.len();
        let node = self.nodes.get_mut(at)?;
        node.kind = kind;
        node.end = self.i;
        node.next = next;
        Some(())
    }

    /// A string as serde_json writes it; a key may have no escapes at all.
    fn string(&mut self, key: bool) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let off = self
                .b
                .get(self.i..)?
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            self.i += off;
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' if !key => {
                    let esc = *self.b.get(self.i + 1)?;
                    match esc {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let digit = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            let (h, l) = (digit(*hex.get(2)?)?, digit(*hex.get(3)?)?);
                            let c = h * 16 + l;
                            // Only control characters without a short form are written `\u00XX`.
                            if hex.get(..2)? != b"00" || c >= 0x20 || matches!(c, 8 | 9 | 10 | 12 | 13) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn integer(&mut self) -> Option<()> {
        let start = self.i;
        let digits = self
            .b
            .get(self.i..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        self.i += digits;
        let leading_zero = digits > 1 && self.b.get(start) == Some(&b'0');
        let float = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (!leading_zero && !float && digits <= MAX_DIGITS).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Canonical texts come back byte for byte through `Value`; the rest is refused.
    #[test]
    fn accepts_exactly_what_serde_json_writes() {
        let canonical = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"x\"y\\z\n\t\r\b\f\u0001\u001f"},"e":"é😀/"}"#,
            r#"{"choices":[{"delta":{"content":"hi "},"finish_reason":null,"index":0}],"created":1760000000,"id":"c-1","model":"m","object":"chat.completion.chunk"}"#,
            "[]",
            "{}",
            r#""\u007f""#,
            "0",
            "123456789012345678",
            r#"[[[[{"":0}]]]]"#,
        ];
        for text in canonical {
            let v: Value = serde_json::from_str(text).unwrap();
            let reparsed = v.to_string();
            // "\u007f" is written raw by serde_json: not canonical as written here.
            if reparsed != text {
                assert!(scan(text).is_none(), "{text}");
                continue;
            }
            assert!(scan(text).is_some(), "{text}");
        }
        let not_canonical = [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":1.5}"#,
            r#"{"a":-1}"#,
            r#"{"a":1e3}"#,
            r#"{"a":01}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a\"":1}"#,
            r#"{"a":1234567890123456789}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a"}"#,
            r#"{"a":"x"#,
            "",
            "nul",
        ];
        for text in not_canonical {
            assert!(scan(text).is_none(), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(scan(&deep).is_none());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(scan(&ok).is_some());
    }

    /// Every text of a small alphabet up to a length: whatever `scan` accepts is JSON that serde_json
    /// writes back unchanged.
    #[test]
    fn never_accepts_what_is_not_canonical() {
        let alphabet: &[&str] = &[
            "{", "}", "[", "]", "\"a\"", "\"b\"", ":", ",", "1", "0", "n", "null", "\"\\n\"",
        ];
        let mut texts = vec![String::new()];
        let mut accepted = 0;
        for _ in 0..5 {
            let mut next = Vec::new();
            for t in &texts {
                for a in alphabet {
                    let s = format!("{t}{a}");
                    if scan(&s).is_some() {
                        accepted += 1;
                        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
                        assert_eq!(v.to_string(), s);
                    }
                    next.push(s);
                }
            }
            texts = next;
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[test]
    fn remembered_scans_are_the_scans() {
        remember_scans();
        let texts = [
            r#"{"a":[1,2],"b":"x"}"#,
            r#"{"a":[1,2],"b":"x"}"#,
            r#"{"a":[1,2],"b":"y"}"#,
            "{ }",
            "{ }",
            r#"{"a":[1,2],"b":"x"}"#,
        ];
        for t in texts {
            let (doc, fresh) = (scan(t), scan_uncached(t));
            assert_eq!(doc.is_some(), fresh.is_some(), "{t}");
            if let (Some(d), Some(f)) = (doc, fresh) {
                assert_eq!(format!("{:?}", d.nodes), format!("{:?}", f.nodes), "{t}");
                assert_eq!(
                    d.root().get("b").and_then(|b| b.as_str()),
                    f.root().get("b").and_then(|b| b.as_str())
                );
            }
        }
        let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(MEMO_MAX));
        assert!(scan(&long).is_some());
    }

    #[test]
    fn reads_and_splices() {
        let text =
            r#"{"choices":[{"delta":{"content":"a\"b"},"index":3},{"delta":{},"index":"x"}],"n":null}"#;
        let doc = scan(text).unwrap();
        let root = doc.root();
        let choices: Vec<Val> = root.get("choices").unwrap().children().map(|(_, v)| v).collect();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0].get("index").unwrap().as_u64(), Some(3));
        assert_eq!(choices[1].get("index").unwrap().as_u64(), None);
        let content = choices[0].get("delta").unwrap().get("content").unwrap();
        assert_eq!(content.as_str().unwrap(), "a\"b");
        assert!(root.get("n").unwrap().is_null());
        assert!(root.get("missing").is_none());
        let new = "x\ny\u{1}\"é";
        let spliced = doc.splice(&[(content.span(), new)]);
        let mut v: Value = serde_json::from_str(text).unwrap();
        v["choices"][0]["delta"]["content"] = Value::String(new.into());
        assert_eq!(spliced, v.to_string());
        let mut escaped = String::new();
        push_escaped(&mut escaped, "\u{0}\u{7f}\u{8}\u{c}\\");
        assert_eq!(escaped, serde_json::to_string("\u{0}\u{7f}\u{8}\u{c}\\").unwrap());
    }
}
