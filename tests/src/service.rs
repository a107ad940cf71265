//! What every local service the e2e tests run has in common (Envoy, Redis, Webdis, ClickHouse): a fresh
//! directory under `target/e2e/`, a free port on 127.0.0.1, the binary looked up with a clear error when
//! it is not installed, a bounded wait for readiness, and a child process that is killed on drop. The
//! directory is removed on drop unless the test is panicking or `E2E_KEEP` is set (its path and the tail
//! of the service's log are then printed).

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often readiness is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// How many times a start is tried on fresh ports when the chosen port was taken in between.
pub const PORT_ATTEMPTS: usize = 3;

/// Why a service did not start: a message with the service's log. `Debug` prints the message as is, so
/// `X::start(..).unwrap()` shows the log readably.
pub struct StartError(pub String);

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<StartError> for io::Error {
    fn from(e: StartError) -> io::Error {
        io::Error::other(e.0)
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A new empty directory `target/e2e/<kind>-<pid>-<n>-<nanos>`.
pub fn fresh_dir(kind: &str) -> io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    let dir = crate::target_dir()
        .join("e2e")
        .join(format!("{kind}-{}-{n}-{nanos:09}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, then released). Another process can
/// take it before the service binds it; starters retry on fresh ports ([`PORT_ATTEMPTS`]).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// `n` distinct ports that were free a moment ago (all bound at once, then released).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Whether a service's log says its port was taken (the cue to retry on another port).
pub fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("EADDRINUSE")
}

/// Runs `try_start` (which picks its own free ports) again, up to [`PORT_ATTEMPTS`] times in all,
/// while it fails because a port it chose was taken in between ([`port_taken`] on the error's log).
pub fn retry_on_port_clash<T>(mut try_start: impl FnMut() -> Result<T, StartError>) -> Result<T, StartError> {
    let mut attempt = 1;
    loop {
        match try_start() {
            Err(e) if attempt < PORT_ATTEMPTS && port_taken(&e.0) => attempt += 1,
            other => return other,
        }
    }
}

/// Finds a service binary: `$<env_var>` if set, else `name` in `PATH`, then in `/usr/sbin`, `/usr/bin`,
/// `/sbin`, `/usr/local/bin` (Debian puts `clickhouse-server` in `/usr/sbin`, often not in a user's
/// `PATH`). The error names the binary, the package and how to install it.
pub fn find_bin(name: &str, env_var: &str, package: &str) -> Result<PathBuf, StartError> {
    if let Some(bin) = std::env::var_os(env_var).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(StartError(format!(
                "{env_var}={} is not a file (unset it to look up {name} in PATH)",
                bin.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback: Vec<PathBuf> = ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    std::env::split_paths(&path)
        .chain(fallback)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            StartError(format!(
                "{name} is not installed (not in PATH nor /usr/sbin): run `make services` \
                 (Debian package {package}) or set {env_var}"
            ))
        })
}

/// Polls `probe` every [`POLL`] until it returns `Ok(())`, the process exits, or `timeout` passes.
/// `probe`'s `Err` says what is still missing and ends up in the error message.
pub fn wait_ready(
    child: &mut Child,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not probed yet");
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("exited with {status} ({last})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for the process: {e}")),
        }
        match probe() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {:.1}s ({last})", timeout.as_secs_f64()));
        }
        thread::sleep(POLL);
    }
}

/// One service process run from a fresh directory, its stdout and stderr in `<dir>/<log>`. It can be
/// stopped and started again with the same command line (same ports, same files). Killed on drop; the
/// directory is removed then unless the test is panicking or `E2E_KEEP` is set.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    bin: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Extra log files (in the directory) whose tail is printed when the directory is kept.
    extra_logs: Vec<PathBuf>,
    keep: bool,
}

impl Daemon {
    /// Prepares (does not start) `bin args…` in `dir`, logging to `dir/<name>.log`.
    pub fn new(name: &str, bin: PathBuf, args: Vec<OsString>, dir: PathBuf) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        Daemon {
            name: name.to_string(),
            bin,
            args,
            dir,
            log,
            child: None,
            extra_logs: Vec::new(),
            keep: false,
        }
    }

    /// Also prints the tail of `file` (relative to the directory) when the directory is kept.
    pub fn with_extra_log(mut self, file: &str) -> Daemon {
        self.extra_logs.push(self.dir.join(file));
        self
    }

    /// Replaces the command-line arguments (for the next [`Daemon::spawn`]).
    pub fn set_args(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    /// Starts the process (killing a previous one first); the log file is appended to, so a restart
    /// keeps what the previous run wrote.
    pub fn spawn(&mut self) -> Result<(), StartError> {
        self.kill();
        let io_err = |what: &str, e: io::Error| StartError(format!("{what}: {e}"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| io_err(&format!("opening {}", self.log.display()), e))?;
        let log2 = log.try_clone().map_err(|e| io_err("cloning the log file", e))?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| StartError(format!("cannot run {} {}: {e}", self.name, self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `probe` succeeds (see [`wait_ready`]); on failure kills the process and returns an
    /// error with the log. The directory is then kept for inspection.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        probe: impl FnMut() -> Result<(), String>,
    ) -> Result<(), StartError> {
        let result = match self.child.as_mut() {
            Some(child) => wait_ready(child, timeout, probe),
            None => Err("not started".to_string()),
        };
        result.map_err(|e| {
            self.kill();
            self.keep = true;
            StartError(format!(
                "{} did not start: {e}\ncommand: {} {}\ndir: {}\n--- log ---\n{}--- end of log ---",
                self.name,
                self.bin.display(),
                self.args
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                self.dir.display(),
                self.logs_with_extra()
            ))
        })
    }

    /// Kills the process (SIGKILL: like a crash, and immediate) and reaps it; no-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running (started and not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The service's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        read_lossy(&self.log)
    }

    /// [`Daemon::logs`] then each extra log file.
    pub fn logs_with_extra(&self) -> String {
        let mut out = self.logs();
        for file in &self.extra_logs {
            out.push_str(&format!("--- {} ---\n{}", file.display(), read_lossy(file)));
        }
        out
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if self.keep || thread::panicking() || std::env::var_os("E2E_KEEP").is_some() {
            eprintln!(
                "{} dir kept: {}\n--- {} logs (tail) ---\n{}\n--- end of {} logs ---",
                self.name,
                self.dir.display(),
                self.name,
                tail(&self.logs_with_extra(), 200),
                self.name
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert!(port > 0);
        TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }

    #[test]
    fn fresh_dirs_are_new_and_empty() {
        let a = fresh_dir("unit").unwrap();
        let b = fresh_dir("unit").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(crate::target_dir().join("e2e")));
        assert_eq!(fs::read_dir(&a).unwrap().count(), 0);
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn missing_binaries_are_named() {
        let e = find_bin(
            "no-such-service-binary",
            "E2E_TEST_NO_SUCH_BIN",
            "no-such-package",
        )
        .unwrap_err();
        assert!(e.0.contains("no-such-service-binary is not installed"), "{e}");
        assert!(
            e.0.contains("make services") && e.0.contains("no-such-package"),
            "{e}"
        );
        // A binary that is always there, found through PATH or the fallback directories.
        assert!(find_bin("sh", "E2E_TEST_NO_SUCH_BIN", "dash").unwrap().is_file());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    /// A process that exits at once fails readiness with its exit status and log, and the directory
    /// is kept (then removed here).
    #[test]
    fn exits_are_reported_with_the_log() {
        let dir = fresh_dir("unit").unwrap();
        let mut d = Daemon::new(
            "sh",
            find_bin("sh", "E2E_TEST_NO_SUCH_BIN", "dash").unwrap(),
            vec!["-c".into(), "echo boom; exit 3".into()],
            dir.clone(),
        );
        d.spawn().unwrap();
        let e = d
            .wait_ready(Duration::from_secs(5), || Err("never ready".into()))
            .unwrap_err();
        assert!(e.0.contains("exited with exit status: 3"), "{e}");
        assert!(e.0.contains("boom"), "{e}");
        d.keep = false;
        drop(d);
        assert!(!dir.exists());
    }

    #[test]
    fn readiness_times_out() {
        let dir = fresh_dir("unit").unwrap();
        let mut d = Daemon::new(
            "sleep",
            find_bin("sleep", "E2E_TEST_NO_SUCH_BIN", "coreutils").unwrap(),
            vec!["30".into()],
            dir,
        );
        d.spawn().unwrap();
        assert!(d.is_running());
        let start = Instant::now();
        let e = d
            .wait_ready(Duration::from_millis(200), || Err("still waiting".into()))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(e.0.contains("not ready after 0.2s (still waiting)"), "{e}");
        assert!(!d.is_running());
        d.keep = false;
    }
}
