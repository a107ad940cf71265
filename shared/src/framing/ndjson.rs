//! Newline-delimited JSON (NDJSON / JSON Lines): the framing of Ollama's streamed answers and of other
//! line-per-event streams. This module splits lines; the caller parses each with `serde_json`.
//!
//! A line ends at `\n`; a `\r` before it is dropped (`\r\n` is tolerated), and blank lines are skipped.
//! Lines are checked to be UTF-8 only once complete, so a character split across chunks survives. A
//! line longer than the bound is reported once and skipped up to its end, then splitting goes on, so
//! one bad line costs at most the bound in memory. The output is the same wherever the chunks are cut.

use std::fmt;

/// The default bound on one line, in bytes (terminator excluded).
pub const MAX_LINE_LEN: usize = 1024 * 1024;

/// Why a line was not returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The line is over the bound; it was skipped.
    TooLong { max: usize },
    /// The line is not UTF-8; it was skipped.
    InvalidUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { max } => write!(f, "NDJSON line over {max} bytes"),
            LineError::InvalidUtf8 => write!(f, "NDJSON line is not UTF-8"),
        }
    }
}

impl std::error::Error for LineError {}

/// Incremental line splitter: [`LineSplitter::feed`] chunks, then [`LineSplitter::finish`].
#[derive(Debug)]
pub struct LineSplitter {
    /// The line being read, without its terminator.
    line: Vec<u8>,
    /// The current line outgrew the bound and was reported: drop its bytes until its `\n`.
    discarding: bool,
    max: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    /// A splitter bounded by [`MAX_LINE_LEN`].
    pub fn new() -> Self {
        Self::with_max_line_len(MAX_LINE_LEN)
    }

    /// A splitter that refuses lines longer than `max` bytes.
    pub fn with_max_line_len(max: usize) -> Self {
        LineSplitter {
            line: Vec::new(),
            discarding: false,
            max,
        }
    }

    /// Consumes a chunk; returns the non-blank lines it completed (or why one was skipped), in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<String, LineError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (piece, after) = rest.split_at(i);
                    rest = after.get(1..).unwrap_or_default();
                    (piece, true)
                }
                None => (std::mem::take(&mut rest), false),
            };
            if !self.discarding {
                self.line.extend_from_slice(piece);
                // One byte of slack: a `\r` that may yet turn out to precede the `\n`.
                if self.line.len() > self.max.saturating_add(1) {
                    out.push(Err(LineError::TooLong { max: self.max }));
                    self.line = Vec::new();
                    self.discarding = true;
                }
            }
            if ended {
                if self.discarding {
                    self.discarding = false;
                } else if let Some(r) = self.take_line() {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Ends the stream: the last line if it had no terminator (`None` when there is none, or it was
    /// blank, or already reported as too long).
    pub fn finish(&mut self) -> Option<Result<String, LineError>> {
        if std::mem::take(&mut self.discarding) {
            self.line.clear();
            return None;
        }
        self.take_line()
    }

    /// Bytes of the unfinished line held.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    fn take_line(&mut self) -> Option<Result<String, LineError>> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        if line.len() > self.max {
            return Some(Err(LineError::TooLong { max: self.max }));
        }
        Some(String::from_utf8(line).map_err(|_| LineError::InvalidUtf8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn all(s: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Result<String, LineError>> {
        let mut out: Vec<_> = chunks.iter().flat_map(|c| s.feed(c)).collect();
        out.extend(s.finish());
        out
    }

    /// An Ollama `/api/chat` stream, CRLF and LF mixed, with a blank line and no final newline.
    const OLLAMA: &str =
        "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hé\"},\"done\":false}\r\n\
        \r\n\
        {\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"llo 👋\"},\"done\":false}\n\
        {\"model\":\"llama3\",\"done\":true,\"prompt_eval_count\":26,\"eval_count\":2}";

    #[test]
    fn splits_lines_at_every_offset() {
        let bytes = OLLAMA.as_bytes();
        let whole = all(&mut LineSplitter::new(), &[bytes]);
        assert_eq!(whole.len(), 3);
        let parsed: Vec<serde_json::Value> = whole
            .iter()
            .map(|l| serde_json::from_str(l.as_ref().unwrap()).unwrap())
            .collect();
        assert_eq!(parsed[0]["message"]["content"], "Hé");
        assert_eq!(parsed[1]["message"]["content"], "llo 👋");
        assert_eq!(parsed[2]["eval_count"], 2);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(all(&mut LineSplitter::new(), &[a, b]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&mut LineSplitter::new(), &bytewise), whole);
    }

    #[test]
    fn bounded_lines_are_skipped_once_at_any_cut() {
        let input = b"1234\nabcdefgh\n12345\r\n123456\r\nxyz\n  \nlast";
        let want = vec![
            Ok("1234".to_string()),
            Err(LineError::TooLong { max: 5 }),
            Ok("12345".to_string()),
            Err(LineError::TooLong { max: 5 }),
            Ok("xyz".to_string()),
            Ok("last".to_string()),
        ];
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let mut s = LineSplitter::with_max_line_len(5);
            assert_eq!(all(&mut s, &[a, b]), want, "cut at {cut}");
        }
        let mut s = LineSplitter::with_max_line_len(5);
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(all(&mut s, &bytewise), want);
        // Memory stays bounded while a long line streams in.
        let mut s = LineSplitter::with_max_line_len(5);
        for _ in 0..1000 {
            s.feed(b"xxxxxxxx");
            assert!(s.buffered() <= 6);
        }
        assert_eq!(s.feed(b"\nok\n"), vec![Ok("ok".to_string())]);
        // An over-long unterminated last line is reported once, when it outgrows the bound.
        let mut s = LineSplitter::with_max_line_len(5);
        assert_eq!(s.feed(b"abcdefg"), vec![Err(LineError::TooLong { max: 5 })]);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn invalid_utf8_and_blank_lines() {
        let mut s = LineSplitter::new();
        let got = all(&mut s, &[b"\n\r\n \t\n{\"a\":1}\n\xC3\n\xC3", b"\xA9\n"]);
        assert_eq!(
            got,
            vec![
                Ok("{\"a\":1}".to_string()),
                Err(LineError::InvalidUtf8),
                Ok("é".to_string())
            ]
        );
        assert_eq!(LineSplitter::new().finish(), None);
    }
}
