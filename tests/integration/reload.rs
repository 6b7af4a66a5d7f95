//! docs/contract.md §5.1 reloads against the real binary: policy files and the config
//! file's upstream table are picked up on change and on SIGHUP; an invalid
//! set is rejected whole, logged and counted; requests in flight finish on
//! the set they started with.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// How long a change may take to be picked up. The file watch polls every
/// 500 ms and waits for one quiet poll, so about a second; the margin is for
/// a CI machine busy with other builds.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);

/// A public route named `name` at `path` on upstream `backend`.
fn public_route(name: &str, path: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"backend\"\nauth = \"none\"\n"
    )
}

async fn status_of(tollgate: &Tollgate, path: &str) -> StatusCode {
    tollgate.proxy_request(Method::GET, path, None).await.0
}

async fn wait_for_status(tollgate: &Tollgate, path: &str, status: StatusCode, what: &str) {
    eventually(RELOAD_WITHIN, what, || async move {
        status_of(tollgate, path).await == status
    })
    .await;
}

async fn metric(tollgate: &Tollgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&tollgate.metrics().await, name, labels).unwrap_or(0.0)
}

async fn reloads(tollgate: &Tollgate, result: &str) -> f64 {
    metric(
        tollgate,
        "tollgate_policy_reloads_total",
        &[("result", result)],
    )
    .await
}

async fn start(echo: &EchoUpstream) -> Tollgate {
    Tollgate::start(
        TollgateOptions::new()
            .memory()
            .policy("a.toml", public_route("first", "/first/**"))
            .upstream("backend", &[echo.addr_string()]),
    )
    .await
}

#[tokio::test]
async fn a_rewritten_policy_file_is_picked_up_without_a_signal() {
    let echo = EchoUpstream::start();
    let tollgate = start(&echo).await;
    assert_eq!(status_of(&tollgate, "/first/x").await, StatusCode::OK);
    assert_eq!(
        status_of(&tollgate, "/second/x").await,
        StatusCode::NOT_FOUND
    );
    let ok_before = reloads(&tollgate, "ok").await;

    tollgate.write_policy("a.toml", &public_route("second", "/second/**"));

    wait_for_status(&tollgate, "/second/x", StatusCode::OK, "the new route").await;
    assert_eq!(
        status_of(&tollgate, "/first/x").await,
        StatusCode::NOT_FOUND
    );
    assert!(reloads(&tollgate, "ok").await > ok_before);

    // A new file adds routes; removing it takes them away again.
    tollgate.write_policy("b.toml", &public_route("third", "/third/**"));
    wait_for_status(
        &tollgate,
        "/third/x",
        StatusCode::OK,
        "a route from a new file",
    )
    .await;
    assert_eq!(metric(&tollgate, "tollgate_policy_routes", &[]).await, 2.0);
    tollgate.remove_policy("b.toml");
    wait_for_status(
        &tollgate,
        "/third/x",
        StatusCode::NOT_FOUND,
        "the file's removal",
    )
    .await;
    assert_eq!(metric(&tollgate, "tollgate_policy_routes", &[]).await, 1.0);
}

/// Replaces a file keeping its size and modification time, so that only an
/// explicit reload can notice the new contents.
fn replace_unnoticeably(path: &Path, contents: &str) {
    let before = fs::metadata(path).expect("policy file exists");
    assert_eq!(before.len(), contents.len() as u64, "same size needed");
    let mtime = before.modified().expect("mtime");
    fs::write(path, contents).expect("rewrite policy");
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(mtime))
        .expect("restore mtime");
}

#[tokio::test]
async fn sighup_reloads_the_policy_set() {
    let echo = EchoUpstream::start();
    let tollgate = start(&echo).await;
    let file = tollgate.policy_dir().join("a.toml");
    replace_unnoticeably(&file, &public_route("first", "/other/**"));
    // Unchanged size and time: the file watch sees nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        status_of(&tollgate, "/other/x").await,
        StatusCode::NOT_FOUND
    );

    tollgate.send_signal("HUP");

    wait_for_status(&tollgate, "/other/x", StatusCode::OK, "SIGHUP reload").await;
    assert_eq!(
        status_of(&tollgate, "/first/x").await,
        StatusCode::NOT_FOUND
    );
    let logs = tollgate.logs();
    assert!(
        logs.contains("SIGHUP"),
        "the reload names its trigger:\n{logs}"
    );
}

#[tokio::test]
async fn an_invalid_policy_set_is_rejected_whole_and_the_old_one_stays() {
    let echo = EchoUpstream::start();
    let tollgate = start(&echo).await;
    let errors_before = reloads(&tollgate, "error").await;

    // One good new file and one broken one: neither is applied.
    tollgate.write_policy("good.toml", &public_route("good", "/good/**"));
    tollgate.write_policy(
        "broken.toml",
        "[[route]]\nname = \"broken\"\npath = \"/broken/**\"\nupstream = \"nowhere\"\nauth = \"none\"\n",
    );
    tollgate.send_signal("HUP");

    eventually(RELOAD_WITHIN, "a counted reload error", || async {
        reloads(&tollgate, "error").await > errors_before
    })
    .await;
    assert_eq!(status_of(&tollgate, "/first/x").await, StatusCode::OK);
    assert_eq!(status_of(&tollgate, "/good/x").await, StatusCode::NOT_FOUND);
    assert_eq!(metric(&tollgate, "tollgate_policy_routes", &[]).await, 1.0);
    let logs = tollgate.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("reload rejected") && l.contains("broken.toml")),
        "the rejection is logged with the file:\n{logs}"
    );

    // Not TOML at all: the same.
    let errors_before = reloads(&tollgate, "error").await;
    tollgate.write_policy("broken.toml", "this is [not toml");
    tollgate.send_signal("HUP");
    eventually(RELOAD_WITHIN, "a second counted reload error", || async {
        reloads(&tollgate, "error").await > errors_before
    })
    .await;
    assert_eq!(status_of(&tollgate, "/first/x").await, StatusCode::OK);

    // Once fixed, the whole new set applies.
    tollgate.remove_policy("broken.toml");
    wait_for_status(&tollgate, "/good/x", StatusCode::OK, "the fixed set").await;
    assert_eq!(metric(&tollgate, "tollgate_policy_routes", &[]).await, 2.0);
}

#[tokio::test]
async fn the_config_files_upstream_table_reloads_too() {
    let (old, new) = (EchoUpstream::start(), EchoUpstream::start());
    let tollgate = start(&old).await;
    assert_eq!(status_of(&tollgate, "/first/x").await, StatusCode::OK);
    assert_eq!(old.count(), 1);

    let path = tollgate.config_path();
    let mut config: toml::Table = fs::read_to_string(path)
        .expect("read config")
        .parse()
        .expect("config is TOML");
    config["upstreams"]["backend"]["addrs"] = toml::Value::from(vec![new.addr_string()]);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, toml::to_string(&config).expect("serialise")).expect("write config");
    fs::rename(&tmp, path).expect("replace config");

    eventually(RELOAD_WITHIN, "requests reach the new upstream", || async {
        status_of(&tollgate, "/first/x").await == StatusCode::OK && new.count() > 0
    })
    .await;
    let old_count = old.count();
    status_of(&tollgate, "/first/x").await;
    assert_eq!(old.count(), old_count, "the old upstream gets nothing more");

    // A config file that no longer parses is rejected; the table in force stays.
    let errors_before = reloads(&tollgate, "error").await;
    fs::write(&tmp, "[upstreams.backend]\naddrs = 42\n").expect("write config");
    fs::rename(&tmp, path).expect("replace config");
    tollgate.send_signal("HUP");
    eventually(RELOAD_WITHIN, "a counted reload error", || async {
        reloads(&tollgate, "error").await > errors_before
    })
    .await;
    let new_count = new.count();
    assert_eq!(status_of(&tollgate, "/first/x").await, StatusCode::OK);
    assert_eq!(new.count(), new_count + 1);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_set_it_started_with() {
    let slow = EchoUpstream::start_delayed(Duration::from_millis(1500));
    let tollgate = start(&slow).await;
    let in_flight = {
        let client = tollgate.http().clone();
        let url = tollgate.proxy_url("/first/slow");
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
    };
    eventually(
        Duration::from_secs(2),
        "the request reached the upstream",
        || async { slow.count() == 1 },
    )
    .await;

    tollgate.write_policy("a.toml", &public_route("second", "/second/**"));
    tollgate.send_signal("HUP");
    wait_for_status(
        &tollgate,
        "/first/x",
        StatusCode::NOT_FOUND,
        "the route removed",
    )
    .await;

    let status = in_flight.await.expect("join").expect("in-flight request");
    assert_eq!(status, StatusCode::OK);
}
