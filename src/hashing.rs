//! argon2id work off the async reactor, on a fixed pool of its own threads:
//! a flood of bad secrets queues here instead of starving proxied traffic,
//! and the memory argon2 uses (19 MiB a hash by default) stays with those
//! few threads instead of spreading over tokio's blocking pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use std::sync::{mpsc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use crate::secret::{self, HashParams};

mod flight;
use flight::Flights;

/// A PHC hash of a random value, verified when the client is unknown so that
/// an unknown client costs the same as a wrong secret.
const DUMMY_SECRET: &str = "tg_sk_dummy-secret-for-equal-timing-0000000000000";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("hashing failed: {0}")]
    Failed(String),
    /// As many verifications as `hashing.max_queued` already wait their
    /// turn: the caller is answered at once instead of joining the queue.
    #[error("too many verifications are waiting")]
    Busy,
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashing yields the CPU to proxied traffic. On Linux the hashing threads
/// run under `SCHED_IDLE`: a proxy thread that wakes up takes the CPU from
/// them at once. Merely renicing them (10) left a woken proxy thread waiting
/// for the hash's time slice, which under a flood of bad secrets nearly
/// tripled the proxied requests' p99 (benches/load.sh, case f). The price:
/// while proxied traffic keeps every core busy, hashing (new clients' first
/// token, admin keys not yet verified) waits for it. If the policy cannot be
/// set, the thread is reniced to 19. Both apply to the calling thread only.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls only read the arguments given; `param` outlives
    // the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

/// Returns this thread's free memory to the OS. An argon2id hash at the
/// default parameters allocates 19 MiB; without this, the allocator keeps
/// it resident after the hash for reuse, which a proxy holding many
/// connections pays for in RSS. A hash costs tens of milliseconds; this,
/// microseconds.
fn release_memory() {
    // SAFETY: mi_collect takes no pointers; it only walks this thread's heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// `n` threads taking jobs from one queue, in order.
fn spawn_pool(n: usize) -> Result<mpsc::Sender<Job>, HashError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        thread::Builder::new()
            .name(format!("tollgate-argon2-{i}"))
            .spawn(move || {
                lower_priority();
                loop {
                    let job = match rx.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => {
                            job();
                            release_memory();
                        }
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| HashError::Failed(format!("cannot start hashing threads: {e}")))?;
    }
    Ok(tx)
}

pub struct Hasher {
    params: HashParams,
    jobs: mpsc::Sender<Job>,
    dummy_hash: String,
    /// Verifications queued and not yet started.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// Verifications in progress, shared by identical callers.
    flights: Flights,
}

impl Hasher {
    /// `max_concurrent` threads; at most `max_waiting` verifications queued
    /// behind them (hashing new secrets, which only an authenticated admin
    /// asks for, is not limited).
    pub fn new(
        params: HashParams,
        max_concurrent: usize,
        max_waiting: usize,
    ) -> Result<Hasher, HashError> {
        let dummy = SecretString::from(DUMMY_SECRET);
        let dummy_hash =
            secret::hash_secret(&dummy, &params).map_err(|e| HashError::Failed(e.to_string()))?;
        release_memory();
        Ok(Hasher {
            params,
            jobs: spawn_pool(max_concurrent.max(1))?,
            dummy_hash,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            flights: Flights::default(),
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// Runs `f` on a hashing thread; with `limited`, refuses (`Busy`) when
    /// `max_waiting` jobs already wait.
    async fn run<T: Send + 'static>(
        &self,
        limited: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        if limited && self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let waiting = limited.then(|| self.waiting.clone());
        let started = move || {
            if let Some(w) = &waiting {
                w.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            started();
            // A caller that went away while the job queued (a timeout, a
            // closed connection) no longer wants the hash: under a flood,
            // running it anyway would only lengthen the queue for those
            // still waiting.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(f());
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            drop(job);
            if limited {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(HashError::Failed("hashing threads stopped".into()));
        }
        rx.await
            .map_err(|_| HashError::Failed("hashing job dropped".into()))
    }

    /// Hashes a secret with the configured parameters.
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let secret = secret.clone();
        let params = self.params;
        self.run(false, move || secret::hash_secret(&secret, &params))
            .await?
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Verifies a secret against every candidate hash (current and, during a
    /// grace period, previous): whether one matches, or an error when no
    /// verification could be made (then the caller knows nothing). Callers
    /// verifying the same secret against the same hashes at the same time
    /// share one verification.
    pub async fn verify_any(
        &self,
        secret: &str,
        candidates: Vec<String>,
    ) -> Result<bool, HashError> {
        let mut parts = vec![secret.as_bytes()];
        parts.extend(candidates.iter().map(|c| c.as_bytes()));
        let key = secret::sha256(&parts);
        self.verify_keyed(key, secret, candidates).await
    }

    /// Spends one verification on the dummy hash for an unknown client id.
    /// Concurrent requests share it exactly as they would for a known client
    /// with a wrong secret: keyed by the client id as well as the secret, so
    /// requests for one unknown id with one secret share a verification and
    /// requests for different ids do not. Keyed by the secret alone, every
    /// unknown id would share one, and a known id would be measurably slower
    /// under concurrency.
    pub async fn verify_dummy(&self, client_id: &str, secret: &str) -> Result<(), HashError> {
        let key = secret::sha256(&[
            b"unknown client",
            client_id.as_bytes(),
            secret.as_bytes(),
            self.dummy_hash.as_bytes(),
        ]);
        self.verify_keyed(key, secret, vec![self.dummy_hash.clone()])
            .await
            .map(|_| ())
    }

    async fn verify_keyed(
        &self,
        key: [u8; 32],
        secret: &str,
        candidates: Vec<String>,
    ) -> Result<bool, HashError> {
        self.flights
            .run(key, || {
                let secret = SecretString::from(secret.to_string());
                self.run(true, move || {
                    candidates
                        .iter()
                        .any(|phc| secret::verify_secret(secret.expose_secret(), phc))
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_job_whose_caller_went_away_is_not_run() {
        let hasher = Hasher::new(HashParams::cheap(), 1, 8).expect("hasher");
        // Occupy the only hashing thread.
        let busy = hasher.run(true, || thread::sleep(Duration::from_millis(300)));
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let abandoned = hasher.run(true, move || flag.store(true, Ordering::SeqCst));
        let (busy, abandoned) = tokio::join!(
            busy,
            tokio::time::timeout(Duration::from_millis(20), abandoned)
        );
        busy.expect("the first job");
        assert!(abandoned.is_err(), "the second job should still be queued");
        // A later job runs after the abandoned one would have.
        hasher.run(true, || ()).await.expect("a later job");
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");
    }

    #[tokio::test]
    async fn verifications_beyond_the_queue_limit_are_refused_at_once() {
        let hasher = Arc::new(Hasher::new(HashParams::cheap(), 1, 2).expect("hasher"));
        let (release, hold) = mpsc::channel::<()>();
        // The only thread runs a job that waits for `release`: it has
        // started, so it does not count as waiting.
        let (started_tx, started_rx) = oneshot::channel();
        let running = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run(true, move || {
                        let _ = started_tx.send(());
                        let _ = hold.recv();
                    })
                    .await
            }
        });
        started_rx.await.expect("the first job started");
        // Two may wait (different secrets: identical verifications would
        // share one)...
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify_any(&format!("s{i}"), Vec::new()).await })
            })
            .collect();
        while hasher.waiting.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // ...the third is refused without waiting, a new secret's hash is not.
        assert!(matches!(
            hasher.verify_any("s", Vec::new()).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(
            hasher.verify_dummy("sa_x", "s").await,
            Err(HashError::Busy)
        ));
        let hashed = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash(&SecretString::from("s")).await }
        });
        release.send(()).expect("release");
        running.await.expect("join").expect("first job");
        for q in queued {
            assert!(!q.await.expect("join").expect("queued verification"));
        }
        hashed.await.expect("join").expect("hash");
        // The queue is empty again: verifications are accepted.
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0);
        assert!(!hasher.verify_any("s", Vec::new()).await.expect("verify"));
    }
}
