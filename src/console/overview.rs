//! The authorization overview: allow and deny per route and reason, from
//! this process's own `tollgate_authz_decisions_total` counters. The
//! console samples them (at most every 20 s, while it is used) and shows
//! what changed since the oldest sample of the last ten minutes, beside
//! the totals since the process started. Nothing is added to the proxy's
//! path: the counters exist already.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus::core::Collector;

use super::lock;
use super::session::Console;

/// (route, decision, reason).
pub(crate) type Key = (String, String, String);

pub(crate) struct Sample {
    at: Instant,
    counts: BTreeMap<Key, u64>,
}

const EVERY: Duration = Duration::from_secs(20);
pub(crate) const WINDOW: Duration = Duration::from_secs(600);

fn read_counters() -> BTreeMap<Key, u64> {
    let mut counts = BTreeMap::new();
    for family in crate::metrics::Metrics::get().authz_decisions.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let value = metric.get_counter().value();
            counts.insert(
                (label("route"), label("decision"), label("reason")),
                value.max(0.0) as u64,
            );
        }
    }
    counts
}

impl Console {
    /// Takes a sample when the last one is older than `EVERY`.
    pub(crate) fn sample_counters(&self) {
        let now = Instant::now();
        let Some(mut samples) = lock(&self.samples) else {
            return;
        };
        if samples
            .back()
            .is_some_and(|s| now.duration_since(s.at) < EVERY)
        {
            return;
        }
        while samples
            .front()
            .is_some_and(|s| now.duration_since(s.at) > WINDOW)
        {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at: now,
            counts: read_counters(),
        });
    }

    /// Per key: the change since the oldest sample kept and the total, and
    /// how long the change covers.
    pub(crate) fn overview(&self) -> (Vec<(Key, u64, u64)>, Duration) {
        let now = read_counters();
        let (base, span) = match lock(&self.samples).and_then(|s| {
            s.front()
                .map(|first| (first.counts.clone(), first.at.elapsed()))
        }) {
            Some(found) => found,
            None => (BTreeMap::new(), Duration::ZERO),
        };
        let rows = now
            .into_iter()
            .map(|(k, total)| {
                let before = base.get(&k).copied().unwrap_or(0);
                let recent = total.saturating_sub(before);
                (k, recent, total)
            })
            .collect();
        (rows, span)
    }
}
