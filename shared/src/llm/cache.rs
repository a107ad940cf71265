//! The answers of tasks kept in shared data, so an identical call within the TTL costs no model call.
//!
//! Keyed by the task and a hash of the whole call it would make (its rendered, redacted prompt, the
//! target, the model, the schema: anything that changes the question changes the key), and bounded:
//! each task has `entries` slots (`<filter>:llm:<task>:<slot>`, the slot chosen by the hash), a new
//! answer takes its slot whatever was there, and answers larger than [`MAX_VALUE_BYTES`] are not kept.
//! So a task never holds more than `entries` × [`MAX_VALUE_BYTES`] of shared data (shared data has no
//! delete; slots are overwritten in place). A slot holds `<hash> <expires_ms>\n<output JSON>`; the hash
//! is checked on read, so a slot taken by another question is a miss.

use crate::crypto::sha256;
use crate::host::{update_shared, Host, UpdateError};
use serde_json::Value;

/// Largest output kept (its JSON text).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// Slots per task when the config sets none, and the most it may set.
pub const DEFAULT_ENTRIES: u32 = 256;
pub const MAX_ENTRIES: u32 = 65_536;

/// One task's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache<'a> {
    /// The filter's name: the key prefix.
    pub filter: &'a str,
    pub task: &'a str,
    pub entries: u32,
}

/// The hash of a call: the task, its target, and the body sent.
pub fn hash(task: &str, target: &str, body: &[u8]) -> u64 {
    let mut input = Vec::with_capacity(task.len() + target.len() + body.len() + 2);
    input.extend_from_slice(task.as_bytes());
    input.push(0);
    input.extend_from_slice(target.as_bytes());
    input.push(0);
    input.extend_from_slice(body);
    let digest = sha256(&input);
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(first)
}

impl Cache<'_> {
    fn key(&self, hash: u64) -> String {
        let slot = hash % u64::from(self.entries.max(1));
        format!("{}:llm:{}:{slot}", self.filter, self.task)
    }

    /// The kept output for `hash`, if it is there and not expired at `now_ms`.
    pub fn get(&self, host: &dyn Host, hash: u64, now_ms: u64) -> Option<Value> {
        let (raw, _) = host.shared_get(&self.key(hash));
        let raw = raw?;
        let text = std::str::from_utf8(&raw).ok()?;
        let (head, json) = text.split_once('\n')?;
        let (stored, expires) = head.split_once(' ')?;
        if stored != format!("{hash:016x}") || expires.parse::<u64>().ok()? <= now_ms {
            return None;
        }
        serde_json::from_str(json).ok()
    }

    /// Keeps `output` for `hash` until `expires_ms`. `Ok(false)`: too large to keep.
    pub fn put(
        &self,
        host: &mut dyn Host,
        hash: u64,
        expires_ms: u64,
        output: &Value,
    ) -> Result<bool, UpdateError> {
        let json = output.to_string();
        if json.len() > MAX_VALUE_BYTES {
            return Ok(false);
        }
        let value = format!("{hash:016x} {expires_ms}\n{json}").into_bytes();
        update_shared(host, &self.key(hash), |_| ((), Some(value.clone())))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn keeps_until_the_ttl_within_its_slots() {
        let mut host = FakeHost::new(HostKind::Kong);
        let cache = Cache {
            filter: "ai-enrich",
            task: "intent",
            entries: 4,
        };
        let h = hash("intent", "mini", b"{\"a\":1}");
        assert_ne!(h, hash("intent", "mini", b"{\"a\":2}"));
        assert_ne!(h, hash("intent", "other", b"{\"a\":1}"));
        assert_ne!(h, hash("risk", "mini", b"{\"a\":1}"));
        assert_eq!(cache.get(&host, h, 0), None);
        assert_eq!(cache.put(&mut host, h, 1000, &json!({"label": "x"})), Ok(true));
        assert_eq!(cache.get(&host, h, 999), Some(json!({"label": "x"})));
        assert_eq!(cache.get(&host, h, 1000), None, "expired");
        // Overwritten in place (Kong refuses a write without the CAS it read).
        assert_eq!(cache.put(&mut host, h, 5000, &json!({"label": "y"})), Ok(true));
        assert_eq!(cache.get(&host, h, 1000), Some(json!({"label": "y"})));
        // Another question in the same slot evicts it; the hash check makes the old one a miss.
        let same_slot = (0..u64::MAX)
            .map(|i| hash("intent", "mini", &i.to_le_bytes()))
            .find(|x| x % 4 == h % 4 && *x != h)
            .unwrap();
        cache.put(&mut host, same_slot, 5000, &json!(1)).unwrap();
        assert_eq!(cache.get(&host, h, 1000), None);
        assert_eq!(cache.get(&host, same_slot, 1000), Some(json!(1)));
        // Bounded: never more keys than slots, never a value over the limit.
        for i in 0..100u64 {
            cache
                .put(
                    &mut host,
                    hash("intent", "mini", &i.to_le_bytes()),
                    5000,
                    &json!(i),
                )
                .unwrap();
        }
        assert_eq!(
            host.shared
                .keys()
                .filter(|k| k.starts_with("ai-enrich:llm:intent:"))
                .count(),
            4
        );
        let big = json!("x".repeat(MAX_VALUE_BYTES));
        assert_eq!(cache.put(&mut host, h, 5000, &big), Ok(false));
        host.refuse_shared_writes = true;
        assert!(cache.put(&mut host, h, 5000, &json!(2)).is_err());
    }
}
