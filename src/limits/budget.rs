//! The local side of a limit: units leased from the store's counter and
//! spent here without a round trip. Time is passed in.
//!
//! A lease is only spent within the window it was granted for: it expires
//! at `sent + reset`, where `sent` is when the store was asked and `reset`
//! is what the store said was left of its window, so it never outlives the
//! store's window (clocks running at the same rate). The store never grants
//! more than the limit in one window, so no number of instances admits more
//! than the limit in a window. What leases cost is the other way round: a
//! request may be refused while other instances still hold unspent units
//! (at most their current leases, see [`want`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many units to ask for: an eighth of what the store said was left,
/// between 1 and `lease_max`. Leases shrink as a window fills, so little
/// is left stranded on other instances when it runs out.
pub fn want(remaining: u64, lease_max: u64) -> u64 {
    (remaining / 8).clamp(1, lease_max.max(1))
}

/// What the store granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub granted: u64,
    /// What the store's counter has left after the grant.
    pub remaining: u64,
    /// How long the window the grant belongs to still runs.
    pub valid_for: Duration,
    /// The caller's note on a refusal (which quota ran out), given back
    /// while the refusal is held.
    pub tag: u8,
}

/// The outcome of spending one unit locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    Taken,
    /// The store said nothing is left; the window ends in `reset`.
    Refused {
        reset: Duration,
        tag: u8,
    },
    /// Nothing local: ask the store for `want` units.
    Ask {
        want: u64,
    },
}

/// One bucket's state on this instance.
#[derive(Debug, Default)]
pub struct Local {
    tokens: u64,
    /// The end of the window the tokens (or the refusal) belong to.
    until: Option<Instant>,
    /// Which limit they were granted under: other settings start afresh.
    fingerprint: u64,
    /// What the store had left at the last grant.
    remaining: u64,
    /// The store refused: refuse here until then without asking again.
    refused_until: Option<Instant>,
    tag: u8,
}

impl Local {
    /// Spends one unit if one is held for the current window.
    /// `initial` is what a window holds when nothing is known (the limit).
    pub fn take(&mut self, now: Instant, fingerprint: u64, initial: u64, lease_max: u64) -> Take {
        let live = self.fingerprint == fingerprint && self.until.is_some_and(|u| now < u);
        if !live {
            *self = Local {
                fingerprint,
                remaining: initial,
                ..Local::default()
            };
            return Take::Ask {
                want: want(initial, lease_max),
            };
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            return Take::Taken;
        }
        if let (Some(refused), Some(until)) = (self.refused_until, self.until) {
            if now < refused {
                return Take::Refused {
                    reset: until.saturating_duration_since(now),
                    tag: self.tag,
                };
            }
        }
        Take::Ask {
            want: want(self.remaining, lease_max),
        }
    }

    /// Keeps a grant asked for at `sent`, replacing whatever was held: a
    /// unit of another window must never be spent in this one (dropping
    /// units only ever refuses more). A refusal is remembered for at most
    /// `hold` (so that a raised limit is seen soon), never past the window.
    pub fn grant(&mut self, sent: Instant, fingerprint: u64, lease: Lease, hold: Duration) {
        let until = sent + lease.valid_for;
        self.tokens = lease.granted;
        self.until = Some(until);
        self.fingerprint = fingerprint;
        self.remaining = lease.remaining;
        self.refused_until = (lease.granted == 0).then(|| until.min(sent + hold));
        self.tag = lease.tag;
    }

    /// Whether the state can be dropped: nothing held for a live window.
    fn stale(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now >= u)
    }
}

/// A bucket: its local state and the lock that makes one caller at a time
/// ask the store for it (the others wait and spend what it got).
#[derive(Debug, Default)]
pub struct Budget {
    pub local: Mutex<Local>,
    pub refill: tokio::sync::Mutex<()>,
}

impl Budget {
    pub fn take(&self, now: Instant, fingerprint: u64, initial: u64, lease_max: u64) -> Take {
        match self.local.lock() {
            Ok(mut l) => l.take(now, fingerprint, initial, lease_max),
            // A poisoned lock holds nothing trustworthy: ask the store.
            Err(_) => Take::Ask { want: 1 },
        }
    }

    pub fn grant(&self, sent: Instant, fingerprint: u64, lease: Lease, hold: Duration) {
        if let Ok(mut l) = self.local.lock() {
            l.grant(sent, fingerprint, lease, hold);
        }
    }
}

const SHARDS: usize = 16;

/// Every bucket this instance has seen lately, in shards so that requests
/// on different buckets rarely meet on a lock. Bounded: past its size,
/// buckets with nothing live are dropped, then (a flood of distinct
/// sources) a whole shard — which only loses unspent units.
pub struct Table {
    shards: Vec<Mutex<HashMap<String, Arc<Budget>>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl Table {
    pub fn new(max_buckets: usize) -> Table {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            per_shard: (max_buckets / SHARDS).max(1),
        }
    }

    pub fn budget(&self, key: &str, now: Instant) -> Arc<Budget> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(b) = map.get(key) {
            return b.clone();
        }
        if map.len() >= self.per_shard {
            map.retain(|_, b| {
                Arc::strong_count(b) > 1 || b.local.lock().map_or(true, |l| !l.stale(now))
            });
            if map.len() >= self.per_shard {
                map.clear();
            }
        }
        let b = Arc::new(Budget::default());
        map.insert(key.to_string(), b.clone());
        b
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests;
