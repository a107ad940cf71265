//! A real Redis, and Webdis (Redis over HTTP) in front of it, for one test, each in a fresh directory
//! under `target/e2e/` on a free port of 127.0.0.1 (see [`crate::service`]).
//!
//! - [`Redis::start`] runs `redis-server` in the foreground with no persistence
//!   (`--port P --bind 127.0.0.1 --save '' --appendonly no`); ready when `PING` answers `+PONG`.
//!   [`Redis::stop`] kills it (like a crash) and [`Redis::restart`] brings it back on the same port,
//!   with an empty dataset: a test can take Redis down mid-test and bring it back.
//! - [`Webdis::start`] runs `webdis` with a generated JSON config ([`webdis_config`]): Redis's address,
//!   `http_host` 127.0.0.1, a free `http_port`, 2 threads, not daemonized, every command allowed from
//!   127.0.0.1 (webdis itself always refuses `MULTI`, `EXEC`, `WATCH`, `DISCARD` and `SELECT`). Ready
//!   when `GET /PING` answers 200. While Redis is down webdis answers 503; it reconnects by itself within
//!   ~100 ms of Redis coming back ([`Webdis::wait_ready`] waits for that).
//! - A small client over webdis for assertions: [`Webdis::call`] (`POST /` with `CMD/arg/arg`, each
//!   argument percent-encoded; sent with `connection: keep-alive`, see [`Webdis::call`]), [`Webdis::incrby`], [`Webdis::eval`] (an atomic Lua script), and
//!   [`Webdis::get`] for a raw `GET /CMD/arg` request.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http;
use crate::service::{self, Daemon, StartError};

/// How long [`Redis::start`] and [`Webdis::start`] wait for readiness.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Webdis worker threads (each keeps its own pool of Redis connections).
pub const WEBDIS_THREADS: u32 = 2;

/// Redis connections per webdis thread.
pub const WEBDIS_POOL_SIZE: u32 = 4;

/// A running `redis-server`; killed on drop.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    daemon: Daemon,
}

fn redis_args(port: u16) -> Vec<OsString> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        ".",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

/// One inline `PING` over a fresh connection; `Ok` when Redis answers `+PONG`.
pub fn ping(port: u16) -> io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.write_all(b"PING\r\n")?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    if line.trim_end() == "+PONG" {
        Ok(())
    } else {
        Err(io::Error::other(format!("PING answered {:?}", line.trim_end())))
    }
}

impl Redis {
    /// Starts `redis-server` on a free port and waits (up to [`START_TIMEOUT`]) until it answers `PING`.
    /// The binary is `$REDIS_SERVER_BIN` or `redis-server` (Debian package `redis-server`).
    pub fn start() -> Result<Redis, StartError> {
        let bin = service::find_bin("redis-server", "REDIS_SERVER_BIN", "redis-server")?;
        service::retry_on_port_clash(|| {
            let port = service::free_port().map_err(|e| StartError(format!("no free port: {e}")))?;
            let dir = service::fresh_dir("redis")
                .map_err(|e| StartError(format!("cannot create a directory in target/e2e: {e}")))?;
            let mut redis = Redis {
                port,
                daemon: Daemon::new("redis", bin.clone(), redis_args(port), dir),
            };
            redis.run()?;
            Ok(redis)
        })
    }

    fn run(&mut self) -> Result<(), StartError> {
        self.daemon.spawn()?;
        let port = self.port;
        self.daemon
            .wait_ready(START_TIMEOUT, || ping(port).map_err(|e| format!("PING: {e}")))
    }

    /// The port Redis listens on (also after [`Redis::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills Redis (SIGKILL, like a crash). Nothing holds its port until [`Redis::restart`] binds it
    /// again (another process taking it meanwhile would make the restart fail, saying so).
    pub fn stop(&mut self) {
        self.daemon.kill();
    }

    /// Starts Redis again on the same port (killing it first if it still runs) and waits until it
    /// answers; its dataset is empty (no persistence). Clients such as webdis reconnect by themselves.
    pub fn restart(&mut self) -> Result<(), StartError> {
        self.run()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// The directory Redis runs in (its log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// What Redis printed so far (across restarts).
    pub fn logs(&self) -> String {
        self.daemon.logs()
    }
}

/// The webdis JSON config: Redis at `127.0.0.1:redis_port`, HTTP on `127.0.0.1:http_port`, log and pid
/// file in `dir`, every command allowed from 127.0.0.1 and none from anywhere else. Webdis applies the
/// ACL rules in order, a later match overriding an earlier one.
pub fn webdis_config(redis_port: u16, http_port: u16, dir: &Path) -> Value {
    json!({
        "redis_host": "127.0.0.1",
        "redis_port": redis_port,
        "redis_auth": null,
        "http_host": "127.0.0.1",
        "http_port": http_port,
        "threads": WEBDIS_THREADS,
        "pool_size": WEBDIS_POOL_SIZE,
        "daemonize": false,
        "websockets": false,
        "database": 0,
        "verbosity": 3,
        "logfile": dir.join("webdis.log").to_string_lossy(),
        "pidfile": dir.join("webdis.pid").to_string_lossy(),
        "acl": [
            {"disabled": ["*"]},
            {"ip": "127.0.0.1/32", "enabled": ["*"]}
        ]
    })
}

/// Percent-encodes one webdis path segment: everything but ASCII letters, digits, `-` and `_`. Webdis
/// splits on `/`, decodes `%XX` and `+` (as a space), and reads a trailing `.json`/`.txt`/… as the
/// output format, so `/`, `%`, `+` and `.` must all be encoded.
pub fn encode_segment(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `CMD/arg/arg…` with each argument encoded by [`encode_segment`] (the command name as given).
/// Webdis cannot carry an empty argument (an empty segment is dropped).
pub fn command_path(args: &[&str]) -> String {
    let mut parts = args.iter().map(|a| encode_segment(a));
    let mut out = parts.next().unwrap_or_default();
    for part in parts {
        out.push('/');
        out.push_str(&part);
    }
    out
}

/// Why a webdis call failed.
#[derive(Debug)]
pub enum WebdisError {
    /// No answer (connection refused, timeout…).
    Io(io::Error),
    /// A non-200 answer: 503 while Redis is unreachable, 403 for a refused command.
    Status { status: u16, body: String },
    /// A 200 answer that is not `{"<CMD>": value}`.
    Shape(String),
    /// Redis answered an error (`{"<CMD>": [false, "ERR …"]}`).
    Redis(String),
}

impl fmt::Display for WebdisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebdisError::Io(e) => write!(f, "webdis did not answer: {e}"),
            WebdisError::Status { status, body } => write!(f, "webdis answered {status}: {body}"),
            WebdisError::Shape(body) => write!(f, "unexpected webdis answer: {body}"),
            WebdisError::Redis(msg) => write!(f, "redis error: {msg}"),
        }
    }
}

impl std::error::Error for WebdisError {}

/// The value of a webdis JSON answer `{"<CMD>": value}`; `[false, msg]` is a Redis error.
pub fn parse_reply(resp: &http::Response) -> Result<Value, WebdisError> {
    if resp.status != 200 {
        return Err(WebdisError::Status {
            status: resp.status,
            body: resp.text(),
        });
    }
    let json = resp.try_json().map_err(|_| WebdisError::Shape(resp.text()))?;
    let value = match json.as_object() {
        Some(obj) if obj.len() == 1 => obj.values().next().cloned(),
        _ => None,
    }
    .ok_or_else(|| WebdisError::Shape(resp.text()))?;
    match value.as_array().map(Vec::as_slice) {
        Some([Value::Bool(false), Value::String(msg)]) => Err(WebdisError::Redis(msg.clone())),
        _ => Ok(value),
    }
}

/// A running `webdis` in front of a [`Redis`]; killed on drop.
#[derive(Debug)]
pub struct Webdis {
    port: u16,
    daemon: Daemon,
}

impl Webdis {
    /// Starts webdis on a free port in front of `redis` and waits (up to [`START_TIMEOUT`]) until
    /// `GET /PING` answers 200. The binary is `$WEBDIS_BIN` or `webdis` (Debian package `webdis`).
    pub fn start(redis: &Redis) -> Result<Webdis, StartError> {
        let bin = service::find_bin("webdis", "WEBDIS_BIN", "webdis")?;
        service::retry_on_port_clash(|| {
            let port = service::free_port().map_err(|e| StartError(format!("no free port: {e}")))?;
            let dir = service::fresh_dir("webdis")
                .map_err(|e| StartError(format!("cannot create a directory in target/e2e: {e}")))?;
            let config = dir.join("webdis.json");
            let text = webdis_config(redis.port(), port, &dir).to_string();
            std::fs::write(&config, text).map_err(|e| StartError(format!("writing webdis.json: {e}")))?;
            let mut daemon = Daemon::new("webdis", bin.clone(), vec![config.into_os_string()], dir)
                .with_extra_log("webdis.log");
            daemon.spawn()?;
            daemon.wait_ready(START_TIMEOUT, || ping_webdis(port))?;
            Ok(Webdis { port, daemon })
        })
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `webdis.json` and `webdis.log`.
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// What webdis printed and logged so far.
    pub fn logs(&self) -> String {
        self.daemon.logs_with_extra()
    }

    /// Waits until webdis serves commands again (after [`Redis::restart`]): `PING` answers 200 on
    /// enough fresh connections in a row to have reached every worker thread.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let needed = 2 * WEBDIS_THREADS;
        let mut in_a_row = 0;
        let mut last = String::from("not probed yet");
        loop {
            match ping_webdis(self.port) {
                Ok(()) => in_a_row += 1,
                Err(e) => {
                    in_a_row = 0;
                    last = e;
                }
            }
            if in_a_row >= needed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "webdis not serving after {:.1}s ({last})",
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(service::POLL);
        }
    }

    /// `GET /<path>` (e.g. `INCRBY/k/5`) as is.
    pub fn get(&self, path: &str) -> io::Result<http::Response> {
        http::request(self.port, "GET", &format!("/{path}"), &[], b"")
    }

    /// Runs one command with `POST /` and body `CMD/arg/arg…` (see [`command_path`]); returns the
    /// value webdis wraps in `{"<CMD>": value}`.
    pub fn call(&self, args: &[&str]) -> Result<Value, WebdisError> {
        let body = command_path(args);
        // Webdis 0.1.9 never answers a POST that says `connection: close` when its body arrives in a
        // later TCP segment than its head (as this client writes them); with keep-alive it does.
        let headers = [("connection", "keep-alive")];
        let resp =
            http::request(self.port, "POST", "/", &headers, body.as_bytes()).map_err(WebdisError::Io)?;
        parse_reply(&resp)
    }

    /// `INCRBY key by`; the new value.
    pub fn incrby(&self, key: &str, by: i64) -> Result<i64, WebdisError> {
        let value = self.call(&["INCRBY", key, &by.to_string()])?;
        value
            .as_i64()
            .ok_or_else(|| WebdisError::Shape(value.to_string()))
    }

    /// `EVAL script numkeys keys… args…`: runs a Lua script atomically in Redis; its reply as JSON
    /// (Lua numbers as integers, tables as arrays, `nil`/`false` as `null`).
    pub fn eval(&self, script: &str, keys: &[&str], args: &[&str]) -> Result<Value, WebdisError> {
        let numkeys = keys.len().to_string();
        let mut all = vec!["EVAL", script, &numkeys];
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        self.call(&all)
    }
}

fn ping_webdis(port: u16) -> Result<(), String> {
    let resp = http::request(port, "GET", "/PING", &[], b"").map_err(|e| format!("GET /PING: {e}"))?;
    match parse_reply(&resp) {
        Ok(v) if v == json!([true, "PONG"]) => Ok(()),
        Ok(v) => Err(format!("GET /PING answered {v}")),
        Err(e) => Err(format!("GET /PING: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        let cases = [
            ("k", "k"),
            ("a/b", "a%2Fb"),
            ("1.5", "1%2E5"),
            ("x.json", "x%2Ejson"),
            ("a b+c", "a%20b%2Bc"),
            ("100%", "100%25"),
            ("é", "%C3%A9"),
            ("rl:tenant-1_x", "rl%3Atenant-1_x"),
        ];
        for (arg, want) in cases {
            assert_eq!(encode_segment(arg), want, "{arg}");
        }
        assert_eq!(
            command_path(&["EVAL", "return 1/2", "0"]),
            "EVAL/return%201%2F2/0"
        );
        assert_eq!(command_path(&[]), "");
    }

    #[test]
    fn config_shape() {
        let c = webdis_config(6400, 7400, Path::new("/tmp/w"));
        assert_eq!(c["redis_port"], 6400);
        assert_eq!(c["http_port"], 7400);
        assert_eq!(c["http_host"], "127.0.0.1");
        assert_eq!(c["daemonize"], false);
        assert_eq!(c["logfile"], "/tmp/w/webdis.log");
        assert_eq!(c["acl"][1], json!({"ip": "127.0.0.1/32", "enabled": ["*"]}));
    }

    fn resp(status: u16, body: &str) -> http::Response {
        http::Response {
            status,
            body: body.as_bytes().to_vec(),
            ..http::Response::default()
        }
    }

    #[test]
    fn replies_are_unwrapped() {
        assert_eq!(parse_reply(&resp(200, r#"{"INCRBY":5}"#)).unwrap(), json!(5));
        assert_eq!(
            parse_reply(&resp(200, r#"{"EVAL":[3,60000]}"#)).unwrap(),
            json!([3, 60000])
        );
        assert_eq!(parse_reply(&resp(200, r#"{"GET":null}"#)).unwrap(), Value::Null);
        assert!(matches!(
            parse_reply(&resp(200, r#"{"EVAL":[false,"ERR boom"]}"#)),
            Err(WebdisError::Redis(m)) if m == "ERR boom"
        ));
        assert!(matches!(
            parse_reply(&resp(503, "")),
            Err(WebdisError::Status { status: 503, .. })
        ));
        assert!(matches!(
            parse_reply(&resp(200, "nope")),
            Err(WebdisError::Shape(_))
        ));
        assert!(matches!(
            parse_reply(&resp(200, r#"{"a":1,"b":2}"#)),
            Err(WebdisError::Shape(_))
        ));
    }
}
