//! A fleet-wide store: Redis, reached over HTTP through Webdis (filters can only make HTTP callouts).
//!
//! - [`Store`] is the `store` block a filter's config may carry (`{"type": "local"}`, the default, or
//!   `{"type": "redis", "upstream": …, "key_prefix", "timeout", "mode", "sync_interval",
//!   "failure_mode"}`); the Webdis endpoint is an ordinary [`Service`], so calls are built, judged and
//!   retried like every other callout.
//! - Every command is one Lua script run atomically by Redis: [`eval_path`] writes Webdis's
//!   `EVAL/<script>/<numkeys>/<keys…>/<args…>` (sent as `GET /EVAL/…`, each argument percent-encoded,
//!   since Webdis splits on `/`, decodes `%XX` and reads a trailing `.ext` as the output format; a GET,
//!   because Kong's dispatcher sends `connection: close` and Webdis never answers such a POST whose
//!   body comes in a later TCP segment), and [`reply`] reads its `{"EVAL": value}` answer
//!   (`[false, "ERR …"]` is a Redis error; Webdis answers 503 while Redis is down).
//! - [`Health`] is the gateway's view of the store, kept in shared data so every worker agrees: up
//!   until a call fails, then down (requests apply the failure mode without calling) until the root
//!   timer's next call answers. Each change is logged once and counted
//!   (`<filter>_store_transitions_total{state}`).
//! - [`instance_id`] names this gateway process in Redis (for exactly-once syncs), [`seed`] gives
//!   randomness without a dependency.

use crate::callout::{Callout, Failure, Names, RawService, Service, Timeouts};
use crate::config::{ConfigError, Duration, FailureMode};
use crate::host::{update_shared, Host, LogLevel, Upstream};
use crate::metrics;
use serde_json::Value;
use std::collections::BTreeMap;

/// How a limit uses Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every admission is one round trip to Redis: one atomic check-and-add.
    #[default]
    Exact,
    /// Admissions are decided on a local copy of the fleet's totals, refreshed from the root timer every
    /// `sync_interval`: no round trip per request, a bounded overshoot.
    Hybrid,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Exact => "exact",
            SyncMode::Hybrid => "hybrid",
        }
    }
}

/// What a request gets while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFailure {
    /// Counted in this gateway's own shared data, against the same limits (per instance, as with
    /// `type: local`).
    #[default]
    Local,
    /// Let through uncounted.
    Allow,
    /// Refused (503).
    Deny,
}

impl StoreFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreFailure::Local => "local",
            StoreFailure::Allow => "allow",
            StoreFailure::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Local,
    Redis,
}

/// The `store` block as written. One flat struct rather than an enum tagged by `type`: serde's tagged
/// enums buffer the whole object first, which costs a module some 10 KiB; [`Store::compile`] refuses the
/// Redis fields on `type: local` instead.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    upstream: Option<Upstream>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    mode: Option<SyncMode>,
    #[serde(default)]
    sync_interval: Option<Duration>,
    #[serde(default)]
    failure_mode: Option<StoreFailure>,
}

impl RawStore {
    /// The first field set besides `type`, if any.
    fn first_field(&self) -> Option<&'static str> {
        let set = [
            ("upstream", self.upstream.is_some()),
            ("path", self.path.is_some()),
            ("headers", self.headers.is_some()),
            ("timeout", self.timeout.is_some()),
            ("retries", self.retries.is_some()),
            ("key_prefix", self.key_prefix.is_some()),
            ("mode", self.mode.is_some()),
            ("sync_interval", self.sync_interval.is_some()),
            ("failure_mode", self.failure_mode.is_some()),
        ];
        set.iter().find(|(_, on)| *on).map(|(name, _)| *name)
    }
}

/// Which fields of the block a user of it reads; the others are refused with their name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    /// `mode` (exact or hybrid): only counters have a choice.
    pub mode: bool,
    /// `failure_mode`: only where a request can be refused or counted locally.
    pub failure_mode: bool,
}

/// A rate limit reads every field.
pub const COUNTERS: Uses = Uses {
    mode: true,
    failure_mode: true,
};

/// A breaker is always synced from the timer and keeps working on its own while Redis is away.
pub const BREAKERS: Uses = Uses {
    mode: false,
    failure_mode: false,
};

/// Webdis on the same network answers in about a millisecond: 100 ms by default, at most 10 s.
pub const TIMEOUTS: Timeouts = Timeouts {
    default_ms: 100,
    max_ms: 10_000,
};

pub const DEFAULT_KEY_PREFIX: &str = "ai-gateway:";
pub const DEFAULT_SYNC_MS: u64 = 1000;
pub const MIN_SYNC_MS: u64 = 50;
pub const MAX_SYNC_MS: u64 = 60_000;

/// A checked `type: redis` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// Webdis: upstream, path (`/`), headers (e.g. basic auth), timeout, retries.
    pub service: Service,
    /// Put in front of every Redis key, so several fleets or configs can share one Redis.
    pub key_prefix: String,
    pub mode: SyncMode,
    /// Period of the root timer's work (settlements, hybrid syncs, breaker syncs, health probes).
    pub sync_interval_ms: u64,
    pub failure_mode: StoreFailure,
}

/// A checked `store` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Store {
    /// This gateway's shared data only (every worker, one instance).
    #[default]
    Local,
    Redis(RedisStore),
}

impl Store {
    /// Checks a `store` block; `field` names it in errors (`store`, `resilience.breaker.store`).
    pub fn compile(field: &str, raw: RawStore, uses: Uses) -> Result<Store, ConfigError> {
        let at = |f: &str| format!("{field}.{f}");
        if raw.kind == Kind::Local {
            return match raw.first_field() {
                Some(f) => Err(ConfigError::new(at(f), "is only for `type: redis`")),
                None => Ok(Store::Local),
            };
        }
        let r = raw;
        let Some(upstream) = r.upstream else {
            return Err(ConfigError::new(at("upstream"), "is required for `type: redis`"));
        };
        if !uses.mode && r.mode.is_some() {
            return Err(ConfigError::new(
                at("mode"),
                "is not used here (shared state is synced from the timer)",
            ));
        }
        if !uses.failure_mode && r.failure_mode.is_some() {
            return Err(ConfigError::new(
                at("failure_mode"),
                "is not used here (the state stays local while Redis is away)",
            ));
        }
        let key_prefix = r.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
        if !valid_prefix(&key_prefix) {
            return Err(ConfigError::new(
                at("key_prefix"),
                "must be 1 to 64 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        let sync_interval_ms = r.sync_interval.map_or(DEFAULT_SYNC_MS, Duration::as_ms);
        if !(MIN_SYNC_MS..=MAX_SYNC_MS).contains(&sync_interval_ms) {
            return Err(ConfigError::new(
                at("sync_interval"),
                format!("must be {MIN_SYNC_MS} to {MAX_SYNC_MS} ms"),
            ));
        }
        let failure_mode = r.failure_mode.unwrap_or_default();
        let raw_service = RawService {
            upstream,
            path: r.path.unwrap_or_else(|| "/".to_string()),
            headers: r.headers.unwrap_or_default(),
            timeout: r.timeout,
            retries: r.retries,
            failure_mode: match failure_mode {
                StoreFailure::Allow => FailureMode::Allow,
                StoreFailure::Local | StoreFailure::Deny => FailureMode::Deny,
            },
        };
        let names = Names {
            upstream: "upstream",
            timeout: "timeout",
        };
        let service = Service::compile(field, names, raw_service, TIMEOUTS)?;
        Ok(Store::Redis(RedisStore {
            service,
            key_prefix,
            mode: r.mode.unwrap_or_default(),
            sync_interval_ms,
            failure_mode,
        }))
    }

    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Store::Local => None,
            Store::Redis(r) => Some(r),
        }
    }
}

fn valid_prefix(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl RedisStore {
    /// The call that runs `script` with `keys` and `args` (see [`eval_path`]).
    pub fn eval(&self, script: &str, keys: &[&str], args: &[String]) -> Callout {
        self.service.get(&eval_path(script, keys, args))
    }

    /// A `PING`, to learn whether Redis answers again.
    pub fn ping(&self) -> Callout {
        self.service.get("PING")
    }
}

/// Percent-encodes one Webdis path segment: everything but ASCII letters, digits, `-` and `_`.
pub fn encode_segment(out: &mut String, arg: &str) {
    use std::fmt::Write;
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _infallible = write!(out, "%{b:02X}");
        }
    }
}

/// The path (after the service's own) that makes Webdis run `EVAL script numkeys keys… args…`. Webdis
/// drops empty segments, so an empty key or argument is sent as a single space (our scripts never
/// pass one). Webdis reads at most 80 KiB of request head; batches are sized to stay well below.
pub fn eval_path(script: &str, keys: &[&str], args: &[String]) -> String {
    let mut out = String::with_capacity(script.len() * 2 + 64 * (keys.len() + args.len()));
    out.push_str("EVAL/");
    encode_segment(&mut out, script);
    out.push('/');
    out.push_str(&keys.len().to_string());
    let all = keys.iter().copied().chain(args.iter().map(String::as_str));
    for a in all {
        out.push('/');
        encode_segment(&mut out, if a.is_empty() { " " } else { a });
    }
    out
}

/// Why a 2xx answer of Webdis cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Not `{"<command>": value}`.
    Shape(String),
    /// Redis refused the command (`[false, "ERR …"]`).
    Redis(String),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Shape(s) => write!(f, "unexpected webdis answer: {s}"),
            ReplyError::Redis(s) => write!(f, "redis error: {s}"),
        }
    }
}

impl From<ReplyError> for Failure {
    fn from(e: ReplyError) -> Failure {
        Failure::InvalidResponse(e.to_string())
    }
}

/// The value of Webdis's answer `{"<command>": value}` to `command` (`EVAL`, `PING`).
pub fn reply(body: &[u8], command: &str) -> Result<Value, ReplyError> {
    let shape =
        || ReplyError::Shape(crate::text::truncate_chars(&String::from_utf8_lossy(body), 200).to_string());
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(shape());
    };
    let value = obj.remove(command).ok_or_else(shape)?;
    if let Some([Value::Bool(false), Value::String(msg)]) = value.as_array().map(Vec::as_slice) {
        return Err(ReplyError::Redis(msg.clone()));
    }
    Ok(value)
}

/// A script's answer as a list of integers (Lua numbers arrive as JSON integers).
pub fn integers(value: &Value) -> Result<Vec<i64>, ReplyError> {
    let shape = || ReplyError::Shape(crate::text::truncate_chars(&value.to_string(), 200).to_string());
    value
        .as_array()
        .ok_or_else(shape)?
        .iter()
        .map(|v| v.as_i64().ok_or_else(shape))
        .collect()
}

/// Randomness without a dependency: the standard library's per-process random hash keys (WASI
/// `random_get` on wasm32-wasip1, which every `HashMap` of ours already relies on), mixed with the clock.
pub fn seed(now_ms: u64) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now_ms)
}

/// This gateway process's name in Redis: 16 hex digits drawn once by the first worker that asks and
/// kept in shared data under `<namespace>instance` (a restart draws a new one).
pub fn instance_id(host: &mut dyn Host, namespace: &str) -> Option<String> {
    let key = format!("{namespace}instance");
    let drawn = format!("{:016x}", seed(host.now_ms()));
    update_shared(host, &key, |raw| {
        match raw.and_then(|r| std::str::from_utf8(r).ok()) {
            Some(id) if !id.is_empty() => (id.to_string(), None),
            _ => (drawn.clone(), Some(drawn.clone().into_bytes())),
        }
    })
    .ok()
}

/// The gateway's view of its store, shared by every worker.
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    /// The filter's name: logs and metric names.
    pub filter: &'a str,
    /// Shared-data namespace of the filter (`ai_token_ratelimit/`): the state is `<namespace>store-health`.
    pub namespace: &'a str,
}

/// A change of [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Down,
    Up,
}

impl Health<'_> {
    fn key(&self) -> String {
        format!("{}store-health", self.namespace)
    }

    /// Whether the last call failed and no call has answered since.
    pub fn is_down(&self, host: &dyn Host) -> bool {
        host.shared_get(&self.key()).0.as_deref() == Some(b"down")
    }

    /// Records a call's outcome. A change is logged once (at warn when Redis goes away, with `why` and
    /// what requests get meanwhile, `meanwhile`) and counted; the same state again changes nothing.
    pub fn record(&self, host: &mut dyn Host, up: bool, why: &str, meanwhile: &str) -> Change {
        let want: &[u8] = if up { b"up" } else { b"down" };
        let changed = update_shared(host, &self.key(), |raw| {
            let was_down = raw == Some(b"down".as_slice());
            if was_down != up {
                (false, None)
            } else {
                (true, Some(want.to_vec()))
            }
        });
        // Another worker flipped it first, or the write failed: either way not ours to report.
        if changed != Ok(true) {
            return Change::None;
        }
        let state = if up { "up" } else { "down" };
        host.counter_add(
            &metrics::name(
                &format!("{}_store_transitions_total", self.filter.replace('-', "_")),
                &[("state", state)],
            ),
            1,
        );
        if up {
            host.log(
                LogLevel::Info,
                &format!(
                    "{}: store redis answers again; state is shared again",
                    self.filter
                ),
            );
            Change::Up
        } else {
            host.log(
                LogLevel::Warn,
                &format!(
                    "{}: store redis unreachable ({why}); {meanwhile} until it answers",
                    self.filter
                ),
            );
            Change::Down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compile(v: Value, uses: Uses) -> Result<Store, ConfigError> {
        let raw: RawStore = serde_json::from_value(v).map_err(|e| ConfigError::new("", e.to_string()))?;
        Store::compile("store", raw, uses)
    }

    #[test]
    fn compiles_with_defaults_and_names_bad_fields() {
        assert_eq!(compile(json!({"type": "local"}), COUNTERS), Ok(Store::Local));
        let up = json!({"cluster": "webdis", "host": "127.0.0.1:7379"});
        let Ok(Store::Redis(r)) = compile(json!({"type": "redis", "upstream": up}), COUNTERS) else {
            panic!()
        };
        assert_eq!(r.key_prefix, "ai-gateway:");
        assert_eq!((r.mode, r.failure_mode), (SyncMode::Exact, StoreFailure::Local));
        assert_eq!(
            (r.sync_interval_ms, r.service.timeout_ms, r.service.path.as_str()),
            (1000, 100, "/")
        );
        let Ok(Store::Redis(r)) = compile(
            json!({"type": "redis", "upstream": up, "mode": "hybrid", "sync_interval": "250ms",
                   "timeout": "2s", "failure_mode": "deny", "key_prefix": "fleet-a:", "retries": 1,
                   "headers": {"Authorization": "Basic eDp5"}}),
            COUNTERS,
        ) else {
            panic!()
        };
        assert_eq!(
            (r.mode, r.sync_interval_ms, r.failure_mode),
            (SyncMode::Hybrid, 250, StoreFailure::Deny)
        );
        assert_eq!((r.service.timeout_ms, r.service.retries), (2000, 1));
        assert_eq!(
            r.service.headers,
            vec![("authorization".into(), "Basic eDp5".into())]
        );
        let cases = [
            (json!({"mode": "hybrid"}), BREAKERS, "store.mode"),
            (json!({"failure_mode": "allow"}), BREAKERS, "store.failure_mode"),
            (json!({"key_prefix": ""}), COUNTERS, "store.key_prefix"),
            (json!({"key_prefix": "a/b"}), COUNTERS, "store.key_prefix"),
            (json!({"sync_interval": 10}), COUNTERS, "store.sync_interval"),
            (json!({"sync_interval": "61s"}), COUNTERS, "store.sync_interval"),
            (json!({"timeout": "11s"}), COUNTERS, "store.timeout"),
            (json!({"timeout": 0}), COUNTERS, "store.timeout"),
            (json!({"retries": 6}), COUNTERS, "store.retries"),
            (json!({"path": "x"}), COUNTERS, "store.path"),
            (
                json!({"upstream": {"cluster": "w", "host": "nope"}}),
                COUNTERS,
                "store.upstream.host",
            ),
        ];
        for (extra, uses, field) in cases {
            let mut v = json!({"type": "redis", "upstream": up});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            assert_eq!(compile(v.clone(), uses).unwrap_err().field, field, "{v}");
        }
        assert_eq!(
            compile(json!({"type": "local", "upstream": up}), COUNTERS)
                .unwrap_err()
                .field,
            "store.upstream"
        );
        assert_eq!(
            compile(json!({"type": "redis"}), COUNTERS).unwrap_err().field,
            "store.upstream"
        );
        for bad in [
            json!({"upstream": up}),
            json!({"type": "memcached", "upstream": up}),
            json!({"type": "redis", "upstream": up, "mode": "eventual"}),
            json!({"type": "redis", "upstream": up, "nope": 1}),
        ] {
            assert!(compile(bad.clone(), COUNTERS).is_err(), "{bad}");
        }
    }

    #[test]
    fn eval_bodies_are_encoded_for_webdis() {
        let body = eval_path(
            "return {KEYS[1], ARGV[1]}",
            &["p:rl/a.b"],
            &["-5".into(), String::new()],
        );
        assert_eq!(
            body,
            "EVAL/return%20%7BKEYS%5B1%5D%2C%20ARGV%5B1%5D%7D/1/p%3Arl%2Fa%2Eb/-5/%20"
        );
        let mut s = String::new();
        encode_segment(&mut s, "é+%");
        assert_eq!(s, "%C3%A9%2B%25");
        // A GET below the service's path, without a body (Kong's dispatcher sends `connection: close`).
        let up = json!({"cluster": "webdis", "host": "127.0.0.1:7379"});
        let Ok(Store::Redis(r)) = compile(
            json!({"type": "redis", "upstream": up, "path": "/webdis/"}),
            COUNTERS,
        ) else {
            panic!()
        };
        let call = r.eval("return 1", &[], &[]).call().clone();
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            ("GET", "/webdis/EVAL/return%201/0")
        );
        assert!(call.body.is_empty() && call.headers.is_empty(), "{call:?}");
        assert_eq!(r.ping().call().path, "/webdis/PING");
    }

    #[test]
    fn replies_are_read() {
        assert_eq!(reply(br#"{"EVAL":[0,5,7]}"#, "EVAL"), Ok(json!([0, 5, 7])));
        assert_eq!(integers(&json!([0, 5, -7])), Ok(vec![0, 5, -7]));
        assert!(integers(&json!([0, "5"])).is_err());
        assert!(integers(&json!(3)).is_err());
        assert_eq!(
            reply(br#"{"PING":[true,"PONG"]}"#, "PING"),
            Ok(json!([true, "PONG"]))
        );
        assert_eq!(
            reply(br#"{"EVAL":[false,"ERR boom"]}"#, "EVAL"),
            Err(ReplyError::Redis("ERR boom".into()))
        );
        assert!(matches!(
            reply(br#"{"GET":1}"#, "EVAL"),
            Err(ReplyError::Shape(_))
        ));
        assert!(matches!(reply(b"<html>", "EVAL"), Err(ReplyError::Shape(_))));
        let f: Failure = ReplyError::Redis("x".into()).into();
        assert_eq!(f.label(), "invalid-response");
    }

    #[test]
    fn health_changes_are_reported_once() {
        let mut h = FakeHost::new(HostKind::Envoy);
        let health = Health {
            filter: "ai-token-ratelimit",
            namespace: "ai_token_ratelimit/",
        };
        assert!(!health.is_down(&h), "up until a call fails");
        assert_eq!(
            health.record(&mut h, true, "", ""),
            Change::None,
            "no state yet reads as up"
        );
        assert_eq!(
            health.record(&mut h, false, "timed out", "failure_mode local applies"),
            Change::Down
        );
        assert_eq!(health.record(&mut h, false, "timed out", "x"), Change::None);
        assert!(health.is_down(&h));
        assert_eq!(health.record(&mut h, true, "", ""), Change::Up);
        assert_eq!(
            h.counters["ai_token_ratelimit_store_transitions_total_state=down"],
            1
        );
        assert_eq!(
            h.counters["ai_token_ratelimit_store_transitions_total_state=up"],
            1
        );
        let warned = h
            .logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == LogLevel::Warn)
            .count();
        assert_eq!(warned, 1);
        assert!(h.logged(
            LogLevel::Warn,
            "ai-token-ratelimit: store redis unreachable (timed out); failure_mode local applies until it answers"
        ));
    }

    #[test]
    fn one_instance_id_per_gateway() {
        let mut h = FakeHost::new(HostKind::Kong);
        let a = instance_id(&mut h, "ns/").unwrap();
        h.now_ms += 5;
        let b = instance_id(&mut h, "ns/").unwrap();
        assert_eq!((a.len(), &a), (16, &b));
        let mut other = FakeHost::new(HostKind::Kong);
        assert_ne!(
            instance_id(&mut other, "ns/").unwrap(),
            a,
            "another process draws its own"
        );
    }
}
