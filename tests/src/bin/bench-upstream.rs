//! `bench-upstream [--port N] [--stream-from-body]`: the benchmark's upstream, a fixed-response HTTP/1.1
//! server on 127.0.0.1:N (0 = any free port; the chosen port is printed as `listening on 127.0.0.1:PORT`).
//!
//! It answers every request, whatever its path, with a canned OpenAI `chat.completion` JSON, or with a
//! canned SSE stream (`text/event-stream`, chunked, one HTTP chunk and one write per event, like a real
//! provider) when the request has `x-bench-stream: 1` or its path contains `stream`. The request body
//! is read and thrown away (content-length or chunked: ai-proxy makes Envoy send it chunked).
//!
//! `--stream-from-body` (`make bench-peers`): the body is kept and a request whose JSON says
//! `"stream": true` is answered with the stream too, since other gateways (LiteLLM, Portkey) forward
//! the body but not the client's `x-bench-stream` header. Off by default, so `make bench` does not pay
//! for the scan.
//!
//! Why not the mock provider: it parses every body as JSON, counts words and records requests, which
//! costs more per request than the gateway under test and would hide its overhead. Why not a second
//! Envoy with `direct_response`: it cannot stream an answer in many chunks, and this server is small.
//! One thread per connection with blocking I/O: Envoy keeps a small pool of keep-alive connections to
//! it, so threads stay few, and a blocking read/write pair is as cheap as a request can get.

#[allow(dead_code)]
#[path = "bench/workload.rs"]
mod workload;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

/// The canned answers, serialized once with their HTTP heads.
struct Canned {
    json: Vec<u8>,
    /// Head, then each event already framed as one HTTP chunk, then the last chunk.
    stream_head: Vec<u8>,
    stream_chunks: Vec<Vec<u8>>,
}

impl Canned {
    fn new() -> Canned {
        let body = workload::openai_json();
        let mut json = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        json.extend_from_slice(&body);
        let stream_head =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
transfer-encoding: chunked\r\n\r\n"
                .to_vec();
        let mut stream_chunks: Vec<Vec<u8>> = workload::openai_sse_events()
            .into_iter()
            .map(|event| {
                let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
                chunk.extend_from_slice(&event);
                chunk.extend_from_slice(b"\r\n");
                chunk
            })
            .collect();
        stream_chunks.push(b"0\r\n\r\n".to_vec());
        Canned {
            json,
            stream_head,
            stream_chunks,
        }
    }
}

/// What the server needs from a request head.
struct Head {
    content_length: usize,
    chunked: bool,
    stream: bool,
    close: bool,
}

/// Reads one request head; `None` at a clean end of connection.
fn read_head(reader: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<Option<Head>> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Ok(None);
    }
    let path = line.split(' ').nth(1).unwrap_or("");
    let mut head = Head {
        content_length: 0,
        chunked: false,
        stream: path.contains("stream"),
        close: line.trim_end().ends_with("HTTP/1.0"),
    };
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("x-bench-stream") {
            head.stream = value == "1";
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
}

/// Whether a JSON request body asks for a stream: a `"stream"` key whose value is `true`. The key
/// cannot match inside a string value (a quote there is escaped), and `"stream_options"` is another key.
fn asks_for_stream(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    text.match_indices("\"stream\"").any(|(at, key)| {
        let rest = text.get(at + key.len()..).unwrap_or_default().trim_start();
        rest.strip_prefix(':')
            .is_some_and(|v| v.trim_start().starts_with("true"))
    })
}

/// Reads the request body into `body` when given (cleared first), else discards it.
fn read_body(
    reader: &mut BufReader<TcpStream>,
    head: &Head,
    line: &mut String,
    mut body: Option<&mut Vec<u8>>,
) -> io::Result<()> {
    if let Some(b) = body.as_deref_mut() {
        b.clear();
    }
    // Copies `n` bytes to the body or to nowhere; the count copied.
    let mut copy = |reader: &mut BufReader<TcpStream>, n: u64| match body.as_deref_mut() {
        Some(b) => io::copy(&mut reader.by_ref().take(n), b),
        None => io::copy(&mut reader.by_ref().take(n), &mut io::sink()),
    };
    if !head.chunked {
        let n = copy(reader, head.content_length as u64)?;
        if n as usize != head.content_length {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(());
    }
    loop {
        line.clear();
        reader.read_line(line)?;
        let size = line.trim_end().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers (none expected), then the blank line.
            loop {
                line.clear();
                if reader.read_line(line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        let n = copy(reader, size as u64)?;
        if n as usize != size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // The chunk's closing CRLF.
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn serve(stream: TcpStream, canned: &Canned, stream_from_body: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    let mut body = Vec::new();
    while let Some(head) = read_head(&mut reader, &mut line)? {
        let keep = stream_from_body && !head.stream;
        read_body(&mut reader, &head, &mut line, keep.then_some(&mut body))?;
        if head.stream || keep && asks_for_stream(&body) {
            writer.write_all(&canned.stream_head)?;
            for chunk in &canned.stream_chunks {
                writer.write_all(chunk)?;
            }
        } else {
            writer.write_all(&canned.json)?;
        }
        if head.close {
            break;
        }
    }
    Ok(())
}

/// The port (0 = any free one) and whether to read `"stream": true` from bodies.
fn args() -> Result<(u16, bool), String> {
    let usage =
        "usage: bench-upstream [--port N] [--stream-from-body]   (port 0 = any free port, the default)";
    let mut port = 0;
    let mut stream_from_body = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" | "-p" => {
                let v = args.next().ok_or_else(|| usage.to_string())?;
                port = v.parse().map_err(|_| format!("invalid port {v:?}\n{usage}"))?;
            }
            "--stream-from-body" => stream_from_body = true,
            _ => return Err(format!("unknown argument {arg:?}\n{usage}")),
        }
    }
    Ok((port, stream_from_body))
}

fn main() -> ExitCode {
    let (port, stream_from_body) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-upstream: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("listening on 127.0.0.1:{port}");
    let _ = io::stdout().flush();
    let canned = Arc::new(Canned::new());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let canned = Arc::clone(&canned);
        // A connection error only ends that connection (Envoy closing its pool at exit, for instance).
        thread::spawn(move || {
            let _ = serve(stream, &canned, stream_from_body);
        });
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::asks_for_stream;

    #[test]
    fn stream_is_read_from_the_body() {
        let cases: &[(&str, bool)] = &[
            (r#"{"model":"m","stream":true,"messages":[]}"#, true),
            // Python's json.dumps spacing (LiteLLM's OpenAI client), and a newline.
            (r#"{"model": "m", "stream": true}"#, true),
            ("{\"stream\"\n :\t true}", true),
            (r#"{"stream":false,"messages":[]}"#, false),
            (r#"{"messages":[]}"#, false),
            (r#"{"stream_options":{"include_usage":true}}"#, false),
            // Inside a string value the quotes are escaped: not the key.
            (r#"{"messages":[{"content":"say \"stream\": true"}]}"#, false),
            // A later real key still counts after a look-alike in a value.
            (
                r#"{"messages":[{"content":"\"stream\": true"}],"stream":true}"#,
                true,
            ),
            ("", false),
        ];
        for (body, want) in cases {
            assert_eq!(asks_for_stream(body.as_bytes()), *want, "{body}");
        }
        assert!(!asks_for_stream(&[0xff, 0xfe]));
    }
}
