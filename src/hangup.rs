//! SIGHUP, the operator's "reload now": the policy set and the TLS
//! certificates each listen for it in their background loop.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGHUP as a sequence of reload requests.
pub(crate) struct Hangup(Option<Signal>);

impl Hangup {
    /// Listens for SIGHUP; when that cannot be done, says so (`otherwise`:
    /// what still reloads) and never fires.
    pub(crate) fn listen(otherwise: &str) -> Hangup {
        match signal(SignalKind::hangup()) {
            Ok(s) => Hangup(Some(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; {otherwise}");
                Hangup(None)
            }
        }
    }

    /// The next SIGHUP (pending for ever without one to listen for).
    pub(crate) async fn recv(&mut self) {
        if let Some(s) = self.0.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
            self.0 = None;
        }
        std::future::pending().await
    }
}
