//! The `tollgate` command line (docs/contract.md §9): `check` on the shipped and on
//! broken configs, `hash-key` (and that the server accepts its output as an
//! admin key), and `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

fn tollgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .env_remove("TOLLGATE_REDIS_URL")
        .env_remove("TOLLGATE_ADMIN_KEY")
        .env_remove("TOLLGATE_LOG")
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run the tollgate binary");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn check(config: &Path) -> (i32, String, String) {
    run(tollgate().arg("check").arg("--config").arg(config))
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A folder with `tollgate.toml` (the given text plus a memory store, a
/// policy folder and an upstream) and `policies/routes.toml`.
struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new(extra_config: &str) -> ConfigDir {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-cli.")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(dir.path().join("policies")).expect("policy dir");
        std::fs::write(dir.path().join("policies/routes.toml"), TOOLS_READ_ROUTE).expect("policy");
        let config = format!(
            "{extra_config}\n\n[policies]\ndir = \"policies\"\n\n\
             [upstreams.backend]\naddrs = [\"127.0.0.1:7001\"]\n"
        );
        std::fs::write(dir.path().join("tollgate.toml"), config).expect("config");
        ConfigDir { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("tollgate.toml")
    }

    fn policy(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("policies").join(name);
        std::fs::write(&path, text).expect("policy");
        path
    }
}

#[test]
fn check_accepts_the_shipped_configs() {
    for config in ["config/tollgate.toml", "config/dev.toml"] {
        let (code, stdout, stderr) = check(&repo_file(config));
        assert_eq!(code, 0, "{config}: {stdout}{stderr}");
        assert!(stdout.contains("valid"), "{config}: {stdout}");
    }
}

/// The container image's /etc/tollgate is laid out by the same script the
/// Dockerfile runs; what it makes must pass `check`, or `docker run` exits.
#[test]
fn check_accepts_the_container_images_config_and_policies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let etc = dir.path().join("etc-tollgate");
    let (code, stdout, stderr) = run(Command::new("bash")
        .arg(repo_file("scripts/image-config.sh"))
        .arg(repo_file(""))
        .arg(&etc));
    assert_eq!(code, 0, "image-config.sh: {stdout}{stderr}");
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("scripts/image-config.sh /src /etc-tollgate")
            && dockerfile.contains("COPY --from=build /etc-tollgate /etc/tollgate"),
        "the Dockerfile no longer builds /etc/tollgate with scripts/image-config.sh"
    );
    let (code, stdout, stderr) = check(&etc.join("tollgate.toml"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("routes"), "{stdout}");
}

#[test]
fn check_accepts_a_minimal_config() {
    let dir = ConfigDir::new("[store]\nbackend = \"memory\"");
    let (code, stdout, stderr) = check(&dir.config());
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn check_names_the_file_line_and_key_of_an_unknown_key() {
    let dir = ConfigDir::new("[store]\nbackend = \"memory\"\ncolour = \"blue\"");
    let (code, stdout, stderr) = check(&dir.config());
    assert_eq!(code, 1, "{stdout}{stderr}");
    let file = dir.config().display().to_string();
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let dir = ConfigDir::new("[store]\nbackend = \"memory\"\n[cache_typo]\nttl_ms = 1");
    let (code, _, stderr) = check(&dir.config());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cache_typo") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_key_of_a_bad_value() {
    for (config, key) in [
        (
            "[store]\nbackend = \"memory\"\ntimeout_ms = 0",
            "store.timeout_ms",
        ),
        ("[store]\nbackend = \"postgres\"", "store.backend"),
        (
            "[store]\nbackend = \"memory\"\n[tokens]\nrevoke_on = [\"sometimes\"]",
            "tokens.revoke_on",
        ),
        (
            "[store]\nbackend = \"memory\"\n[admin]\nkeys = [{ name = \"ops\", hash = \"plain\" }]",
            "admin.keys",
        ),
        (
            "[store]\nbackend = \"memory\"\n[cache]\nttl_ms = 5000",
            "cache.ttl_ms",
        ),
        (
            "[store]\nbackend = \"memory\"\n[limits]\non_store_error = \"maybe\"",
            "limits.on_store_error",
        ),
        (
            "[store]\nbackend = \"memory\"\n[upstreams.other]\naddrs = [\"127.0.0.1:7002\"]\n\
             read_timeout_ms = 0",
            "upstreams.other.read_timeout_ms",
        ),
        // `.invalid` never resolves (RFC 6761).
        (
            "[store]\nbackend = \"memory\"\n[upstreams.other]\naddrs = [\"nosuchhost.invalid:80\"]",
            "upstreams.other.addrs",
        ),
    ] {
        let dir = ConfigDir::new(config);
        let (code, stdout, stderr) = check(&dir.config());
        assert_eq!(code, 1, "{config}: {stdout}{stderr}");
        assert!(
            stderr.contains(&dir.config().display().to_string()),
            "{config}: {stderr}"
        );
        assert!(stderr.contains(key), "{config}: {stderr}");
    }
    // A wrong type is named by its line.
    let dir = ConfigDir::new("[store]\nbackend = \"memory\"\ntimeout_ms = \"fast\"");
    let (code, _, stderr) = check(&dir.config());
    assert_eq!(code, 1);
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn check_names_the_policy_file_route_and_field_of_a_bad_route() {
    for (policy, route, field) in [
        (
            "[[route]]\nname = \"bad-scope\"\nmethods = [\"GET\"]\npath = \"/x\"\n\
             upstream = \"backend\"\nscope = \"payroll:read\"\n",
            "bad-scope",
            "scope",
        ),
        (
            "[[route]]\nname = \"bad-upstream\"\nmethods = [\"GET\"]\npath = \"/x\"\n\
             upstream = \"nowhere\"\nscope = \"tools:read\"\n",
            "bad-upstream",
            "upstream",
        ),
        (
            "[[route]]\nname = \"bad-role\"\nmethods = [\"GET\"]\npath = \"/x\"\n\
             upstream = \"backend\"\nscope = \"tools:read\"\nworkspace_role = \"owner\"\n",
            "bad-role",
            "workspace_role",
        ),
        (
            "[[route]]\nname = \"bad-limit\"\nmethods = [\"GET\"]\npath = \"/x\"\n\
             upstream = \"backend\"\nscope = \"tools:read\"\n\
             rate_limit = { requests = 10, per = \"10s\", by = \"client\" }\n",
            "bad-limit",
            "rate_limit: per",
        ),
    ] {
        let dir = ConfigDir::new("[store]\nbackend = \"memory\"");
        let file = dir.policy("broken.toml", policy);
        let (code, stdout, stderr) = check(&dir.config());
        assert_eq!(code, 1, "{policy}: {stdout}{stderr}");
        assert!(stderr.contains("broken.toml"), "{stderr}");
        assert!(
            stderr.contains(&file.display().to_string()),
            "the full path: {stderr}"
        );
        assert!(stderr.contains(route), "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
    }
}

#[test]
fn check_fails_on_a_missing_config_file() {
    let (code, _, stderr) = check(Path::new("/nonexistent/tollgate.toml"));
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/tollgate.toml"), "{stderr}");
}

#[test]
fn check_without_a_config_exits_1() {
    let (code, _, stderr) = run(tollgate().arg("check"));
    assert_eq!(code, 1);
    assert!(stderr.contains("--config"), "{stderr}");
}

/// `check` exits 1 for anything that is not valid, a command line it
/// cannot read included (the argument parser's own usage code is 2).
#[test]
fn check_with_a_command_line_it_cannot_read_exits_1() {
    for args in [
        &["check", "--config"][..],
        &["check", "--bogus"],
        &["check", "--config", "a.toml", "extra"],
    ] {
        let (code, _, stderr) = run(tollgate().args(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(!stderr.is_empty(), "{args:?}: no message");
    }
    // explain keeps 2 for usage errors, as its contract says.
    let (code, _, _) = run(tollgate().args(["explain", "--bogus"]));
    assert_eq!(code, 2);
}

#[test]
fn serve_refuses_an_unknown_log_format_or_filter() {
    let (code, _, stderr) = run(tollgate()
        .args(["serve", "--dev"])
        .env("TOLLGATE_LOG_FORMAT", "xml"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("TOLLGATE_LOG_FORMAT must be json or text"),
        "{stderr}"
    );
    let (code, _, stderr) = run(tollgate()
        .args(["serve", "--dev"])
        .env("TOLLGATE_LOG", "tollgate=loud"));
    assert_eq!(code, 1);
    assert!(stderr.contains("TOLLGATE_LOG"), "{stderr}");
}

#[test]
fn help_lists_every_command() {
    let (code, stdout, stderr) = run(tollgate().arg("--help"));
    assert_eq!(code, 0, "{stderr}");
    for verb in ["serve", "check", "explain", "hash-key"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(verb)),
            "{verb} missing from:\n{stdout}"
        );
    }
}

fn hash_key(input: &[u8]) -> (i32, String, String) {
    let mut child = tollgate()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hash-key");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write the key");
    let output = child.wait_with_output().expect("hash-key output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn hash_key_refuses_an_empty_key() {
    for input in [&b""[..], b"\n"] {
        let (code, stdout, _) = hash_key(input);
        assert_eq!(code, 1);
        assert_eq!(stdout, "");
    }
}

#[tokio::test]
async fn hash_key_prints_an_argon2id_hash_that_the_server_accepts_as_an_admin_key() {
    let key = format!("tgtest-ops-{:032x}", rand::random::<u128>());
    let (code, stdout, stderr) = hash_key(format!("{key}\n").as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let hash = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!stdout.contains(&key) && !stderr.contains(&key));
    // Every run salts anew.
    let (_, again, _) = hash_key(key.as_bytes());
    assert_ne!(again.trim_end(), hash);

    let tg = Tollgate::start(
        TollgateOptions::new()
            .upstream("backend", &[dead_addr()])
            .policy("routes.toml", TOOLS_READ_ROUTE)
            .toml(format!(
                "[admin]\nkeys = [{{ name = \"ops\", hash = '{hash}' }}, \
                 {{ name = \"other\", hash = '{}' }}]",
                again.trim_end()
            )),
    )
    .await;
    let org = unique_id("org");
    let ops = tg.admin().with_key(&key);
    let (sa, _, _) = ops
        .create_service_account(&org, "made by ops", &["tools:read"])
        .await;
    let (status, events) = ops
        .get(&format!("/v1/organizations/{org}/audit-events"))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let created = &events["data"][0];
    assert_eq!(created["action"], "service_account.create");
    assert_eq!(created["target"], sa["id"]);
    // Both entries hash the same key: the first that matches names the actor.
    assert_eq!(created["actor"], "admin:ops");

    for wrong in [
        format!("{key}x"),
        key[..key.len() - 1].to_string(),
        hash.to_string(),
    ] {
        let (status, body) = tg
            .admin()
            .with_key(&wrong)
            .get(&format!("/v1/organizations/{org}/service-accounts"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "unauthorized");
    }
    // The verified key is remembered: a second call does not fail.
    let (status, _) = ops
        .get(&format!("/v1/organizations/{org}/service-accounts"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!tg.logs().contains(&key), "the admin key is logged");
}
