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
    /// Read whole `data: X` events without the line machinery (off only in tests, as the reference).
    shortcut: bool,
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
            shortcut: true,
        }
    }

    /// Consumes a chunk and returns the events completed by it, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            if let Some((ev, tail)) = self.whole_data_event(rest) {
                out.push(ev);
                rest = tail;
                continue;
            }
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

    /// At the start of `rest`, between events, a whole `data: X\n\n` event (`X` UTF-8 without line
    /// breaks): the event and the bytes after it, as the line machinery would read them.
    fn whole_data_event<'r>(&mut self, rest: &'r [u8]) -> Option<(SseEvent, &'r [u8])> {
        if !self.shortcut || !rest.starts_with(b"data: ") || !self.is_idle() {
            return None;
        }
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = rest.get(..nl)?;
        if rest.get(nl + 1) != Some(&b'\n') || line.contains(&b'\r') || line.len() > self.limit {
            return None;
        }
        let data = std::str::from_utf8(line.get(6..)?).ok()?;
        self.first_line = false;
        let ev = SseEvent {
            event: None,
            data: data.to_string(),
        };
        Some((ev, rest.get(nl + 2..)?))
    }

    /// Between events: nothing of a line, a field or an event is held.
    fn is_idle(&self) -> bool {
        self.line.is_empty()
            && !self.skip_lf
            && self.event.is_none()
            && !self.has_data
            && self.data.is_empty()
            && !self.discarding
            && !self.dropped_line
    }

    /// Feeds one whole event (`raw`, up to and including its blank line) and returns it. `breaks`:
    /// `raw` has no `\r` or `\n` but its last two bytes, so the common `data: X\n\n` is read without
    /// the parser when it holds nothing, with the same result.
    fn feed_event(&mut self, raw: &[u8], breaks: bool) -> Option<SseEvent> {
        if breaks && self.is_idle() && raw.len() <= self.limit {
            let body = raw.strip_prefix(b"data: ").and_then(|r| r.strip_suffix(b"\n\n"));
            if let Some(data) = body.and_then(|b| std::str::from_utf8(b).ok()) {
                self.first_line = false;
                return Some(SseEvent {
                    event: None,
                    data: data.to_string(),
                });
            }
        }
        self.feed(raw).pop()
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        let has_data = std::mem::take(&mut self.has_data);
        let data = std::mem::take(&mut self.data);
        let event = self.event.take();
        (has_data || event.is_some()).then_some(SseEvent { event, data })
    }
}

/// The data of an event that is a single `data: ` line and its blank line (`data: X\n\n`, `X` UTF-8
/// without line breaks): what [`SseParser`] gives for it between events, read without the parser.
pub fn single_data_line(raw: &[u8]) -> Option<&str> {
    let body = raw.strip_prefix(b"data: ")?.strip_suffix(b"\n\n")?;
    // `contains` on bytes is a memchr.
    if body.contains(&b'\n') || body.contains(&b'\r') {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// Appends one event: `event: NAME` if given, one `data: ` line per line of `data`, then a blank line.
/// Line breaks inside `event` are dropped so a name can never inject fields.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend(name.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.push(b'\n');
    }
    // The usual data is one line (JSON): `contains` on bytes is a memchr.
    let bytes = data.as_bytes();
    if !bytes.contains(&b'\n') && !bytes.contains(&b'\r') {
        out.reserve(data.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\n\n");
        return;
    }
    let mut rest = data;
    loop {
        let end = rest
            .bytes()
            .position(|b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
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

/// One event as a [`Relay`] releases it: the raw bytes up to and including the blank line that ends it
/// (as the upstream sent them), and the event they hold (none for comments and extra blank lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub raw: Vec<u8>,
    pub event: Option<SseEvent>,
}

impl Segment {
    /// Appends the segment as it came when its bytes are UTF-8; otherwise the event written again from
    /// its decoding (each bad sequence a U+FFFD), so a client never gets bytes that are not UTF-8.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if std::str::from_utf8(&self.raw).is_ok() {
            out.extend_from_slice(&self.raw);
        } else if let Some(ev) = &self.event {
            write_event(out, ev.event.as_deref(), &ev.data);
        }
    }
}

/// Relays a stream event by event, as its bytes were sent: a chunk's complete events are released,
/// a partial one is held until its blank line arrives. A caller that judges each event can so stop
/// before any byte of a bad one reaches the client, without rewriting the good ones. The bytes held are
/// bounded by [`MAX_EVENT_BYTES`]: a longer event ends the relay ([`Relay::overflowed`]).
#[derive(Debug)]
pub struct Relay {
    held: Vec<u8>,
    /// Scan state at the end of `held`: nothing yet on the current line; the last byte was `\r`.
    line_empty: bool,
    after_cr: bool,
    /// Bytes of `held` already scanned.
    scanned: usize,
    /// Line-break bytes (`\r`, `\n`) scanned since the last event's end.
    breaks: usize,
    parser: SseParser,
    overflowed: bool,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

impl Relay {
    pub fn new() -> Relay {
        Relay {
            held: Vec::new(),
            line_empty: true,
            after_cr: false,
            scanned: 0,
            breaks: 0,
            parser: SseParser::new(),
            overflowed: false,
        }
    }

    /// Consumes a chunk; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Segment> {
        if self.overflowed {
            return Vec::new();
        }
        self.held.extend_from_slice(chunk);
        let mut ends = Vec::new();
        let mut i = self.scanned;
        while let Some(rest) = self.held.get(i..).filter(|r| !r.is_empty()) {
            let after_cr = std::mem::take(&mut self.after_cr);
            // Jump to the next line break: the bytes before it only make the line not empty.
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(0) => {
                    let b = rest.first().copied().unwrap_or_default();
                    self.breaks += 1;
                    if !(after_cr && b == b'\n') {
                        if self.line_empty {
                            ends.push((i + 1, std::mem::take(&mut self.breaks)));
                        }
                        self.line_empty = true;
                        self.after_cr = b == b'\r';
                    }
                    i += 1;
                }
                Some(off) => {
                    self.line_empty = false;
                    i += off;
                }
                None => {
                    self.line_empty = false;
                    i = self.held.len();
                }
            }
        }
        self.scanned = self.held.len();
        let mut out = Vec::with_capacity(ends.len());
        let mut start = 0;
        for (end, breaks) in ends {
            let raw = self.held.get(start..end).unwrap_or_default();
            let two = breaks == 2 && raw.ends_with(b"\n\n");
            out.push(Segment {
                raw: raw.to_vec(),
                event: self.parser.feed_event(raw, two),
            });
            start = end;
        }
        self.held.drain(..start);
        self.scanned = self.held.len();
        if self.held.len() > MAX_EVENT_BYTES {
            self.held = Vec::new();
            self.scanned = 0;
            self.breaks = 0;
            self.overflowed = true;
        }
        out
    }

    /// Ends the stream: the bytes still held, with the event they complete if any (an event whose
    /// lines all ended but that lacks its blank line; see [`SseParser::finish`]).
    pub fn finish(&mut self) -> Option<Segment> {
        let raw = std::mem::take(&mut self.held);
        self.scanned = 0;
        self.breaks = 0;
        if self.overflowed {
            return None;
        }
        let mut events = self.parser.feed(&raw);
        events.extend(self.parser.finish());
        (!raw.is_empty()).then(|| Segment {
            raw,
            event: events.pop(),
        })
    }

    /// An event outgrew [`MAX_EVENT_BYTES`]: nothing more is relayed.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes held for an event not yet complete.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }
}

/// Ends `out` with a blank line if the relayed bytes did not (a stream's last event may lack it), so an
/// event of ours stands alone.
pub fn close_event(out: &mut Vec<u8>) {
    let closed =
        out.is_empty() || out.ends_with(b"\n\n") || out.ends_with(b"\r\r") || out.ends_with(b"\n\r\n");
    if closed {
        return;
    }
    if out.ends_with(b"\n") {
        out.push(b'\n');
    } else {
        out.extend_from_slice(b"\n\n");
    }
}

/// Whether an event's data is one JSON value (checked without building it).
pub fn is_json(data: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok()
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

    /// The reference: the line machinery alone.
    fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        p.shortcut = false;
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

    /// Streams for the relay and parser tests, each with what the shortcut must and must not take.
    const RELAY_INPUTS: [&[u8]; 10] = [
        b"data: {\"a\":1}\n\nevent: x\ndata: 2\n\n: comment\n\ndata: [DONE]\n\n",
        b"data: a\r\n\r\ndata: b\r\rdata: c\r\n\r\ndata: tail\n",
        b"\n\ndata: x\n\n\n\ndata: y",
        b"data: caf\xc3\xa9\n\ndata: \xff\n\n",
        // The parser's shortcut (`data: X` alone) next to everything it must not take.
        b"\xef\xbb\xbfdata: bom\n\ndata: 1\n\ndata:2\n\ndata:  3\n\ndata: 4\ndata: 5\n\n",
        b"data: a\n\nid: 7\ndata: b\n\ndata: c\nevent: e\n\ndata: d\r\n\ndata: e\n\r\n",
        b"data: \n\ndata\n\ndata: x:y\n\nretry: 1\n\ndata: z\n\n",
        b"event: only\n\ndata: after\n\n:c\ndata: f\n\n",
        b"\rdata: a\r\rdata: b\n\n\r\ndata: c\n\n",
        // Only the stream's first line loses a BOM.
        b"data: a\n\n\xef\xbb\xbfdata: b\n\n",
    ];

    /// The parser with its shortcut reads every stream as the line machinery alone does, however it
    /// is cut.
    #[test]
    fn shortcut_reads_what_the_lines_read() {
        for input in RELAY_INPUTS {
            let want = parse_whole(input);
            let cuts = (0..=input.len())
                .map(|c| vec![c])
                .chain([(1..input.len()).collect()]);
            for cuts in cuts {
                let mut p = SseParser::new();
                let mut got = Vec::new();
                let mut from = 0;
                for &cut in cuts.iter().chain([input.len()].iter()) {
                    got.extend(p.feed(&input[from..cut]));
                    from = cut;
                }
                got.extend(p.finish());
                assert_eq!(got, want, "cuts {cuts:?}");
            }
        }
        let mut small = SseParser::with_limit(8);
        assert_eq!(
            small.feed(b"data: 0123456789\n\ndata: ok\n\n"),
            vec![ev(None, "ok")]
        );
        assert!(small.overflowed());
    }

    /// The relay releases exactly the bytes it got, in order, each event with its own raw bytes and
    /// the event the parser reads from the whole stream, however the stream is cut.
    #[test]
    fn relay_releases_raw_events_for_any_cut() {
        let inputs = RELAY_INPUTS;
        let check = |input: &[u8], cuts: &[usize]| {
            let mut relay = Relay::new();
            let mut segs = Vec::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([input.len()].iter()) {
                segs.extend(relay.feed(&input[from..cut]));
                from = cut;
            }
            segs.extend(relay.finish());
            let raw: Vec<u8> = segs.iter().flat_map(|s| s.raw.clone()).collect();
            assert_eq!(raw, input, "cuts {cuts:?}");
            let events: Vec<SseEvent> = segs.into_iter().filter_map(|s| s.event).collect();
            assert_eq!(events, parse_whole(input), "cuts {cuts:?}");
        };
        for input in inputs {
            for cut in 0..=input.len() {
                check(input, &[cut]);
                for cut2 in cut..=input.len() {
                    check(input, &[cut, cut2]);
                }
            }
            let bytes: Vec<usize> = (1..input.len()).collect();
            check(input, &bytes);
        }
    }

    #[test]
    fn relay_holds_partial_events_and_bounds_them() {
        let mut relay = Relay::new();
        let segs = relay.feed(b"data: {\"a\":1}\n\ndata: {\"b\"");
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].raw, b"data: {\"a\":1}\n\n");
        assert_eq!(relay.held_len(), 10);
        let segs = relay.feed(b":2}\n\n");
        assert_eq!(segs[0].raw, b"data: {\"b\":2}\n\n");
        assert_eq!(segs[0].event.as_ref().unwrap().data, "{\"b\":2}");

        let mut relay = Relay::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(relay.feed(b"data: ").is_empty());
        assert!(relay.feed(&big).is_empty());
        assert!(relay.overflowed());
        assert!(relay.feed(b"\n\ndata: y\n\n").is_empty());
        assert_eq!(relay.finish(), None);
    }

    #[test]
    fn segments_written_as_utf8() {
        let mut relay = Relay::new();
        let segs = relay.feed(b"data: caf\xc3\xa9\n\nevent: x\ndata: r\xffply\n\n: c\xff\n\n");
        let mut out = Vec::new();
        for s in &segs {
            s.write_to(&mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: caf\u{e9}\n\nevent: x\ndata: r\u{fffd}ply\n\n"
        );
    }

    #[test]
    fn json_check() {
        for (data, want) in [
            ("{\"a\":[1,2]}", true),
            (" 3 ", true),
            ("[DONE]", false),
            ("<html>", false),
            ("{\"a\":", false),
            ("", false),
        ] {
            assert_eq!(is_json(data), want, "{data}");
        }
    }
}
