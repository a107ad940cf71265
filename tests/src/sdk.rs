//! The official OpenAI and Anthropic Python SDKs as real clients: runs a Python snippet with the
//! project venv's interpreter (`<repo>/.venv/bin/python`, or `$E2E_PYTHON`; `make venv` installs the
//! pinned `openai` and `anthropic` packages there) with a timeout, giving it a base URL and an API key in
//! `E2E_BASE_URL` and `E2E_API_KEY`. The provider variables a developer may have set (`OPENAI_*`,
//! `ANTHROPIC_*`) are removed so they cannot redirect a test.
//!
//! Snippets should pass `max_retries=0` to the client: the SDKs otherwise retry 5xx answers and
//! connection errors with back-off, which hides what the gateway did.
//!
//! ```no_run
//! # use e2e::sdk::Sdk;
//! let out = Sdk::new("http://127.0.0.1:10001", "sk-test")
//!     .run_json(r#"
//! import json, os
//! from openai import OpenAI
//! c = OpenAI(base_url=os.environ["E2E_BASE_URL"] + "/v1", api_key=os.environ["E2E_API_KEY"], max_retries=0)
//! r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
//! print(json.dumps({"content": r.choices[0].message.content}))
//! "#)
//!     .unwrap();
//! ```

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default limit on one snippet's run time (the interpreter and SDK imports take ~1 s here).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables removed from every run: they would override what a snippet is given.
const CLEARED_ENV: [&str; 8] = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "PYTHONPATH",
];

/// The interpreter: `$E2E_PYTHON` if set, else `<repo>/.venv/bin/python`.
pub fn python_bin() -> PathBuf {
    match std::env::var_os("E2E_PYTHON") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => crate::repo_root().join(".venv").join("bin").join("python"),
    }
}

/// What one run printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit status; `None` when the run was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Whether it was killed at the timeout.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
}

/// Why [`Sdk::run_json`] failed. `Debug` prints the same as `Display` (with the snippet's stdout and
/// stderr), so `.unwrap()` shows what Python said readably.
pub enum SdkError {
    /// The interpreter could not be run.
    Spawn { python: PathBuf, error: io::Error },
    /// The snippet failed (non-zero exit, or killed at the timeout): everything it printed.
    Failed(Output),
    /// The last line of its stdout is not JSON.
    NotJson { output: Output, error: String },
}

impl fmt::Display for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdkError::Spawn { python, error } => write!(
                f,
                "cannot run {}: {error} (run `make venv`, or set E2E_PYTHON)",
                python.display()
            ),
            SdkError::Failed(out) => {
                let how = match out.status {
                    Some(status) => format!("exited with {status}"),
                    None => format!("was killed after {:.1}s", out.elapsed.as_secs_f64()),
                };
                write!(
                    f,
                    "python snippet {how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    out.stdout, out.stderr
                )
            }
            SdkError::NotJson { output, error } => write!(
                f,
                "last stdout line of the snippet is not JSON ({error})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                output.stdout, output.stderr
            ),
        }
    }
}

impl fmt::Debug for SdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for SdkError {}

/// One snippet run's settings (builder style).
#[derive(Debug, Clone)]
pub struct Sdk {
    base_url: String,
    api_key: String,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Sdk {
    /// `E2E_BASE_URL=base_url` (no trailing slash, e.g. `http://127.0.0.1:PORT`) and
    /// `E2E_API_KEY=api_key`, timeout [`TIMEOUT`].
    pub fn new(base_url: &str, api_key: &str) -> Sdk {
        Sdk {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            env: Vec::new(),
            timeout: TIMEOUT,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn local(port: u16, api_key: &str) -> Sdk {
        Sdk::new(&format!("http://127.0.0.1:{port}"), api_key)
    }

    /// One more environment variable for the snippet.
    pub fn env(mut self, key: &str, value: &str) -> Sdk {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Another time limit.
    pub fn timeout(mut self, timeout: Duration) -> Sdk {
        self.timeout = timeout;
        self
    }

    /// Runs `python -c <script>`; kills it at the timeout. An `Err` only when it cannot be started.
    pub fn run(&self, script: &str) -> Result<Output, SdkError> {
        let python = python_bin();
        let mut cmd = Command::new(&python);
        cmd.arg("-c")
            .arg(script)
            .current_dir(crate::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("E2E_BASE_URL", &self.base_url)
            .env("E2E_API_KEY", &self.api_key)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        for key in CLEARED_ENV {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|error| SdkError::Spawn {
            python: python.clone(),
            error,
        })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait_with_timeout(&mut child, self.timeout);
        Ok(Output {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
            elapsed: started.elapsed(),
        })
    }

    /// Runs `script`, requires exit status 0, and parses the last non-empty line of its stdout as JSON
    /// (so a snippet may print other things before its result).
    pub fn run_json(&self, script: &str) -> Result<Value, SdkError> {
        let output = self.run(script)?;
        if !output.success() {
            return Err(SdkError::Failed(output));
        }
        let last = output
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        match serde_json::from_str(last) {
            Ok(v) => Ok(v),
            Err(e) => Err(SdkError::NotJson {
                error: e.to_string(),
                output,
            }),
        }
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut pipe = pipe?;
    thread::Builder::new()
        .name("sdk-pipe".into())
        .spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
        .ok()
}

fn join(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child` up to `timeout`; kills it then (returning `None`).
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The venv's interpreter runs snippets with the given environment, and the harness sees exit
    /// codes, stderr, JSON and timeouts. Needs `make venv`.
    #[test]
    fn runs_snippets() {
        let sdk = Sdk::local(4242, "sk-x").env("EXTRA", "1");
        let v = sdk
            .run_json(
                "import json, os\nprint('noise')\nprint(json.dumps({k: os.environ.get(k) for k in \
                 ['E2E_BASE_URL', 'E2E_API_KEY', 'EXTRA', 'OPENAI_API_KEY']}))",
            )
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"E2E_BASE_URL": "http://127.0.0.1:4242", "E2E_API_KEY": "sk-x",
                               "EXTRA": "1", "OPENAI_API_KEY": null})
        );

        let out = sdk
            .run("import sys; print('bad', file=sys.stderr); sys.exit(3)")
            .unwrap();
        assert_eq!(out.status.and_then(|s| s.code()), Some(3));
        assert_eq!(out.stderr.trim(), "bad");
        assert!(matches!(
            sdk.run_json("print('not json')"),
            Err(SdkError::NotJson { .. })
        ));
        assert!(matches!(
            sdk.run_json("raise SystemExit(1)"),
            Err(SdkError::Failed(_))
        ));

        let slow = sdk
            .clone()
            .timeout(Duration::from_millis(300))
            .run("import time; time.sleep(30)")
            .unwrap();
        assert!(
            slow.timed_out() && slow.elapsed < Duration::from_secs(10),
            "{slow:?}"
        );
    }
}
