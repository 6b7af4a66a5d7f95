//! Scoped admin authority (docs/contract.md §4.1) against the real binary:
//! organization and workspace keys made through the admin API, shown once,
//! listed, revoked; every endpoint confined to the key's organization, whose
//! outside answers 404 byte for byte like an unknown object; management
//! tokens (`admin:read`/`admin:write`); audit actors that name the key.

use crate::common::*;

/// Makes a key of `org` (scoped to `ws` when given) with `by`; returns the
/// key object and the key.
async fn make_key(by: &Admin, org: &str, ws: Option<&str>, name: &str) -> (Value, String) {
    let (status, body) = by
        .post(
            &format!("{}/admin-keys", org_path(org)),
            json!({"name": name, "workspace_id": ws}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = str_of(&body, "key").to_string();
    assert!(key.starts_with("tg_ak_"), "{key}");
    (body, key)
}

/// Status, the headers that describe the body, and the body's bytes.
async fn raw(
    tg: &Tollgate,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let mut req = tg
        .http()
        .request(method, tg.admin_url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(n, _)| *n != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    headers.sort();
    let bytes = resp.bytes().await.expect("body").to_vec();
    (status, headers, bytes)
}

/// A 26-character id nothing has.
fn unknown_id() -> String {
    format!("{:032x}", rand::random::<u128>())[..26].to_string()
}

#[tokio::test]
async fn another_organization_s_objects_answer_byte_for_byte_like_unknown_ones() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let operator = tg.admin();
    let (acme, globex) = (unique_id("acme"), unique_id("globex"));
    // globex has one of everything.
    let (sa, _, _) = operator
        .create_service_account(&globex, "billing", &["tools:read"])
        .await;
    let sa_id = str_of(&sa, "id").to_string();
    let (_, creds) = operator
        .get(&format!(
            "{}/service-accounts/{sa_id}/credentials",
            org_path(&globex)
        ))
        .await;
    let cred_id = str_of(&creds["data"][0], "id").to_string();
    operator.put_workspace(&globex, "ws-g").await;
    let env_g = unique_id("env");
    operator.put_environment(&globex, "ws-g", &env_g).await;
    operator.put_member(&globex, "ws-g", &sa_id, "member").await;
    let (globex_key, _) = make_key(&operator, &globex, None, "globex admins").await;
    let globex_key_id = str_of(&globex_key, "id").to_string();
    // acme's key, and acme has a workspace (so that its unknown objects
    // below are unknown for the same reason).
    let (_, key) = make_key(&operator, &acme, None, "acme admins").await;
    operator.put_workspace(&acme, "ws-a").await;

    let (u_sa, u_cred, u_key) = (unknown_id(), unknown_id(), unknown_id());
    let g = org_path(&globex);
    let a = org_path(&acme);
    let cases: Vec<(Method, String, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("{g}/service-accounts/{sa_id}"),
            format!("{a}/service-accounts/{u_sa}"),
            None,
        ),
        (
            Method::PATCH,
            format!("{g}/service-accounts/{sa_id}"),
            format!("{a}/service-accounts/{u_sa}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("{g}/service-accounts/{sa_id}"),
            format!("{a}/service-accounts/{u_sa}"),
            None,
        ),
        (
            Method::POST,
            format!("{g}/service-accounts/{sa_id}/rotate-secret"),
            format!("{a}/service-accounts/{u_sa}/rotate-secret"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("{g}/service-accounts/{sa_id}/revoke-tokens"),
            format!("{a}/service-accounts/{u_sa}/revoke-tokens"),
            None,
        ),
        (
            Method::GET,
            format!("{g}/service-accounts/{sa_id}/credentials"),
            format!("{a}/service-accounts/{u_sa}/credentials"),
            None,
        ),
        (
            Method::POST,
            format!("{g}/service-accounts/{sa_id}/credentials"),
            format!("{a}/service-accounts/{u_sa}/credentials"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::GET,
            format!("{g}/service-accounts/{sa_id}/credentials/{cred_id}"),
            format!("{a}/service-accounts/{u_sa}/credentials/{u_cred}"),
            None,
        ),
        (
            Method::PATCH,
            format!("{g}/service-accounts/{sa_id}/credentials/{cred_id}"),
            format!("{a}/service-accounts/{u_sa}/credentials/{u_cred}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("{g}/service-accounts/{sa_id}/credentials/{cred_id}"),
            format!("{a}/service-accounts/{u_sa}/credentials/{u_cred}"),
            None,
        ),
        (
            Method::POST,
            format!("{g}/service-accounts/{sa_id}/credentials/{cred_id}/rotate-secret"),
            format!("{a}/service-accounts/{u_sa}/credentials/{u_cred}/rotate-secret"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("{g}/workspaces/ws-g"),
            format!("{a}/workspaces/ws-none"),
            None,
        ),
        (
            Method::DELETE,
            format!("{g}/workspaces/ws-g"),
            format!("{a}/workspaces/ws-none"),
            None,
        ),
        (
            Method::GET,
            format!("{g}/workspaces/ws-g/environments"),
            format!("{a}/workspaces/ws-none/environments"),
            None,
        ),
        (
            Method::PUT,
            format!("{g}/workspaces/ws-g/environments/{env_g}"),
            format!("{a}/workspaces/ws-none/environments/{}", unique_id("env")),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("{g}/workspaces/ws-g/environments/{env_g}"),
            format!("{a}/workspaces/ws-a/environments/{env_g}"),
            None,
        ),
        (
            Method::GET,
            format!("{g}/workspaces/ws-g/members"),
            format!("{a}/workspaces/ws-none/members"),
            None,
        ),
        (
            Method::PUT,
            format!("{g}/workspaces/ws-g/members/{sa_id}"),
            format!("{a}/workspaces/ws-none/members/{sa_id}"),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::DELETE,
            format!("{g}/workspaces/ws-g/members/{sa_id}"),
            format!("{a}/workspaces/ws-a/members/{u_sa}"),
            None,
        ),
        (
            Method::GET,
            format!("{g}/admin-keys/{globex_key_id}"),
            format!("{a}/admin-keys/{u_key}"),
            None,
        ),
        (
            Method::DELETE,
            format!("{g}/admin-keys/{globex_key_id}"),
            format!("{a}/admin-keys/{u_key}"),
            None,
        ),
    ];
    for (method, theirs, unknown, body) in cases {
        let outside = raw(&tg, &key, method.clone(), &theirs, body.clone()).await;
        let missing = raw(&tg, &key, method.clone(), &unknown, body).await;
        assert_eq!(outside.0, StatusCode::NOT_FOUND, "{method} {theirs}");
        assert_eq!(
            outside,
            missing,
            "{method} {theirs}: {} vs {}",
            String::from_utf8_lossy(&outside.2),
            String::from_utf8_lossy(&missing.2)
        );
    }
    // Organization-wide calls on another organization: 404, nothing of it.
    for (method, path, body) in [
        (Method::GET, format!("{g}/service-accounts"), None),
        (
            Method::POST,
            format!("{g}/service-accounts"),
            Some(json!({"name": "x", "scopes": []})),
        ),
        (Method::GET, format!("{g}/workspaces"), None),
        (
            Method::PUT,
            format!("{g}/workspaces/new-ws"),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, format!("{g}/audit-events"), None),
        (Method::POST, format!("{g}/revoke-tokens"), None),
        (Method::GET, format!("{g}/admin-keys"), None),
        (
            Method::POST,
            format!("{g}/admin-keys"),
            Some(json!({"name": "x", "workspace_id": "ws-g"})),
        ),
    ] {
        let (status, _, bytes) = raw(&tg, &key, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).expect("JSON"),
            json!({"error": "not_found", "error_description": "organization not found"}),
            "{method} {path}"
        );
    }
    // Nothing of globex changed, and nothing was written into its trail.
    let (status, got) = operator.get(&format!("{g}/service-accounts/{sa_id}")).await;
    assert_eq!((status, str_of(&got, "name")), (StatusCode::OK, "billing"));
    let (_, members) = operator.get(&format!("{g}/workspaces/ws-g/members")).await;
    assert_eq!(members["data"].as_array().map(Vec::len), Some(1));
    let (status, _) = operator
        .get(&format!("{g}/admin-keys/{globex_key_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, audit) = operator.get(&format!("{g}/audit-events?limit=200")).await;
    let actors: Vec<&str> = audit["data"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| str_of(e, "actor"))
        .collect();
    assert!(
        actors.iter().all(|a| !a.contains("acme admins")),
        "{actors:?}"
    );
}

#[tokio::test]
async fn keys_are_shown_once_listed_without_secrets_and_stop_when_revoked() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let operator = tg.admin();
    let org = unique_id("org");
    operator.put_workspace(&org, "team").await;
    let (made, key) = make_key(&operator, &org, None, "org admins").await;
    let id = str_of(&made, "id").to_string();
    assert_eq!(made["organization_id"], json!(org));
    assert_eq!(made["workspace_id"], Value::Null);
    assert_eq!(made["last_used_at"], Value::Null);
    assert_eq!(made["created_by"], json!("admin:env"));

    let org_admin = operator.with_key(&key);
    let (status, _) = org_admin
        .get(&format!("{}/service-accounts", org_path(&org)))
        .await;
    assert_eq!(status, StatusCode::OK);

    // An organization key makes workspace keys only; a workspace key none.
    let (status, body) = org_admin
        .post(
            &format!("{}/admin-keys", org_path(&org)),
            json!({"name": "peer"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (ws_made, ws_key) = make_key(&org_admin, &org, Some("team"), "team admins").await;
    let (status, _) = org_admin
        .post(
            &format!("{}/admin-keys", org_path(&org)),
            json!({"name": "nowhere", "workspace_id": "no-such-ws"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ws_admin = operator.with_key(&ws_key);
    let (status, _) = ws_admin
        .post(
            &format!("{}/admin-keys", org_path(&org)),
            json!({"name": "x", "workspace_id": "team"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The list names each key's scope and use, never a key or a hash.
    let (status, list) = operator
        .get(&format!("{}/admin-keys", org_path(&org)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(&key) && !text.contains(&ws_key) && !text.contains("argon2"));
    let data = list["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    let org_entry = data.iter().find(|k| k["id"] == json!(id)).expect("listed");
    assert_eq!(org_entry["name"], json!("org admins"));
    assert!(org_entry["last_used_at"].is_string(), "{org_entry}");
    let ws_entry = data
        .iter()
        .find(|k| k["id"] == ws_made["id"])
        .expect("listed");
    assert_eq!(ws_entry["workspace_id"], json!("team"));
    assert_eq!(
        ws_entry["created_by"],
        json!(format!("admin:org admins#{id}"))
    );

    // Revoked: the key is refused at once, like any unknown key.
    let (status, _) = operator
        .delete(&format!("{}/admin-keys/{id}", org_path(&org)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = org_admin
        .get(&format!("{}/service-accounts", org_path(&org)))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, _) = operator
        .delete(&format!("{}/admin-keys/{id}", org_path(&org)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A workspace key ends with its workspace: once the workspace is deleted
/// it is refused (401, as a key that never was), and stays refused when a
/// workspace of the same id is made again.
#[tokio::test]
async fn a_workspace_key_stops_when_its_workspace_is_deleted() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let operator = tg.admin();
    let org = unique_id("org");
    operator.put_workspace(&org, "prod").await;
    let (_, key) = make_key(&operator, &org, Some("prod"), "prod admins").await;
    let ws_admin = operator.with_key(&key);
    let base = org_path(&org);
    let accounts = format!("{base}/service-accounts");
    let (status, _) = ws_admin.get(&accounts).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = operator.delete(&format!("{base}/workspaces/prod")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = ws_admin.get(&accounts).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // It was revoked with its workspace, and the revocation audited.
    let (_, keys) = operator.get(&format!("{base}/admin-keys")).await;
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(0), "{keys}");
    let (_, audit) = operator.get(&format!("{base}/audit-events")).await;
    assert_eq!(
        audit["data"][0]["action"],
        json!("admin_key.revoke"),
        "{audit}"
    );
    // The id made again is another workspace: the old key does not reach it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    operator.put_workspace(&org, "prod").await;
    for path in [accounts.clone(), format!("{base}/workspaces/prod/members")] {
        let (status, body) = ws_admin.get(&path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_workspace_key_manages_its_workspace_s_members_and_environments_only() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let operator = tg.admin();
    let org = unique_id("org");
    operator.put_workspace(&org, "team").await;
    operator.put_workspace(&org, "other").await;
    let (sa, _, _) = operator
        .create_service_account(&org, "worker", &["tools:read"])
        .await;
    let sa_id = str_of(&sa, "id");
    let (made, key) = make_key(&operator, &org, Some("team"), "team admins").await;
    let ws_admin = operator.with_key(&key);
    let base = org_path(&org);
    let env = unique_id("env");

    let (status, _) = ws_admin
        .put(
            &format!("{base}/workspaces/team/environments/{env}"),
            json!({"name": "prod"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, found) = ws_admin
        .get(&format!("{base}/service-accounts?q=work"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["data"][0]["id"], json!(sa_id));
    let (status, _) = ws_admin
        .put(
            &format!("{base}/workspaces/team/members/{sa_id}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = ws_admin
        .delete(&format!("{base}/workspaces/team/members/{sa_id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Another workspace of the organization is out of sight.
    let (status, body) = ws_admin
        .put(
            &format!("{base}/workspaces/other/members/{sa_id}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(
        (status, str_of(&body, "error_description")),
        (StatusCode::NOT_FOUND, "workspace not found")
    );
    // And the organization's accounts, workspaces and trail are not its to change.
    for (method, path, body) in [
        (
            Method::POST,
            format!("{base}/service-accounts"),
            Some(json!({"name": "x", "scopes": []})),
        ),
        (
            Method::DELETE,
            format!("{base}/service-accounts/{sa_id}"),
            None,
        ),
        (
            Method::PUT,
            format!("{base}/workspaces/team"),
            Some(json!({"name": "renamed"})),
        ),
        (Method::DELETE, format!("{base}/workspaces/team"), None),
        (Method::GET, format!("{base}/audit-events"), None),
        (Method::POST, format!("{base}/revoke-tokens"), None),
    ] {
        let (status, answer) = ws_admin.request(method.clone(), &path, body.as_ref()).await;
        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::FORBIDDEN, &json!("forbidden")),
            "{method} {path}"
        );
    }
    let (status, _) = operator
        .get(&format!("{base}/service-accounts/{sa_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // It may revoke itself, and is then no key.
    let (status, _) = ws_admin
        .delete(&format!("{base}/admin-keys/{}", str_of(&made, "id")))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = ws_admin
        .get(&format!("{base}/workspaces/team/members"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn audit_events_name_the_key_that_acted() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let operator = tg.admin();
    let org = unique_id("org");
    let (made, key) = make_key(&operator, &org, None, "release bot").await;
    let id = str_of(&made, "id");
    let org_admin = operator.with_key(&key);
    org_admin
        .create_service_account(&org, "made by a key", &["tools:read"])
        .await;
    let (_, audit) = operator
        .get(&format!("{}/audit-events", org_path(&org)))
        .await;
    let events = audit["data"].as_array().expect("events");
    let created = events
        .iter()
        .find(|e| e["action"] == json!("service_account.create"))
        .expect("the creation is audited");
    assert_eq!(created["actor"], json!(format!("admin:release bot#{id}")));
    let key_made = events
        .iter()
        .find(|e| e["action"] == json!("admin_key.create"))
        .expect("the key's creation is audited");
    assert_eq!(key_made["actor"], json!("admin:env"));
    assert_eq!(key_made["target"], json!(id));
    assert!(!audit.to_string().contains(&key), "the key is in the trail");
    assert!(!tg.logs().contains(&key), "the key is in the logs");
}

/// A token of an account granted `admin:*`, asked for by name.
async fn management_token(
    tg: &Tollgate,
    org: &str,
    scopes: &[&str],
    ask: &str,
) -> (String, String, String) {
    let (sa, client_id, secret) = tg
        .admin()
        .create_service_account(org, &unique_id("automation"), scopes)
        .await;
    let (status, body) = tg.issue_token(&client_id, &secret, Some(ask)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        str_of(&sa, "id").to_string(),
        client_id,
        str_of(&body, "access_token").to_string(),
    )
}

#[tokio::test]
async fn a_management_token_administers_its_own_organization_only() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let org = unique_id("org");
    let other = unique_id("other");
    let (self_id, client_id, token) =
        management_token(&tg, &org, &["admin:write", "tools:read"], "admin:write").await;
    let bot = tg.admin().with_key(&token);
    let base = org_path(&org);

    let (made, _, _) = bot
        .create_service_account(&org, "made by a token", &["tools:read"])
        .await;
    let made_id = str_of(&made, "id");
    let (status, _) = bot
        .patch(
            &format!("{base}/service-accounts/{made_id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Another organization does not exist for it.
    let (status, _) = bot
        .get(&format!("{}/service-accounts", org_path(&other)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // No admin keys, no admin grants, no change to its own account.
    for (method, path, body) in [
        (
            Method::POST,
            format!("{base}/admin-keys"),
            Some(json!({"name": "k"})),
        ),
        (Method::GET, format!("{base}/admin-keys"), None),
        (
            Method::POST,
            format!("{base}/service-accounts"),
            Some(json!({"name": "x", "scopes": ["admin:write"]})),
        ),
        (
            Method::PATCH,
            format!("{base}/service-accounts/{made_id}"),
            Some(json!({"scopes": ["admin:read"]})),
        ),
        (
            Method::PATCH,
            format!("{base}/service-accounts/{self_id}"),
            Some(json!({"scopes": ["tools:write", "admin:write"]})),
        ),
        (
            Method::POST,
            format!("{base}/service-accounts/{self_id}/credentials"),
            Some(json!({"name": "spare"})),
        ),
    ] {
        let (status, answer) = bot.request(method.clone(), &path, body.as_ref()).await;
        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::FORBIDDEN, &json!("forbidden")),
            "{method} {path}: {answer}"
        );
    }
    // Audited under its client id.
    let (_, audit) = tg.admin().get(&format!("{base}/audit-events")).await;
    let created = audit["data"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == json!("service_account.create") && e["target"] == json!(made_id))
        .cloned()
        .expect("audited");
    assert_eq!(created["actor"], json!(client_id));
    assert!(!audit.to_string().contains(&token));

    // Its power ends with its grant, not only with the token.
    let (status, _) = tg
        .admin()
        .patch(
            &format!("{base}/service-accounts/{self_id}"),
            json!({"scopes": ["tools:read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = bot.get(&format!("{base}/service-accounts")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A management token cannot get hold of another admin account's power:
/// it may not make a credential for, or rotate the secret of, an account
/// granted `admin:*` (with that secret it would ask for the other account's
/// management token and keep its power after losing its own grant). An
/// account without `admin:*` is still its to manage, and an organization's
/// key may do both.
#[tokio::test]
async fn a_management_token_cannot_take_the_secrets_of_another_admin_account() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let org = unique_id("org");
    let (_, _, token) =
        management_token(&tg, &org, &["admin:write", "tools:read"], "admin:write").await;
    let (peer, _, _) = management_token(&tg, &org, &["admin:read"], "admin:read").await;
    let bot = tg.admin().with_key(&token);
    let base = org_path(&org);
    let peer_path = format!("{base}/service-accounts/{peer}");
    let (status, creds) = tg.admin().get(&format!("{peer_path}/credentials")).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    let peer_cred = str_of(&creds["data"][0], "id").to_string();
    for (path, body) in [
        (
            format!("{peer_path}/credentials"),
            json!({"name": "mine now"}),
        ),
        (format!("{peer_path}/rotate-secret"), json!({})),
        (
            format!("{peer_path}/credentials/{peer_cred}/rotate-secret"),
            json!({"grace_seconds": 60}),
        ),
    ] {
        let (status, answer) = bot.post(&path, body).await;
        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::FORBIDDEN, &json!("forbidden")),
            "{path}: {answer}"
        );
        assert!(answer.get("client_secret").is_none(), "{answer}");
    }
    let (_, creds) = tg.admin().get(&format!("{peer_path}/credentials")).await;
    assert_eq!(creds["data"].as_array().map(Vec::len), Some(1), "{creds}");

    // An account without admin:* stays the token's to manage.
    let (plain, _, _) = bot
        .create_service_account(&org, "plain", &["tools:read"])
        .await;
    let plain_id = str_of(&plain, "id");
    let (status, answer) = bot
        .post(
            &format!("{base}/service-accounts/{plain_id}/credentials"),
            json!({"name": "second"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // An organization's key may hand out the admin account's secrets.
    let (status, answer) = tg
        .admin()
        .post(&format!("{peer_path}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn admin_read_only_reads_and_admin_scopes_come_only_when_asked_for() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let org = unique_id("org");
    let (_, _, token) = management_token(&tg, &org, &["admin:read"], "admin:read").await;
    let reader = tg.admin().with_key(&token);
    let base = org_path(&org);
    let (status, _) = reader.get(&format!("{base}/service-accounts")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = reader
        .post(
            &format!("{base}/service-accounts"),
            json!({"name": "x", "scopes": []}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    // Without `scope` the token carries no admin scope, and is no admin.
    let (_, client_id, secret) = tg
        .admin()
        .create_service_account(&org, "both", &["admin:write", "tools:read"])
        .await;
    let (status, body) = tg.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], json!("tools:read"));
    let plain = tg.admin().with_key(str_of(&body, "access_token"));
    let (status, body) = plain.get(&format!("{base}/service-accounts")).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    // An expired or unknown token is no key at all.
    let (status, _) = tg
        .admin()
        .with_key("tg_at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .get(&format!("{base}/service-accounts"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn guessing_stored_keys_is_throttled_per_source() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let org = unique_id("org");
    let (made, key) = make_key(&tg.admin(), &org, None, "real").await;
    let id = str_of(&made, "id");
    let guesser = tg.admin().with_key(&format!("tg_ak_{id}_not-the-secret"));
    let path = format!("{}/service-accounts", org_path(&org));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(guesser.get(&path).await.0);
    }
    assert_eq!(&statuses[..10], &[StatusCode::UNAUTHORIZED; 10]);
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // The real key from the same address waits out the window too.
    let (status, _) = tg.admin().with_key(&key).get(&path).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The operator's plain key is not throttled by it (no hashed keys are
    // configured, as before).
    let (status, _) = tg.admin().get(&path).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn guessing_management_tokens_is_throttled_per_source() {
    let tg = Tollgate::start(tools_read_unreachable(None)).await;
    let path = format!("{}/service-accounts", org_path(&unique_id("org")));
    let mut statuses = Vec::new();
    for i in 0..11 {
        let guess = format!("tg_at_{:0>43}", i);
        statuses.push(tg.admin().with_key(&guess).get(&path).await.0);
    }
    assert_eq!(&statuses[..10], &[StatusCode::UNAUTHORIZED; 10]);
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
}
