//! A mock NER service with Presidio's analyzer contract, for the PII filter's tests.
//!
//! `POST /analyze` with `{"text": ..., "language": ...}` answers `[{"entity_type", "start", "end",
//! "score"}]`, offsets in characters (Unicode scalar values, like Python string indices). The
//! recogniser is a deterministic toy ([`analyze`]): `PERSON` for a known first name followed by a
//! capitalised word (0.85) or alone (0.6), `LOCATION` for known cities (0.75), `ADDRESS` for
//! "<number> <Name> Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Boulevard|Blvd" (0.7), and `NRP` for
//! nationalities at a low score (0.3) so thresholds can be tested.
//!
//! [`NerServer::set_fault`] makes every later call fail ([`NerFault::Status`], [`NerFault::Malformed`])
//! or answer late ([`NerFault::DelayMs`], for timeouts). Requests are recorded ([`NerServer::requests`]).

use std::io::{self, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{read_body, read_head, Head};

/// How the service misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NerFault {
    #[default]
    None,
    /// Answer with this status and an error body.
    Status(u16),
    /// Wait this long before answering (longer than the filter's timeout: a timeout).
    DelayMs(u64),
    /// 200 with a body that is not the contract.
    Malformed,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    fault: Mutex<NerFault>,
    records: Mutex<Vec<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running mock NER service on 127.0.0.1; stops on drop.
pub struct NerServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl NerServer {
    /// Listens on any free port.
    pub fn start() -> io::Result<NerServer> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("ner-accept-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if shared.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let shared = Arc::clone(&shared);
                        let _ = thread::Builder::new().name("ner-conn".into()).spawn(move || {
                            let _ = serve(&shared, stream);
                        });
                    }
                })?
        };
        Ok(NerServer {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set_fault(&self, fault: NerFault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The JSON bodies of every `/analyze` call so far.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.records).clone()
    }
}

impl Drop for NerServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn serve(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(Head { start, headers }) = read_head(&mut reader)? {
        let body = read_body(&mut reader, &headers)?;
        let path = start.split_whitespace().nth(1).unwrap_or_default().to_string();
        let (status, answer) = if path.split('?').next() == Some("/analyze") {
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            if let Some(v) = &parsed {
                lock(&shared.records).push(v.clone());
            }
            let fault = *lock(&shared.fault);
            match (
                fault,
                parsed
                    .as_ref()
                    .and_then(|v| v.get("text"))
                    .and_then(Value::as_str),
            ) {
                (NerFault::Status(s), _) => (s, json!({"error": "mock NER fault"}).to_string()),
                (NerFault::Malformed, _) => (200, "{\"entities\": ".to_string()),
                (NerFault::DelayMs(ms), Some(text)) => {
                    thread::sleep(Duration::from_millis(ms));
                    (200, Value::Array(analyze(text)).to_string())
                }
                (NerFault::None, Some(text)) => (200, Value::Array(analyze(text)).to_string()),
                (_, None) => (400, json!({"error": "text is required"}).to_string()),
            }
        } else {
            (404, json!({"error": "not found"}).to_string())
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(answer.as_bytes())?;
        writer.flush()?;
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// First names the toy recogniser knows.
pub const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "David", "Jane", "John", "Maria", "Mohammed", "Priya", "Wei", "Yuki", "Olga",
];
/// Cities it knows.
pub const CITIES: &[&str] = &[
    "Paris",
    "Berlin",
    "London",
    "Tokyo",
    "Zürich",
    "Lagos",
    "Lima",
    "Springfield",
];
const STREET_WORDS: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Lane",
    "Ln",
    "Boulevard",
    "Blvd",
];
const NATIONALITIES: &[&str] = &["French", "German", "Japanese", "Brazilian"];

/// Words of `text` with their character offsets: runs of letters, digits and apostrophes.
fn words(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    let mut n = 0;
    for (i, c) in text.chars().enumerate() {
        n = i + 1;
        if c.is_alphanumeric() || c == '\'' {
            match &mut cur {
                Some((_, w)) => w.push(c),
                None => cur = Some((i, c.to_string())),
            }
        } else if let Some((s, w)) = cur.take() {
            out.push((s, i, w));
        }
    }
    if let Some((s, w)) = cur.take() {
        out.push((s, n, w));
    }
    out
}

fn capitalised(w: &str) -> bool {
    w.chars().next().is_some_and(char::is_uppercase) && w.chars().skip(1).all(char::is_lowercase)
}

/// The toy recogniser (see the module docs).
pub fn analyze(text: &str) -> Vec<Value> {
    let ws = words(text);
    let mut out = Vec::new();
    let mut i = 0;
    let entity = |t: &str, s: usize, e: usize, score: f64| json!({"entity_type": t, "start": s, "end": e, "score": score});
    while let Some((s, e, w)) = ws.get(i) {
        let next = ws.get(i + 1);
        let next2 = ws.get(i + 2);
        if FIRST_NAMES.contains(&w.as_str()) {
            match next {
                Some((_, e2, w2)) if capitalised(w2) && !CITIES.contains(&w2.as_str()) => {
                    out.push(entity("PERSON", *s, *e2, 0.85));
                    i += 2;
                }
                _ => {
                    out.push(entity("PERSON", *s, *e, 0.6));
                    i += 1;
                }
            }
            continue;
        }
        if w.chars().all(|c| c.is_ascii_digit()) && w.len() <= 5 {
            if let (Some((_, _, name)), Some((_, e3, kind))) = (next, next2) {
                if capitalised(name) && STREET_WORDS.contains(&kind.as_str()) {
                    out.push(entity("ADDRESS", *s, *e3, 0.7));
                    i += 3;
                    continue;
                }
            }
        }
        if CITIES.contains(&w.as_str()) {
            out.push(entity("LOCATION", *s, *e, 0.75));
        } else if NATIONALITIES.contains(&w.as_str()) {
            out.push(entity("NRP", *s, *e, 0.3));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn recognises_with_character_offsets() {
        let text = "Zürich: Jane Roe lives at 12 Baker Street, a French Bob.";
        let got = analyze(text);
        let chars: Vec<char> = text.chars().collect();
        let spans: Vec<(String, String)> = got
            .iter()
            .map(|e| {
                let (s, t) = (
                    e["start"].as_u64().unwrap() as usize,
                    e["end"].as_u64().unwrap() as usize,
                );
                (
                    e["entity_type"].as_str().unwrap().to_string(),
                    chars[s..t].iter().collect(),
                )
            })
            .collect();
        let want = [
            ("LOCATION", "Zürich"),
            ("PERSON", "Jane Roe"),
            ("ADDRESS", "12 Baker Street"),
            ("NRP", "French"),
            ("PERSON", "Bob"),
        ];
        assert_eq!(
            spans,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
