//! The web console (`/console` on the admin listener, docs/console.md)
//! over plain HTTP: sign-in, its cookie and sign-out, CSRF refusal, the
//! CSP, no secret in a URL or a log, organization scoping, and the whole
//! life of a service account through the console's forms.

use std::collections::BTreeMap;

use crate::common::*;

/// A cookie-keeping client that follows no redirect.
struct Browser<'a> {
    tg: &'a Tollgate,
    cookies: BTreeMap<String, String>,
    /// Every URL requested (for the no-secret-in-a-URL check).
    urls: Vec<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The value of the first `<input … name="NAME" value="…">`.
    fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + marker.len();
        self.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The `value` of the input with this `id`.
    fn input_by_id(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let rest = &self.body[at..];
        let value = rest.find("value=\"").expect("a value") + "value=\"".len();
        rest[value..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(tg: &'a Tollgate) -> Browser<'a> {
        Browser {
            tg,
            cookies: BTreeMap::new(),
            urls: Vec::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let url = self.tg.admin_url(path);
        self.urls.push(url.clone());
        let mut req = self.tg.http().request(method, &url);
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", header.join("; "));
        }
        if let Some(form) = form {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.expect("console request");
        let page = Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: String::new(),
        };
        let body = resp.text().await.expect("console body");
        let page = Page { body, ..page };
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/console").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.input("csrf");
        self.post("/console/sign-in", &[("key", key), ("csrf", &csrf)])
            .await
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_cookie_and_sign_out_ends_it() {
    let tg = Tollgate::start(tools_read_unreachable(Some("member"))).await;
    let mut b = Browser::new(&tg);
    let page = b.get("/console/orgs").await;
    assert_eq!(
        (page.status, page.header("location")),
        (StatusCode::SEE_OTHER, "/console")
    );

    let signed = b.sign_in(tg.admin_key()).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.header("location"), "/console/home");
    let cookie = signed
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tg_console="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    let home = b.get("/console/home").await;
    assert_eq!(home.header("location"), "/console/orgs");
    let orgs = b.get("/console/orgs").await;
    assert_eq!(orgs.status, StatusCode::OK);
    assert!(orgs.body.contains("Signed in as <code>admin:env</code>"));

    let session = b.cookies["tg_console"].clone();
    let csrf = orgs.input("csrf");
    let out = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(
        (out.status, out.header("location")),
        (StatusCode::SEE_OTHER, "/console")
    );
    // The old cookie, sent again, is no session.
    b.cookies.insert("tg_console".into(), session);
    let after = b.get("/console/orgs").await;
    assert_eq!(after.header("location"), "/console");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let form = tg
        .http()
        .get(tg.admin_url("/console"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("sign-in form");
    let pre = form
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(pre.ends_with("; Secure"), "{pre}");
    let pre_value = pre.split(';').next().unwrap_or("").to_string();
    let csrf = pre_value
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or("")
        .to_string();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("key", tg.admin_key())
        .append_pair("csrf", &csrf)
        .finish();
    let signed = tg
        .http()
        .post(tg.admin_url("/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .header("cookie", pre_value)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tg_console="))
        .expect("a session cookie")
        .to_string();
    assert!(
        session.contains("HttpOnly") && session.ends_with("; Secure"),
        "{session}"
    );

    // A wrong key is refused on the form, without a session.
    let mut other = Browser::new(&tg);
    let refused = other.sign_in("not-a-key").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!other.cookies.contains_key("tg_console"));
}

#[tokio::test]
async fn posts_without_the_session_s_csrf_token_change_nothing() {
    let tg = Tollgate::start(tools_read_unreachable(Some("member"))).await;
    let org = unique_id("org");
    let mut b = Browser::new(&tg);
    b.sign_in(tg.admin_key()).await;
    let create = format!("/console/o/{org}/sa");
    for csrf in [None, Some("forged"), Some("")] {
        let mut form = vec![("name", "sneaky"), ("scope", "tools:read")];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let page = b.post(&create, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    let (_, list) = tg
        .admin()
        .get(&format!("/v1/organizations/{org}/service-accounts"))
        .await;
    assert_eq!(list["data"], json!([]), "a CSRF-less post made an account");
    // Sign-in itself needs the form's own token and its cookie.
    let mut fresh = Browser::new(&tg);
    let page = fresh
        .post(
            "/console/sign-in",
            &[("key", tg.admin_key()), ("csrf", "x")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("tg_console"));
    // And a post without any session is refused too.
    let page = fresh.post(&create, &[("name", "x"), ("csrf", "x")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_organization_key_sees_no_other_organization_and_revocation_ends_its_session() {
    let tg = Tollgate::start(tools_read_unreachable(Some("member"))).await;
    let (acme, globex) = (unique_id("acme"), unique_id("globex"));
    let (sa, _, _) = tg
        .admin()
        .create_service_account(&globex, "secret project", &["tools:read"])
        .await;
    let sa_id = sa["id"].as_str().expect("id");
    let (status, made) = tg
        .admin()
        .post(
            &format!("/v1/organizations/{acme}/admin-keys"),
            json!({"name": "acme console"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = made["key"].as_str().expect("key");
    let mut b = Browser::new(&tg);
    b.sign_in(key).await;
    let home = b.get("/console/home").await;
    assert_eq!(home.header("location"), format!("/console/o/{acme}"));
    let own = b.get(&format!("/console/o/{acme}")).await;
    assert_eq!(own.status, StatusCode::OK);
    for path in [
        format!("/console/o/{globex}"),
        format!("/console/o/{globex}/sa/{sa_id}"),
        format!("/console/o/{globex}/audit"),
        format!("/console/o/{globex}/ws"),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("secret project"), "{path}");
    }
    // Operators' pages are not for it.
    assert_eq!(b.get("/console/authz").await.status, StatusCode::FORBIDDEN);

    let id = made["id"].as_str().expect("id");
    let (status, _) = tg
        .admin()
        .delete(&format!("/v1/organizations/{acme}/admin-keys/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = b.get(&format!("/console/o/{acme}")).await;
    assert_eq!(
        (page.status, page.header("location")),
        (StatusCode::SEE_OTHER, "/console"),
        "a revoked key's session goes on"
    );
}

#[tokio::test]
async fn a_service_account_s_whole_life_through_the_console() {
    let echo = EchoUpstream::start();
    let tg = Tollgate::start(tools_read_options(&echo.addr_string(), Some("member"))).await;
    let org = unique_id("org");
    let env = unique_id("env");
    let mut b = Browser::new(&tg);
    b.sign_in(tg.admin_key()).await;
    let opened = b.get(&format!("/console/orgs?org={org}")).await;
    assert_eq!(opened.header("location"), format!("/console/o/{org}"));

    // Every page carries a strict CSP; only the secret page runs a script.
    let new = b.get(&format!("/console/o/{org}/sa/new")).await;
    let csp = new.header("content-security-policy").to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'none'"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        new.body.contains("value=\"tools:read\"") && new.body.contains("value=\"admin:write\"")
    );
    let csrf = new.input("csrf");

    let created = b
        .post(
            &format!("/console/o/{org}/sa"),
            &[
                ("csrf", &csrf),
                ("name", "billing-sync"),
                ("scope", "tools:read"),
                ("scope", "logs:read"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client_id = created.input_by_id("client-id");
    let secret = created.input_by_id("client-secret");
    assert!(secret.starts_with("tg_sk_"), "{secret}");
    let csp = created.header("content-security-policy");
    assert!(
        csp.contains("script-src 'sha256-") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(created.header("cache-control"), "no-store");

    // The secret works at the token endpoint.
    let (status, issued) = tg.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let token = issued["access_token"].as_str().expect("token").to_string();

    // Find the account; it is shown with its credential, never the secret again.
    let (_, list) = tg
        .admin()
        .get(&format!("/v1/organizations/{org}/service-accounts"))
        .await;
    let sa_id = list["data"][0]["id"].as_str().expect("id").to_string();
    let listed = b
        .get(&format!("/console/o/{org}?q=billing&status=active"))
        .await;
    assert!(listed.body.contains(&sa_id));
    let detail = b.get(&format!("/console/o/{org}/sa/{sa_id}")).await;
    assert!(detail.body.contains(&client_id) && !detail.body.contains(&secret));

    // A workspace, an environment, the account as a member.
    let ws_page = b.get(&format!("/console/o/{org}/ws")).await;
    let csrf = ws_page.input("csrf");
    let made = b
        .post(
            &format!("/console/o/{org}/ws"),
            &[("csrf", &csrf), ("id", "payments"), ("name", "Payments")],
        )
        .await;
    assert_eq!(
        made.header("location"),
        format!("/console/o/{org}/ws/payments?done=saved")
    );
    let made = b
        .post(
            &format!("/console/o/{org}/ws/payments/env"),
            &[("csrf", &csrf), ("id", &env), ("name", "prod")],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let picker = b.get(&format!("/console/o/{org}/ws/payments?q=BILL")).await;
    assert!(picker.body.contains("billing-sync"), "{}", picker.body);
    let added = b
        .post(
            &format!("/console/o/{org}/ws/payments/members"),
            &[("csrf", &csrf), ("sa", &sa_id), ("role", "member")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);

    // The protected route answers for the member.
    let (status, _, _) = tg
        .proxy_request(
            Method::GET,
            &format!("/api/v1/tools/x?environmentId={env}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Rotate (the new secret is shown once), disable, delete.
    let here = format!("/console/o/{org}/sa/{sa_id}");
    let rotated = b
        .post(
            &format!("{here}/rotate"),
            &[("csrf", &csrf), ("grace_seconds", "0")],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.input_by_id("client-secret");
    assert_ne!(new_secret, secret);
    assert_eq!(
        tg.issue_token(&client_id, &secret, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        tg.issue_token(&client_id, &new_secret, None).await.0,
        StatusCode::OK
    );
    let disabled = b
        .post(
            &format!("{here}/status"),
            &[("csrf", &csrf), ("status", "disabled")],
        )
        .await;
    assert_eq!(disabled.header("location"), format!("{here}?done=status"));
    assert_eq!(
        tg.issue_token(&client_id, &new_secret, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let revoked = b
        .post(&format!("{here}/revoke-tokens"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let confirm = b.get(&format!("{here}/delete")).await;
    assert!(confirm.body.contains("Delete for good"));
    let deleted = b.post(&format!("{here}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(
        deleted.header("location"),
        format!("/console/o/{org}?done=deleted")
    );
    assert_eq!(b.get(&here).await.status, StatusCode::NOT_FOUND);

    // The audit trail shows it all, filtered by account and by action.
    let audit = b.get(&format!("/console/o/{org}/audit?sa={sa_id}")).await;
    for action in [
        "service_account.create",
        "membership.put",
        "credential.rotate_secret",
        "service_account.update",
        "service_account.delete",
        "token.issue",
    ] {
        assert!(audit.body.contains(action), "{action} not in the trail");
    }
    let only = b
        .get(&format!("/console/o/{org}/audit?action=token."))
        .await;
    assert!(only.body.contains("token.issue") && !only.body.contains("service_account.create"));

    // The operator's overview counts the allowed request.
    let overview = b.get("/console/authz").await;
    assert!(overview.body.contains("tools-read"), "{}", overview.body);

    // No secret, key or session id in any URL or log line.
    let session = b.cookies.get("tg_console").cloned().unwrap_or_default();
    for url in &b.urls {
        for secret in [&secret, &new_secret, &token, &session] {
            assert!(!url.contains(secret.as_str()), "{url}");
        }
    }
    let logs = tg.logs();
    for secret in [
        &secret,
        &new_secret,
        &token,
        &session,
        &tg.admin_key().to_string(),
    ] {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
    }
    let out = b.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.header("location"), "/console");
}

#[tokio::test]
async fn an_organization_admin_makes_and_revokes_a_workspace_key_in_the_console() {
    let tg = Tollgate::start(tools_read_unreachable(Some("member"))).await;
    let org = unique_id("org");
    tg.admin().put_workspace(&org, "team").await;
    let (_, made) = tg
        .admin()
        .post(
            &format!("/v1/organizations/{org}/admin-keys"),
            json!({"name": "org admins"}),
        )
        .await;
    let mut b = Browser::new(&tg);
    b.sign_in(made["key"].as_str().expect("key")).await;
    let page = b.get(&format!("/console/o/{org}/keys")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("org admins") && !page.body.contains("the whole organization"));
    let csrf = page.input("csrf");
    let shown = b
        .post(
            &format!("/console/o/{org}/keys"),
            &[
                ("csrf", &csrf),
                ("name", "team admins"),
                ("workspace", "team"),
            ],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let key = shown.input_by_id("admin-key");
    assert!(key.starts_with("tg_ak_"));
    let (status, _) = tg
        .admin()
        .with_key(&key)
        .get(&format!("/v1/organizations/{org}/workspaces/team/members"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let listed = b.get(&format!("/console/o/{org}/keys")).await;
    assert!(listed.body.contains("team admins") && !listed.body.contains(&key));
    let (_, keys) = tg
        .admin()
        .get(&format!("/v1/organizations/{org}/admin-keys"))
        .await;
    let id = keys["data"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == json!("team admins"))
        .and_then(|k| k["id"].as_str())
        .expect("listed")
        .to_string();
    let revoked = b
        .post(
            &format!("/console/o/{org}/keys/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        revoked.header("location"),
        format!("/console/o/{org}/keys?done=removed")
    );
    let (status, _) = tg
        .admin()
        .with_key(&key)
        .get(&format!("/v1/organizations/{org}/workspaces/team/members"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
