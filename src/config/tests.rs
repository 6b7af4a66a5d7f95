use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(
        text,
        "test.toml",
        Path::new("/etc/tollgate"),
        &EnvOverrides::default(),
    )
}

fn problem(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let c = parse("").expect("valid");
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9080");
    assert_eq!(c.server.metrics_listen.to_string(), "127.0.0.1:9091");
    assert_eq!(c.server.public_url, "http://localhost:8080");
    assert_eq!(c.store.backend, Backend::Redis);
    assert_eq!(c.store.key_prefix, "tollgate");
    assert_eq!(c.store.timeout, Duration::from_millis(250));
    assert_eq!(c.tokens.ttl_seconds, 900);
    assert_eq!(c.tokens.revoke_on, RevokeOn::default());
    assert_eq!(c.cache.ttl, Duration::from_millis(500));
    assert_eq!(c.throttle.max_failures_per_client_source, 10);
    assert_eq!(c.throttle.max_failures_per_source, 50);
    assert_eq!(c.resources.len(), 7);
    assert_eq!(
        c.identity_headers.organization_id,
        "x-tollgate-organization-id"
    );
    assert!(!c.proxy.allow_semicolon_in_path);
}

#[test]
fn a_full_file_is_read() {
    let c = parse(
        r#"
[server]
listen = "127.0.0.1:18080"
public_url = "https://gate.example.com/"
threads = 1
[store]
backend = "memory"
key_prefix = "tg:test"
timeout_ms = 100
[tokens]
ttl_seconds = 60
revoke_on = ["rotate", "delete"]
[proxy]
trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
[cache]
ttl_ms = 0
[policies]
dir = "pol"
[upstreams.workflows]
addrs = ["127.0.0.1:7001", "backend.internal:80"]
read_timeout_ms = 500
"#,
    )
    .expect("valid");
    assert_eq!(c.server.public_url, "https://gate.example.com");
    assert_eq!(c.store.backend, Backend::Memory);
    assert!(c.tokens.revoke_on.rotate && c.tokens.revoke_on.delete && !c.tokens.revoke_on.disable);
    assert_eq!(c.proxy.trusted_proxies.len(), 2);
    assert_eq!(c.policies_dir, Path::new("/etc/tollgate/pol"));
    assert_eq!(
        c.upstreams["workflows"].read_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(c.cache.ttl, Duration::ZERO);
}

#[test]
fn unknown_keys_are_an_error() {
    assert!(problem("[server]\nlisten_addr = \"x\"").contains("unknown field"));
    assert!(problem("[nonsense]\na = 1").contains("unknown field"));
    assert!(problem("[upstreams.a]\naddrs = [\"h:1\"]\nretries = 3").contains("unknown field"));
}

#[test]
fn bad_values_name_their_key() {
    assert!(problem("[server]\nlisten = \"nope\"").contains("server.listen"));
    assert!(problem("[store]\nbackend = \"etcd\"").contains("store.backend"));
    assert!(problem("[store]\nurl = \"http://x\"").contains("store.url"));
    assert!(problem("[store]\ntimeout_ms = 0").contains("store.timeout_ms"));
    assert!(problem("[tokens]\nrevoke_on = [\"never\"]").contains("tokens.revoke_on"));
    assert!(
        problem("[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]").contains("proxy.trusted_proxies")
    );
    assert!(problem("[cache]\nttl_ms = 5000").contains("cache.ttl_ms"));
    assert!(
        problem("[admin]\nkeys = [{name = \"ops\", hash = \"plain\"}]")
            .contains("admin.keys[0].hash")
    );
    assert!(problem("[upstreams.a]\naddrs = []").contains("upstreams.a.addrs"));
    assert!(problem("[upstreams.a]\naddrs = [\"noport\"]").contains("upstreams.a.addrs"));
    assert!(
        problem("[identity_headers]\nscopes = \"bad header\"").contains("identity_headers.scopes")
    );
    assert!(
        problem("[identity_headers]\nscopes = \"x-tollgate-client-id\"")
            .contains("identity_headers")
    );
    assert!(problem("[scopes]\nresources = []").contains("scopes.resources"));
    assert!(problem("[scopes]\nresources = [\"chat\", \"admin\"]").contains("reserved"));
    assert!(problem("[server]\nthreads = 0").contains("server.threads"));
    assert!(problem("[server]\nthreads = \"two\"").contains("test.toml"));
}

#[test]
fn environment_overrides_the_redis_url_and_adds_the_env_admin_key() {
    let env = EnvOverrides {
        redis_url: Some("redis://10.1.1.1:6380/2".into()),
        admin_key: Some(SecretString::from("k")),
    };
    let c = Config::from_toml("", "t", Path::new("."), &env).expect("valid");
    assert_eq!(c.store.url, "redis://10.1.1.1:6380/2");
    assert!(c.env_admin_key.is_some());
}
