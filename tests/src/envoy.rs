//! Launches a real Envoy for one test: a generated config (the shape of `envoy/demo.yaml`) under a
//! fresh directory in `target/e2e/`, admin and listener on port 0, ports discovered through
//! `--admin-address-path` and `/listeners?format=json`, ready when `/ready` answers 200. The process is
//! killed on drop; the directory is removed then, unless the test is panicking or `E2E_KEEP` is set (its
//! path and the tail of Envoy's log are then printed). A failed start keeps its directory too.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http;

/// How long [`Envoy::start`] waits for Envoy to be ready. V8 compiles every module at start: the demo's
/// seven modules take 15-25 s on a busy 2-core machine (under 10 s on an idle one), so this is generous;
/// it only delays the report of an Envoy that never starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One proxy-wasm HTTP filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Filter name; also the plugin `root_id`.
    pub name: String,
    /// The `.wasm` file (made absolute against the repository root if relative).
    pub wasm: PathBuf,
    /// Plugin configuration, embedded as a `google.protobuf.StringValue`: a JSON string is embedded
    /// verbatim (so tests can pass invalid JSON), `null` omits `configuration`, anything else is
    /// serialized as compact JSON.
    pub config: Value,
}

impl Filter {
    pub fn new(name: &str, wasm: impl Into<PathBuf>, config: Value) -> Filter {
        Filter {
            name: name.to_string(),
            wasm: wasm.into(),
            config,
        }
    }

    /// The `ai-proxy` filter from its release build ([`crate::wasm_path`]`("ai_proxy")`).
    pub fn ai_proxy(config: Value) -> Filter {
        Filter::new("ai-proxy", crate::wasm_path("ai_proxy"), config)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyOptions {
    /// Wasm filters in order; the router always follows them. May be empty.
    pub filters: Vec<Filter>,
    /// Port of the mock provider; clusters `mock_openai`, `mock_anthropic`, `mock_azure` point at it.
    pub mock_port: u16,
    /// Worker threads (`--concurrency`), default 1.
    pub concurrency: u32,
    /// VM environment (`vm_config.environment_variables.key_values`) given to every filter.
    pub env: Vec<(String, String)>,
    /// More clusters on 127.0.0.1: `(name, port)`, e.g. a callout service a test runs.
    pub clusters: Vec<(String, u16)>,
    /// The route's upstream timeout (default 60 s).
    pub route_timeout: Duration,
    /// Whether the HCM gets [`LOCAL_REPLY_CONFIG`] (default true, as every shipped config has it).
    pub local_reply: bool,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            filters: Vec::new(),
            mock_port: 0,
            concurrency: 1,
            env: Vec::new(),
            clusters: Vec::new(),
            route_timeout: Duration::from_secs(60),
            local_reply: true,
        }
    }
}

impl EnvoyOptions {
    /// No filters, concurrency 1, no env, clusters on `mock_port`.
    pub fn new(mock_port: u16) -> EnvoyOptions {
        EnvoyOptions {
            mock_port,
            ..EnvoyOptions::default()
        }
    }

    /// Adds a filter (builder style).
    pub fn filter(mut self, filter: Filter) -> EnvoyOptions {
        self.filters.push(filter);
        self
    }

    /// Adds a cluster for a service on 127.0.0.1 (builder style).
    pub fn cluster(mut self, name: &str, port: u16) -> EnvoyOptions {
        self.clusters.push((name.to_string(), port));
        self
    }

    /// Adds a VM environment variable (builder style).
    pub fn env(mut self, key: &str, value: &str) -> EnvoyOptions {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// Why [`Envoy::start`] failed: a message with Envoy's log (shared with the other services).
pub use crate::service::StartError;

/// A running Envoy; killed on drop.
#[derive(Debug)]
pub struct Envoy {
    /// The listener port (`ai_gateway`).
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
    dir: PathBuf,
    child: Child,
    /// The secrets its filters were configured with ([`secrets_of`]); no log line may carry one.
    secrets: Vec<String>,
}

/// Shortest configured value taken for a secret: shorter ones (test placeholders like `"k"`) would
/// match ordinary log text.
const MIN_SECRET: usize = 8;

/// The secrets in `opts`' filter configs: every `{"value": "..."}` secret source, every
/// `{"env": "NAME"}` one resolved through `opts.env`, and `hash_key` / `secret` / `password` strings
/// (at least [`MIN_SECRET`] bytes each).
pub fn secrets_of(opts: &EnvoyOptions) -> Vec<String> {
    fn walk(v: &Value, env: &[(String, String)], out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let only = |k: &str| map.len() == 1 && map.contains_key(k);
                if let (true, Some(Value::String(s))) = (only("value"), map.get("value")) {
                    out.push(s.clone());
                }
                if let (true, Some(Value::String(name))) = (only("env"), map.get("env")) {
                    out.extend(env.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()));
                }
                for (k, v) in map {
                    match v {
                        Value::String(s) if ["hash_key", "secret", "password"].contains(&k.as_str()) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, env, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, env, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in &opts.filters {
        walk(&f.config, &opts.env, &mut out);
    }
    out.retain(|s| s.len() >= MIN_SECRET);
    out.sort();
    out.dedup();
    out
}

/// The lines of `logs` that carry one of `secrets`, each with the secret's first four characters.
pub fn leaked_lines(logs: &str, secrets: &[&str]) -> Vec<String> {
    logs.lines()
        .filter_map(|line| {
            let s = secrets.iter().find(|s| !s.is_empty() && line.contains(**s))?;
            Some(format!("{}…: {line}", s.chars().take(4).collect::<String>()))
        })
        .collect()
}

/// Panics if Envoy's log carries one of the secrets it was configured with or one of `extra` (e.g. a
/// key only the test knows). Dropping an [`Envoy`] does the first check too, for every test.
pub fn assert_no_secrets(envoy: &Envoy, extra: &[&str]) {
    let mut all: Vec<&str> = envoy.secrets.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let leaked = leaked_lines(&envoy.logs(), &all);
    assert!(
        leaked.is_empty(),
        "secrets in envoy's log:\n{}",
        leaked.join("\n")
    );
}

/// A YAML/JSON double-quoted scalar.
fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

const STATS_TAGS: [&str; 28] = [
    "sink",
    "policy",
    "provider",
    "target",
    "model",
    "status",
    "kind",
    "outcome",
    "state",
    "from",
    "to",
    "decision",
    "limit",
    "type",
    "action",
    "direction",
    "mode",
    "check",
    "rule",
    "family",
    "result",
    "what",
    "code",
    "stage",
    "task",
    "param",
    "balancer",
    "reason",
];
const CLUSTERS: [&str; 3] = ["mock_openai", "mock_anthropic", "mock_azure"];

/// The HCM's `local_reply_config` of every shipped Envoy config (`envoy/demo.yaml`,
/// `examples/envoy/envoy.yaml`, the Istio and Kuma patches; a test keeps them equal to this), here at
/// indent 0. Envoy's own replies on LLM routes become OpenAI errors with a meaningful status and
/// `content-type: application/json`. "LLM route" = the request carries `x-ai-cluster`: ai-proxy sets
/// it on every request it forwards and removes a client's own, so it is present exactly when ai-proxy
/// routed the request. Only replies with an upstream response flag are touched, so the filters' own
/// JSON errors (which carry no flag) pass unchanged.
pub const LOCAL_REPLY_CONFIG: &str = r#"local_reply_config:
  mappers:
  - filter:
      and_filter:
        filters:
        - header_filter: { header: { name: x-ai-cluster, present_match: true } }
        - response_flag_filter: { flags: [UT, UMSDR] }
    status_code: 504
    body_format_override:
      json_format:
        error: { message: "%LOCAL_REPLY_BODY%", type: upstream_error, code: upstream_timeout }
  - filter:
      and_filter:
        filters:
        - header_filter: { header: { name: x-ai-cluster, present_match: true } }
        - response_flag_filter: { flags: [UF, UC, UR, URX, UPE, LR] }
    status_code: 502
    body_format_override:
      json_format:
        error: { message: "%LOCAL_REPLY_BODY%", type: upstream_error, code: upstream_unavailable }
  - filter:
      and_filter:
        filters:
        - header_filter: { header: { name: x-ai-cluster, present_match: true } }
        - response_flag_filter: { flags: [UH, UO] }
    status_code: 503
    body_format_override:
      json_format:
        error: { message: "%LOCAL_REPLY_BODY%", type: upstream_error, code: upstream_unavailable }
  - filter:
      and_filter:
        filters:
        - header_filter: { header: { name: x-ai-cluster, present_match: true } }
        - response_flag_filter: { flags: [NC, NR] }
    status_code: 503
    body_format_override:
      json_format:
        error: { message: "the gateway has no upstream for this target (%RESPONSE_CODE_DETAILS%)", type: upstream_error, code: no_upstream }
"#;

/// `text` with every line indented by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The Envoy config (YAML) for `opts`, in the shape of `envoy/demo.yaml`: admin and listener on
/// 127.0.0.1 port 0, the wasm filters then the router, clusters on the mock port, the same stats_tags.
/// `admin_path` is the `--admin-address-path` file; its directory also receives the admin profile path.
pub fn render_config(opts: &EnvoyOptions, admin_path: &Path) -> String {
    let dir = admin_path.parent().unwrap_or_else(|| Path::new("."));
    let mut y = String::new();
    y.push_str("# Generated by e2e::envoy::render_config (shape of envoy/demo.yaml).\n");
    y.push_str(&format!(
        "# The admin address is written to {} (--admin-address-path).\n",
        admin_path.display()
    ));
    y.push_str("admin:\n");
    y.push_str("  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n");
    y.push_str(&format!(
        "  profile_path: {}\n",
        q(&dir.join("envoy.prof").to_string_lossy())
    ));
    y.push_str("stats_config:\n  stats_tags:\n");
    for tag in STATS_TAGS {
        y.push_str(&format!(
            "  - {{ tag_name: {tag}, regex: \"(_{tag}=([^_=]+))\" }}\n"
        ));
    }
    y.push_str(
        &r#"static_resources:
  listeners:
  - name: ai_gateway
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    per_connection_buffer_limit_bytes: 4194304
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ai_gateway
{local_reply}          access_log:
          - name: envoy.access_loggers.stderr
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
              log_format:
                text_format_source:
                  inline_string: "[access] %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS% upstream=%UPSTREAM_CLUSTER%/%UPSTREAM_HOST% %DURATION%ms\n"
          route_config:
            virtual_hosts:
            - name: ai
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster_header: x-ai-cluster, cluster_not_found_response_code: NOT_FOUND, timeout: {timeout}s }
          http_filters:
"#
        .replace(
            "{local_reply}",
            &if opts.local_reply { indent(LOCAL_REPLY_CONFIG, 10) } else { String::new() },
        )
        .replace("{timeout}", &opts.route_timeout.as_secs_f64().to_string()),
    );
    for filter in &opts.filters {
        let wasm = if filter.wasm.is_absolute() {
            filter.wasm.clone()
        } else {
            crate::repo_root().join(&filter.wasm)
        };
        y.push_str(&format!(
            r#"          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                allow_on_headers_stop_iteration: true
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {wasm} }} }}
"#,
            name = q(&filter.name),
            wasm = q(&wasm.to_string_lossy()),
        ));
        if !opts.env.is_empty() {
            y.push_str("                  environment_variables:\n                    key_values:\n");
            for (key, value) in &opts.env {
                y.push_str(&format!("                      {}: {}\n", q(key), q(value)));
            }
        }
        let config = match &filter.config {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        if let Some(config) = config {
            y.push_str(&format!(
                r#"                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {}
"#,
                q(&config)
            ));
        }
    }
    y.push_str(
        r#"          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
"#,
    );
    let mock = CLUSTERS.iter().map(|c| (c.to_string(), opts.mock_port));
    // `mock_dead` points at port 1, where nothing listens: for upstream connection failures.
    let clusters: Vec<(String, u16)> = mock
        .chain([("mock_dead".to_string(), 1)])
        .chain(opts.clusters.iter().cloned())
        .collect();
    // `mock_empty` has no endpoint (no healthy upstream), `mock_full` a circuit breaker that admits
    // nothing (overflow): for Envoy's own 503s.
    y.push_str(
        r#"  - name: mock_empty
    type: STATIC
    connect_timeout: 2s
    load_assignment: { cluster_name: mock_empty, endpoints: [] }
"#,
    );
    y.push_str(&format!(
        r#"  - name: mock_full
    type: STATIC
    connect_timeout: 2s
    circuit_breakers: {{ thresholds: [{{ max_connections: 0, max_pending_requests: 0, max_requests: 0 }}] }}
    load_assignment:
      cluster_name: mock_full
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }} }}] }}]
"#,
        opts.mock_port
    ));
    for (cluster, port) in clusters {
        y.push_str(&format!(
            r#"  - name: {cluster}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {cluster}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]
"#,
        ));
    }
    y
}

fn fresh_dir() -> io::Result<PathBuf> {
    crate::service::fresh_dir("envoy")
}

/// Whether `E2E_BUNDLE=1`: every suite then runs its policies inside the bundle module.
pub fn bundle_mode() -> bool {
    std::env::var("E2E_BUNDLE").is_ok_and(|v| v == "1")
}

/// The log line a filter writes when it refuses its configuration at `field`, as the only filter of the
/// test (in bundle mode the bundle writes it, naming the chain entry).
pub fn config_refused(filter: &str, field: &str) -> String {
    if bundle_mode() {
        format!("ai-gateway: configuration refused: chain[0].config.{field}")
    } else {
        format!("{filter}: configuration refused: {field}")
    }
}

/// The policy modules the bundle links (the names are the chain's `policy` values).
const BUNDLED: [&str; 6] = [
    "ai-prompt-guard",
    "ai-token-ratelimit",
    "ai-pii-redact",
    "ai-enrich",
    "ai-router",
    "ai-proxy",
];

/// Replaces each run of consecutive policy modules by one `ai-gateway` filter whose chain holds their
/// configs in the same order, so a suite written for the separate modules proves the bundle does the
/// same. A filter whose config is not a JSON object (a test of a broken config) stays separate.
pub fn bundled(mut opts: EnvoyOptions) -> EnvoyOptions {
    let mut out: Vec<Filter> = Vec::new();
    let mut chain: Vec<Value> = Vec::new();
    let flush = |chain: &mut Vec<Value>, out: &mut Vec<Filter>| {
        if !chain.is_empty() {
            let config = serde_json::json!({ "chain": std::mem::take(chain) });
            out.push(Filter::new("ai-gateway", crate::wasm_path("ai_gateway"), config));
        }
    };
    for f in opts.filters.drain(..) {
        if BUNDLED.contains(&f.name.as_str()) && f.config.is_object() {
            chain.push(serde_json::json!({"policy": f.name, "config": f.config}));
        } else {
            flush(&mut chain, &mut out);
            out.push(f);
        }
    }
    flush(&mut chain, &mut out);
    opts.filters = out;
    opts
}

impl Envoy {
    /// Starts Envoy and waits (up to [`START_TIMEOUT`]) until it is ready. The error carries Envoy's
    /// log and prints readably through `.unwrap()` (its `Debug` is its message).
    pub fn start(opts: EnvoyOptions) -> Result<Envoy, StartError> {
        let concurrency = opts.concurrency;
        let secrets = secrets_of(&opts);
        let opts = if bundle_mode() { bundled(opts) } else { opts };
        let mut envoy = Envoy::start_config(|admin_path| render_config(&opts, admin_path), concurrency)?;
        envoy.secrets = secrets;
        Ok(envoy)
    }

    /// Starts Envoy with a config of the caller's (e.g. a shipped file with its ports changed): `config`
    /// gets the `--admin-address-path` file and returns the YAML. Admin and the first listener may use
    /// port 0; both are discovered.
    pub fn start_config(config: impl FnOnce(&Path) -> String, concurrency: u32) -> Result<Envoy, StartError> {
        let dir =
            fresh_dir().map_err(|e| StartError(format!("cannot create a directory in target/e2e: {e}")))?;
        let admin_path = dir.join("admin-address.txt");
        let config_path = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let io_err = |what: &str, e: io::Error| StartError(format!("{what}: {e}"));
        fs::write(&config_path, config(&admin_path)).map_err(|e| io_err("writing envoy.yaml", e))?;
        let log = File::create(&log_path).map_err(|e| io_err("creating envoy.log", e))?;
        let log2 = log.try_clone().map_err(|e| io_err("cloning envoy.log", e))?;
        let bin = crate::envoy_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config_path)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                &concurrency.max(1).to_string(),
            ])
            // Debug: the policies' per-request summary lines (ai-proxy, ai-pii-redact, the rate limit) are
            // at debug level, and tests read them.
            .args(["-l", "warning", "--component-log-level", "wasm:debug"])
            // The access log goes through Envoy's file flusher (default every 10 s).
            .args(["--file-flush-interval-msec", "50"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .current_dir(crate::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                StartError(format!(
                    "cannot run envoy {}: {e} (set ENVOY_BIN?)",
                    bin.display()
                ))
            })?;
        let mut envoy = Envoy {
            port: 0,
            admin_port: 0,
            dir,
            child,
            secrets: Vec::new(),
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(e) => {
                let _ = envoy.child.kill();
                let _ = envoy.child.wait();
                let msg = format!(
                    "envoy did not start: {e}\nconfig: {}\n--- envoy log ({}) ---\n{}--- end of envoy log ---",
                    config_path.display(),
                    log_path.display(),
                    envoy.logs()
                );
                // Keep the directory for inspection; Drop would remove it.
                std::mem::forget(envoy);
                Err(StartError(msg))
            }
        }
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let admin_path = self.dir.join("admin-address.txt");
        let mut last = String::from("no admin address yet");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("envoy exited with {status} ({last})")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not ready after {}s ({last})", START_TIMEOUT.as_secs()),
                ));
            }
            match self.poll_ready(&admin_path) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// One readiness step; `Err` describes what is still missing.
    fn poll_ready(&mut self, admin_path: &Path) -> Result<bool, String> {
        if self.admin_port == 0 {
            let text = fs::read_to_string(admin_path).map_err(|_| "no admin address yet".to_string())?;
            let port = text
                .trim()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            match port {
                Some(p) if p > 0 => self.admin_port = p,
                _ => return Err(format!("admin address file holds {text:?}")),
            }
        }
        if self.port == 0 {
            let resp = http::request(self.admin_port, "GET", "/listeners?format=json", &[], b"")
                .map_err(|e| format!("GET /listeners: {e}"))?;
            let json = resp
                .try_json()
                .map_err(|e| format!("GET /listeners: {e}: {}", resp.text()))?;
            let port = json
                .get("listener_statuses")
                .and_then(Value::as_array)
                .and_then(|ls| {
                    ls.iter()
                        .find(|l| l.get("name").and_then(Value::as_str) == Some("ai_gateway"))
                })
                .and_then(|l| l.pointer("/local_address/socket_address/port_value"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0);
            match port {
                Some(p) => self.port = p,
                None => return Err(format!("listener port not known yet: {json}")),
            }
        }
        let resp = http::request(self.admin_port, "GET", "/ready", &[], b"")
            .map_err(|e| format!("GET /ready: {e}"))?;
        if resp.status == 200 {
            Ok(true)
        } else {
            Err(format!("GET /ready: {} {}", resp.status, resp.text().trim()))
        }
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The Envoy process id (for its memory in `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding `envoy.yaml`, `envoy.log` and `admin-address.txt`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything Envoy wrote to stdout/stderr so far (logs at warning, wasm at info, access log lines
    /// starting with `[access]`).
    pub fn logs(&self) -> String {
        fs::read(self.dir.join("envoy.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` to appear in [`Envoy::logs`]; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET` on the admin interface; panics if the admin does not answer.
    pub fn admin(&self, path: &str) -> http::Response {
        match http::request(self.admin_port, "GET", path, &[], b"") {
            Ok(resp) => resp,
            Err(e) => panic!("envoy admin GET {path}: {e}\n--- envoy log ---\n{}", self.logs()),
        }
    }

    /// The text of `/stats/prometheus`.
    pub fn stats_prometheus(&self) -> String {
        self.admin("/stats/prometheus").text()
    }

    /// The text of `/stats` (`name: value` lines, full names with embedded labels).
    pub fn stats(&self) -> String {
        self.admin("/stats").text()
    }

    /// The value of counter or gauge `name` from `/stats` (exact full name), if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().lines().find_map(|line| {
            let (n, v) = line.rsplit_once(": ")?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// Sends a request to the listener (see [`http::request`]); panics on connection errors.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        match http::request(self.port, method, path, headers, body) {
            Ok(resp) => resp,
            Err(e) => panic!(
                "request {method} {path} through envoy: {e}\n--- envoy log ---\n{}",
                self.logs()
            ),
        }
    }

    /// `POST /v1/chat/completions` with a JSON body and `content-type: application/json`, plus `headers`.
    pub fn chat(&self, body: &serde_json::Value, headers: &[(&str, &str)]) -> http::Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", "/v1/chat/completions", &h, body.to_string().as_bytes())
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
            let leaked = leaked_lines(&self.logs(), &secrets);
            if !leaked.is_empty() {
                let dir = self.dir.display();
                panic!("secrets in envoy's log ({dir} kept):\n{}", leaked.join("\n"));
            }
        }
        if thread::panicking() || std::env::var_os("E2E_KEEP").is_some() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(200)..)
                .unwrap_or_default()
                .join("\n");
            eprintln!(
                "envoy dir kept: {}\n--- envoy log (tail) ---\n{tail}\n--- end of envoy log ---",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_shape() {
        let opts = EnvoyOptions {
            filters: vec![
                Filter::new(
                    "ai-proxy",
                    "/abs/ai_proxy.wasm",
                    json!({"targets": [], "q": "a\"b"}),
                ),
                Filter::new("raw", "rel/x.wasm", json!("{not json")),
                Filter::new("none", "/abs/none.wasm", Value::Null),
            ],
            mock_port: 12345,
            concurrency: 2,
            env: vec![("OPENAI_API_KEY".into(), "k 1".into())],
            clusters: vec![("svc".into(), 4242)],
            ..EnvoyOptions::default()
        };
        let y = render_config(&opts, Path::new("/tmp/x/admin-address.txt"));
        assert_eq!(y.matches("port_value: 0 ").count(), 2, "{y}");
        assert_eq!(y.matches("port_value: 12345 ").count(), 4, "{y}");
        assert!(
            y.contains("name: mock_empty") && y.contains("name: mock_full"),
            "{y}"
        );
        assert!(y.contains(&indent(LOCAL_REPLY_CONFIG, 10)), "{y}");
        assert!(y.contains("name: svc") && y.contains("port_value: 4242 "), "{y}");
        assert!(y.contains("name: mock_dead"), "{y}");
        assert_eq!(y.matches("allow_on_headers_stop_iteration: true").count(), 3);
        assert!(y.contains("root_id: \"ai-proxy\""));
        assert!(y.contains(r#"value: "{\"q\":\"a\\\"b\",\"targets\":[]}""#), "{y}");
        assert!(y.contains(r#"value: "{not json""#));
        assert_eq!(y.matches("configuration:").count(), 2);
        assert!(y.contains(&format!(
            "filename: {}",
            q(&crate::repo_root().join("rel/x.wasm").to_string_lossy())
        )));
        assert_eq!(y.matches("\"OPENAI_API_KEY\": \"k 1\"").count(), 3);
        assert!(y.contains("tag_name: kind, regex: \"(_kind=([^_=]+))\""));
        assert!(y.contains("per_connection_buffer_limit_bytes: 4194304"));
        assert!(y.contains(
            "cluster_header: x-ai-cluster, cluster_not_found_response_code: NOT_FOUND, timeout: 60s"
        ));
        let router = y.find("envoy.filters.http.router").unwrap();
        assert!(y.find("name: \"none\"").unwrap() < router);
        assert!(!y.contains('\t'));
    }

    #[test]
    fn secrets_are_found_in_configs_and_lines() {
        let opts = EnvoyOptions {
            filters: vec![
                Filter::new(
                    "p",
                    "/x.wasm",
                    json!({"targets": [{"auth": {"value": "sk-live-123456"}}, {"auth": {"env": "KEY"}}],
                           "header": {"name": "x", "value": "not-a-secret-source"}, "short": {"value": "k"}}),
                ),
                Filter::new(
                    "q",
                    "/y.wasm",
                    json!({"hash_key": "hmac-key-abcdef", "chain": [{"secret": "jwt-secret-99"}]}),
                ),
            ],
            env: vec![
                ("KEY".into(), "env-key-987654".into()),
                ("OTHER".into(), "unused-value-1".into()),
            ],
            ..EnvoyOptions::default()
        };
        assert_eq!(
            secrets_of(&opts),
            [
                "env-key-987654",
                "hmac-key-abcdef",
                "jwt-secret-99",
                "sk-live-123456"
            ]
        );
        let logs = "ok line\nauthorization: Bearer sk-live-123456\nfine";
        assert_eq!(
            leaked_lines(logs, &["sk-live-123456", "absent-secret"]),
            ["sk-l…: authorization: Bearer sk-live-123456"]
        );
    }

    #[test]
    fn config_without_filters_or_env() {
        let y = render_config(&EnvoyOptions::new(1), Path::new("/tmp/x/admin-address.txt"));
        assert!(!y.contains("envoy.extensions.filters.http.wasm"));
        assert!(!y.contains("environment_variables"));
        assert!(y.contains("envoy.filters.http.router"));
    }

    /// The block under the first line equal to `key` (after its indentation), dedented: every following
    /// line indented deeper than `key` (blank lines kept).
    fn block_under(text: &str, key: &str) -> Option<String> {
        let mut lines = text.lines();
        let first = lines.by_ref().find(|l| l.trim() == key)?;
        let indent = first.len() - first.trim_start().len();
        let mut out = format!("{key}\n");
        for l in lines {
            let deeper = l.len() - l.trim_start().len() > indent;
            if !l.trim().is_empty() && !deeper {
                break;
            }
            out.push_str(l.get(indent..).unwrap_or(""));
            out.push('\n');
        }
        Some(out)
    }

    /// Every shipped Envoy config carries the same mappers as the harness.
    #[test]
    fn shipped_configs_carry_the_local_reply_mappers() {
        for file in [
            "envoy/demo.yaml",
            "examples/envoy/envoy.yaml",
            "examples/istio/envoyfilter.yaml",
            "examples/kuma/meshproxypatch.yaml",
        ] {
            let text = fs::read_to_string(crate::repo_root().join(file)).unwrap();
            assert_eq!(
                block_under(&text, "local_reply_config:").as_deref(),
                Some(LOCAL_REPLY_CONFIG),
                "{file}"
            );
        }
    }

    /// The Kuma example's listener (with its mappers) is a listener Envoy accepts.
    #[test]
    fn kuma_listener_validates_in_envoy() {
        let text = fs::read_to_string(crate::repo_root().join("examples/kuma/meshproxypatch.yaml")).unwrap();
        let start = text.find("name: ai-gateway\n          address:").unwrap();
        let value = &text[..start];
        let at = value.rfind("value: |").unwrap();
        let value_line = value[..at].rfind('\n').map_or(0, |i| i + 1);
        let listener = block_under(&text[value_line..], "value: |").unwrap();
        let listener: String = listener
            .lines()
            .skip(1)
            .map(|l| format!("  {}\n", l.get(2..).unwrap_or("")))
            .collect();
        let listener = listener.replacen("  name:", "- name:", 1);
        let yaml = format!("static_resources:\n  listeners:\n{}", indent(&listener, 2));
        let dir = fresh_dir().unwrap();
        let path = dir.join("kuma.yaml");
        fs::write(&path, &yaml).unwrap();
        let out = Command::new(crate::envoy_bin())
            .args(["--mode", "validate", "--disable-hot-restart", "-l", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{yaml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Envoy itself accepts the generated config (`--mode validate`; no wasm filter so nothing to load).
    #[test]
    fn config_validates_in_envoy() {
        let dir = fresh_dir().unwrap();
        let path = dir.join("envoy.yaml");
        fs::write(
            &path,
            render_config(&EnvoyOptions::new(10001), &dir.join("admin-address.txt")),
        )
        .unwrap();
        let out = Command::new(crate::envoy_bin())
            .args(["--mode", "validate", "--disable-hot-restart", "-l", "error", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
