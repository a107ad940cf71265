//! Counters shared by a fleet of gateways, in Redis through Webdis (`store: {"type": "redis"}`).
//!
//! Redis holds one integer per counter and window, `<key_prefix>rl:<limit>:<window>:<subject>:<n>`
//! (`n` the window's number), expiring a minute after its window ends. Two Lua scripts change them,
//! each atomically:
//! - [`ADMIT`] checks every limit of a request at once (`total + reservation <= limit` for each) and
//!   adds all the reservations only if all fit: a request is admitted or refused as a whole, by the
//!   one store every gateway sees, so **admitted reservations never exceed a limit, fleet-wide**.
//! - [`APPLY`] adds a batch of signed deltas (settlements to the real usage, refunds, hybrid
//!   reservations), never below zero, and answers the totals. Deltas are queued in the gateway's shared
//!   data when a request ends (no callout is portable from the response or log phase: Kong traps) and
//!   applied from the root timer ([`Sync`]) every `sync_interval`. A batch is applied exactly once:
//!   Redis keeps, per gateway process, the end of the last batch it applied, and a batch that is sent
//!   again after a lost answer covers exactly the same items.
//!
//! Exact mode calls [`ADMIT`] for every request. Hybrid mode decides on a [`View`] per counter in
//! shared data: the fleet's total as of the last sync plus this gateway's reservations not yet
//! applied; a reservation is added to the view and queued, and the sync's answer refreshes the view. A
//! view older than [`stale_ms`] (two sync intervals), or from another window, is refreshed by calling
//! [`ADMIT`] for that request. What a view does not yet show is what the other gateways admitted since
//! it was refreshed, at most `stale + interval + a round trip` ago, so a window's admitted total
//! overshoots its limit by at most the tokens the other gateways admit in `3 × sync_interval` (plus a
//! round trip): `overshoot <= R_others × (3 × sync_interval + rtt)` ([`overshoot_bound`]).

use crate::callout::{self, Callout};
use crate::host::{update_shared, Background, CallResponse, Host, HttpCall, LogLevel};
use crate::metrics;
use crate::queue::{Overflow, Pushed, Queue, QueueError};
use crate::redis::{self, Health, RedisStore, ReplyError};

/// Checks and adds every reservation of a request, or none. `KEYS[i]` is the counter of limit `i`;
/// `ARGV[1]` is `1` to add even what does not fit (shadow mode); then per key: amount, limit, expiry
/// (ms since the epoch). Answers `{refused, used_1, …}`: `refused` is 0 or the first key that did
/// not fit, `used_i` the total after the request (or before it, when refused and not forced).
pub const ADMIT: &str = "local force = ARGV[1] == '1'
local fail = 0
local used = {}
for i = 1, #KEYS do
  local u = tonumber(redis.call('GET', KEYS[i])) or 0
  used[i] = u
  if fail == 0 and u + tonumber(ARGV[3 * i - 1]) > tonumber(ARGV[3 * i]) then fail = i end
end
if fail == 0 or force then
  for i = 1, #KEYS do
    used[i] = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 1])
    redis.call('PEXPIREAT', KEYS[i], ARGV[3 * i + 1])
  end
end
table.insert(used, 1, fail)
return used";

/// Applies one batch of deltas once. `KEYS[1]` records the end of the last batch this gateway applied;
/// `ARGV[1]` is this batch's end, `ARGV[2]` how long to keep that record; then per counter `KEYS[i]`
/// (i >= 2): delta, expiry. A positive delta is added (creating the counter); a negative one is taken
/// from a counter that still exists, never below zero. Answers `{applied, total_2, …}`.
pub const APPLY: &str = "local hw = tonumber(redis.call('GET', KEYS[1])) or 0
local applied = 0
if hw < tonumber(ARGV[1]) then
  applied = 1
  for i = 2, #KEYS do
    local d = tonumber(ARGV[2 * i - 1])
    if d > 0 then
      redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
      redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i])
    elseif d < 0 and redis.call('EXISTS', KEYS[i]) == 1 then
      if redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1]) < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
    end
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local out = {applied}
for i = 2, #KEYS do out[i] = tonumber(redis.call('GET', KEYS[i])) or 0 end
return out";

/// A counter lives this long after its window ends: late settlements still find it, and a gateway
/// whose clock is behind Redis's does not see its window emptied early.
pub const GRACE_MS: u64 = 60_000;
/// How long Redis remembers the last batch a gateway applied.
pub const APPLIED_TTL_MS: u64 = 86_400_000;
/// Items read from the queue per sync, and distinct counters per batch.
pub const BATCH_ITEMS: usize = 4096;
pub const BATCH_KEYS: usize = 64;
/// Deltas the queue holds; past it the oldest are dropped (and counted).
pub const QUEUE_CAPACITY: u64 = 16_384;
/// Largest limit sent to Redis: Lua numbers are doubles, exact up to 2^53.
const MAX_LIMIT: u64 = 1 << 53;

/// The Redis key of a counter (`<limit>:<window>:<subject>`) in window number `window`.
pub fn redis_key(prefix: &str, counter: &str, window: u64) -> String {
    format!("{prefix}rl:{counter}:{window}")
}

/// When the counter of window number `window` (of `window_ms`) may go.
pub fn expire_at(window: u64, window_ms: u64) -> u64 {
    window
        .saturating_add(1)
        .saturating_mul(window_ms)
        .saturating_add(GRACE_MS)
}

/// A view older than this is refreshed with a round trip: two sync intervals.
pub fn stale_ms(sync_interval_ms: u64) -> u64 {
    sync_interval_ms.saturating_mul(2)
}

/// The most a window's admitted total may pass its limit in hybrid mode: what the other gateways
/// admit (at `others_per_s` tokens a second) while a view does not show it, `stale + interval + rtt`.
pub fn overshoot_bound(others_per_s: f64, sync_interval_ms: u64, rtt_ms: u64) -> f64 {
    let lag_ms = stale_ms(sync_interval_ms) + sync_interval_ms + rtt_ms;
    others_per_s * lag_ms as f64 / 1000.0
}

/// One limit's part of a request's admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `<limit>:<window>:<subject>`.
    pub counter: String,
    /// The window's number and length.
    pub window: u64,
    pub window_ms: u64,
    pub amount: u64,
    /// The limit after tier and adaptive scaling.
    pub limit: u64,
}

/// The call that admits `asks` as a whole (see [`ADMIT`]); `force` adds them even if they do not fit.
pub fn admit_call(store: &RedisStore, asks: &[Ask], force: bool) -> Callout {
    let keys: Vec<String> = asks
        .iter()
        .map(|a| redis_key(&store.key_prefix, &a.counter, a.window))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut args = Vec::with_capacity(1 + 3 * asks.len());
    args.push(if force { "1" } else { "0" }.to_string());
    for a in asks {
        args.push(a.amount.to_string());
        args.push(a.limit.min(MAX_LIMIT).to_string());
        args.push(expire_at(a.window, a.window_ms).to_string());
    }
    store.eval(ADMIT, &keys, &args)
}

/// Redis's answer to an admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every reservation was added: the totals after it, per ask.
    Admitted(Vec<u64>),
    /// Ask `index` did not fit: the totals seen (after the request if it was forced), per ask.
    Refused { index: usize, used: Vec<u64> },
}

/// Reads the answer of [`admit_call`] for `n` asks.
pub fn read_admit(body: &[u8], n: usize) -> Result<Verdict, ReplyError> {
    let numbers = redis::integers(&redis::reply(body, "EVAL")?)?;
    let (Some(&refused), Some(used)) = (numbers.first(), numbers.get(1..)) else {
        return Err(ReplyError::Shape("empty answer".into()));
    };
    if used.len() != n {
        return Err(ReplyError::Shape(format!("{} totals for {n} limits", used.len())));
    }
    let used: Vec<u64> = used.iter().map(|u| u64::try_from(*u).unwrap_or(0)).collect();
    match usize::try_from(refused) {
        Ok(0) => Ok(Verdict::Admitted(used)),
        Ok(i) if i <= n => Ok(Verdict::Refused { index: i - 1, used }),
        _ => Err(ReplyError::Shape(format!("refused limit {refused} of {n}"))),
    }
}

/// Where a settlement of `delta` (real usage minus reservation) for a reservation made in window
/// `reserved_in` goes when it is known in window `now`: the same counter in the same window; once the
/// window has moved on, usage beyond the reservation is charged to the current one and a refund is
/// dropped (as the local store does, `store::adjust`).
pub fn settle_target(reserved_in: u64, now: u64, delta: i64) -> Option<(u64, i64)> {
    match delta {
        0 => None,
        _ if reserved_in == now => Some((reserved_in, delta)),
        d if d > 0 => Some((now, d)),
        _ => None,
    }
}

/// A change to a counter in Redis, queued until the timer applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub counter: String,
    pub window: u64,
    pub window_ms: u64,
    pub delta: i64,
    /// Hybrid mode: the counter has a [`View`] whose pending part this delta is.
    pub view: bool,
}

impl Delta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(25 + self.counter.len());
        out.extend_from_slice(&self.window.to_le_bytes());
        out.extend_from_slice(&self.window_ms.to_le_bytes());
        out.extend_from_slice(&self.delta.to_le_bytes());
        out.push(u8::from(self.view));
        out.extend_from_slice(self.counter.as_bytes());
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Delta> {
        let word = |i: usize| -> Option<[u8; 8]> { raw.get(i * 8..i * 8 + 8)?.try_into().ok() };
        Some(Delta {
            window: u64::from_le_bytes(word(0)?),
            window_ms: u64::from_le_bytes(word(1)?),
            delta: i64::from_le_bytes(word(2)?),
            view: *raw.get(24)? == 1,
            counter: String::from_utf8(raw.get(25..)?.to_vec()).ok()?,
        })
    }
}

/// The queue of deltas of a filter whose shared-data keys start with `namespace`.
fn queue_name(namespace: &str) -> String {
    format!("{namespace}sync")
}

/// Queues a delta for the timer. A full queue drops its oldest delta, counted in
/// `<filter>_sync_dropped_total` by the caller through the answer.
pub fn push(host: &mut dyn Host, namespace: &str, d: &Delta) -> Result<Pushed, QueueError> {
    let name = queue_name(namespace);
    Queue::new(&name, QUEUE_CAPACITY, Overflow::DropOldest).push(host, &d.encode())
}

/// A gateway's copy of a counter in hybrid mode (shared data `<namespace>v/<counter>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    pub window: u64,
    /// The fleet's total in Redis when last seen.
    pub base: u64,
    /// This gateway's deltas since, queued and not yet applied (refunds make it negative).
    pub pending: i64,
    /// When `base` was read (ms since the epoch).
    pub synced_at: u64,
}

impl View {
    pub fn key(namespace: &str, counter: &str) -> String {
        format!("{namespace}v/{counter}")
    }

    pub fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.window.to_le_bytes());
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&self.pending.to_le_bytes());
        out.extend_from_slice(&self.synced_at.to_le_bytes());
        out
    }

    pub fn decode(raw: Option<&[u8]>) -> Option<View> {
        let raw = raw?;
        let word = |i: usize| -> Option<[u8; 8]> { raw.get(i * 8..i * 8 + 8)?.try_into().ok() };
        (raw.len() == 32).then_some(())?;
        Some(View {
            window: u64::from_le_bytes(word(0)?),
            base: u64::from_le_bytes(word(1)?),
            pending: i64::from_le_bytes(word(2)?),
            synced_at: u64::from_le_bytes(word(3)?),
        })
    }

    /// The fleet's usage as this gateway knows it.
    pub fn estimate(self) -> u64 {
        if self.pending >= 0 {
            self.base.saturating_add(self.pending.unsigned_abs())
        } else {
            self.base.saturating_sub(self.pending.unsigned_abs())
        }
    }

    /// Whether it may decide for `window` at `now`.
    pub fn fresh(self, window: u64, now: u64, stale: u64) -> bool {
        self.window == window && now.saturating_sub(self.synced_at) <= stale
    }

    fn add_pending(self, delta: i64) -> View {
        View {
            pending: self.pending.saturating_add(delta),
            ..self
        }
    }
}

/// What [`admit_views`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewAdmit {
    /// Every ask fitted its view and was added to it (totals per ask, as the views now say).
    Admitted(Vec<u64>),
    Refused {
        index: usize,
        used: Vec<u64>,
    },
    /// A view is missing, of another window or too old: ask Redis ([`admit_call`]).
    Stale,
    /// Shared data refused a write.
    Failed,
}

/// Hybrid mode's local decision: every ask against its view, all or none (with `force`, added anyway).
/// Admitted asks are in their views' `pending`; the caller queues them ([`push`]).
pub fn admit_views(
    host: &mut dyn Host,
    namespace: &str,
    asks: &[Ask],
    now: u64,
    stale: u64,
    force: bool,
) -> ViewAdmit {
    let views: Vec<Option<View>> = asks
        .iter()
        .map(|a| View::decode(host.shared_get(&View::key(namespace, &a.counter)).0.as_deref()))
        .collect();
    let all_fresh = asks
        .iter()
        .zip(&views)
        .all(|(a, v)| v.is_some_and(|v| v.fresh(a.window, now, stale)));
    if !all_fresh {
        return ViewAdmit::Stale;
    }
    let mut used = Vec::with_capacity(asks.len());
    let mut refused = None;
    let mut added: Vec<&Ask> = Vec::new();
    for (i, a) in asks.iter().enumerate() {
        let amount = i64::try_from(a.amount).unwrap_or(i64::MAX);
        let result = update_shared(host, &View::key(namespace, &a.counter), |raw| {
            let Some(v) = View::decode(raw).filter(|v| v.fresh(a.window, now, stale)) else {
                return (None, None);
            };
            let total = v.estimate().saturating_add(a.amount);
            let fits = total <= a.limit;
            if fits || force {
                (Some((fits, total)), Some(v.add_pending(amount).encode()))
            } else {
                (Some((false, v.estimate())), None)
            }
        });
        match result {
            Ok(Some((fits, total))) => {
                used.push(total);
                if fits || force {
                    added.push(a);
                }
                if !fits && refused.is_none() {
                    refused = Some(i);
                    if !force {
                        break;
                    }
                }
            }
            // It went stale (another worker saw a new window) or the write failed: undo what was added.
            Ok(None) | Err(_) => {
                undo(host, namespace, &added);
                return if result.is_err() {
                    ViewAdmit::Failed
                } else {
                    ViewAdmit::Stale
                };
            }
        }
    }
    match refused {
        None => ViewAdmit::Admitted(used),
        Some(index) => {
            if !force {
                undo(host, namespace, &added);
            }
            ViewAdmit::Refused { index, used }
        }
    }
}

fn undo(host: &mut dyn Host, namespace: &str, added: &[&Ask]) {
    for a in added {
        let amount = i64::try_from(a.amount).unwrap_or(i64::MAX);
        add_to_view(host, namespace, &a.counter, a.window, -amount);
    }
}

/// Moves a view's pending part by `delta` if the view is of `window` (a settlement, a refund).
pub fn add_to_view(host: &mut dyn Host, namespace: &str, counter: &str, window: u64, delta: i64) {
    let _lost_is_conservative =
        update_shared(host, &View::key(namespace, counter), |raw| {
            match View::decode(raw) {
                Some(v) if v.window == window => ((), Some(v.add_pending(delta).encode())),
                _ => ((), None),
            }
        });
}

/// After Redis answered an admission for `ask` with `total`: the view holds that total.
pub fn refresh_view(host: &mut dyn Host, namespace: &str, ask: &Ask, total: u64, now: u64) {
    let _lost_is_conservative = update_shared(host, &View::key(namespace, &ask.counter), |raw| {
        let pending = View::decode(raw)
            .filter(|v| v.window == ask.window)
            .map_or(0, |v| v.pending);
        let v = View {
            window: ask.window,
            base: total,
            pending,
            synced_at: now,
        };
        ((), Some(v.encode()))
    });
}

/// One sync's worth of queued deltas, summed per counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The sequence number after the last item it covers.
    pub to: u64,
    /// Items it covers (undecodable ones included: they are skipped, and committed with the rest).
    pub items: usize,
    /// Redis key, summed delta, expiry.
    pub keys: Vec<(String, i64, u64)>,
    /// Hybrid views to refresh from the answer: counter, window, summed delta, index into `keys`.
    pub views: Vec<(String, u64, i64, usize)>,
}

impl Batch {
    /// Sums items from sequence number `head` on, stopping before an item that would make it hold
    /// more than [`BATCH_KEYS`] counters. The same items always give the same batch.
    pub fn build(prefix: &str, head: u64, items: &[Vec<u8>]) -> Batch {
        let mut b = Batch {
            to: head,
            items: 0,
            keys: Vec::new(),
            views: Vec::new(),
        };
        for raw in items {
            if let Some(d) = Delta::decode(raw) {
                let key = redis_key(prefix, &d.counter, d.window);
                let index = match b.keys.iter().position(|(k, _, _)| *k == key) {
                    Some(i) => i,
                    None if b.keys.len() >= BATCH_KEYS => break,
                    None => {
                        b.keys.push((key, 0, expire_at(d.window, d.window_ms)));
                        b.keys.len() - 1
                    }
                };
                if let Some(k) = b.keys.get_mut(index) {
                    k.1 = k.1.saturating_add(d.delta);
                }
                if d.view {
                    match b.views.iter_mut().find(|v| v.3 == index) {
                        Some(v) => v.2 = v.2.saturating_add(d.delta),
                        None => b.views.push((d.counter, d.window, d.delta, index)),
                    }
                }
            }
            b.items += 1;
            b.to += 1;
        }
        b
    }

    /// The call that applies it once; `applied` is the key recording this gateway's last batch.
    pub fn call(&self, store: &RedisStore, applied: &str) -> Callout {
        let mut keys = vec![applied];
        keys.extend(self.keys.iter().map(|(k, _, _)| k.as_str()));
        let mut args = vec![self.to.to_string(), APPLIED_TTL_MS.to_string()];
        for (_, delta, expire) in &self.keys {
            args.push(delta.to_string());
            args.push(expire.to_string());
        }
        store.eval(APPLY, &keys, &args)
    }

    /// Reads the answer: whether it was applied now (not before), and the totals per key.
    pub fn read(&self, body: &[u8]) -> Result<(bool, Vec<u64>), ReplyError> {
        let numbers = redis::integers(&redis::reply(body, "EVAL")?)?;
        let (Some(&applied), Some(totals)) = (numbers.first(), numbers.get(1..)) else {
            return Err(ReplyError::Shape("empty answer".into()));
        };
        if totals.len() != self.keys.len() {
            return Err(ReplyError::Shape(format!(
                "{} totals for {} counters",
                totals.len(),
                self.keys.len()
            )));
        }
        Ok((
            applied == 1,
            totals.iter().map(|t| u64::try_from(*t).unwrap_or(0)).collect(),
        ))
    }
}

const TAG_SYNC: u64 = 1;
const TAG_PROBE: u64 = 2;

enum InFlight {
    Batch { batch: Batch, sent_ms: u64 },
    Probe { sent_ms: u64 },
}

/// The root timer's work for a rate limit with a Redis store: applies the queued deltas, refreshes
/// hybrid views from the answers, and probes Redis while it is down. One worker per gateway does it at
/// a time (the queue's lease).
pub struct Sync {
    filter: &'static str,
    namespace: &'static str,
    store: RedisStore,
    owner: u64,
    in_flight: Option<InFlight>,
    /// The queue's head when it was first seen with nothing readable, and when.
    stuck: Option<(u64, u64)>,
}

/// Ticks a queue may stay stuck on a slot that never appears before the slot is skipped.
pub const LOST_SLOT_TICKS: u64 = 5;

impl Sync {
    /// `namespace` starts every shared-data key of the filter (`ai_token_ratelimit/`).
    pub fn new(filter: &'static str, namespace: &'static str, store: RedisStore, seed: u64) -> Sync {
        Sync {
            filter,
            namespace,
            store,
            owner: seed,
            in_flight: None,
            stuck: None,
        }
    }

    fn health(&self) -> Health<'static> {
        Health {
            filter: self.filter,
            namespace: self.namespace,
        }
    }

    fn meanwhile(&self) -> String {
        format!("failure_mode {} applies", self.store.failure_mode.as_str())
    }

    fn metric(&self, what: &str, labels: &[(&str, &str)]) -> String {
        metrics::name(&format!("{}_{what}", self.filter.replace('-', "_")), labels)
    }

    fn inflight_key(&self) -> String {
        format!("{}sync/inflight", self.namespace)
    }

    /// How long a call may stay unanswered before it is presumed lost.
    fn call_budget_ms(&self) -> u64 {
        let s = &self.store.service;
        s.timeout_ms
            .saturating_mul(u64::from(s.retries) + 1)
            .saturating_add(self.store.sync_interval_ms)
    }

    fn down(&self, host: &mut dyn Host, why: &str) {
        host.counter_add(&self.metric("sync_total", &[("result", "failed")]), 1);
        self.health().record(host, false, why, &self.meanwhile());
    }

    /// A queued item whose slot never appears (its write failed, or Kong's store evicted it) would hold
    /// the queue for ever: after [`LOST_SLOT_TICKS`] ticks at the same head it is skipped and counted.
    /// Returns whether it skipped one.
    fn skip_lost_slot(&mut self, host: &mut dyn Host, queue: &Queue<'_>, head: u64, now: u64) -> bool {
        if queue.meta(host).is_empty() {
            self.stuck = None;
            return false;
        }
        let since = match self.stuck {
            Some((h, since)) if h == head => since,
            _ => {
                self.stuck = Some((head, now));
                return false;
            }
        };
        let patience = self.store.sync_interval_ms.saturating_mul(LOST_SLOT_TICKS);
        if now.saturating_sub(since) < patience {
            return false;
        }
        self.stuck = None;
        if queue.commit(host, head.saturating_add(1)).is_err() {
            return false;
        }
        host.counter_add(&self.metric("sync_dropped_total", &[]), 1);
        host.log(
            LogLevel::Warn,
            &format!("{}: sync queue item {head} never arrived; skipped", self.filter),
        );
        true
    }

    fn applied(&self, host: &mut dyn Host, batch: &Batch, body: &[u8]) -> Result<(), ReplyError> {
        let (applied, totals) = batch.read(body)?;
        let now = host.now_ms();
        for (counter, window, delta, index) in &batch.views {
            let total = totals.get(*index).copied().unwrap_or(0);
            let _lost_is_conservative =
                update_shared(
                    host,
                    &View::key(self.namespace, counter),
                    |raw| match View::decode(raw) {
                        Some(v) if v.window == *window => {
                            let v = View {
                                base: total,
                                pending: v.pending.saturating_sub(*delta),
                                synced_at: now,
                                ..v
                            };
                            ((), Some(v.encode()))
                        }
                        _ => ((), None),
                    },
                );
        }
        let name = queue_name(self.namespace);
        let queue = Queue::new(&name, QUEUE_CAPACITY, Overflow::DropOldest);
        if let Err(e) = queue.commit(host, batch.to) {
            // Sent again next time, and skipped by Redis as already applied.
            host.log(
                LogLevel::Warn,
                &format!("{}: sync queue not advanced: {e}", self.filter),
            );
        }
        let result = if applied { "ok" } else { "repeated" };
        host.counter_add(&self.metric("sync_total", &[("result", result)]), 1);
        host.counter_add(&self.metric("sync_items_total", &[]), batch.items as u64);
        Ok(())
    }
}

impl Background for Sync {
    fn period_ms(&self) -> u64 {
        self.store.sync_interval_ms
    }

    fn on_tick(&mut self, host: &mut dyn Host) -> Vec<(u64, HttpCall)> {
        let now = host.now_ms();
        match &self.in_flight {
            Some(InFlight::Batch { sent_ms, .. } | InFlight::Probe { sent_ms })
                if now.saturating_sub(*sent_ms) < self.call_budget_ms() =>
            {
                return Vec::new();
            }
            _ => self.in_flight = None,
        }
        let name = queue_name(self.namespace);
        let queue = Queue::new(&name, QUEUE_CAPACITY, Overflow::DropOldest);
        let ttl = self
            .call_budget_ms()
            .saturating_add(self.store.sync_interval_ms.saturating_mul(2));
        if !queue.lease(host, self.owner, now, ttl) {
            return Vec::new();
        }
        let head = queue.meta(host).head;
        let inflight_key = self.inflight_key();
        let pending_to = host
            .shared_get(&inflight_key)
            .0
            .and_then(|r| r.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes))
            .filter(|to| *to > head);
        // A batch sent before and not acknowledged goes again exactly as it was.
        let max = pending_to.map_or(BATCH_ITEMS, |to| {
            usize::try_from(to - head).unwrap_or(BATCH_ITEMS)
        });
        let (head, items) = queue.peek(host, max);
        if items.is_empty() && self.skip_lost_slot(host, &queue, head, now) {
            return Vec::new();
        }
        if items.is_empty() {
            if !self.health().is_down(host) {
                return Vec::new();
            }
            self.in_flight = Some(InFlight::Probe { sent_ms: now });
            return vec![(TAG_PROBE, self.store.ping().call().clone())];
        }
        let batch = Batch::build(&self.store.key_prefix, head, &items);
        if pending_to != Some(batch.to)
            && update_shared(host, &inflight_key, |_| {
                ((), Some(batch.to.to_le_bytes().to_vec()))
            })
            .is_err()
        {
            return Vec::new();
        }
        let Some(instance) = redis::instance_id(host, self.namespace) else {
            return Vec::new();
        };
        let applied_key = format!("{}sync:{instance}", self.store.key_prefix);
        let call = batch.call(&self.store, &applied_key).call().clone();
        self.in_flight = Some(InFlight::Batch { batch, sent_ms: now });
        vec![(TAG_SYNC, call)]
    }

    fn on_call_response(&mut self, host: &mut dyn Host, tag: u64, response: CallResponse) {
        let flight = self.in_flight.take();
        match (tag, flight) {
            (TAG_SYNC, Some(InFlight::Batch { batch, .. })) => {
                let result = callout::judge(&response)
                    .map_err(|f| f.to_string())
                    .and_then(|_| {
                        self.applied(host, &batch, &response.body)
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(()) => {
                        self.health().record(host, true, "", "");
                    }
                    Err(why) => self.down(host, &why),
                }
            }
            (TAG_PROBE, Some(InFlight::Probe { .. })) => {
                let ok = callout::judge(&response).is_ok() && redis::reply(&response.body, "PING").is_ok();
                if ok {
                    self.health().record(host, true, "", "");
                }
            }
            // An answer to a call given up on: the next tick sends what is still queued.
            (_, other) => self.in_flight = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FakeHost, HostKind};
    use crate::redis::{RawStore, Store, COUNTERS};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NS: &str = "ai_token_ratelimit/";

    fn store(mode: &str) -> RedisStore {
        let raw: RawStore = serde_json::from_value(json!({"type": "redis", "mode": mode,
            "upstream": {"cluster": "webdis", "host": "127.0.0.1:7379"}, "key_prefix": "p:",
            "sync_interval": "200ms"}))
        .unwrap();
        match Store::compile("store", raw, COUNTERS).unwrap() {
            Store::Redis(r) => r,
            Store::Local => unreachable!(),
        }
    }

    fn ask(counter: &str, amount: u64, limit: u64) -> Ask {
        Ask {
            counter: counter.into(),
            window: 7,
            window_ms: 60_000,
            amount,
            limit,
        }
    }

    /// The Webdis command of a call (`GET /EVAL/…`) split back into its decoded segments.
    fn segments(call: &HttpCall) -> Vec<String> {
        assert_eq!((call.method.as_str(), call.body.len()), ("GET", 0));
        let text = call.path.strip_prefix('/').unwrap();
        text.split('/')
            .map(|seg| {
                let mut out = Vec::new();
                let b = seg.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' {
                        out.push(u8::from_str_radix(&seg[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    fn answer(body: &str) -> CallResponse {
        CallResponse {
            status: Some(200),
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn keys_expiry_and_settlement_targets() {
        assert_eq!(redis_key("p:", "tpm:minute:bob", 9), "p:rl:tpm:minute:bob:9");
        assert_eq!(expire_at(9, 60_000), 10 * 60_000 + GRACE_MS);
        let cases = [
            ((5, 5, -3), Some((5, -3))),
            ((5, 5, 4), Some((5, 4))),
            ((5, 6, 4), Some((6, 4))),
            ((5, 6, -4), None),
            ((5, 5, 0), None),
        ];
        for ((reserved, now, delta), want) in cases {
            assert_eq!(
                settle_target(reserved, now, delta),
                want,
                "{reserved} {now} {delta}"
            );
        }
        // Views go stale after two intervals; the bound counts three intervals and a round trip.
        assert_eq!(stale_ms(200), 400);
        assert!((overshoot_bound(1000.0, 200, 10) - 610.0).abs() < 1e-9);
    }

    #[test]
    fn admission_call_and_answers() {
        let s = store("exact");
        let asks = [ask("tpm:minute:bob", 20, 100), ask("rpm:minute:bob", 1, u64::MAX)];
        let c = admit_call(&s, &asks, false);
        let seg = segments(c.call());
        assert_eq!(seg[0], "EVAL");
        assert_eq!(seg[1], ADMIT);
        let expiry = (8 * 60_000 + GRACE_MS).to_string();
        let rest: Vec<&str> = seg[2..].iter().map(String::as_str).collect();
        assert_eq!(
            rest,
            [
                "2",
                "p:rl:tpm:minute:bob:7",
                "p:rl:rpm:minute:bob:7",
                "0",
                "20",
                "100",
                &expiry,
                "1",
                "9007199254740992",
                &expiry
            ]
        );
        assert_eq!(segments(admit_call(&s, &asks, true).call())[5], "1");
        let cases = [
            (r#"{"EVAL":[0,40,3]}"#, Ok(Verdict::Admitted(vec![40, 3]))),
            (
                r#"{"EVAL":[2,40,3]}"#,
                Ok(Verdict::Refused {
                    index: 1,
                    used: vec![40, 3],
                }),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(read_admit(body.as_bytes(), 2), want, "{body}");
        }
        for bad in [
            r#"{"EVAL":[0,40]}"#,
            r#"{"EVAL":[3,1,2]}"#,
            r#"{"EVAL":[]}"#,
            r#"{"EVAL":[false,"ERR x"]}"#,
        ] {
            assert!(read_admit(bad.as_bytes(), 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn deltas_and_views_round_trip() {
        let d = Delta {
            counter: "tpm:day:5:a|b|m".into(),
            window: 3,
            window_ms: 86_400_000,
            delta: -42,
            view: true,
        };
        assert_eq!(Delta::decode(&d.encode()), Some(d));
        assert_eq!(Delta::decode(b"short"), None);
        let v = View {
            window: 2,
            base: 90,
            pending: -30,
            synced_at: 1000,
        };
        assert_eq!(View::decode(Some(&v.encode())), Some(v));
        assert_eq!(View::decode(Some(&[0; 31])), None);
        assert_eq!(v.estimate(), 60);
        assert_eq!(View { pending: -100, ..v }.estimate(), 0);
        assert!(v.fresh(2, 1400, 400));
        assert!(!v.fresh(2, 1401, 400), "too old");
        assert!(!v.fresh(3, 1000, 400), "another window");
    }

    #[test]
    fn views_decide_all_or_nothing_and_go_stale() {
        let mut h = FakeHost::new(HostKind::Envoy);
        let asks = [ask("a", 20, 100), ask("b", 20, 50)];
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1000, 400, false),
            ViewAdmit::Stale,
            "no view yet"
        );
        refresh_view(&mut h, NS, &asks[0], 50, 1000);
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1000, 400, false),
            ViewAdmit::Stale,
            "one missing"
        );
        refresh_view(&mut h, NS, &asks[1], 20, 1000);
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1100, 400, false),
            ViewAdmit::Admitted(vec![70, 40])
        );
        // b: 40 + 20 > 50: refused as a whole, a's reservation undone.
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1200, 400, false),
            ViewAdmit::Refused {
                index: 1,
                used: vec![90, 40]
            }
        );
        let view =
            |h: &FakeHost, c: &str| View::decode(h.shared[&View::key(NS, c)].0.as_slice().into()).unwrap();
        assert_eq!((view(&h, "a").pending, view(&h, "b").pending), (20, 20));
        // Shadow mode adds anyway and reports the first that did not fit.
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1200, 400, true),
            ViewAdmit::Refused {
                index: 1,
                used: vec![90, 60]
            }
        );
        assert_eq!((view(&h, "a").pending, view(&h, "b").pending), (40, 40));
        // Settlements move pending; a refresh keeps pending and takes Redis's total.
        add_to_view(&mut h, NS, "a", 7, -15);
        add_to_view(&mut h, NS, "a", 6, -1000);
        assert_eq!(view(&h, "a").pending, 25);
        refresh_view(&mut h, NS, &asks[0], 300, 1300);
        assert_eq!(
            (view(&h, "a").base, view(&h, "a").pending, view(&h, "a").synced_at),
            (300, 25, 1300)
        );
        assert_eq!(
            admit_views(&mut h, NS, &asks, 1601, 400, false),
            ViewAdmit::Stale,
            "b is too old now"
        );
        h.refuse_shared_writes = true;
        assert_eq!(
            admit_views(&mut h, NS, &[ask("a", 1, 1000)], 1301, 400, false),
            ViewAdmit::Failed
        );
    }

    fn delta(counter: &str, d: i64, view: bool) -> Vec<u8> {
        Delta {
            counter: counter.into(),
            window: 7,
            window_ms: 1000,
            delta: d,
            view,
        }
        .encode()
    }

    #[test]
    fn batches_sum_per_counter_and_stop_at_the_key_cap() {
        let items = vec![
            delta("a", 5, true),
            delta("b", -3, false),
            b"junk".to_vec(),
            delta("a", -2, true),
        ];
        let b = Batch::build("p:", 10, &items);
        assert_eq!((b.to, b.items), (14, 4));
        assert_eq!(
            b.keys,
            vec![
                ("p:rl:a:7".into(), 3, 8000 + GRACE_MS),
                ("p:rl:b:7".into(), -3, 8000 + GRACE_MS)
            ]
        );
        assert_eq!(b.views, vec![("a".into(), 7, 3, 0)]);
        assert_eq!(
            Batch::build("p:", 10, &items),
            b,
            "the same items give the same batch"
        );
        let many: Vec<Vec<u8>> = (0..BATCH_KEYS + 5)
            .map(|i| delta(&format!("k{i}"), 1, false))
            .collect();
        let capped = Batch::build("p:", 0, &many);
        assert_eq!((capped.keys.len(), capped.to), (BATCH_KEYS, BATCH_KEYS as u64));
        let seg = segments(b.call(&store("hybrid"), "p:sync:abc").call());
        let rest: Vec<&str> = seg[2..].iter().map(String::as_str).collect();
        let exp = (8000 + GRACE_MS).to_string();
        assert_eq!(
            rest,
            [
                "3",
                "p:sync:abc",
                "p:rl:a:7",
                "p:rl:b:7",
                "14",
                "86400000",
                "3",
                &exp,
                "-3",
                &exp
            ]
        );
        assert_eq!(b.read(br#"{"EVAL":[1,30,0]}"#), Ok((true, vec![30, 0])));
        assert_eq!(b.read(br#"{"EVAL":[0,30,0]}"#), Ok((false, vec![30, 0])));
        assert!(b.read(br#"{"EVAL":[1,30]}"#).is_err());
    }

    #[test]
    fn sync_applies_once_resends_the_same_batch_and_probes_while_down() {
        let s = store("hybrid");
        let mut h = FakeHost::new(HostKind::Envoy);
        h.now_ms = 7_000;
        let mut sync = Sync::new("ai-token-ratelimit", NS, s.clone(), 1);
        let mut other = Sync::new("ai-token-ratelimit", NS, s, 2);
        assert!(
            sync.on_tick(&mut h).is_empty(),
            "nothing queued, store up: no call"
        );
        refresh_view(&mut h, NS, &ask("a", 0, 0), 10, 7_000);
        add_to_view(&mut h, NS, "a", 7, 5);
        for d in [delta("a", 5, true), delta("b", -3, false)] {
            push(&mut h, NS, &Delta::decode(&d).unwrap()).unwrap();
        }
        let calls = sync.on_tick(&mut h);
        assert_eq!(calls.len(), 1);
        let (tag, call) = &calls[0];
        assert_eq!(
            segments(call)[3],
            format!("p:sync:{}", redis::instance_id(&mut h, NS).unwrap())
        );
        assert!(other.on_tick(&mut h).is_empty(), "one worker holds the lease");
        // The answer is lost: Redis is marked down, and the next tick sends the same batch, not the new item.
        let lost = CallResponse::default();
        sync.on_call_response(&mut h, *tag, lost);
        assert!(Health {
            filter: "ai-token-ratelimit",
            namespace: NS
        }
        .is_down(&h));
        push(&mut h, NS, &Delta::decode(&delta("c", 1, false)).unwrap()).unwrap();
        h.now_ms += 200;
        let again = sync.on_tick(&mut h);
        assert_eq!(again[0].1.path, call.path);
        // Redis answers: views take the totals, pending drops by what was applied, the queue moves on.
        sync.on_call_response(&mut h, again[0].0, answer(r#"{"EVAL":[0,45,2]}"#));
        let v = View::decode(h.shared[&View::key(NS, "a")].0.as_slice().into()).unwrap();
        assert_eq!((v.base, v.pending, v.synced_at), (45, 0, 7_200));
        assert!(!Health {
            filter: "ai-token-ratelimit",
            namespace: NS
        }
        .is_down(&h));
        assert_eq!(h.counters["ai_token_ratelimit_sync_total_result=repeated"], 1);
        assert_eq!(h.counters["ai_token_ratelimit_sync_total_result=failed"], 1);
        h.now_ms += 200;
        let next = sync.on_tick(&mut h);
        assert!(segments(&next[0].1).contains(&"p:rl:c:7".to_string()));
        sync.on_call_response(&mut h, next[0].0, answer(r#"{"EVAL":[1,1]}"#));
        assert_eq!(h.counters["ai_token_ratelimit_sync_total_result=ok"], 1);
        assert_eq!(h.counters["ai_token_ratelimit_sync_items_total"], 3);
        // A slot that never appears (its write failed) is skipped after a few ticks, counted.
        let name = queue_name(NS);
        let q = Queue::new(&name, QUEUE_CAPACITY, Overflow::DropOldest);
        let meta_key = format!("{name}/meta");
        let (raw, cas) = h.shared_get(&meta_key);
        let mut meta = raw.unwrap();
        let tail = u64::from_le_bytes(meta[8..16].try_into().unwrap());
        meta[8..16].copy_from_slice(&(tail + 1).to_le_bytes());
        h.shared_set(&meta_key, &meta, cas).unwrap();
        for _ in 0..=LOST_SLOT_TICKS {
            h.now_ms += 200;
            assert!(sync.on_tick(&mut h).is_empty());
        }
        assert_eq!(q.meta(&h).head, tail + 1, "skipped");
        assert_eq!(h.counters["ai_token_ratelimit_sync_dropped_total"], 1);
        // Down with nothing queued: the tick pings, and a PONG brings the store back.
        Health {
            filter: "ai-token-ratelimit",
            namespace: NS,
        }
        .record(&mut h, false, "x", "y");
        h.now_ms += 200;
        let probe = sync.on_tick(&mut h);
        assert_eq!(probe[0].1.path, "/PING");
        sync.on_call_response(&mut h, probe[0].0, answer(r#"{"PING":[true,"PONG"]}"#));
        assert!(!Health {
            filter: "ai-token-ratelimit",
            namespace: NS
        }
        .is_down(&h));
    }
}
