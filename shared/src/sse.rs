//! Incremental Server-Sent Events parsing and writing.
//!
//! Proxy-wasm hands the body over in chunks cut at arbitrary byte offsets (inside a UTF-8 sequence,
//! between `\r` and `\n`, in the middle of an event), so the parser keeps the unfinished line and event
//! between calls. It follows the WHATWG HTML "event stream" grammar:
//!
//! ```text
//! stream        = [ bom ] *event
//! event         = *( comment / field ) end-of-line
//! comment       = colon *any-char end-of-line
//! field         = 1*name-char [ colon [ space ] *any-char ] end-of-line
//! end-of-line   = ( cr lf / cr / lf )
//! ```
//!
//! Only `event` and `data` matter to the gateway; `id`, `retry` and unknown fields are ignored.

/// One dispatched event: its `event:` name (absent means the default "message") and its data lines
/// joined with `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Largest event (data gathered so far plus the line being read) the parser buffers. Real LLM events
/// are a few hundred bytes; the cap only stops a broken or hostile upstream from growing memory without
/// bound inside a wasm VM.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Incremental SSE parser; feed it chunks as they arrive, then call [`SseParser::finish`] at end of stream.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the line being read, without its terminator (decoded only once complete, so a UTF-8
    /// sequence split across chunks survives).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to the same line end.
    skip_lf: bool,
    /// No line has been completed yet, so a leading BOM is still to be stripped.
    first_line: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// The current event outgrew the cap: ignore its lines until the blank line that ends it.
    discarding: bool,
    /// The current line has bytes that were not stored (it is being discarded), so it is not blank.
    dropped_line: bool,
    overflowed: bool,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser with a custom event size cap (tests use a small one).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            skip_lf: false,
            first_line: true,
            event: None,
            data: String::new(),
            has_data: false,
            discarding: false,
            dropped_line: false,
            overflowed: false,
            limit,
        }
    }

    /// Consumes a chunk and returns the events completed by it, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    rest = tail;
                    continue;
                }
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.push_bytes(rest);
                break;
            };
            let (line, tail) = rest.split_at(end);
            self.push_bytes(line);
            self.skip_lf = tail.first() == Some(&b'\r');
            rest = tail.get(1..).unwrap_or_default();
            if let Some(ev) = self.end_line() {
                out.push(ev);
            }
        }
        out
    }

    /// Ends the stream: an event whose lines were all terminated but that lacks the final blank line is
    /// still dispatched (upstreams that close right after their last `data:` line lose nothing); an
    /// unterminated line is dropped, as it may be cut short. The parser is then ready for a new stream.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        self.line.clear();
        let ev = if self.discarding { None } else { self.take_event() };
        let overflowed = self.overflowed;
        *self = Self::with_limit(self.limit);
        self.overflowed = overflowed;
        ev.into_iter().collect()
    }

    /// Bytes held for an unfinished line or event.
    pub fn pending_len(&self) -> usize {
        self.line.len() + self.data.len() + self.event.as_ref().map_or(0, String::len)
    }

    /// Whether any event was dropped for exceeding the size cap.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.discarding {
            self.dropped_line = true;
            return;
        }
        if self.pending_len().saturating_add(bytes.len()) > self.limit {
            self.line = Vec::new();
            self.data = String::new();
            self.event = None;
            self.has_data = false;
            self.discarding = true;
            self.dropped_line = true;
            self.overflowed = true;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// Processes the completed line; returns an event when the line was blank and one was pending.
    fn end_line(&mut self) -> Option<SseEvent> {
        let raw = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.dropped_line) {
            return None;
        }
        let mut line: &[u8] = &raw;
        if self.first_line {
            self.first_line = false;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            if self.discarding {
                self.discarding = false;
                return None;
            }
            return self.take_event();
        }
        if self.discarding || line.first() == Some(&b':') {
            return None;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let (name, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => {
                let value = String::from_utf8_lossy(value);
                self.event = (!value.is_empty()).then(|| value.into_owned());
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            _ => {}
        }
        None
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        let has_data = std::mem::take(&mut self.has_data);
        let data = std::mem::take(&mut self.data);
        let event = self.event.take();
        (has_data || event.is_some()).then_some(SseEvent { event, data })
    }
}

/// Appends one event: `event: NAME` if given, one `data: ` line per line of `data`, then a blank line.
/// Line breaks inside `event` are dropped so a name can never inject fields.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend(name.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.push(b'\n');
    }
    let mut rest = data;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        if tail.is_empty() {
            break;
        }
        let sep = if tail.starts_with("\r\n") { 2 } else { 1 };
        rest = tail.get(sep..).unwrap_or_default();
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = p.feed(input);
        out.extend(p.finish());
        out
    }

    #[test]
    fn grammar_cases() {
        let cases: &[(&str, &[u8], Vec<SseEvent>)] = &[
            ("single data", b"data: hello\n\n", vec![ev(None, "hello")]),
            (
                "named event",
                b"event: ping\ndata: {}\n\n",
                vec![ev(Some("ping"), "{}")],
            ),
            (
                "multi-line data",
                b"data: a\ndata: b\ndata:c\n\n",
                vec![ev(None, "a\nb\nc")],
            ),
            ("crlf", b"event: x\r\ndata: 1\r\n\r\n", vec![ev(Some("x"), "1")]),
            (
                "bare cr",
                b"data: 1\r\rdata: 2\r\r",
                vec![ev(None, "1"), ev(None, "2")],
            ),
            (
                "mixed ends",
                b"data: 1\r\n\ndata: 2\n\r\n",
                vec![ev(None, "1"), ev(None, "2")],
            ),
            (
                "comment ignored",
                b": keep-alive\ndata: x\n: more\n\n",
                vec![ev(None, "x")],
            ),
            ("comment only", b": hi\n\n", vec![]),
            (
                "only one space stripped",
                b"data:  two\n\n",
                vec![ev(None, " two")],
            ),
            ("no space", b"data:x\n\n", vec![ev(None, "x")]),
            ("field without colon", b"data\n\n", vec![ev(None, "")]),
            ("empty data dispatches", b"data:\n\n", vec![ev(None, "")]),
            ("two empty data lines", b"data\ndata\n\n", vec![ev(None, "\n")]),
            (
                "event without data",
                b"event: ping\n\n",
                vec![ev(Some("ping"), "")],
            ),
            ("id and retry ignored", b"id: 7\nretry: 10\n\n", vec![]),
            (
                "unknown field ignored",
                b"foo: bar\ndata: y\n\n",
                vec![ev(None, "y")],
            ),
            ("colon in value", b"data: a:b: c\n\n", vec![ev(None, "a:b: c")]),
            ("empty event name", b"event:\ndata: z\n\n", vec![ev(None, "z")]),
            (
                "blank lines between",
                b"\n\n\ndata: q\n\n\n\n",
                vec![ev(None, "q")],
            ),
            ("bom stripped", b"\xEF\xBB\xBFdata: b\n\n", vec![ev(None, "b")]),
            (
                "utf8",
                "data: héllo ✓ 🦀\n\n".as_bytes(),
                vec![ev(None, "héllo ✓ 🦀")],
            ),
            (
                "invalid utf8 replaced",
                b"data: \xFF\n\n",
                vec![ev(None, "\u{FFFD}")],
            ),
            (
                "pending complete event at eof",
                b"data: end\n",
                vec![ev(None, "end")],
            ),
            ("pending after cr at eof", b"data: end\r", vec![ev(None, "end")]),
            (
                "incomplete line dropped",
                b"data: a\n\ndata: cut",
                vec![ev(None, "a")],
            ),
            ("field name case-sensitive", b"Data: no\n\n", vec![]),
        ];
        for (name, input, want) in cases {
            assert_eq!(&parse_whole(input), want, "{name}");
        }
    }

    #[test]
    fn every_split_gives_same_events() {
        let inputs: Vec<Vec<u8>> = vec![
            include_bytes!("../tests/fixtures/anthropic_stream.sse").to_vec(),
            include_bytes!("../tests/fixtures/openai_stream_usage.sse").to_vec(),
            String::from_utf8(include_bytes!("../tests/fixtures/anthropic_stream.sse").to_vec())
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes(),
            String::from_utf8(include_bytes!("../tests/fixtures/openai_stream.sse").to_vec())
                .unwrap()
                .replace('\n', "\r")
                .into_bytes(),
            "\u{feff}data: é✓🦀\r\n: c\r\nevent: e\rdata\n\r\ndata: x\n"
                .as_bytes()
                .to_vec(),
        ];
        for input in &inputs {
            let whole = parse_whole(input);
            assert!(!whole.is_empty());
            for i in 0..=input.len() {
                let mut p = SseParser::new();
                let mut got = p.feed(&input[..i]);
                got.extend(p.feed(&input[i..]));
                got.extend(p.finish());
                assert_eq!(got, whole, "split at {i}");
            }
            let mut p = SseParser::new();
            let mut got = Vec::new();
            for b in input {
                got.extend(p.feed(std::slice::from_ref(b)));
            }
            got.extend(p.finish());
            assert_eq!(got, whole, "byte by byte");
        }
    }

    #[test]
    fn pending_len_tracks_unfinished_data() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: abc").is_empty());
        assert_eq!(p.pending_len(), 9);
        assert!(p.feed(b"\n").is_empty());
        assert_eq!(p.pending_len(), 3);
        assert_eq!(p.feed(b"\n"), vec![ev(None, "abc")]);
        assert_eq!(p.pending_len(), 0);
    }

    #[test]
    fn oversized_event_is_dropped_and_parsing_continues() {
        let mut p = SseParser::with_limit(16);
        let mut got = p.feed(b"data: ok\n\nevent: big\ndata: ");
        for _ in 0..100 {
            got.extend(p.feed(b"0123456789"));
            assert!(p.pending_len() <= 16);
        }
        got.extend(p.feed(b"\ndata: more\n\ndata: after\n\n"));
        got.extend(p.finish());
        assert_eq!(got, vec![ev(None, "ok"), ev(None, "after")]);
        assert!(p.overflowed());

        // Many small lines add up to the same cap.
        let mut p = SseParser::with_limit(16);
        let mut got = Vec::new();
        for _ in 0..10 {
            got.extend(p.feed(b"data: 1234\n"));
        }
        got.extend(p.feed(b"\ndata: y\n\n"));
        assert_eq!(got, vec![ev(None, "y")]);
        assert!(p.overflowed());
        assert!(!SseParser::new().overflowed());
    }

    #[test]
    fn default_cap_is_one_mebibyte() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES];
        assert!(p.feed(b"data: ").is_empty());
        assert!(p.feed(&big).is_empty());
        assert!(p.overflowed());
        assert_eq!(p.pending_len(), 0);
        assert_eq!(p.feed(b"\n\ndata: next\n\n"), vec![ev(None, "next")]);
    }

    #[test]
    fn write_event_round_trips() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (None, "[DONE]", "data: [DONE]\n\n"),
            (Some("message_stop"), "{}", "event: message_stop\ndata: {}\n\n"),
            (None, "a\nb", "data: a\ndata: b\n\n"),
            (None, "a\r\nb\rc", "data: a\ndata: b\ndata: c\n\n"),
            (None, "", "data: \n\n"),
            (Some("x\ny"), "1", "event: xy\ndata: 1\n\n"),
        ];
        for (event, data, want) in cases {
            let mut out = Vec::new();
            write_event(&mut out, *event, data);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), *want);
            let parsed = parse_whole(&out);
            let expect_data = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].data, expect_data);
        }
    }
}
