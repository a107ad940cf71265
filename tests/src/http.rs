//! A minimal HTTP/1.1 client on `127.0.0.1` (one request per connection, `connection: close`), plus the
//! wire helpers the mock server shares: head parsing and chunked decoding.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Connect, read and write timeout of the client.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest accepted request/status line or header line.
const MAX_LINE: u64 = 64 * 1024;
/// Most header lines in one head.
const MAX_HEADERS: usize = 256;
/// Largest accepted chunk or Content-Length.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// A complete response as read by [`request`].
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase, in wire order (repeated headers appear repeatedly).
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The body as it arrived: one entry per HTTP chunk for a chunked body, else one entry per read.
    pub chunks: Vec<Vec<u8>>,
    /// Whether the body ended properly (terminating chunk, full Content-Length, or EOF for an
    /// EOF-delimited body). False when the server cut the connection mid-body.
    pub complete: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the status and body text if it is not JSON.
    pub fn json(&self) -> Value {
        match self.try_json() {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}); status {}, body: {}",
                self.status,
                self.text()
            ),
        }
    }

    /// The body parsed as JSON.
    pub fn try_json(&self) -> serde_json::Result<Value> {
        serde_json::from_slice(&self.body)
    }

    /// The body parsed as a server-sent event stream.
    pub fn sse(&self) -> Vec<SseEvent> {
        parse_sse(&self.text())
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Splits an SSE text into events (blank-line separated; `event:` and `data:` fields, comments ignored).
/// A trailing event without its blank line is still returned.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Option<String> = None;
    let normalized = text.replace("\r\n", "\n");
    for line in normalized.split('\n') {
        if line.is_empty() {
            if event.is_some() || data.is_some() {
                events.push(SseEvent {
                    event: event.take(),
                    data: data.take().unwrap_or_default(),
                });
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match data.as_mut() {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    if event.is_some() || data.is_some() {
        events.push(SseEvent {
            event,
            data: data.unwrap_or_default(),
        });
    }
    events
}

/// Sends one request to `127.0.0.1:port` and reads the whole response (until the body ends or the
/// server closes). A body is sent with `content-length` unless `headers` carries `content-length` or
/// `transfer-encoding` itself; `host` and `connection: close` are added unless given.
/// A response cut mid-body is returned with `complete: false`; only connect/write-before-response
/// failures, malformed heads and timeouts are errors.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    open(port, method, path, headers, body)?.finish()
}

/// Like [`request`] but sends the body with `transfer-encoding: chunked`, one HTTP chunk per part.
pub fn request_chunked(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    parts: &[&[u8]],
) -> io::Result<Response> {
    open_chunked(port, method, path, headers, parts)?.finish()
}

/// Sends a request and returns once the response head is read; the body is then read chunk by chunk
/// with [`Streaming::next_chunk`] (to observe streaming as it happens).
pub fn open(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Streaming> {
    let has_framing = find_header_ref(headers, "content-length").is_some()
        || find_header_ref(headers, "transfer-encoding").is_some();
    let needs_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !has_framing && needs_length {
        all.push(("content-length", &length));
    }
    send(port, method, path, &all, &[body])
}

/// Like [`open`] but sends the body with `transfer-encoding: chunked`, one HTTP chunk per part.
pub fn open_chunked(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    parts: &[&[u8]],
) -> io::Result<Streaming> {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("transfer-encoding", "chunked"));
    let mut wire = Vec::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        wire.push(format!("{:x}\r\n", part.len()).into_bytes());
        wire.push(part.to_vec());
        wire.push(b"\r\n".to_vec());
    }
    wire.push(b"0\r\n\r\n".to_vec());
    let slices: Vec<&[u8]> = wire.iter().map(Vec::as_slice).collect();
    send(port, method, path, &all, &slices)
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[&[u8]],
) -> io::Result<Streaming> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if find_header_ref(headers, "host").is_none() {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    if find_header_ref(headers, "connection").is_none() {
        head.push_str("connection: close\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone()?;
    writer.write_all(head.as_bytes())?;
    // The server may answer (and close) before reading the whole body (e.g. 413): keep the write
    // error but still try to read a response.
    let mut write_err = None;
    for part in body {
        if let Err(e) = writer.write_all(part) {
            write_err = Some(e);
            break;
        }
    }
    if write_err.is_none() {
        if let Err(e) = writer.flush() {
            write_err = Some(e);
        }
    }
    let mut reader = BufReader::new(stream);
    let head = loop {
        match read_head(&mut reader) {
            Ok(Some(h)) => {
                let status = parse_status(&h.start)?;
                // Skip interim responses (100 Continue etc.).
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                break h;
            }
            Ok(None) => {
                return Err(write_err.unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    )
                }))
            }
            Err(e) => return Err(write_err.unwrap_or(e)),
        }
    };
    let status = parse_status(&head.start)?;
    let framing = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
        Framing::Empty
    } else if is_chunked(&head.headers) {
        Framing::Chunked
    } else if let Some(len) = content_length(&head.headers)? {
        if len == 0 {
            Framing::Empty
        } else {
            Framing::Length(len)
        }
    } else {
        Framing::ToEof
    };
    Ok(Streaming {
        status,
        headers: head.headers,
        reader,
        framing,
        done: false,
        complete: false,
    })
}

/// A response whose head has been read; the body is read on demand.
#[derive(Debug)]
pub struct Streaming {
    pub status: u16,
    /// Header names in lowercase, in wire order.
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    framing: Framing,
    done: bool,
    complete: bool,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Chunked,
    Length(u64),
    ToEof,
    Empty,
}

impl Streaming {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The next piece of body: one HTTP chunk for a chunked body (blocks until it has fully arrived),
    /// else whatever one read returns. `Ok(None)` at the end of the body; check [`Streaming::complete`]
    /// to know whether it ended properly. Timeouts are errors.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::Empty => self.end(true),
            Framing::ToEof => {
                let mut buf = vec![0u8; 64 * 1024];
                match self.reader.read(&mut buf) {
                    Ok(0) => self.end(true),
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Err(e) if is_timeout(&e) => Err(e),
                    Err(_) => self.end(true),
                }
            }
            Framing::Length(remaining) => {
                let want = remaining.min(64 * 1024) as usize;
                let mut buf = vec![0u8; want];
                match self.reader.read(&mut buf) {
                    Ok(0) => self.end(false),
                    Ok(n) => {
                        buf.truncate(n);
                        let left = remaining - n as u64;
                        self.framing = Framing::Length(left);
                        if left == 0 {
                            self.done = true;
                            self.complete = true;
                        }
                        Ok(Some(buf))
                    }
                    Err(e) if is_timeout(&e) => Err(e),
                    Err(_) => self.end(false),
                }
            }
            Framing::Chunked => self.next_wire_chunk(),
        }
    }

    fn next_wire_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = match read_line(&mut self.reader) {
            Ok(Some(l)) => l,
            Ok(None) => return self.end(false),
            Err(e) if is_timeout(&e) => return Err(e),
            Err(_) => return self.end(false),
        };
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            // Trailers up to the blank line; a close here still counts as complete.
            while let Ok(Some(l)) = read_line(&mut self.reader) {
                if l.is_empty() {
                    break;
                }
            }
            return self.end(true);
        }
        let mut data = Vec::with_capacity(size as usize);
        let mut take = (&mut self.reader).take(size);
        loop {
            match take.read_to_end(&mut data) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Err(e),
                Err(_) => break,
            }
        }
        if (data.len() as u64) < size {
            self.done = true;
            self.complete = false;
            return Ok(if data.is_empty() { None } else { Some(data) });
        }
        match read_line(&mut self.reader) {
            Ok(Some(l)) if l.is_empty() => {}
            Ok(Some(_)) => return Err(invalid("missing CRLF after chunk data")),
            Err(e) if is_timeout(&e) => return Err(e),
            Ok(None) | Err(_) => {
                self.done = true;
                self.complete = false;
            }
        }
        Ok(Some(data))
    }

    fn end(&mut self, complete: bool) -> io::Result<Option<Vec<u8>>> {
        self.done = true;
        self.complete = complete;
        Ok(None)
    }

    /// Whether the body has ended properly (meaningful once [`Streaming::next_chunk`] returned `None`).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Reads the rest of the body.
    pub fn finish(mut self) -> io::Result<Response> {
        let mut body = Vec::new();
        let mut chunks = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            body.extend_from_slice(&chunk);
            chunks.push(chunk);
        }
        Ok(Response {
            status: self.status,
            headers: self.headers,
            body,
            chunks,
            complete: self.complete,
        })
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn parse_status(start: &str) -> io::Result<u16> {
    let mut parts = start.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!("not an HTTP/1.x status line: {start:?}")));
    }
    parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(&format!("bad status line: {start:?}")))
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find_header_ref<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// A request or response head: the start line and the headers (names lowercased, values trimmed).
#[derive(Debug, Clone)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

/// Reads one line (without its CRLF/LF). `Ok(None)` on EOF before any byte.
pub fn read_line<R: BufRead>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if n as u64 >= MAX_LINE {
            return Err(invalid("line too long"));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("head is not UTF-8"))
}

/// Reads a head. `Ok(None)` when the connection closes cleanly before a new head starts.
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    // Tolerate stray empty lines between messages (RFC 9112 section 2.2).
    let start = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-head"))?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Head { start, headers }))
}

pub fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("chunked")))
}

pub fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    match find_header(headers, "content-length") {
        None => Ok(None),
        Some(v) => {
            let len = v
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(&format!("bad content-length {v:?}")))?;
            if len > MAX_BODY {
                return Err(invalid("content-length too large"));
            }
            Ok(Some(len))
        }
    }
}

fn parse_chunk_size(line: &str) -> io::Result<u64> {
    let size = line.split(';').next().unwrap_or("").trim();
    let size =
        u64::from_str_radix(size, 16).map_err(|_| invalid(&format!("bad chunk size line {line:?}")))?;
    if size > MAX_BODY {
        return Err(invalid("chunk too large"));
    }
    Ok(size)
}

/// Reads a whole request body framed by `headers` (chunked or Content-Length; neither = empty).
pub fn read_body<R: BufRead>(r: &mut R, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if is_chunked(headers) {
        loop {
            let line = read_line(r)?.ok_or_else(|| invalid("connection closed mid-body"))?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                while let Some(l) = read_line(r)? {
                    if l.is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() as u64 + size > MAX_BODY {
                return Err(invalid("body too large"));
            }
            let start = body.len();
            body.resize(start + size as usize, 0);
            r.read_exact(&mut body[start..])?;
            match read_line(r)? {
                Some(l) if l.is_empty() => {}
                _ => return Err(invalid("missing CRLF after chunk data")),
            }
        }
    } else if let Some(len) = content_length(headers)? {
        body.resize(len as usize, 0);
        r.read_exact(&mut body)?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parsing() {
        let events =
            parse_sse("event: a\ndata: {\"x\":1}\n\n: comment\ndata: one\ndata: two\n\ndata: [DONE]\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "one\ntwo".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        assert_eq!(parse_sse("data: tail").len(), 1);
    }

    #[test]
    fn chunked_body_decoding() {
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut r = io::Cursor::new(&wire[..]);
        let headers = vec![("transfer-encoding".to_string(), "chunked".to_string())];
        assert_eq!(read_body(&mut r, &headers).unwrap(), b"Wikipedia");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn head_parsing() {
        let mut r = io::Cursor::new(&b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nX-Foo:  bar \r\n\r\n"[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.start, "POST /x HTTP/1.1");
        assert_eq!(
            head.headers,
            vec![("host".into(), "a".into()), ("x-foo".into(), "bar".into())]
        );
        assert!(read_head(&mut r).unwrap().is_none());
    }
}
