//! Breakers shared by a fleet: what one gateway opens, the others open too.
//!
//! Counting stays per gateway (a breaker opens on the failures this gateway saw) and so does the probe
//! after the cooldown; what is shared is the open state. Every `sync_interval` one worker per gateway
//! runs [`SYNC`] in Redis: it publishes each breaker open here (`<key_prefix>cb:<target>` = the time it
//! reopens, expiring then) unless Redis already holds a later time, and answers what Redis holds for
//! every target. A target open in Redis and closed here is opened here until that time
//! ([`Circuit::adopt`]), so a provider seen failing by one gateway is skipped by all within two sync
//! intervals. While Redis cannot be reached each gateway's breakers simply work on their own.

use super::Circuit;
use crate::callout;
use crate::callout::attempts::Resilience;
use crate::host::{Background, CallResponse, Host, HttpCall};
use crate::queue;
use crate::redis::{self, Health, RedisStore, Store};

/// `KEYS[i]`: a target's shared open state; `ARGV[i]`: until when it is open here (0: not open).
/// Keeps the later of the two (expiring at that time); answers every target's state after it.
pub const SYNC: &str = "local out = {}
for i = 1, #KEYS do
  local mine = tonumber(ARGV[i])
  local cur = tonumber(redis.call('GET', KEYS[i])) or 0
  if mine > cur then
    redis.call('SET', KEYS[i], ARGV[i], 'PXAT', ARGV[i])
    cur = mine
  end
  out[i] = cur
end
return out";

/// The upstreams whose breakers are shared, and the one store they share them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBreakers {
    pub store: RedisStore,
    pub targets: Vec<String>,
}

impl SharedBreakers {
    /// Groups the upstreams whose breaker has `store: redis` by store (most configs have one): one
    /// sync per store.
    pub fn collect<'a>(
        upstreams: impl IntoIterator<Item = (&'a str, &'a Resilience)>,
    ) -> Vec<SharedBreakers> {
        let mut out: Vec<SharedBreakers> = Vec::new();
        for (name, r) in upstreams {
            let Some(Store::Redis(store)) = r.breaker.as_ref().map(|b| &b.store) else {
                continue;
            };
            match out.iter_mut().find(|s| s.store == *store) {
                Some(s) => s.targets.push(name.to_string()),
                None => out.push(SharedBreakers {
                    store: store.clone(),
                    targets: vec![name.to_string()],
                }),
            }
        }
        out
    }
}

/// The root timer's breaker sync for one store of one filter.
pub struct BreakerSync {
    filter: &'static str,
    namespace: String,
    shared: SharedBreakers,
    owner: u64,
    sent_ms: Option<u64>,
}

const TAG: u64 = 1;

impl BreakerSync {
    /// `filter` names the breakers' keys here (`<filter>:cb:<target>`), the logs and the metrics;
    /// `index` tells the filter's stores apart (their health and lease in shared data).
    pub fn new(filter: &'static str, index: usize, shared: SharedBreakers, seed: u64) -> BreakerSync {
        BreakerSync {
            filter,
            namespace: format!("{filter}:store{index}:"),
            shared,
            owner: seed,
            sent_ms: None,
        }
    }

    fn health(&self) -> Health<'_> {
        Health {
            filter: self.filter,
            namespace: &self.namespace,
        }
    }

    fn circuit<'a>(&'a self, target: &'a str) -> Circuit<'a> {
        Circuit {
            filter: self.filter,
            target,
        }
    }

    fn keys(&self) -> Vec<String> {
        self.shared
            .targets
            .iter()
            .map(|t| format!("{}cb:{t}", self.shared.store.key_prefix))
            .collect()
    }

    fn budget_ms(&self) -> u64 {
        let s = &self.shared.store;
        s.service.timeout_ms.saturating_add(s.sync_interval_ms)
    }
}

impl Background for BreakerSync {
    fn period_ms(&self) -> u64 {
        self.shared.store.sync_interval_ms
    }

    fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u64, HttpCall)> {
        let now = host.now_ms();
        if self
            .sent_ms
            .is_some_and(|t| now.saturating_sub(t) < self.budget_ms())
        {
            return Vec::new();
        }
        let ttl = self
            .budget_ms()
            .saturating_add(self.shared.store.sync_interval_ms);
        let lease_key = format!("{}cb-sync-lease", self.namespace);
        if !queue::lease(host, &lease_key, self.owner, now, ttl) {
            return Vec::new();
        }
        let args: Vec<String> = self
            .shared
            .targets
            .iter()
            .map(|t| self.circuit(t).open_until(host, now).unwrap_or(0).to_string())
            .collect();
        let keys = self.keys();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let call = self.shared.store.eval(SYNC, &keys, &args).call().clone();
        self.sent_ms = Some(now);
        vec![(TAG, call)]
    }

    fn on_call_response(&mut self, host: &mut dyn Host, _tag: u64, response: CallResponse) {
        self.sent_ms = None;
        let read = callout::judge(&response)
            .map_err(|f| f.to_string())
            .and_then(|_| redis::reply(&response.body, "EVAL").map_err(|e| e.to_string()))
            .and_then(|v| redis::integers(&v).map_err(|e| e.to_string()));
        let states = match read {
            Ok(states) if states.len() == self.shared.targets.len() => states,
            Ok(states) => {
                let why = format!(
                    "{} states for {} targets",
                    states.len(),
                    self.shared.targets.len()
                );
                self.health()
                    .record(host, false, &why, "breakers are per gateway");
                return;
            }
            Err(why) => {
                self.health()
                    .record(host, false, &why, "breakers are per gateway");
                return;
            }
        };
        self.health().record(host, true, "", "");
        let now = host.now_ms();
        for (target, until) in self.shared.targets.iter().zip(states) {
            let until = u64::try_from(until).unwrap_or(0);
            self.circuit(target).adopt(host, until, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{Admit, Breaker, RawBreaker};
    use crate::host::{FakeHost, HostKind, LogLevel};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn resilience(store: serde_json::Value) -> Resilience {
        let mut raw = json!({"consecutive_failures": 1, "cooldown_ms": 1000});
        if !store.is_null() {
            raw["store"] = store;
        }
        let raw: RawBreaker = serde_json::from_value(raw).unwrap();
        Resilience {
            breaker: Some(Breaker::compile("resilience.breaker", raw).unwrap()),
            ..Resilience::default()
        }
    }

    fn redis(prefix: &str) -> serde_json::Value {
        json!({"type": "redis", "upstream": {"cluster": "webdis", "host": "127.0.0.1:7379"},
               "key_prefix": prefix, "sync_interval": "100ms"})
    }

    #[test]
    fn groups_the_shared_breakers_by_store() {
        let a = resilience(redis("p:"));
        let q = resilience(redis("q:"));
        let local = resilience(serde_json::Value::Null);
        let none = Resilience::default();
        let got = SharedBreakers::collect([("a", &a), ("b", &local), ("c", &none), ("d", &a), ("e", &q)]);
        let targets: Vec<&Vec<String>> = got.iter().map(|s| &s.targets).collect();
        assert_eq!(
            targets,
            [&vec!["a".to_string(), "d".into()], &vec!["e".to_string()]]
        );
        assert_eq!(got[1].store.key_prefix, "q:");
        assert!(SharedBreakers::collect([("b", &local)]).is_empty());
        let bad: RawBreaker = serde_json::from_value(json!({"consecutive_failures": 1, "cooldown_ms": 1,
            "store": {"type": "redis", "upstream": {"cluster": "w", "host": "h:1"}, "mode": "exact"}}))
        .unwrap();
        assert_eq!(Breaker::compile("b", bad).unwrap_err().field, "b.store.mode");
    }

    #[test]
    fn publishes_what_opens_here_and_opens_what_opened_elsewhere() {
        let a = resilience(redis("p:"));
        let shared = SharedBreakers::collect([("a", &a), ("b", &a)]).remove(0);
        let mut h = FakeHost::new(HostKind::Envoy);
        h.now_ms = 10_000;
        let b = a.breaker.clone().unwrap();
        let circuit = |t: &'static str| Circuit {
            filter: "ai-proxy",
            target: t,
        };
        circuit("a").record(&mut h, &b, 10_000, false);
        let mut sync = BreakerSync::new("ai-proxy", 0, shared.clone(), 1);
        let mut other = BreakerSync::new("ai-proxy", 0, shared, 2);
        let calls = sync.on_tick(&mut h);
        let body = calls[0].1.path.clone();
        assert!(body.ends_with("/2/p%3Acb%3Aa/p%3Acb%3Ab/11000/0"), "{body}");
        assert!(other.on_tick(&mut h).is_empty(), "one worker per gateway");
        assert!(sync.on_tick(&mut h).is_empty(), "one call at a time");
        // Redis says b was opened by another gateway until 12000.
        let answer = CallResponse {
            status: Some(200),
            headers: vec![],
            body: br#"{"EVAL":[11000,12000]}"#.to_vec(),
        };
        sync.on_call_response(&mut h, TAG, answer);
        assert_eq!(
            circuit("b").admit(&mut h, 10_001, 10),
            Admit::No { retry_at_ms: 12_000 }
        );
        assert!(h.logged(
            LogLevel::Warn,
            "breaker target=b state=open (opened by another gateway)"
        ));
        // Redis away: logged once, breakers go on locally.
        h.now_ms += 100;
        let calls = sync.on_tick(&mut h);
        sync.on_call_response(&mut h, calls[0].0, CallResponse::default());
        h.now_ms += 100;
        let calls = sync.on_tick(&mut h);
        sync.on_call_response(&mut h, calls[0].0, CallResponse::default());
        assert_eq!(h.counters["ai_proxy_store_transitions_total_state=down"], 1);
        assert!(h.logged(LogLevel::Warn, "ai-proxy: store redis unreachable"));
    }
}
