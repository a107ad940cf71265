//! Counters shared by every worker, behind a small interface so a cluster-wide store can replace
//! shared data later.
//!
//! A [`CounterStore`] only reads a counter with a version token and writes it back if the token still
//! matches. Everything else ([`reserve`], [`adjust`], [`read`]) is a read-modify-write loop over those
//! two calls, bounded by [`MAX_ATTEMPTS`]: a worker that loses the race reads again and recomputes, so
//! no update is lost and no check is made against a stale value. One counter per subject and limit
//! holds the current window's number and its usage; a counter from an older window reads as zero and is
//! overwritten, so shared data holds one entry per subject, not one per window.

use crate::host::{Host, SharedDataError};
use std::cell::RefCell;
use std::collections::HashMap;

/// Attempts of one read-modify-write before giving up with [`StoreError::Contended`]: the bound of
/// the one CAS loop, [`crate::host::cas_retry`].
pub use crate::host::MAX_CAS_ATTEMPTS as MAX_ATTEMPTS;

/// One counter: the window it belongs to and what was used in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub window: u64,
    pub used: u64,
}

impl Counter {
    /// 16 bytes, little-endian window then usage.
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let (w, u) = out.split_at_mut(8);
        w.copy_from_slice(&self.window.to_le_bytes());
        u.copy_from_slice(&self.used.to_le_bytes());
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Counter> {
        let w: [u8; 8] = raw.get(..8)?.try_into().ok()?;
        let u: [u8; 8] = raw.get(8..16)?.try_into().ok()?;
        (raw.len() == 16).then(|| Counter {
            window: u64::from_le_bytes(w),
            used: u64::from_le_bytes(u),
        })
    }

    /// Usage in `window`: an older window counts as empty.
    pub fn used_in(self, window: u64) -> u64 {
        if self.window == window {
            self.used
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another writer came in between; the caller retries (the helpers here do).
    Conflict,
    /// Still conflicting after [`MAX_ATTEMPTS`] attempts.
    Contended,
    /// The store refused the operation.
    Unavailable,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreError::Conflict => "write conflict",
            StoreError::Contended => "too many write conflicts",
            StoreError::Unavailable => "counter store unavailable",
        })
    }
}

/// The whole interface a counter store must offer: a read with a version token, and a write that
/// succeeds only if the token is still current (`None`: only if the key is still absent).
pub trait CounterStore {
    fn get(&self, key: &str) -> Result<(Option<Counter>, Option<u32>), StoreError>;
    fn put(&mut self, key: &str, value: Counter, version: Option<u32>) -> Result<(), StoreError>;
}

/// Reads, lets `f` compute the new value from the current one (`None`: leave it), writes with the
/// version read, and retries on conflict. Returns the value now stored.
pub fn update(
    store: &mut dyn CounterStore,
    key: &str,
    mut f: impl FnMut(Counter) -> Option<Counter>,
) -> Result<Counter, StoreError> {
    crate::host::cas_retry(StoreError::Contended, || {
        let (current, version) = store.get(key)?;
        let current = current.unwrap_or_default();
        let Some(next) = f(current) else {
            return Ok(Some(current));
        };
        match store.put(key, next, version) {
            Ok(()) => Ok(Some(next)),
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    })
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved; `used` now includes it.
    Admitted { used: u64 },
    /// It does not fit: `used` is the usage seen, nothing was written.
    Refused { used: u64 },
}

/// Adds `amount` to the counter for `window` if the result stays within `limit`; with `force` it adds
/// it anyway (shadow mode still counts) but still reports whether it fitted.
pub fn reserve(
    store: &mut dyn CounterStore,
    key: &str,
    window: u64,
    amount: u64,
    limit: u64,
    force: bool,
) -> Result<Reservation, StoreError> {
    let mut fits = true;
    let stored = update(store, key, |c| {
        let used = c.used_in(window);
        fits = used.saturating_add(amount) <= limit;
        (fits || force).then(|| Counter {
            window,
            used: used.saturating_add(amount),
        })
    })?;
    let used = stored.used_in(window);
    Ok(if fits {
        Reservation::Admitted { used }
    } else {
        Reservation::Refused { used }
    })
}

/// Corrects a reservation made in window `reserved_in` by `delta` (real usage minus reserved) once the
/// real usage is known at `now_window`. In the same window the counter moves by `delta` (never below
/// zero). If the window has moved on, the old window is gone: usage beyond the reservation is charged
/// to the current window (it was consumed now), and a refund is dropped.
pub fn adjust(
    store: &mut dyn CounterStore,
    key: &str,
    reserved_in: u64,
    now_window: u64,
    delta: i64,
) -> Result<Counter, StoreError> {
    if delta == 0 {
        return store.get(key).map(|(c, _)| c.unwrap_or_default());
    }
    update(store, key, |c| {
        if c.window == reserved_in {
            let used = if delta >= 0 {
                c.used.saturating_add(delta.unsigned_abs())
            } else {
                c.used.saturating_sub(delta.unsigned_abs())
            };
            Some(Counter { used, ..c })
        } else if delta > 0 {
            Some(Counter {
                window: now_window,
                used: c.used_in(now_window).saturating_add(delta.unsigned_abs()),
            })
        } else {
            None
        }
    })
}

/// Adds `amount` in `window` without any limit (error-rate bookkeeping).
pub fn add(store: &mut dyn CounterStore, key: &str, window: u64, amount: u64) -> Result<Counter, StoreError> {
    update(store, key, |c| {
        Some(Counter {
            window,
            used: c.used_in(window).saturating_add(amount),
        })
    })
}

/// Usage of `key` in `window`.
pub fn read(store: &dyn CounterStore, key: &str, window: u64) -> Result<u64, StoreError> {
    Ok(store.get(key)?.0.unwrap_or_default().used_in(window))
}

/// The store over the host's shared data (one per proxy, visible to every worker thread's VM).
pub struct HostStore<'a> {
    host: &'a mut dyn Host,
    conflicts: u64,
}

impl<'a> HostStore<'a> {
    pub fn new(host: &'a mut dyn Host) -> Self {
        HostStore { host, conflicts: 0 }
    }

    /// Writes refused so far because another writer came first (each one cost a retry): a measure of
    /// contention between workers.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }
}

impl CounterStore for HostStore<'_> {
    fn get(&self, key: &str) -> Result<(Option<Counter>, Option<u32>), StoreError> {
        let (value, cas) = self.host.shared_get(key);
        // A value we cannot read is overwritten like an expired window; its version still guards the write.
        Ok((value.as_deref().and_then(Counter::decode), cas))
    }

    fn put(&mut self, key: &str, value: Counter, version: Option<u32>) -> Result<(), StoreError> {
        // `None` creates only if absent on every host (the host adapter sees to it on Envoy).
        match self.host.shared_set(key, &value.encode(), version) {
            Ok(()) => Ok(()),
            Err(SharedDataError::CasMismatch) => {
                self.conflicts += 1;
                Err(StoreError::Conflict)
            }
            Err(SharedDataError::Failed) => Err(StoreError::Unavailable),
        }
    }
}

/// An in-process store for tests and for hosts without shared data.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RefCell<HashMap<String, (Counter, u32)>>,
    next_version: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CounterStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Counter>, Option<u32>), StoreError> {
        Ok(match self.map.borrow().get(key) {
            Some((c, v)) => (Some(*c), Some(*v)),
            None => (None, None),
        })
    }

    fn put(&mut self, key: &str, value: Counter, version: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        let current = map.get(key).map(|(_, v)| *v);
        if current != version {
            return Err(StoreError::Conflict);
        }
        self.next_version = self.next_version.wrapping_add(1);
        map.insert(key.to_string(), (value, self.next_version));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn counter_round_trip() {
        let c = Counter {
            window: 7,
            used: u64::MAX,
        };
        assert_eq!(Counter::decode(&c.encode()), Some(c));
        assert_eq!(Counter::decode(&[1, 2, 3]), None);
        assert_eq!(Counter::decode(&[0; 17]), None);
        assert_eq!(c.used_in(7), u64::MAX);
        assert_eq!(c.used_in(8), 0);
    }

    #[test]
    fn reserve_adjust_read() {
        let mut s = MemoryStore::new();
        let k = "k";
        assert_eq!(
            reserve(&mut s, k, 1, 60, 100, false),
            Ok(Reservation::Admitted { used: 60 })
        );
        assert_eq!(
            reserve(&mut s, k, 1, 40, 100, false),
            Ok(Reservation::Admitted { used: 100 })
        );
        assert_eq!(
            reserve(&mut s, k, 1, 1, 100, false),
            Ok(Reservation::Refused { used: 100 })
        );
        // Shadow mode: counted anyway, still reported as not fitting.
        assert_eq!(
            reserve(&mut s, k, 1, 1, 100, true),
            Ok(Reservation::Refused { used: 101 })
        );
        // Settling below the reservation refunds; never below zero.
        assert_eq!(adjust(&mut s, k, 1, 1, -51).unwrap().used, 50);
        assert_eq!(adjust(&mut s, k, 1, 1, -500).unwrap().used, 0);
        assert_eq!(adjust(&mut s, k, 1, 1, 30).unwrap().used, 30);
        // A new window starts from zero.
        assert_eq!(
            reserve(&mut s, k, 2, 100, 100, false),
            Ok(Reservation::Admitted { used: 100 })
        );
        assert_eq!(read(&s, k, 2), Ok(100));
        assert_eq!(read(&s, k, 3), Ok(0));
        // A late settle of window 1: the overrun is charged now, a refund is dropped.
        assert_eq!(
            adjust(&mut s, k, 1, 2, 5).unwrap(),
            Counter { window: 2, used: 105 }
        );
        assert_eq!(
            adjust(&mut s, k, 1, 2, -5).unwrap(),
            Counter { window: 2, used: 105 }
        );
        assert_eq!(
            adjust(&mut s, k, 1, 3, 5).unwrap(),
            Counter { window: 3, used: 5 }
        );
        assert_eq!(add(&mut s, "e", 4, 2).unwrap().used, 2);
        assert_eq!(add(&mut s, "e", 4, 3).unwrap().used, 5);
    }

    /// A store that lets another "worker" write between our read and our write, `races` times.
    struct Racing<'a> {
        inner: HostStore<'a>,
        races: usize,
        rival_amount: u64,
    }

    impl CounterStore for Racing<'_> {
        fn get(&self, key: &str) -> Result<(Option<Counter>, Option<u32>), StoreError> {
            self.inner.get(key)
        }
        fn put(&mut self, key: &str, value: Counter, version: Option<u32>) -> Result<(), StoreError> {
            if self.races > 0 {
                self.races -= 1;
                // The rival does its own full read-modify-write first.
                let (c, v) = self.inner.get(key)?;
                let c = c.unwrap_or_default();
                let rival = Counter {
                    window: value.window,
                    used: c.used_in(value.window) + self.rival_amount,
                };
                self.inner.put(key, rival, v)?;
            }
            self.inner.put(key, value, version)
        }
    }

    #[test]
    fn cas_race_on_fake_host_loses_no_update_and_respects_limit() {
        for kind in [HostKind::Envoy, HostKind::Kong] {
            let mut host = FakeHost::new(kind);
            let mut s = Racing {
                inner: HostStore::new(&mut host),
                races: 3,
                rival_amount: 10,
            };
            // First write creates the key while a rival creates it too; then two more races.
            assert_eq!(
                reserve(&mut s, "k", 1, 5, 100, false),
                Ok(Reservation::Admitted { used: 35 })
            );
            // The rival's writes pushed usage to 95 while we were retrying: 10 no longer fits.
            (s.races, s.rival_amount) = (2, 30);
            assert_eq!(
                reserve(&mut s, "k", 1, 10, 100, false),
                Ok(Reservation::Refused { used: 95 })
            );
            assert_eq!(read(&s, "k", 1), Ok(95), "{kind:?}");
            assert_eq!(s.inner.conflicts(), 5, "{kind:?}");
        }
        // A race on every attempt gives up with a clear error, which the caller maps to failure_mode.
        let mut host = FakeHost::new(HostKind::Envoy);
        let mut s = Racing {
            inner: HostStore::new(&mut host),
            races: usize::MAX,
            rival_amount: 0,
        };
        assert_eq!(reserve(&mut s, "k", 1, 5, 100, false), Err(StoreError::Contended));
    }

    #[test]
    fn host_store_creates_only_if_absent_on_envoy() {
        let mut host = FakeHost::new(HostKind::Envoy);
        host.shared
            .insert("k".into(), (Counter { window: 1, used: 9 }.encode().to_vec(), 4));
        let mut s = HostStore::new(&mut host);
        // A writer that believes the key is new must not overwrite it.
        assert_eq!(
            s.put("k", Counter { window: 1, used: 1 }, None),
            Err(StoreError::Conflict)
        );
        assert_eq!(read(&s, "k", 1), Ok(9));
        assert_eq!(s.put("k", Counter { window: 1, used: 1 }, Some(4)), Ok(()));
        assert_eq!(read(&s, "k", 1), Ok(1));
    }
}
