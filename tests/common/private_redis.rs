//! A Redis of its own on a free port, so a test can stop, restart or block it
//! without touching the Redis every other test shares.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, IO_TIMEOUT};

/// A `redis-server` this test started; killed on drop.
pub struct PrivateRedis {
    port: u16,
    pid_file: PathBuf,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts a server on a free port with AOF in a temp dir, so a stopped and
    /// restarted server still knows what was written (accounts, tokens).
    pub fn start() -> PrivateRedis {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-redis.")
            .tempdir()
            .expect("temp dir");
        let redis = PrivateRedis {
            port: free_port(),
            pid_file: dir.path().join("redis.pid"),
            dir,
        };
        redis.launch();
        redis
    }

    fn launch(&self) {
        let status = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            // DEBUG SLEEP, for tests of a Redis that stops answering.
            .args(["--enable-debug-command", "local"])
            .args(["--daemonize", "yes", "--pidfile"])
            .arg(&self.pid_file)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("run redis-server (is it installed?)");
        assert!(status.success(), "redis-server did not start");
        self.wait_until(true);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn answers(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn wait_until(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answers() != up {
            assert!(
                Instant::now() < deadline,
                "redis on {} did not come {}",
                self.port,
                if up { "up" } else { "down" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its pid from the pid file) and waits until the port is closed.
    pub fn stop(&self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        self.wait_until(false);
    }

    /// Starts it again on the same port, with the same data directory.
    pub fn restart(&self) {
        self.launch();
    }

    /// Makes the server unresponsive for `duration` (`DEBUG SLEEP` on a
    /// connection of its own) and returns at once; the returned task ends
    /// when the server answers again.
    pub async fn block_for(&self, duration: Duration) -> tokio::task::JoinHandle<()> {
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        // No response timeout of the redis crate's own (500 ms by default):
        // the sleep's answer must not come back before the server wakes.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let mut conn = tokio::time::timeout(IO_TIMEOUT, connect)
            .await
            .expect("connecting to the private Redis timed out")
            .expect("connect to the private Redis");
        let handle = tokio::spawn(async move {
            let mut sleep = redis::cmd("DEBUG");
            sleep.arg("SLEEP").arg(duration.as_secs_f64());
            let slept = sleep.query_async::<()>(&mut conn);
            let _ = tokio::time::timeout(duration + IO_TIMEOUT, slept).await;
        });
        // Let the command reach the server before the test goes on.
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
