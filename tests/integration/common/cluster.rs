//! A Redis Cluster of its own: three masters (no replicas) of local
//! `redis-server` processes on free loopback ports, joined with
//! `redis-cli --cluster create`; every process is killed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MASTERS: usize = 3;
/// A node's cluster bus listens on its port + 10000.
const BUS_OFFSET: u16 = 10_000;

pub struct RedisCluster {
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-cluster.")
            .tempdir()
            .expect("temp dir");
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            dir,
        };
        while cluster.ports.len() < MASTERS {
            let port = super::free_port_pair(BUS_OFFSET);
            cluster.launch(port);
            cluster.ports.push(port);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_ok();
        cluster
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.path().join(port.to_string())
    }

    fn pid_file(&self, port: u16) -> PathBuf {
        self.node_dir(port).join("redis.pid")
    }

    fn launch(&self, port: u16) {
        let dir = self.node_dir(port);
        std::fs::create_dir_all(&dir).expect("node dir");
        let status = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"])
            // AOF, so a stopped and restarted master still has its keys.
            .args(["--save", "", "--appendonly", "yes", "--daemonize", "yes"])
            .arg("--pidfile")
            .arg(self.pid_file(port))
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .status()
            .expect("run redis-server (is it installed?)");
        assert!(status.success(), "redis-server on {port} did not start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis on {port} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every node reports `cluster_state:ok` (all slots served).
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &self.ports {
            loop {
                let out = Command::new("redis-cli")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "cluster",
                        "info",
                    ])
                    .output()
                    .expect("run redis-cli");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis://127.0.0.1:PORT` of every master.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The index of the master holding `key` (by asking each one).
    pub fn node_holding(&self, key: &str) -> Option<usize> {
        self.ports.iter().position(|port| {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "exists", key])
                .output()
                .expect("run redis-cli");
            String::from_utf8_lossy(&out.stdout).trim() == "1"
        })
    }

    /// One command through `redis-cli -c` (following the cluster's
    /// redirects); its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &self.ports[0].to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// How many keys each master holds whose name starts with `prefix`.
    pub fn keys_per_node(&self, prefix: &str) -> Vec<usize> {
        self.ports
            .iter()
            .map(|port| {
                let out = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--scan"])
                    .args(["--pattern", &format!("{prefix}*")])
                    .output()
                    .expect("run redis-cli");
                String::from_utf8_lossy(&out.stdout).lines().count()
            })
            .collect()
    }

    /// Kills one master; the slots it served become unavailable.
    pub fn stop_node(&self, index: usize) {
        let port = self.ports[index];
        kill(&self.pid_file(port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < deadline, "redis on {port} did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a stopped master again (it keeps its node id and slots in
    /// `nodes.conf`) and waits until the cluster is whole.
    pub fn restart_node(&self, index: usize) {
        self.launch(self.ports[index]);
        self.wait_until_ok();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for port in &self.ports {
            kill(&self.pid_file(*port));
        }
    }
}

fn kill(pid_file: &PathBuf) {
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
}
