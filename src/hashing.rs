//! argon2id work off the async reactor, on a fixed pool of its own threads:
//! a flood of bad secrets queues here instead of starving proxied traffic,
//! and the memory argon2 uses (19 MiB a hash by default) stays with those
//! few threads instead of spreading over tokio's blocking pool.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use std::sync::{mpsc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use crate::secret::{self, HashParams};

/// A PHC hash of a random value, verified when the client is unknown so that
/// an unknown client costs the same as a wrong secret.
const DUMMY_SECRET: &str = "tg_sk_dummy-secret-for-equal-timing-0000000000000";

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("hashing failed: {0}")]
    Failed(String),
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
}

impl Hasher {
    pub fn new(params: HashParams, max_concurrent: usize) -> Result<Hasher, HashError> {
        let dummy = SecretString::from(DUMMY_SECRET);
        let dummy_hash =
            secret::hash_secret(&dummy, &params).map_err(|e| HashError::Failed(e.to_string()))?;
        release_memory();
        Ok(Hasher {
            params,
            jobs: spawn_pool(max_concurrent.max(1))?,
            dummy_hash,
        })
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A caller that went away while the job queued (a timeout, a
            // closed connection) no longer wants the hash: under a flood,
            // running it anyway would only lengthen the queue for those
            // still waiting.
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(f());
        });
        self.jobs
            .send(job)
            .map_err(|_| HashError::Failed("hashing threads stopped".into()))?;
        rx.await
            .map_err(|_| HashError::Failed("hashing job dropped".into()))
    }

    /// Hashes a secret with the configured parameters.
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let secret = secret.clone();
        let params = self.params;
        self.run(move || secret::hash_secret(&secret, &params))
            .await?
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Verifies a secret against every candidate hash (current and, during a
    /// grace period, previous); true when one matches.
    pub async fn verify_any(&self, secret: &str, candidates: Vec<String>) -> bool {
        let secret = SecretString::from(secret.to_string());
        self.run(move || {
            candidates
                .iter()
                .any(|phc| secret::verify_secret(secret.expose_secret(), phc))
        })
        .await
        .unwrap_or(false)
    }

    /// Spends one verification on the dummy hash (unknown client).
    pub async fn verify_dummy(&self, secret: &str) {
        let _ = self.verify_any(secret, vec![self.dummy_hash.clone()]).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_job_whose_caller_went_away_is_not_run() {
        let hasher = Hasher::new(HashParams::cheap(), 1).expect("hasher");
        // Occupy the only hashing thread.
        let busy = hasher.run(|| thread::sleep(Duration::from_millis(300)));
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let abandoned = hasher.run(move || flag.store(true, Ordering::SeqCst));
        let (busy, abandoned) = tokio::join!(
            busy,
            tokio::time::timeout(Duration::from_millis(20), abandoned)
        );
        busy.expect("the first job");
        assert!(abandoned.is_err(), "the second job should still be queued");
        // A later job runs after the abandoned one would have.
        hasher.run(|| ()).await.expect("a later job");
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");
    }
}
