//! One argon2 verification for many identical ones at once.
//!
//! A fleet of workers that share a credential and start together (a
//! deployment, an autoscaler, a restart after an outage) sends the same
//! client id and secret many times in the same instant, before the first
//! verification has been remembered. Verified one by one, they queue behind
//! each other on the hashing threads: with 64 of them and the default
//! argon2 cost, the last waited two seconds (and a flood of one bad secret
//! cost one hash a request). Here the first caller verifies and the others
//! wait for its answer: a verification's outcome depends only on the secret
//! and the hashes it is checked against, which make its key, so sharing it
//! grants nothing that the caller would not have been granted alone.
//!
//! A flight lives only while callers wait for it: the last one to leave
//! removes it, so the map holds at most one entry per verification waited on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::HashError;

type Cell = Arc<OnceCell<bool>>;

#[derive(Default)]
pub struct Flights {
    inflight: Mutex<HashMap<[u8; 32], Cell>>,
}

impl Flights {
    /// The outcome of `verify` for `key`: run here, or shared with a caller
    /// already verifying the same key. A verification that fails (the
    /// hashing queue is full, say) is not shared: the next caller waiting
    /// runs its own. A waiter that goes away hands the verification on.
    pub async fn run<F, Fut>(&self, key: [u8; 32], verify: F) -> Result<bool, HashError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, HashError>>,
    {
        let Some(seat) = Seat::join(self, key) else {
            return verify().await;
        };
        seat.cell().get_or_try_init(verify).await.copied()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// A caller's place in a flight; leaving (drop) removes the flight when
/// nobody else waits for it.
struct Seat<'a> {
    flights: &'a Flights,
    key: [u8; 32],
    cell: Option<Cell>,
}

impl<'a> Seat<'a> {
    fn join(flights: &'a Flights, key: [u8; 32]) -> Option<Seat<'a>> {
        let mut map = flights.inflight.lock().ok()?;
        let cell = map.entry(key).or_default().clone();
        Some(Seat {
            flights,
            key,
            cell: Some(cell),
        })
    }

    fn cell(&self) -> &OnceCell<bool> {
        self.cell
            .as_deref()
            .expect("a seat holds its cell until dropped")
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        // Every clone of a flight's cell is made and dropped under the lock,
        // so the count read here is exact: 1 is the map's own.
        let Ok(mut map) = self.flights.inflight.lock() else {
            return;
        };
        drop(self.cell.take());
        if map
            .get(&self.key)
            .is_some_and(|c| Arc::strong_count(c) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    async fn slow_verify(runs: &AtomicUsize, outcome: bool) -> Result<bool, HashError> {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(outcome)
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_key_share_one_verification() {
        let flights = Flights::default();
        let runs = AtomicUsize::new(0);
        let all = futures_util::future::join_all(
            (0..16).map(|_| flights.run([1; 32], || slow_verify(&runs, false))),
        )
        .await;
        assert!(all.iter().all(|r| matches!(r, Ok(false))), "{all:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0, "a finished flight is removed");
    }

    #[tokio::test]
    async fn different_keys_are_verified_apart() {
        let flights = Flights::default();
        let runs = AtomicUsize::new(0);
        let (a, b) = tokio::join!(
            flights.run([1; 32], || slow_verify(&runs, true)),
            flights.run([2; 32], || slow_verify(&runs, false)),
        );
        assert!(matches!((a, b), (Ok(true), Ok(false))));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_verification_is_not_shared_and_a_departed_one_is_handed_on() {
        let flights = Flights::default();
        let runs = AtomicUsize::new(0);
        let busy = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(HashError::Busy)
        };
        let (a, b) = tokio::join!(
            flights.run([3; 32], busy),
            flights.run([3; 32], || slow_verify(&runs, true)),
        );
        assert!(matches!(a, Err(HashError::Busy)), "{a:?}");
        assert!(matches!(b, Ok(true)), "{b:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        // The verifying request goes away (its client hung up): the one
        // still waiting verifies for itself.
        let first = flights.run([4; 32], || slow_verify(&runs, true));
        let abandoned = tokio::time::timeout(Duration::from_millis(10), first);
        let (gone, kept) =
            tokio::join!(abandoned, flights.run([4; 32], || slow_verify(&runs, true)));
        assert!(gone.is_err(), "the first request timed out");
        assert!(matches!(kept, Ok(true)), "{kept:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert_eq!(flights.len(), 0);
    }
}
