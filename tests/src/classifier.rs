//! A mock prompt-injection classification service for the guard's tests.
//!
//! `POST <any path>` with a JSON body `{"text": "..."}` (or any shape: the whole body is searched as
//! text) answers `{"score": S, "label": "INJECTION"|"SAFE"}` where S is the score of the first
//! configured trigger found in the body, else the default score. [`Behaviour`] also makes it slow
//! (`delay_ms`), fail (`status`), or answer garbage (`malformed`), so tests reach the timeout and
//! `failure_mode` paths. Every request body is recorded, so a test can tell a cached answer from a call.
//! Plain `std::net` and a thread per connection; one request per connection (`connection: close`).

use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// How the service answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Score when no trigger matches.
    pub default_score: f64,
    /// `(substring, score)`: the first substring found in the request body decides the score.
    pub triggers: Vec<(String, f64)>,
    /// Wait this long before answering.
    pub delay_ms: u64,
    /// Answer with this status and an error body instead of a score (e.g. 500).
    pub status: Option<u16>,
    /// Answer 200 with a body that is not JSON.
    pub malformed: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            default_score: 0.01,
            triggers: Vec::new(),
            delay_ms: 0,
            status: None,
            malformed: false,
        }
    }
}

impl Behaviour {
    /// Scores `score` when the body contains `needle` (builder style).
    pub fn trigger(mut self, needle: &str, score: f64) -> Behaviour {
        self.triggers.push((needle.to_string(), score));
        self
    }
}

struct State {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Value>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running mock classifier on 127.0.0.1; stops on drop.
pub struct ClassifierServer {
    port: u16,
    state: Arc<State>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl ClassifierServer {
    /// Starts on `port` (0 = any free port).
    pub fn start(port: u16, behaviour: Behaviour) -> io::Result<ClassifierServer> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let _ = serve(&s, stream);
                });
            }
        });
        Ok(ClassifierServer {
            port,
            state,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes how later requests are answered.
    pub fn set(&self, behaviour: Behaviour) {
        *lock(&self.state.behaviour) = behaviour;
    }

    /// Every request body received so far (parsed JSON, or the raw text as a JSON string).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for ClassifierServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn serve(state: &State, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let text = String::from_utf8_lossy(&body).to_string();
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or_else(|_| Value::String(text.clone()));
    lock(&state.requests).push(parsed);
    let b = lock(&state.behaviour).clone();
    if b.delay_ms > 0 {
        thread::sleep(Duration::from_millis(b.delay_ms));
    }
    let (status, out) = if let Some(status) = b.status {
        (status, json!({"error": "mock classifier failure"}).to_string())
    } else if b.malformed {
        (200, "{\"score\": ".to_string())
    } else {
        let score = b
            .triggers
            .iter()
            .find(|(needle, _)| text.contains(needle.as_str()))
            .map_or(b.default_score, |(_, s)| *s);
        let label = if score >= 0.5 { "INJECTION" } else { "SAFE" };
        (200, json!({"score": score, "label": label}).to_string())
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
        out.len()
    )?;
    w.flush()?;
    let _ = w.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_configured_scores() {
        let server = ClassifierServer::start(0, Behaviour::default().trigger("attack", 0.97)).unwrap();
        let ask = |body: &str| {
            crate::http::request(
                server.port(),
                "POST",
                "/classify",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .unwrap()
        };
        let r = ask(r#"{"text": "an attack"}"#);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["score"], 0.97);
        assert_eq!(r.json()["label"], "INJECTION");
        assert_eq!(ask(r#"{"text": "hello"}"#).json()["score"], 0.01);
        server.set(Behaviour {
            status: Some(500),
            ..Behaviour::default()
        });
        assert_eq!(ask("{}").status, 500);
        assert_eq!(server.requests().len(), 3);
        assert_eq!(server.requests()[0]["text"], "an attack");
    }
}
