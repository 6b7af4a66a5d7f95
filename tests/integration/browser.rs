//! The console in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, installed with `chromium` by `scripts/ensure-deps.sh
//! test`). Signs in, creates an account, reads its secret once, uses it at
//! the token endpoint, assigns it to a workspace, calls a protected route,
//! rotates, disables, deletes, reads the audit trail and signs out; an
//! organization key cannot see another organization; a form posted
//! without the CSRF token is refused. Every page is saved as a screenshot
//! under `target/tmp/console-screenshots/` and must log no console error.
//! Skipped, saying so, where `chromedriver` is not installed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::common::*;

/// `chromedriver` on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Option<Driver> {
        if Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: `chromedriver` is not installed (scripts/ensure-deps.sh test installs chromium-driver)");
            return None;
        }
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver does not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium's console log (`goog:loggingPrefs`), read and emptied.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

struct Run {
    c: Client,
    base: String,
    shots: PathBuf,
    n: usize,
}

impl Run {
    async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("goto");
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits for the navigation a click started to land on `expected`.
    async fn lands_on(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.path().await;
            if now == expected {
                return;
            }
            assert!(Instant::now() < deadline, "at {now}, not {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn source(&self) -> String {
        self.c.source().await.expect("source")
    }

    async fn fill(&self, id: &str, text: &str) {
        let field = self
            .c
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    /// Clicks something that loads a new page, and waits until the new
    /// document has loaded (the old one is marked first).
    async fn submit(&self, css: &str) {
        self.c
            .execute("window.__tgOld = true;", vec![])
            .await
            .expect("mark the page");
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = self
                .c
                .execute(
                    "return window.__tgOld !== true && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "{css}: no new page");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn value(&self, id: &str) -> String {
        self.c
            .find(Locator::Id(id))
            .await
            .expect("input")
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    /// Saves a screenshot and checks the console logged no error; `expected`
    /// allows the browser's line about a page answered with an error status.
    async fn check(&mut self, name: &str, expected_status: bool) {
        self.n += 1;
        let png = self.c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.n)), png)
            .expect("save the screenshot");
        let log = self.c.issue_cmd(BrowserLog).await.expect("browser log");
        let errors: Vec<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .filter(|m| !(expected_status && m.contains("Failed to load resource")))
            .collect();
        assert!(errors.is_empty(), "{name}: console errors {errors:#?}");
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

#[tokio::test]
async fn the_console_in_headless_chromium() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let echo = EchoUpstream::start();
    let tg = Tollgate::start(tools_read_options(&echo.addr_string(), Some("member"))).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(unique_id("run"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut r = Run {
        c: browser(&driver).await,
        base: format!("http://{}", tg.admin_addr()),
        shots,
        n: 0,
    };
    let org = unique_id("org");
    let env = unique_id("env");

    // Sign in from the keyboard: type the key, press Enter.
    r.goto("/console").await;
    r.check("sign-in", false).await;
    r.fill("key", tg.admin_key()).await;
    r.c.find(Locator::Id("key"))
        .await
        .expect("key")
        .send_keys("\u{E007}")
        .await
        .expect("enter");
    r.lands_on("/console/orgs").await;
    r.check("organizations", false).await;
    r.fill("org", &org).await;
    r.submit("form[action='/console/orgs'] button").await;
    assert_eq!(r.path().await, format!("/console/o/{org}"));
    r.check("service-accounts-empty", false).await;

    // Create an account with a scope from the grid; the secret, once.
    r.submit(&format!("a[href='/console/o/{org}/sa/new']"))
        .await;
    r.check("create-form", false).await;
    r.fill("name", "billing-sync").await;
    r.click("#scope-tools-read").await;
    r.submit("form[action$='/sa'] button[type=submit]").await;
    let client_id = r.value("client-id").await;
    let secret = r.value("client-secret").await;
    assert!(secret.starts_with("tg_sk_"), "{secret}");
    r.click("button[data-copy='client-secret']").await;
    r.check("secret-once", false).await;
    let (status, issued) = tg.issue_token(&client_id, &secret, None).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let token = issued["access_token"].as_str().expect("token").to_string();
    r.submit("a[href*='/sa/']").await;
    let sa_path = r.path().await;
    let sa_id = sa_path.rsplit('/').next().expect("id").to_string();
    let detail = r.source().await;
    assert!(detail.contains(&client_id) && !detail.contains(&secret));
    r.check("account-detail", false).await;

    // A workspace, an environment, the account as a member via the picker.
    r.goto(&format!("/console/o/{org}/ws")).await;
    r.fill("ws-id", "payments").await;
    r.fill("ws-name", "Payments").await;
    r.submit("form[action$='/ws'] button").await;
    assert_eq!(
        r.path().await,
        format!("/console/o/{org}/ws/payments?done=saved")
    );
    r.fill("env-id", &env).await;
    r.fill("env-name", "prod").await;
    r.submit("form[action$='/env'] button").await;
    r.fill("pick", "billing").await;
    r.submit("form[role=search] button").await;
    r.check("member-picker", false).await;
    r.submit("form[action$='/members'] button").await;
    assert!(r.source().await.contains(&sa_id), "not a member");
    r.check("workspace", false).await;
    let (status, _, _) = tg
        .proxy_request(
            Method::GET,
            &format!("/api/v1/tools/x?environmentId={env}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the protected route");

    // Rotate with a grace period, then disable, then delete.
    r.goto(&sa_path).await;
    r.fill("grace", "60").await;
    r.submit("form[action$='/rotate'] button").await;
    let rotated = r.value("client-secret").await;
    assert_ne!(rotated, secret);
    r.check("rotated", false).await;
    r.goto(&sa_path).await;
    assert!(r.source().await.contains("old secret valid until"));
    r.submit("form[action$='/status'] button").await;
    assert!(r.source().await.contains("disabled"));
    r.check("disabled", false).await;
    assert_eq!(
        tg.issue_token(&client_id, &rotated, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    r.submit("a[href$='/delete']").await;
    r.check("confirm-delete", false).await;
    r.submit("button.danger").await;
    assert_eq!(r.path().await, format!("/console/o/{org}?done=deleted"));

    // The audit trail, filtered to the account.
    r.goto(&format!("/console/o/{org}/audit")).await;
    r.fill("sa", &sa_id).await;
    r.submit("form[role=search] button").await;
    let trail = r.source().await;
    for action in [
        "service_account.create",
        "token.issue",
        "membership.put",
        "credential.rotate_secret",
        "service_account.delete",
    ] {
        assert!(trail.contains(action), "{action} not in the trail");
    }
    r.check("audit", false).await;
    r.goto("/console/authz").await;
    assert!(r.source().await.contains("tools-read"));
    r.check("authorization", false).await;

    // Readable at a phone's width: nothing wider than the screen.
    r.c.set_window_size(390, 844).await.expect("resize");
    r.goto(&format!("/console/o/{org}/audit")).await;
    let overflow =
        r.c.execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .expect("measure");
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "wider than a phone: {overflow}"
    );
    r.check("phone-audit", false).await;
    r.c.set_window_size(1280, 900).await.expect("resize");

    // A form without the CSRF token is refused.
    r.goto(&format!("/console/o/{org}")).await;
    r.c.execute(
        &format!(
            "var f=document.createElement('form');f.method='post';f.action='/console/o/{org}/sa';\
             var i=document.createElement('input');i.name='name';i.value='forged';f.appendChild(i);\
             document.body.appendChild(f);f.submit();"
        ),
        vec![],
    )
    .await
    .expect("post a forged form");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !r.source().await.contains("did not come from the console") {
        assert!(Instant::now() < deadline, "the forged post was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.check("csrf-refused", true).await;
    let (_, list) = tg
        .admin()
        .get(&format!("/v1/organizations/{org}/service-accounts"))
        .await;
    assert_eq!(list["data"], json!([]), "the forged form made an account");

    // Sign out: back to the sign-in form, the session gone.
    r.goto(&format!("/console/o/{org}")).await;
    r.submit("form[action='/console/sign-out'] button").await;
    r.lands_on("/console").await;
    r.goto(&format!("/console/o/{org}")).await;
    assert_eq!(r.path().await, "/console");
    r.check("signed-out", false).await;

    // An organization key does not see another organization.
    let other = unique_id("other");
    tg.admin()
        .create_service_account(&other, "their secret project", &["tools:read"])
        .await;
    let (_, made) = tg
        .admin()
        .post(
            &format!("/v1/organizations/{org}/admin-keys"),
            json!({"name": "org console"}),
        )
        .await;
    r.fill("key", made["key"].as_str().expect("key")).await;
    r.submit("button[type=submit]").await;
    assert_eq!(r.path().await, format!("/console/o/{org}"));
    r.goto(&format!("/console/o/{other}")).await;
    let page = r.source().await;
    assert!(page.contains("organization not found") && !page.contains("their secret project"));
    r.check("other-organization", true).await;
    r.c.close().await.expect("close the browser");
}
