use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const HOLD: Duration = Duration::from_secs(1);

fn lease(granted: u64, remaining: u64, ms: u64) -> Lease {
    Lease {
        granted,
        remaining,
        valid_for: Duration::from_millis(ms),
        tag: 0,
    }
}

#[test]
fn leases_shrink_as_the_window_fills() {
    assert_eq!(want(1000, 64), 64);
    assert_eq!(want(100, 64), 12);
    assert_eq!(want(7, 64), 1);
    assert_eq!(want(0, 64), 1);
    assert_eq!(want(1000, 0), 1);
}

#[test]
fn a_lease_is_spent_locally_until_it_runs_out_or_its_window_ends() {
    let t0 = Instant::now();
    let mut l = Local::default();
    assert_eq!(l.take(t0, 1, 100, 64), Take::Ask { want: 12 });
    l.grant(t0, 1, lease(2, 50, 1000), HOLD);
    assert_eq!(l.take(t0, 1, 100, 64), Take::Taken);
    assert_eq!(l.take(t0, 1, 100, 64), Take::Taken);
    // Spent: ask again, sized by what the store had left.
    assert_eq!(l.take(t0, 1, 100, 64), Take::Ask { want: 6 });
    l.grant(t0, 1, lease(5, 45, 1000), HOLD);
    // The window is over: the rest is worth nothing.
    let later = t0 + Duration::from_millis(1000);
    assert_eq!(l.take(later, 1, 100, 64), Take::Ask { want: 12 });
}

#[test]
fn other_settings_start_afresh() {
    let t0 = Instant::now();
    let mut l = Local::default();
    l.grant(t0, 1, lease(5, 50, 1000), HOLD);
    assert_eq!(l.take(t0, 2, 10, 64), Take::Ask { want: 1 });
}

#[test]
fn a_refusal_is_held_for_at_most_the_hold_and_the_window() {
    let t0 = Instant::now();
    let mut l = Local::default();
    l.grant(
        t0,
        1,
        Lease {
            tag: 7,
            ..lease(0, 0, 30_000)
        },
        HOLD,
    );
    assert_eq!(
        l.take(t0 + Duration::from_millis(10), 1, 100, 64),
        Take::Refused {
            reset: Duration::from_millis(29_990),
            tag: 7
        }
    );
    assert_eq!(l.take(t0 + HOLD, 1, 100, 64), Take::Ask { want: 1 });
    let mut short = Local::default();
    short.grant(t0, 1, lease(0, 0, 200), HOLD);
    assert!(matches!(
        short.take(t0 + Duration::from_millis(100), 1, 100, 64),
        Take::Refused { .. }
    ));
    assert!(matches!(
        short.take(t0 + Duration::from_millis(200), 1, 100, 64),
        Take::Ask { .. }
    ));
}

#[test]
fn the_table_stays_bounded_and_keeps_live_buckets() {
    let table = Table::new(32);
    let t0 = Instant::now();
    let live = table.budget("live", t0);
    live.grant(t0, 1, lease(5, 5, 60_000), HOLD);
    for i in 0..1000 {
        table.budget(&format!("b{i}"), t0);
    }
    assert!(table.len() <= 32 + SHARDS, "{}", table.len());
    assert_eq!(table.budget("live", t0).take(t0, 1, 5, 64), Take::Taken);
}

/// The store of the simulation: one fixed-window counter on its own clock
/// (milliseconds since the start), as `take_rate` keeps it.
struct ModelStore {
    window_ms: u64,
    counts: HashMap<u64, u64>,
}

impl ModelStore {
    fn take(&mut self, now_ms: u64, want: u64, limit: u64) -> Lease {
        let index = now_ms / self.window_ms;
        let used = self.counts.entry(index).or_insert(0);
        let granted = want.min(limit.saturating_sub(*used));
        *used += granted;
        lease(
            granted,
            limit - *used,
            (index + 1) * self.window_ms - now_ms,
        )
    }
}

proptest! {
    /// Any number of instances, any request timing, any store latency: no
    /// window ever admits more than the limit, and a request is refused only
    /// when the window's count is within the other instances' leases of the
    /// limit (what they hold unspent, at most `lease_max` each).
    #[test]
    fn instances_never_admit_more_than_the_limit_per_window(
        instances in 1usize..5,
        limit in 1u64..60,
        lease_max in 1u64..20,
        latency_ms in 0u64..30,
        steps in prop::collection::vec((0usize..5, 0u64..40), 1..400),
    ) {
        let window_ms = 250;
        let base = Instant::now();
        let mut store = ModelStore { window_ms, counts: HashMap::new() };
        let mut locals: Vec<Local> = (0..instances).map(|_| Local::default()).collect();
        let mut admitted: HashMap<u64, u64> = HashMap::new();
        let mut now = 0u64;
        for (who, gap) in steps {
            now += gap;
            let i = who % instances;
            let at = |ms: u64| base + Duration::from_millis(ms);
            let mut t = now;
            let mut outcome = locals[i].take(at(t), 1, limit, lease_max);
            if let Take::Ask { want } = outcome {
                // The store answers `latency_ms` after it is asked, and the
                // answer arrives as much later again.
                let l = store.take(t + latency_ms, want, limit);
                locals[i].grant(at(t), 1, l, HOLD);
                t += 2 * latency_ms;
                // Requests run one after another: the next starts after
                // this answer arrived (an instance never spends a lease
                // before the store's answer reaches it).
                now = t;
                outcome = locals[i].take(at(t), 1, limit, lease_max);
            }
            let window = t / window_ms;
            match outcome {
                Take::Taken => {
                    let n = admitted.entry(window).or_insert(0);
                    *n += 1;
                    prop_assert!(*n <= limit, "window {} admitted {} > {}", window, n, limit);
                }
                Take::Refused { .. } | Take::Ask { .. } => {
                    let held: u64 = locals
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, l)| l.tokens)
                        .sum();
                    prop_assert!(held <= (instances as u64 - 1) * lease_max);
                    let counted = store.counts.get(&window).copied().unwrap_or(0);
                    // Refused with units left in the store: only while a
                    // held refusal (at most HOLD) is about to expire or the
                    // window just turned, never in a window where the store
                    // could still grant what others do not hold.
                    if matches!(outcome, Take::Refused { .. }) {
                        prop_assert!(
                            counted + held >= limit || counted == 0,
                            "refused in window {} with {} counted, {} held, limit {}",
                            window, counted, held, limit
                        );
                    }
                }
            }
        }
    }
}
