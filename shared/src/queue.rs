//! A bounded queue in shared data, visible to every worker's VM: work queued by requests (in
//! `on_done`) and drained by a root context's timer (see `host::Background`), the only portable place
//! to call out once a request has ended.
//!
//! Layout under the queue's name `q`: `q/meta` holds the sequence numbers `head` (oldest item still
//! queued) and `tail` (next to write) and the count of items dropped on overflow; `q/<seq % capacity>`
//! holds item `seq` with its sequence number in front, so a reader can tell a slot that is not written
//! yet, or already reused, from the item it wants. A push reserves its sequence number with one CAS on
//! `meta` and then writes its slot; a drainer reads a batch with [`Queue::peek`] and removes it with
//! [`Queue::commit`] only after it was delivered (at least once). One drainer at a time across workers
//! holds [`Queue::lease`]. Shared data cannot delete keys, so the queue's footprint is `capacity` slots.

use crate::host::{update_shared, Host, UpdateError};

/// What happens when a push finds the queue full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The oldest item is dropped to make room (recent records matter more).
    #[default]
    DropOldest,
    /// The new item is refused.
    DropNewest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub head: u64,
    pub tail: u64,
    /// Items dropped on overflow since the queue was created.
    pub dropped: u64,
    /// The capacity the queued items' slots were numbered with (`seq % capacity`); 0 when unknown (a
    /// meta written before it was stored). A config changed across a reload takes its capacity only
    /// once the queue is empty: until then the stored one finds the slots.
    pub capacity: u64,
}

impl Meta {
    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        for n in [self.head, self.tail, self.dropped, self.capacity] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    fn decode(raw: Option<&[u8]>) -> Meta {
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = raw?.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        match (word(0), word(1), word(2)) {
            (Some(head), Some(tail), Some(dropped)) if head <= tail => Meta {
                head,
                tail,
                dropped,
                capacity: word(3).unwrap_or(0),
            },
            _ => Meta::default(),
        }
    }

    /// The capacity to number slots with: the stored one while items are queued, else `configured`.
    fn capacity(self, configured: u64) -> u64 {
        if !self.is_empty() && self.capacity > 0 {
            self.capacity
        } else {
            configured
        }
    }

    pub fn len(self) -> u64 {
        self.tail - self.head
    }

    pub fn is_empty(self) -> bool {
        self.head == self.tail
    }
}

/// The result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued {
        seq: u64,
    },
    /// Queued, and the oldest item was dropped to make room.
    QueuedDroppingOldest {
        seq: u64,
    },
    /// The queue was full and the item was dropped.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Shared data refused a write, or workers kept racing: the item was not queued.
    Store(UpdateError),
    /// Its sequence number was reserved but its slot not written: the item is lost, and the drainer
    /// skips the slot once it has waited long enough (and counts it there).
    Slot { seq: u64, error: UpdateError },
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Store(e) => write!(f, "queue store: {e}"),
            QueueError::Slot { seq, error } => write!(f, "queue slot {seq} not written: {error}"),
        }
    }
}

/// A queue by name; cheap to make per call.
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a> {
    pub name: &'a str,
    pub capacity: u64,
    pub overflow: Overflow,
}

impl<'a> Queue<'a> {
    pub fn new(name: &'a str, capacity: u64, overflow: Overflow) -> Queue<'a> {
        Queue {
            name,
            capacity: capacity.max(1),
            overflow,
        }
    }

    fn meta_key(&self) -> String {
        format!("{}/meta", self.name)
    }

    /// The slot of item `seq` in a queue numbered with `capacity` (never 0).
    fn slot_key(&self, seq: u64, capacity: u64) -> String {
        format!("{}/{}", self.name, seq % capacity.max(1))
    }

    pub fn meta(&self, host: &dyn Host) -> Meta {
        Meta::decode(host.shared_get(&self.meta_key()).0.as_deref())
    }

    /// Adds an item (any bytes).
    pub fn push(&self, host: &mut dyn Host, item: &[u8]) -> Result<Pushed, QueueError> {
        let (configured, overflow) = (self.capacity, self.overflow);
        let (pushed, capacity) = update_shared(host, &self.meta_key(), |raw| {
            let mut m = Meta::decode(raw);
            let capacity = m.capacity(configured);
            m.capacity = capacity;
            let mut dropping = false;
            if m.len() >= capacity {
                match overflow {
                    Overflow::DropNewest => {
                        m.dropped += 1;
                        return ((Pushed::Refused, capacity), Some(m.encode()));
                    }
                    Overflow::DropOldest => {
                        m.head += 1;
                        m.dropped += 1;
                        dropping = true;
                    }
                }
            }
            let seq = m.tail;
            m.tail += 1;
            let pushed = if dropping {
                Pushed::QueuedDroppingOldest { seq }
            } else {
                Pushed::Queued { seq }
            };
            ((pushed, capacity), Some(m.encode()))
        })
        .map_err(QueueError::Store)?;
        let seq = match pushed {
            Pushed::Queued { seq } | Pushed::QueuedDroppingOldest { seq } => seq,
            Pushed::Refused => return Ok(pushed),
        };
        let mut slot = Vec::with_capacity(8 + item.len());
        slot.extend_from_slice(&seq.to_le_bytes());
        slot.extend_from_slice(item);
        // The slot belongs to this sequence number now: overwrite whatever it held.
        update_shared(host, &self.slot_key(seq, capacity), |_| ((), Some(slot.clone())))
            .map_err(|error| QueueError::Slot { seq, error })?;
        Ok(pushed)
    }

    /// Up to `max` items from the head, in order, without removing them. Stops at a slot whose push
    /// has reserved its number but not written it yet.
    pub fn peek(&self, host: &dyn Host, max: usize) -> (u64, Vec<Vec<u8>>) {
        let m = self.meta(host);
        let capacity = m.capacity(self.capacity);
        let mut out = Vec::new();
        let mut seq = m.head;
        while seq < m.tail && out.len() < max {
            let raw = host
                .shared_get(&self.slot_key(seq, capacity))
                .0
                .unwrap_or_default();
            let at: Option<[u8; 8]> = raw.get(..8).and_then(|b| b.try_into().ok());
            if at.map(u64::from_le_bytes) != Some(seq) {
                break;
            }
            out.push(raw.get(8..).unwrap_or_default().to_vec());
            seq += 1;
        }
        (m.head, out)
    }

    /// Removes the items before `upto` (delivered). Items already dropped by overflow are not removed
    /// twice; a `head` that moved past `upto` stays.
    pub fn commit(&self, host: &mut dyn Host, upto: u64) -> Result<(), QueueError> {
        update_shared(host, &self.meta_key(), |raw| {
            let mut m = Meta::decode(raw);
            if upto <= m.head {
                return ((), None);
            }
            m.head = upto.min(m.tail);
            ((), Some(m.encode()))
        })
        .map_err(QueueError::Store)
    }

    /// Takes (or renews) the right to drain for `ttl_ms`; `owner` identifies this worker. Another owner
    /// gets it only after the lease expired, so a worker that stopped does not block the queue.
    pub fn lease(&self, host: &mut dyn Host, owner: u64, now_ms: u64, ttl_ms: u64) -> bool {
        lease(host, &format!("{}/lease", self.name), owner, now_ms, ttl_ms)
    }
}

/// One worker at a time across the gateway's VMs for timer work under `key` (a queue's drainer, a
/// sync): takes or renews the lease for `ttl_ms`; another `owner` gets it only once it has expired.
pub fn lease(host: &mut dyn Host, key: &str, owner: u64, now_ms: u64, ttl_ms: u64) -> bool {
    let taken = update_shared(host, key, |raw| {
        let word = |i: usize| -> Option<u64> {
            let b: [u8; 8] = raw?.get(i * 8..i * 8 + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(b))
        };
        let (holder, until) = (word(0), word(1).unwrap_or(0));
        if holder.is_some_and(|h| h != owner) && until > now_ms {
            return (false, None);
        }
        let mut v = owner.to_le_bytes().to_vec();
        v.extend_from_slice(&now_ms.saturating_add(ttl_ms).to_le_bytes());
        (true, Some(v))
    });
    taken.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn pushes_peeks_commits_in_order_on_both_hosts() {
        for kind in [HostKind::Envoy, HostKind::Kong] {
            let mut h = FakeHost::new(kind);
            let q = Queue::new("audit", 3, Overflow::DropOldest);
            for i in 0..3u8 {
                assert_eq!(
                    q.push(&mut h, &[i]),
                    Ok(Pushed::Queued { seq: u64::from(i) }),
                    "{kind:?}"
                );
            }
            let (head, items) = q.peek(&h, 10);
            assert_eq!((head, items), (0, vec![vec![0], vec![1], vec![2]]));
            // Full: the oldest goes, counted.
            assert_eq!(q.push(&mut h, &[3]), Ok(Pushed::QueuedDroppingOldest { seq: 3 }));
            assert_eq!(q.peek(&h, 10), (1, vec![vec![1], vec![2], vec![3]]));
            assert_eq!(q.meta(&h).dropped, 1);
            q.commit(&mut h, 3).unwrap();
            assert_eq!(q.peek(&h, 10), (3, vec![vec![3]]));
            // A stale commit (the drainer's batch was partly dropped meanwhile) never moves head back.
            q.commit(&mut h, 2).unwrap();
            assert_eq!(q.meta(&h).head, 3);
        }
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let mut h = FakeHost::new(HostKind::Kong);
        let q = Queue::new("q", 1, Overflow::DropNewest);
        assert_eq!(q.push(&mut h, b"a"), Ok(Pushed::Queued { seq: 0 }));
        assert_eq!(q.push(&mut h, b"b"), Ok(Pushed::Refused));
        assert_eq!(q.peek(&h, 5).1, vec![b"a".to_vec()]);
        assert_eq!(q.meta(&h).dropped, 1);
    }

    #[test]
    fn peek_stops_at_a_slot_not_written_yet() {
        let mut h = FakeHost::new(HostKind::Envoy);
        let q = Queue::new("q", 4, Overflow::DropOldest);
        q.push(&mut h, b"a").unwrap();
        // Another worker reserved seq 1 but has not written its slot.
        let m = Meta {
            head: 0,
            tail: 2,
            dropped: 0,
            capacity: 4,
        };
        let cas = h.shared["q/meta"].1;
        h.shared.insert("q/meta".into(), (m.encode(), cas));
        q.push(&mut h, b"c").unwrap();
        assert_eq!(q.peek(&h, 5).1, vec![b"a".to_vec()]);
    }

    #[test]
    fn a_capacity_changed_across_a_reload_applies_once_the_queue_is_empty() {
        let mut h = FakeHost::new(HostKind::Envoy);
        let old = Queue::new("q", 4, Overflow::DropOldest);
        for item in [b"a", b"b", b"c"] {
            old.push(&mut h, item).unwrap();
        }
        // The reload: capacity 3 (slots numbered % 3 would find `a` for seq 3 and lose order).
        let new = Queue::new("q", 3, Overflow::DropOldest);
        new.push(&mut h, b"d").unwrap();
        assert_eq!(
            new.meta(&h).capacity,
            4,
            "the stored capacity while items are queued"
        );
        let (head, items) = new.peek(&h, 10);
        assert_eq!(
            (head, items),
            (
                0,
                vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
            )
        );
        new.commit(&mut h, 4).unwrap();
        // Empty: the next push takes the configured capacity.
        new.push(&mut h, b"e").unwrap();
        assert_eq!(new.meta(&h).capacity, 3);
        assert_eq!(new.peek(&h, 10).1, vec![b"e".to_vec()]);
        // A meta of the old layout (three words) reads with the configured capacity.
        let legacy: Vec<u8> = [4u64, 5, 0].iter().flat_map(|n| n.to_le_bytes()).collect();
        assert_eq!(Meta::decode(Some(&legacy)).capacity, 0);
        assert_eq!(Meta::decode(Some(&legacy)).capacity(3), 3);
    }

    #[test]
    fn a_refused_write_says_whether_a_slot_was_reserved() {
        let q = Queue::new("q", 4, Overflow::DropOldest);
        let mut h = FakeHost::new(HostKind::Envoy);
        h.refuse_shared_writes = true;
        assert!(matches!(q.push(&mut h, b"a"), Err(QueueError::Store(_))));
        assert!(q.meta(&h).is_empty(), "nothing reserved");
        h.refuse_shared_writes = false;
        h.refuse_shared_keys = vec!["q/0".into()];
        assert!(matches!(
            q.push(&mut h, b"b"),
            Err(QueueError::Slot { seq: 0, .. })
        ));
        assert_eq!(q.meta(&h).len(), 1, "the number is reserved, its slot empty");
        assert!(q.peek(&h, 4).1.is_empty());
    }

    #[test]
    fn one_lease_holder_at_a_time_until_it_expires() {
        let mut h = FakeHost::new(HostKind::Kong);
        let q = Queue::new("q", 4, Overflow::DropOldest);
        assert!(q.lease(&mut h, 1, 1000, 500));
        assert!(!q.lease(&mut h, 2, 1200, 500));
        assert!(q.lease(&mut h, 1, 1200, 500), "the holder renews");
        assert!(q.lease(&mut h, 2, 1800, 500), "an expired lease is taken over");
    }
}
