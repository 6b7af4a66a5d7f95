//! The contract of `Store` as one executable suite, run against both
//! backends by `tests/store.rs` and against a Redis Cluster by
//! `tests/cluster.rs`, through the library's public API only. Every run
//! uses fresh random ids, so runs can share one Redis concurrently.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use tollgate::account_policy::{AccountPolicy, IssueLimit, Per};
use tollgate::ids::{new_client_id, new_id, new_sortable_id};
use tollgate::model::{
    AccessFacts, AuditEvent, Environment, EnvironmentRef, EnvironmentRole, Membership, SaStatus,
    ServiceAccount, StoredAdminKey, StoredCredential, TokenRecord, Workspace,
};
use tollgate::scope::{default_resources, Role, ScopeSet};
use tollgate::secret::{expose, new_access_token, token_hash};
use tollgate::store::{
    EnvPutOutcome, Issuer, MemberPutOutcome, PutOutcome, Store, StoreResult, TokenLimits, TokenPut,
};

/// A look-up that found the token and was not asked for an environment.
fn token_only(rec: &TokenRecord) -> AccessFacts {
    AccessFacts {
        token: Some(Arc::new(rec.clone())),
        environment: None,
    }
}

/// A look-up that found the token and was asked for an environment.
fn in_environment(
    rec: &TokenRecord,
    env: Option<EnvironmentRef>,
    role: Option<Role>,
) -> AccessFacts {
    AccessFacts {
        token: Some(Arc::new(rec.clone())),
        environment: Some(Arc::new(EnvironmentRole {
            environment: env.map(Arc::new),
            role,
        })),
    }
}

/// Runs every check; panics with the failed expectation.
pub async fn run_all(store: &dyn Store) {
    ok(store.ping().await, "ping");
    let expiring = ExpiringTokens::put(store).await;
    service_accounts(store).await;
    credentials_and_client_index(store).await;
    a_deleted_credential_is_not_written_back(store).await;
    workspaces_and_environments(store).await;
    environment_ids_are_global(store).await;
    memberships(store).await;
    puts_under_a_missing_parent_write_nothing(store).await;
    deleting_a_service_account_cascades(store).await;
    deleting_a_workspace_cascades(store).await;
    tokens_and_ownership(store).await;
    revocation_counts_only_live_tokens_of_the_target(store).await;
    lookup_access_combinations(store).await;
    throttle_counters_are_per_window(store).await;
    audit_log_is_capped_and_paginated(store).await;
    admin_keys_are_kept_per_organization(store).await;
    rate_and_quota_counters_and_account_limits(store).await;
    account_policy_is_stored_with_the_account(store).await;
    live_tokens_are_capped_per_account(store).await;
    a_token_is_stored_only_while_its_issuer_holds(store).await;
    issuance_is_limited_per_account_and_window(store).await;
    expiring.check(store).await;
}

fn ok<T>(r: StoreResult<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: store error: {e}"),
    }
}

fn new_org() -> String {
    format!("conf-{}", new_id())
}

fn name_id(tag: &str) -> String {
    format!("{tag}-{}", new_id())
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

// The one wall-clock read of this store (clippy.toml's team rule).
#[allow(clippy::disallowed_methods)]
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn scopes(list: &[&str]) -> ScopeSet {
    ScopeSet::parse_all(list.iter().copied(), &default_resources()).unwrap_or_default()
}

fn account(org: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        id: new_id(),
        organization_id: org.to_string(),
        name: name.to_string(),
        description: Some(format!("{name} for the conformance suite")),
        scopes: scopes(&["tools:write", "knowledge:read"]),
        status: SaStatus::Active,
        created_at: at(0),
        updated_at: at(0),
        policy: AccountPolicy::default(),
    }
}

fn credential(sa: &ServiceAccount, name: &str) -> StoredCredential {
    StoredCredential {
        id: new_id(),
        organization_id: sa.organization_id.clone(),
        service_account_id: sa.id.clone(),
        client_id: new_client_id(),
        name: name.to_string(),
        description: None,
        secret_hash: format!("$argon2id$v=19$m=64,t=1,p=1$c2FsdA${}", new_id()),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        secret_check: None,
        previous_secret_check: None,
        created_at: at(1),
        last_used_at: None,
        generation: 0,
    }
}

/// An account with its first credential, stored.
async fn stored_account(store: &dyn Store, org: &str, name: &str) -> ServiceAccount {
    let sa = account(org, name);
    let cred = credential(&sa, "first");
    ok(
        store.create_service_account(&sa, &cred).await,
        "create_service_account",
    );
    sa
}

fn workspace(org: &str) -> Workspace {
    Workspace {
        id: name_id("ws"),
        organization_id: org.to_string(),
        name: "Workspace".to_string(),
        created_at: at(2),
    }
}

fn environment(ws: &Workspace) -> Environment {
    Environment {
        id: name_id("env"),
        workspace_id: ws.id.clone(),
        organization_id: ws.organization_id.clone(),
        name: "Environment".to_string(),
        created_at: at(3),
    }
}

fn membership(ws: &Workspace, sa: &ServiceAccount, role: Role) -> Membership {
    Membership {
        workspace_id: ws.id.clone(),
        service_account_id: sa.id.clone(),
        role,
        created_at: at(4),
    }
}

/// A token's hash (its plain text is dropped: stores only see hashes) and record.
fn token(sa: &ServiceAccount) -> (String, TokenRecord) {
    let plain = new_access_token();
    let rec = TokenRecord {
        organization_id: sa.organization_id.clone(),
        service_account_id: sa.id.clone(),
        client_id: new_client_id(),
        scopes: sa.scopes.clone(),
        expires_at: now_unix() + 300,
        allowed_sources: None,
        header_values: Default::default(),
    };
    (token_hash(expose(&plain)), rec)
}

async fn stored_token(store: &dyn Store, sa: &ServiceAccount, ttl: u64) -> (String, TokenRecord) {
    let (hash, rec) = token(sa);
    ok(store.put_token(&hash, &rec, ttl, None).await, "put_token");
    (hash, rec)
}

/// Replaces the account as the registry does: only if it is still the
/// record read just before.
async fn update_account(store: &dyn Store, sa: &ServiceAccount) -> bool {
    let read = ok(
        store
            .get_service_account_for_update(&sa.organization_id, &sa.id)
            .await,
        "get_service_account_for_update",
    )
    .map(|(_, read)| read)
    .unwrap_or_default();
    ok(store.update_service_account(sa, &read).await, "update")
}

fn sorted_by_id<T: Clone>(items: &[&T], id: impl Fn(&T) -> &str) -> Vec<T> {
    let mut v: Vec<T> = items.iter().map(|t| (*t).clone()).collect();
    v.sort_by(|a, b| id(a).cmp(id(b)));
    v
}

async fn service_accounts(store: &dyn Store) {
    let org = new_org();
    assert!(ok(store.list_service_accounts(&org).await, "list").is_empty());
    let a = stored_account(store, &org, "alpha").await;
    let b = stored_account(store, &org, "beta").await;
    let c = stored_account(store, &org, "gamma").await;

    assert_eq!(
        ok(store.get_service_account(&org, &a.id).await, "get"),
        Some(a.clone())
    );
    assert_eq!(
        ok(store.get_service_account(&org, "missing").await, "get"),
        None
    );
    assert_eq!(
        ok(
            store.get_service_account(&format!("{org}x"), &a.id).await,
            "get"
        ),
        None,
        "an account is invisible from another organization"
    );
    assert_eq!(
        ok(store.list_service_accounts(&org).await, "list"),
        sorted_by_id(&[&a, &b, &c], |s| &s.id),
        "accounts are listed sorted by id"
    );

    let mut renamed = b.clone();
    renamed.name = "beta two".to_string();
    renamed.status = SaStatus::Disabled;
    renamed.scopes = scopes(&["logs:read"]);
    renamed.updated_at = at(10);
    let (_, stale) = ok(
        store.get_service_account_for_update(&org, &b.id).await,
        "read",
    )
    .expect("the account is there");
    assert!(update_account(store, &renamed).await);
    assert_eq!(
        ok(store.get_service_account(&org, &b.id).await, "get"),
        Some(renamed.clone())
    );
    // A change read before that one is refused and writes nothing: it would
    // undo the disable.
    let mut from_stale = b.clone();
    from_stale.name = "written from a stale read".to_string();
    assert!(
        !ok(
            store.update_service_account(&from_stale, &stale).await,
            "update"
        ),
        "an update from a stale read is refused"
    );
    assert_eq!(
        ok(store.get_service_account(&org, &b.id).await, "get"),
        Some(renamed)
    );

    let ghost = account(&org, "ghost");
    assert!(
        !update_account(store, &ghost).await,
        "updating a missing account reports false"
    );
    assert_eq!(
        ok(store.get_service_account(&org, &ghost.id).await, "get"),
        None,
        "updating a missing account does not create it"
    );
}

async fn credentials_and_client_index(store: &dyn Store) {
    let org = new_org();
    let sa = account(&org, "creds");
    let first = credential(&sa, "first");
    ok(store.create_service_account(&sa, &first).await, "create");

    let found = ok(store.find_client(&first.client_id).await, "find_client")
        .expect("the first credential is found by its client id");
    assert_eq!(found.credential, first);
    assert_eq!(found.service_account, sa);
    assert!(ok(store.find_client(&new_client_id()).await, "find_client").is_none());

    let second = credential(&sa, "second");
    assert!(ok(
        store.put_credential(&second, None).await,
        "put_credential"
    ));
    assert_eq!(
        ok(store.list_credentials(&org, &sa.id).await, "list"),
        sorted_by_id(&[&first, &second], |c| &c.id),
        "credentials are listed sorted by id"
    );
    assert_eq!(
        ok(store.get_credential(&org, &sa.id, &second.id).await, "get"),
        Some(second.clone())
    );
    assert_eq!(
        ok(
            store.get_credential(&org, "other-sa", &second.id).await,
            "get"
        ),
        None
    );

    let orphan = credential(&account(&org, "missing"), "orphan");
    assert!(
        !ok(store.put_credential(&orphan, None).await, "put_credential"),
        "a credential of a missing account is refused"
    );
    assert!(ok(store.find_client(&orphan.client_id).await, "find").is_none());
    assert!(ok(
        store
            .list_credentials(&org, &orphan.service_account_id)
            .await,
        "list"
    )
    .is_empty());

    let mut rotated = second.clone();
    rotated.previous_secret_hash = Some(second.secret_hash.clone());
    rotated.previous_secret_expires_at = Some(at(100));
    rotated.secret_hash = format!("$argon2id$v=19$m=64,t=1,p=1$c2FsdA${}", new_id());
    rotated.generation += 1;
    assert!(ok(
        store
            .put_credential(&rotated, Some(second.generation))
            .await,
        "rotate"
    ));
    let found = ok(store.find_client(&second.client_id).await, "find")
        .expect("a rotated credential keeps its client id");
    assert_eq!(found.credential, rotated);
    // A write from a stale read is refused and changes nothing: it would
    // undo the rotation (the old secret working again).
    let mut stale = second.clone();
    stale.name = "renamed from a stale read".to_string();
    stale.generation += 1;
    assert!(
        !ok(
            store.put_credential(&stale, Some(second.generation)).await,
            "stale put"
        ),
        "a put from a stale read is refused"
    );
    assert!(
        !ok(store.put_credential(&stale, None).await, "put as new"),
        "a put as new of an existing credential is refused"
    );
    assert_eq!(
        ok(store.get_credential(&org, &sa.id, &second.id).await, "get"),
        Some(rotated.clone())
    );

    let mut renamed = sa.clone();
    renamed.name = "renamed".to_string();
    assert!(update_account(store, &renamed).await);
    let found = ok(store.find_client(&first.client_id).await, "find").expect("found");
    assert_eq!(
        found.service_account, renamed,
        "find_client returns the current account"
    );

    let used_at = now_unix();
    ok(
        store
            .touch_credentials(&[
                (org.clone(), sa.id.clone(), first.id.clone(), used_at - 5),
                (org.clone(), sa.id.clone(), first.id.clone(), used_at),
                (org.clone(), sa.id.clone(), "gone".to_string(), used_at),
            ])
            .await,
        "touch_credentials",
    );
    let touched = ok(store.get_credential(&org, &sa.id, &first.id).await, "get").expect("exists");
    assert_eq!(
        touched.last_used_at.map(|t| t.unix_timestamp()),
        Some(used_at),
        "the latest use is kept"
    );
    assert_eq!(touched.secret_hash, first.secret_hash);
    assert!(
        ok(store.get_credential(&org, &sa.id, "gone").await, "get").is_none(),
        "touching a missing credential does not create it"
    );

    assert!(ok(
        store.delete_credential(&org, &sa.id, &first.id).await,
        "delete"
    ));
    assert!(!ok(
        store.delete_credential(&org, &sa.id, &first.id).await,
        "delete"
    ));
    assert!(
        ok(store.find_client(&first.client_id).await, "find").is_none(),
        "a deleted credential's client id is gone"
    );
    assert!(ok(store.find_client(&second.client_id).await, "find").is_some());
    assert!(!ok(
        store.delete_credential(&org, "other-sa", &second.id).await,
        "delete"
    ));

    assert!(ok(
        store.delete_credential(&org, &sa.id, &second.id).await,
        "delete"
    ));
    assert!(ok(store.list_credentials(&org, &sa.id).await, "list").is_empty());
    assert!(
        ok(store.get_service_account(&org, &sa.id).await, "get").is_some(),
        "an account outlives its last credential"
    );
}

/// A change read before a credential was deleted (a rotation hashing its
/// new secret meanwhile) must not write it back: it would issue tokens again.
async fn a_deleted_credential_is_not_written_back(store: &dyn Store) {
    let org = new_org();
    let sa = stored_account(store, &org, "deletes").await;
    let cred = credential(&sa, "doomed");
    assert!(ok(
        store.put_credential(&cred, None).await,
        "put_credential"
    ));
    assert!(ok(
        store.delete_credential(&org, &sa.id, &cred.id).await,
        "delete"
    ));
    let mut rotated = cred.clone();
    rotated.secret_hash = format!("$argon2id$v=19$m=64,t=1,p=1$c2FsdA${}", new_id());
    rotated.generation += 1;
    assert!(
        !ok(
            store.put_credential(&rotated, Some(cred.generation)).await,
            "put after delete"
        ),
        "a deleted credential is written back"
    );
    assert_eq!(
        ok(store.get_credential(&org, &sa.id, &cred.id).await, "get"),
        None
    );
    assert!(ok(store.find_client(&cred.client_id).await, "find").is_none());
}

async fn workspaces_and_environments(store: &dyn Store) {
    let org = new_org();
    assert!(ok(store.list_workspaces(&org).await, "list").is_empty());
    let w1 = workspace(&org);
    let w2 = workspace(&org);
    assert_eq!(
        ok(store.put_workspace(&w1).await, "put"),
        PutOutcome::Created
    );
    assert_eq!(
        ok(store.put_workspace(&w2).await, "put"),
        PutOutcome::Created
    );
    let mut w1b = w1.clone();
    w1b.name = "Renamed".to_string();
    assert_eq!(
        ok(store.put_workspace(&w1b).await, "put"),
        PutOutcome::Updated
    );
    assert_eq!(
        ok(store.get_workspace(&org, &w1.id).await, "get"),
        Some(w1b.clone())
    );
    assert_eq!(
        ok(store.get_workspace(&format!("{org}x"), &w1.id).await, "get"),
        None
    );
    assert_eq!(
        ok(store.list_workspaces(&org).await, "list"),
        sorted_by_id(&[&w1b, &w2], |w| &w.id)
    );

    let e1 = environment(&w1);
    let e2 = environment(&w1);
    assert_eq!(
        ok(store.put_environment(&e1).await, "put"),
        EnvPutOutcome::Created
    );
    assert_eq!(
        ok(store.put_environment(&e2).await, "put"),
        EnvPutOutcome::Created
    );
    let mut e1b = e1.clone();
    e1b.name = "Renamed".to_string();
    assert_eq!(
        ok(store.put_environment(&e1b).await, "put"),
        EnvPutOutcome::Updated
    );
    assert_eq!(
        ok(store.get_environment(&e1.id).await, "get"),
        Some(e1b.clone())
    );
    assert_eq!(ok(store.get_environment("env-missing").await, "get"), None);
    assert_eq!(
        ok(store.list_environments(&org, &w1.id).await, "list"),
        sorted_by_id(&[&e1b, &e2], |e| &e.id),
        "environments are listed sorted by id"
    );
    assert!(ok(store.list_environments(&org, &w2.id).await, "list").is_empty());

    assert!(
        !ok(
            store.delete_environment(&org, &w2.id, &e2.id).await,
            "delete"
        ),
        "an environment is deleted only through its own workspace"
    );
    assert!(ok(
        store.delete_environment(&org, &w1.id, &e2.id).await,
        "delete"
    ));
    assert!(!ok(
        store.delete_environment(&org, &w1.id, &e2.id).await,
        "delete"
    ));
    assert_eq!(ok(store.get_environment(&e2.id).await, "get"), None);
    assert_eq!(
        ok(store.list_environments(&org, &w1.id).await, "list"),
        vec![e1b]
    );

    let mut moved = e2.clone();
    moved.workspace_id = w2.id.clone();
    assert_eq!(
        ok(store.put_environment(&moved).await, "put"),
        EnvPutOutcome::Created,
        "a deleted environment's id is free again"
    );
}

async fn environment_ids_are_global(store: &dyn Store) {
    let org_a = new_org();
    let org_b = new_org();
    let wa1 = workspace(&org_a);
    let wa2 = workspace(&org_a);
    let mut wb = workspace(&org_b);
    wb.id = wa1.id.clone();
    for w in [&wa1, &wa2, &wb] {
        ok(store.put_workspace(w).await, "put_workspace");
    }
    let env = environment(&wa1);
    assert_eq!(
        ok(store.put_environment(&env).await, "put"),
        EnvPutOutcome::Created
    );

    let mut other_ws = env.clone();
    other_ws.workspace_id = wa2.id.clone();
    other_ws.name = "Hijack".to_string();
    assert_eq!(
        ok(store.put_environment(&other_ws).await, "put"),
        EnvPutOutcome::Conflict,
        "an environment id of another workspace conflicts"
    );
    let mut other_org = env.clone();
    other_org.organization_id = org_b.clone();
    other_org.name = "Hijack".to_string();
    assert_eq!(
        ok(store.put_environment(&other_org).await, "put"),
        EnvPutOutcome::Conflict,
        "an environment id of another organization conflicts, even with the same workspace id"
    );
    assert_eq!(
        ok(store.get_environment(&env.id).await, "get"),
        Some(env.clone()),
        "a conflicting put changes nothing"
    );
    assert!(ok(store.list_environments(&org_a, &wa2.id).await, "list").is_empty());
    assert!(ok(store.list_environments(&org_b, &wb.id).await, "list").is_empty());
    assert!(!ok(
        store.delete_environment(&org_b, &wb.id, &env.id).await,
        "delete"
    ));
    assert!(ok(store.get_environment(&env.id).await, "get").is_some());
}

async fn memberships(store: &dyn Store) {
    let org = new_org();
    let ws = workspace(&org);
    ok(store.put_workspace(&ws).await, "put_workspace");
    let a = stored_account(store, &org, "a").await;
    let b = stored_account(store, &org, "b").await;
    assert!(ok(store.list_memberships(&org, &ws.id).await, "list").is_empty());

    let ma = membership(&ws, &a, Role::Member);
    let mb = membership(&ws, &b, Role::Admin);
    assert_eq!(
        ok(store.put_membership(&org, &ma).await, "put"),
        MemberPutOutcome::Created
    );
    assert_eq!(
        ok(store.put_membership(&org, &mb).await, "put"),
        MemberPutOutcome::Created
    );
    let mut ma2 = ma.clone();
    ma2.role = Role::Admin;
    assert_eq!(
        ok(store.put_membership(&org, &ma2).await, "put"),
        MemberPutOutcome::Updated
    );
    assert_eq!(
        ok(store.get_membership(&org, &ws.id, &a.id).await, "get"),
        Some(ma2.clone())
    );
    assert_eq!(
        ok(
            store
                .get_membership(&format!("{org}x"), &ws.id, &a.id)
                .await,
            "get"
        ),
        None
    );
    assert_eq!(
        ok(store.list_memberships(&org, &ws.id).await, "list"),
        sorted_by_id(&[&ma2, &mb], |m| &m.service_account_id),
        "memberships are listed sorted by account id"
    );
    assert!(ok(
        store.delete_membership(&org, &ws.id, &a.id).await,
        "delete"
    ));
    assert!(!ok(
        store.delete_membership(&org, &ws.id, &a.id).await,
        "delete"
    ));
    assert_eq!(
        ok(store.list_memberships(&org, &ws.id).await, "list"),
        vec![mb]
    );
}

/// Environments and memberships are written only under a workspace (and an
/// account) that exists at the moment of the write, so a delete racing a put
/// cannot leave an orphan behind.
async fn puts_under_a_missing_parent_write_nothing(store: &dyn Store) {
    let org = new_org();
    let other_org = new_org();
    let ws = workspace(&org);
    let sa = stored_account(store, &org, "member").await;
    let env = environment(&ws);

    assert_eq!(
        ok(store.put_environment(&env).await, "put"),
        EnvPutOutcome::WorkspaceMissing
    );
    assert_eq!(ok(store.get_environment(&env.id).await, "get"), None);
    assert_eq!(
        ok(
            store
                .put_membership(&org, &membership(&ws, &sa, Role::Member))
                .await,
            "put"
        ),
        MemberPutOutcome::WorkspaceMissing
    );
    assert_eq!(
        ok(store.get_membership(&org, &ws.id, &sa.id).await, "get"),
        None
    );

    ok(store.put_workspace(&ws).await, "put_workspace");
    let stranger = account(&org, "never stored");
    assert_eq!(
        ok(
            store
                .put_membership(&org, &membership(&ws, &stranger, Role::Member))
                .await,
            "put"
        ),
        MemberPutOutcome::ServiceAccountMissing
    );
    let foreign = stored_account(store, &other_org, "foreign").await;
    assert_eq!(
        ok(
            store
                .put_membership(&org, &membership(&ws, &foreign, Role::Admin))
                .await,
            "put"
        ),
        MemberPutOutcome::ServiceAccountMissing,
        "an account of another organization is not in this one"
    );
    let mut foreign_env = env.clone();
    foreign_env.organization_id = other_org.clone();
    assert_eq!(
        ok(store.put_environment(&foreign_env).await, "put"),
        EnvPutOutcome::WorkspaceMissing,
        "the same workspace id in another organization is another workspace"
    );
    assert!(ok(store.list_memberships(&org, &ws.id).await, "list").is_empty());
    assert!(ok(store.list_environments(&org, &ws.id).await, "list").is_empty());

    assert_eq!(
        ok(store.put_environment(&env).await, "put"),
        EnvPutOutcome::Created
    );
    assert_eq!(
        ok(
            store
                .put_membership(&org, &membership(&ws, &sa, Role::Member))
                .await,
            "put"
        ),
        MemberPutOutcome::Created
    );

    // A put that arrives after the delete finds no parent.
    assert!(ok(
        store.delete_service_account(&org, &sa.id).await,
        "delete"
    ));
    assert_eq!(
        ok(
            store
                .put_membership(&org, &membership(&ws, &sa, Role::Admin))
                .await,
            "put"
        ),
        MemberPutOutcome::ServiceAccountMissing
    );
    assert!(ok(store.delete_workspace(&org, &ws.id).await, "delete"));
    assert_eq!(
        ok(store.put_environment(&env).await, "put"),
        EnvPutOutcome::WorkspaceMissing
    );
    assert_eq!(ok(store.get_environment(&env.id).await, "get"), None);
    ok(store.put_workspace(&ws).await, "put_workspace");
    assert!(
        ok(store.list_memberships(&org, &ws.id).await, "list").is_empty(),
        "no membership survived under the re-created workspace"
    );
    assert!(ok(store.list_environments(&org, &ws.id).await, "list").is_empty());
}

async fn deleting_a_service_account_cascades(store: &dyn Store) {
    let org = new_org();
    let w1 = workspace(&org);
    let w2 = workspace(&org);
    ok(store.put_workspace(&w1).await, "put_workspace");
    ok(store.put_workspace(&w2).await, "put_workspace");

    let doomed = account(&org, "doomed");
    let c1 = credential(&doomed, "one");
    let c2 = credential(&doomed, "two");
    ok(store.create_service_account(&doomed, &c1).await, "create");
    assert!(ok(store.put_credential(&c2, None).await, "put_credential"));
    let keeper = stored_account(store, &org, "keeper").await;
    let keeper_creds = ok(store.list_credentials(&org, &keeper.id).await, "list");
    for ws in [&w1, &w2] {
        ok(
            store
                .put_membership(&org, &membership(ws, &doomed, Role::Member))
                .await,
            "put_membership",
        );
        ok(
            store
                .put_membership(&org, &membership(ws, &keeper, Role::Admin))
                .await,
            "put_membership",
        );
    }
    let (tok_hash, tok) = stored_token(store, &doomed, 300).await;

    assert!(ok(
        store.delete_service_account(&org, &doomed.id).await,
        "delete"
    ));
    assert!(!ok(
        store.delete_service_account(&org, &doomed.id).await,
        "delete"
    ));
    assert_eq!(
        ok(store.get_service_account(&org, &doomed.id).await, "get"),
        None
    );
    assert!(
        ok(store.list_credentials(&org, &doomed.id).await, "list").is_empty(),
        "an account's credentials go with it"
    );
    for c in [&c1, &c2] {
        assert!(
            ok(store.find_client(&c.client_id).await, "find").is_none(),
            "an account's client ids go with it"
        );
    }
    for ws in [&w1, &w2] {
        assert_eq!(
            ok(store.get_membership(&org, &ws.id, &doomed.id).await, "get"),
            None,
            "an account's memberships go with it, in every workspace"
        );
        assert!(ok(store.get_membership(&org, &ws.id, &keeper.id).await, "get").is_some());
    }
    assert_eq!(
        ok(store.list_credentials(&org, &keeper.id).await, "list"),
        keeper_creds
    );
    assert_eq!(
        ok(store.get_token(&tok_hash).await, "get_token"),
        Some(tok),
        "deleting an account leaves its tokens to the caller's revocation policy"
    );

    let again = ServiceAccount {
        created_at: at(50),
        ..doomed.clone()
    };
    let fresh = credential(&again, "fresh");
    ok(store.create_service_account(&again, &fresh).await, "create");
    assert_eq!(
        ok(store.list_credentials(&org, &again.id).await, "list"),
        vec![fresh],
        "nothing of the deleted account survives under its id"
    );
    assert_eq!(
        ok(store.get_membership(&org, &w1.id, &again.id).await, "get"),
        None
    );
}

async fn deleting_a_workspace_cascades(store: &dyn Store) {
    let org = new_org();
    let doomed = workspace(&org);
    let keeper = workspace(&org);
    ok(store.put_workspace(&doomed).await, "put_workspace");
    ok(store.put_workspace(&keeper).await, "put_workspace");
    let e1 = environment(&doomed);
    let e2 = environment(&doomed);
    let e3 = environment(&keeper);
    for e in [&e1, &e2, &e3] {
        ok(store.put_environment(e).await, "put_environment");
    }
    let sa = stored_account(store, &org, "member").await;
    ok(
        store
            .put_membership(&org, &membership(&doomed, &sa, Role::Admin))
            .await,
        "put_membership",
    );
    ok(
        store
            .put_membership(&org, &membership(&keeper, &sa, Role::Member))
            .await,
        "put_membership",
    );

    assert!(
        !ok(
            store.delete_workspace(&format!("{org}x"), &doomed.id).await,
            "delete"
        ),
        "a workspace is deleted only through its organization"
    );
    assert!(ok(store.delete_workspace(&org, &doomed.id).await, "delete"));
    assert!(!ok(
        store.delete_workspace(&org, &doomed.id).await,
        "delete"
    ));
    assert_eq!(ok(store.get_workspace(&org, &doomed.id).await, "get"), None);
    for e in [&e1, &e2] {
        assert_eq!(
            ok(store.get_environment(&e.id).await, "get"),
            None,
            "a workspace's environments go with it"
        );
    }
    assert_eq!(
        ok(store.get_environment(&e3.id).await, "get"),
        Some(e3.clone())
    );
    assert_eq!(
        ok(store.get_membership(&org, &doomed.id, &sa.id).await, "get"),
        None,
        "a workspace's memberships go with it"
    );
    assert!(ok(store.get_membership(&org, &keeper.id, &sa.id).await, "get").is_some());

    ok(store.put_workspace(&doomed).await, "put_workspace");
    assert!(
        ok(store.list_environments(&org, &doomed.id).await, "list").is_empty(),
        "a re-created workspace starts empty"
    );
    assert!(ok(store.list_memberships(&org, &doomed.id).await, "list").is_empty());
    let mut reused = e1.clone();
    reused.workspace_id = keeper.id.clone();
    assert_eq!(
        ok(store.put_environment(&reused).await, "put"),
        EnvPutOutcome::Created,
        "the environment ids of a deleted workspace are free again"
    );
    assert!(
        ok(store.delete_service_account(&org, &sa.id).await, "delete"),
        "an account whose workspace is gone can still be deleted"
    );
    assert!(ok(store.list_memberships(&org, &keeper.id).await, "list").is_empty());
}

async fn tokens_and_ownership(store: &dyn Store) {
    let org = new_org();
    let sa = stored_account(store, &org, "tokens").await;
    let other = stored_account(store, &org, "other").await;
    let (hash, rec) = stored_token(store, &sa, 300).await;
    assert_eq!(ok(store.get_token(&hash).await, "get"), Some(rec.clone()));
    let (unknown, _) = token(&sa);
    assert_eq!(ok(store.get_token(&unknown).await, "get"), None);
    assert!(!ok(
        store.revoke_token(&unknown, &org, &sa.id).await,
        "revoke"
    ));

    assert!(
        !ok(store.revoke_token(&hash, &org, &other.id).await, "revoke"),
        "another account cannot revoke the token"
    );
    assert!(
        !ok(
            store.revoke_token(&hash, &format!("{org}x"), &sa.id).await,
            "revoke"
        ),
        "the same account id in another organization cannot revoke the token"
    );
    assert_eq!(ok(store.get_token(&hash).await, "get"), Some(rec));
    assert!(ok(store.revoke_token(&hash, &org, &sa.id).await, "revoke"));
    assert_eq!(ok(store.get_token(&hash).await, "get"), None);
    assert!(!ok(store.revoke_token(&hash, &org, &sa.id).await, "revoke"));
}

async fn revocation_counts_only_live_tokens_of_the_target(store: &dyn Store) {
    let org_a = new_org();
    let org_b = new_org();
    let a1 = stored_account(store, &org_a, "a1").await;
    let a2 = stored_account(store, &org_a, "a2").await;
    let gone = stored_account(store, &org_a, "gone").await;
    let b1 = stored_account(store, &org_b, "b1").await;
    let mut a1_tokens = Vec::new();
    for _ in 0..3 {
        a1_tokens.push(stored_token(store, &a1, 300).await.0);
    }
    let a2_first = stored_token(store, &a2, 300).await.0;
    let a2_second = stored_token(store, &a2, 300).await.0;
    let gone_token = stored_token(store, &gone, 300).await.0;
    let b1_tokens = [
        stored_token(store, &b1, 300).await.0,
        stored_token(store, &b1, 300).await.0,
    ];
    assert!(
        ok(store.count_tokens().await, "count_tokens") >= 8,
        "every live token is counted"
    );

    assert_eq!(
        ok(
            store.revoke_service_account_tokens(&org_a, &a1.id).await,
            "revoke"
        ),
        3
    );
    for h in &a1_tokens {
        assert_eq!(ok(store.get_token(h).await, "get"), None);
    }
    assert!(ok(store.get_token(&a2_first).await, "get").is_some());
    assert_eq!(
        ok(
            store.revoke_service_account_tokens(&org_a, &a1.id).await,
            "revoke"
        ),
        0
    );
    assert_eq!(
        ok(
            store.revoke_service_account_tokens(&org_b, &a2.id).await,
            "revoke"
        ),
        0,
        "an account id is looked up within its organization"
    );

    assert!(ok(
        store.revoke_token(&a2_first, &org_a, &a2.id).await,
        "revoke"
    ));
    assert!(ok(
        store.delete_service_account(&org_a, &gone.id).await,
        "delete"
    ));
    assert_eq!(
        ok(store.revoke_organization_tokens(&org_a).await, "revoke org"),
        2,
        "the organization's remaining live tokens, a deleted account's included"
    );
    assert_eq!(ok(store.get_token(&a2_second).await, "get"), None);
    assert_eq!(ok(store.get_token(&gone_token).await, "get"), None);
    for h in &b1_tokens {
        assert!(
            ok(store.get_token(h).await, "get").is_some(),
            "other organizations are untouched"
        );
    }
    assert_eq!(
        ok(store.revoke_organization_tokens(&org_a).await, "revoke org"),
        0
    );
    assert_eq!(
        ok(store.revoke_organization_tokens(&org_b).await, "revoke org"),
        2
    );
    let fresh = stored_token(store, &a1, 300).await.0;
    assert!(
        ok(store.get_token(&fresh).await, "get").is_some(),
        "an account gets tokens again after a revocation"
    );
    assert_eq!(
        ok(
            store.revoke_service_account_tokens(&org_a, &a1.id).await,
            "revoke"
        ),
        1
    );
}

async fn lookup_access_combinations(store: &dyn Store) {
    let org_a = new_org();
    let org_b = new_org();
    let ws = workspace(&org_a);
    let foreign_ws = workspace(&org_b);
    ok(store.put_workspace(&ws).await, "put_workspace");
    ok(store.put_workspace(&foreign_ws).await, "put_workspace");
    let env = environment(&ws);
    let foreign_env = environment(&foreign_ws);
    ok(store.put_environment(&env).await, "put_environment");
    ok(store.put_environment(&foreign_env).await, "put_environment");
    let sa = stored_account(store, &org_a, "caller").await;
    let (hash, rec) = stored_token(store, &sa, 300).await;
    let (unknown, _) = token(&sa);

    assert_eq!(
        ok(store.lookup_access(&unknown, None).await, "lookup"),
        AccessFacts::default()
    );
    assert_eq!(
        ok(store.lookup_access(&unknown, Some(&env.id)).await, "lookup"),
        AccessFacts::default(),
        "without a token nothing else is looked up"
    );
    assert_eq!(
        ok(store.lookup_access(&hash, None).await, "lookup"),
        token_only(&rec)
    );
    assert_eq!(
        ok(
            store.lookup_access(&hash, Some("env-missing")).await,
            "lookup"
        ),
        in_environment(&rec, None, None)
    );
    assert_eq!(
        ok(store.lookup_access(&hash, Some(&env.id)).await, "lookup"),
        in_environment(&rec, Some(EnvironmentRef::from(&env)), None),
        "no membership, no role"
    );

    ok(
        store
            .put_membership(&org_a, &membership(&ws, &sa, Role::Member))
            .await,
        "put_membership",
    );
    assert_eq!(
        ok(store.lookup_access(&hash, Some(&env.id)).await, "lookup")
            .environment
            .and_then(|e| e.role),
        Some(Role::Member)
    );
    ok(
        store
            .put_membership(&org_a, &membership(&ws, &sa, Role::Admin))
            .await,
        "put_membership",
    );
    assert_eq!(
        ok(store.lookup_access(&hash, Some(&env.id)).await, "lookup")
            .environment
            .and_then(|e| e.role),
        Some(Role::Admin),
        "a role change shows at once"
    );

    // A name is free text: one that spells out another workspace's fields
    // must not lend the account its role there.
    let other_ws = workspace(&org_a);
    ok(store.put_workspace(&other_ws).await, "put_workspace");
    let mut spoofing = environment(&other_ws);
    spoofing.name = format!(
        r#"x","workspace_id":"{}","organization_id":"{}","s":"{}"#,
        ws.id, org_a, sa.id
    );
    ok(store.put_environment(&spoofing).await, "put_environment");
    assert_eq!(
        ok(
            store.lookup_access(&hash, Some(&spoofing.id)).await,
            "lookup"
        ),
        in_environment(&rec, Some(EnvironmentRef::from(&spoofing)), None),
        "the environment's own workspace decides, whatever its name says"
    );

    assert_eq!(
        ok(
            store.lookup_access(&hash, Some(&foreign_env.id)).await,
            "lookup"
        ),
        in_environment(&rec, Some(EnvironmentRef::from(&foreign_env)), None),
        "another organization's environment is returned for the decision layer to deny"
    );

    assert!(ok(
        store.delete_membership(&org_a, &ws.id, &sa.id).await,
        "delete"
    ));
    assert_eq!(
        ok(store.lookup_access(&hash, Some(&env.id)).await, "lookup")
            .environment
            .and_then(|e| e.role),
        None
    );
    assert!(ok(
        store.revoke_token(&hash, &org_a, &sa.id).await,
        "revoke"
    ));
    assert_eq!(
        ok(store.lookup_access(&hash, Some(&env.id)).await, "lookup"),
        AccessFacts::default()
    );
}

/// One failure more on each counter, far below any limit.
async fn add_failure(store: &dyn Store, keys: &[String], window: u64, now: i64) {
    let limits = vec![1_000; keys.len()];
    assert!(ok(
        store.reserve_failure(keys, &limits, window, now).await,
        "reserve"
    ));
}

async fn throttle_counters_are_per_window(store: &dyn Store) {
    let window = 60;
    let now = now_unix();
    let client_key = format!("client:{}", new_id());
    let source_key = format!("source:{}", new_id());
    let keys = vec![client_key.clone(), source_key.clone()];
    assert_eq!(
        ok(store.failure_counts(&keys, window, now).await, "counts"),
        vec![0, 0]
    );
    assert!(ok(store.failure_counts(&[], window, now).await, "counts").is_empty());
    add_failure(store, &[], window, now).await;

    add_failure(store, &keys, window, now).await;
    add_failure(store, std::slice::from_ref(&client_key), window, now).await;
    assert_eq!(
        ok(store.failure_counts(&keys, window, now).await, "counts"),
        vec![2, 1]
    );
    assert_eq!(
        ok(
            store
                .failure_counts(&[source_key.clone(), client_key.clone()], window, now)
                .await,
            "counts"
        ),
        vec![1, 2],
        "one count per key, in the order asked"
    );

    let next = now + window as i64;
    assert_eq!(
        ok(store.failure_counts(&keys, window, next).await, "counts"),
        vec![0, 0],
        "a new window starts from zero"
    );
    add_failure(store, std::slice::from_ref(&source_key), window, next).await;
    assert_eq!(
        ok(store.failure_counts(&keys, window, next).await, "counts"),
        vec![0, 1]
    );
    assert_eq!(
        ok(store.failure_counts(&keys, window, now).await, "counts"),
        vec![2, 1],
        "windows are counted apart"
    );

    // Reservations: all counters or none, and never past a limit.
    let a = format!("client:{}", new_id());
    let b = format!("source:{}", new_id());
    let pair = vec![a.clone(), b.clone()];
    assert!(ok(
        store.reserve_failure(&pair, &[2, 3], window, now).await,
        "reserve"
    ));
    assert!(ok(
        store.reserve_failure(&pair, &[2, 3], window, now).await,
        "reserve"
    ));
    assert!(
        !ok(
            store.reserve_failure(&pair, &[2, 3], window, now).await,
            "reserve"
        ),
        "the first counter is at its limit"
    );
    assert_eq!(
        ok(store.failure_counts(&pair, window, now).await, "counts"),
        vec![2, 2],
        "a refused reservation adds to no counter"
    );
    ok(store.forgive_failure(&pair, window, now).await, "forgive");
    assert_eq!(
        ok(store.failure_counts(&pair, window, now).await, "counts"),
        vec![1, 1]
    );
    for _ in 0..3 {
        ok(store.forgive_failure(&pair, window, now).await, "forgive");
    }
    assert_eq!(
        ok(store.failure_counts(&pair, window, now).await, "counts"),
        vec![0, 0],
        "forgiving never goes below zero"
    );
}

fn audit_event(org: &str, millis: i64, n: usize) -> AuditEvent {
    AuditEvent {
        id: new_sortable_id(millis),
        time: at(n as i64),
        organization_id: Some(org.to_string()),
        actor: "admin:ops".to_string(),
        action: "service_account.create".to_string(),
        target: Some(format!("sa/{n}")),
        outcome: "success".to_string(),
        details: serde_json::json!({ "n": n, "note": "conformance" }),
    }
}

async fn audit_log_is_capped_and_paginated(store: &dyn Store) {
    let org = new_org();
    let other = new_org();
    assert_eq!(
        ok(store.list_audit(&org, 10, None).await, "list"),
        (Vec::new(), false)
    );
    let base = now_unix() * 1000;
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| audit_event(&org, base + i as i64, i))
        .collect();
    // Appended out of order: the log is ordered by id, not by arrival.
    for i in [1, 0, 2, 3, 4] {
        ok(store.append_audit(&org, &events[i], 4).await, "append");
    }
    let newest_first: Vec<AuditEvent> = events[1..].iter().rev().cloned().collect();
    assert_eq!(
        ok(store.list_audit(&org, 10, None).await, "list"),
        (newest_first.clone(), false),
        "the newest `cap` events are kept, newest first"
    );
    assert_eq!(
        ok(store.list_audit(&org, 4, None).await, "list"),
        (newest_first.clone(), false),
        "an exact page has no more"
    );

    let (page, more) = ok(store.list_audit(&org, 2, None).await, "list");
    assert_eq!(page, newest_first[..2].to_vec());
    assert!(more);
    let (page, more) = ok(
        store.list_audit(&org, 2, Some(&page[1].id)).await,
        "list after",
    );
    assert_eq!(
        page,
        newest_first[2..].to_vec(),
        "`after` is exclusive and pages go back in time"
    );
    assert!(!more);
    let (page, more) = ok(
        store.list_audit(&org, 2, Some(&events[1].id)).await,
        "list after the oldest",
    );
    assert!(page.is_empty() && !more);

    let newer = audit_event(&org, base + 100, 9);
    ok(store.append_audit(&org, &newer, 4).await, "append");
    let (page, more) = ok(store.list_audit(&org, 10, None).await, "list");
    assert_eq!(page.len(), 4, "the log stays within its cap");
    assert_eq!(page[0], newer);
    assert!(!page.contains(&events[1]), "the oldest event is dropped");
    assert!(!more);
    assert_eq!(
        ok(store.list_audit(&other, 10, None).await, "list"),
        (Vec::new(), false),
        "logs are per organization"
    );
}

/// Tokens with a one-second TTL put at the start of the run and checked at
/// its end, so the suite waits for expiry only once.
struct ExpiringTokens {
    put_at: Instant,
    org: String,
    sa: ServiceAccount,
    env: Environment,
    short: Vec<String>,
    long: String,
}

impl ExpiringTokens {
    async fn put(store: &dyn Store) -> ExpiringTokens {
        let org = new_org();
        let ws = workspace(&org);
        ok(store.put_workspace(&ws).await, "put_workspace");
        let env = environment(&ws);
        ok(store.put_environment(&env).await, "put_environment");
        let sa = stored_account(store, &org, "expiring").await;
        ok(
            store
                .put_membership(&org, &membership(&ws, &sa, Role::Admin))
                .await,
            "put_membership",
        );
        let put_at = Instant::now();
        let mut short = Vec::new();
        for _ in 0..3 {
            short.push(stored_token(store, &sa, 1).await.0);
        }
        let long = stored_token(store, &sa, 300).await.0;
        ExpiringTokens {
            put_at,
            org,
            sa,
            env,
            short,
            long,
        }
    }

    async fn check(self, store: &dyn Store) {
        let wait = Duration::from_millis(2100).saturating_sub(self.put_at.elapsed());
        tokio::time::sleep(wait).await;
        assert_eq!(
            ok(store.get_token(&self.short[0]).await, "get"),
            None,
            "a token is gone after its TTL"
        );
        assert_eq!(
            ok(
                store
                    .lookup_access(&self.short[0], Some(&self.env.id))
                    .await,
                "lookup"
            ),
            AccessFacts::default()
        );
        assert!(
            !ok(
                store
                    .revoke_token(&self.short[1], &self.org, &self.sa.id)
                    .await,
                "revoke"
            ),
            "an expired token is not revoked"
        );
        assert!(ok(store.get_token(&self.long).await, "get").is_some());
        assert_eq!(
            ok(
                store
                    .revoke_service_account_tokens(&self.org, &self.sa.id)
                    .await,
                "revoke"
            ),
            1,
            "only live tokens are counted as revoked"
        );
        let again = stored_token(store, &self.sa, 300).await.0;
        assert!(ok(store.get_token(&again).await, "get").is_some());
        assert_eq!(
            ok(store.revoke_organization_tokens(&self.org).await, "revoke"),
            1
        );
    }
}

fn admin_key(org: &str, ws: Option<&str>, name: &str) -> StoredAdminKey {
    StoredAdminKey {
        id: new_id(),
        organization_id: org.to_string(),
        workspace_id: ws.map(str::to_string),
        name: name.to_string(),
        secret_hash: format!("$argon2id$v=19$m=64,t=1,p=1$c2FsdA${}", new_id()),
        created_by: "admin:ops".to_string(),
        created_at: at(5),
        last_used_at: None,
        workspace_created_at: None,
    }
}

async fn admin_keys_are_kept_per_organization(store: &dyn Store) {
    let (org, other) = (new_org(), new_org());
    let a = admin_key(&org, None, "org key");
    let b = admin_key(&org, Some("ws-1"), "workspace key");
    let c = admin_key(&other, None, "other org key");
    for k in [&a, &b, &c] {
        ok(store.put_admin_key(k).await, "put_admin_key");
    }
    assert_eq!(
        ok(store.get_admin_key(&b.id).await, "get_admin_key"),
        Some(b.clone())
    );
    assert_eq!(
        ok(store.get_admin_key(&new_id()).await, "get_admin_key"),
        None
    );
    assert_eq!(
        ok(store.list_admin_keys(&org).await, "list_admin_keys"),
        sorted_by_id(&[&a, &b], |k| &k.id)
    );
    assert_eq!(
        ok(store.list_admin_keys(&other).await, "list_admin_keys"),
        vec![c.clone()]
    );

    // last_used_at is kept apart: a later put does not clear it.
    let used = now_unix();
    ok(store.touch_admin_key(&a.id, used).await, "touch_admin_key");
    ok(store.put_admin_key(&a).await, "put_admin_key again");
    let got = ok(store.get_admin_key(&a.id).await, "get_admin_key").expect("the key");
    assert_eq!(got.last_used_at.map(|t| t.unix_timestamp()), Some(used));
    let listed = ok(store.list_admin_keys(&org).await, "list_admin_keys");
    assert_eq!(
        listed
            .iter()
            .find(|k| k.id == a.id)
            .and_then(|k| k.last_used_at),
        got.last_used_at
    );

    // Another organization cannot delete a key; its own can, once.
    assert!(!ok(store.delete_admin_key(&other, &a.id).await, "delete"));
    assert!(ok(store.get_admin_key(&a.id).await, "get").is_some());
    assert!(ok(store.delete_admin_key(&org, &a.id).await, "delete"));
    assert!(!ok(
        store.delete_admin_key(&org, &a.id).await,
        "delete again"
    ));
    assert_eq!(ok(store.get_admin_key(&a.id).await, "get"), None);
    // A deleted key is not brought back by a late touch.
    ok(store.touch_admin_key(&a.id, used).await, "touch deleted");
    assert_eq!(ok(store.get_admin_key(&a.id).await, "get"), None);
    assert_eq!(
        ok(store.list_admin_keys(&org).await, "list_admin_keys"),
        vec![b.clone()]
    );
}

/// Rate counters grant at most the limit per window over all callers;
/// quota counters grant what fits under both periods' limits and count
/// both; an account's limits are kept only while the account exists.
async fn rate_and_quota_counters_and_account_limits(store: &dyn Store) {
    use tollgate::limits::{AccountLimits, Per, PerText, RateOverride};
    use tollgate::store::{QuotaLimits, QuotaUsed};

    // An hour's window: the test does not straddle two unless started in
    // its last seconds, which the lower bound of `reset_ms` tolerates.
    let bucket = format!("route|service_account|1h|{}", new_id());
    let hour = 3_600_000;
    let first = ok(store.take_rate(&bucket, 4, 10, hour).await, "take_rate");
    assert_eq!((first.granted, first.used), (4, 4));
    assert!(first.reset_ms <= hour, "{first:?}");
    let second = ok(store.take_rate(&bucket, 8, 10, hour).await, "take_rate");
    if second.used > 4 {
        assert_eq!((second.granted, second.used), (6, 10));
        let third = ok(store.take_rate(&bucket, 1, 10, hour).await, "take_rate");
        assert_eq!((third.granted, third.used), (0, 10));
        // A raised limit grants again within the window.
        let raised = ok(store.take_rate(&bucket, 5, 12, hour).await, "take_rate");
        assert_eq!((raised.granted, raised.used), (2, 12));
    }
    let other = ok(
        store
            .take_rate(&format!("{bucket}-other"), 3, 10, hour)
            .await,
        "take_rate",
    );
    assert_eq!(other.granted, 3);

    let org = new_org();
    let sa = stored_account(store, &org, "limited").await;
    let now = now_unix();
    let limits = QuotaLimits {
        daily: Some(5),
        monthly: Some(7),
    };
    let g = ok(
        store.take_quota(&org, &sa.id, 3, limits, now).await,
        "take_quota",
    );
    assert_eq!(
        (g.granted, g.used),
        (
            3,
            QuotaUsed {
                daily: 3,
                monthly: 3
            }
        )
    );
    let g = ok(
        store.take_quota(&org, &sa.id, 3, limits, now).await,
        "take_quota",
    );
    assert_eq!(
        (g.granted, g.used),
        (
            2,
            QuotaUsed {
                daily: 5,
                monthly: 5
            }
        )
    );
    let g = ok(
        store.take_quota(&org, &sa.id, 1, limits, now).await,
        "take_quota",
    );
    assert_eq!(g.granted, 0);
    // The next day starts afresh but the month remembers.
    let tomorrow = now + 86_400;
    let g = ok(
        store.take_quota(&org, &sa.id, 9, limits, tomorrow).await,
        "take_quota",
    );
    if g.used.monthly > g.used.daily {
        assert_eq!(
            (g.granted, g.used),
            (
                2,
                QuotaUsed {
                    daily: 2,
                    monthly: 7
                }
            )
        );
    }
    let no_limit = QuotaLimits::default();
    let g = ok(
        store.take_quota(&org, &sa.id, 4, no_limit, now).await,
        "take_quota",
    );
    assert_eq!(g.granted, 4);
    assert_eq!(
        ok(store.quota_usage(&org, &sa.id, now).await, "quota_usage").daily,
        9
    );
    assert_eq!(
        ok(
            store.quota_usage(&new_org(), &sa.id, now).await,
            "quota_usage"
        ),
        QuotaUsed::default()
    );

    let set = AccountLimits {
        rate_limit: Some(RateOverride {
            requests: 50,
            per: PerText(Per::Second),
        }),
        daily_quota: Some(5),
        monthly_quota: None,
    };
    assert_eq!(
        ok(store.get_account_limits(&org, &sa.id).await, "get"),
        None
    );
    assert!(ok(
        store.put_account_limits(&org, &sa.id, &set).await,
        "put"
    ));
    assert_eq!(
        ok(store.get_account_limits(&org, &sa.id).await, "get"),
        Some(set.clone())
    );
    assert!(!ok(
        store.put_account_limits(&org, &new_id(), &set).await,
        "put on a missing account"
    ));
    assert!(!ok(
        store.put_account_limits(&new_org(), &sa.id, &set).await,
        "put in another organization"
    ));
    assert!(ok(
        store.delete_account_limits(&org, &sa.id).await,
        "delete"
    ));
    assert!(!ok(
        store.delete_account_limits(&org, &sa.id).await,
        "delete"
    ));
    assert!(ok(
        store.put_account_limits(&org, &sa.id, &set).await,
        "put"
    ));
    assert!(ok(
        store.delete_service_account(&org, &sa.id).await,
        "delete_service_account"
    ));
    assert_eq!(
        ok(store.get_account_limits(&org, &sa.id).await, "get"),
        None
    );
}
/// The token settings and allowlist live with the account: written by
/// create and update, read back by get, list and the client look-up, and
/// the token record carries its allowlist.
async fn account_policy_is_stored_with_the_account(store: &dyn Store) {
    let org = new_id();
    let mut sa = account(&org, "with-policy");
    sa.policy = AccountPolicy {
        token_ttl_seconds: Some(120),
        max_live_tokens: Some(3),
        token_issue_limit: Some(IssueLimit {
            requests: 5,
            per: Per::Minute,
        }),
        ip_allowlist: vec!["10.0.0.0/8".parse().expect("cidr")],
        ip_allowlist_on_requests: true,
    };
    let cred = credential(&sa, "c");
    ok(store.create_service_account(&sa, &cred).await, "create");
    assert_eq!(
        ok(store.get_service_account(&org, &sa.id).await, "get"),
        Some(sa.clone())
    );
    let found = ok(store.find_client(&cred.client_id).await, "find_client").expect("found");
    assert_eq!(found.service_account.policy, sa.policy);
    sa.policy.ip_allowlist.clear();
    sa.policy.token_issue_limit = None;
    assert!(update_account(store, &sa).await);
    assert_eq!(
        ok(store.list_service_accounts(&org).await, "list"),
        vec![sa.clone()]
    );

    let (hash, mut rec) = token(&sa);
    rec.allowed_sources = Some(vec!["192.0.2.0/24".parse().expect("cidr")].into());
    ok(store.put_token(&hash, &rec, 60, None).await, "put_token");
    assert_eq!(
        ok(store.lookup_access(&hash, None).await, "lookup_access"),
        token_only(&rec)
    );
}

async fn put_limited(
    store: &dyn Store,
    sa: &ServiceAccount,
    ttl: u64,
    limits: TokenLimits,
) -> (TokenPut, String) {
    let (hash, rec) = token(sa);
    let put = ok(
        store
            .put_token_limited(&hash, &rec, ttl, limits, None)
            .await,
        "put_token_limited",
    );
    (put, hash)
}

/// A new token of `sa` stored with an issuer check; whether it was (and
/// the store agrees when asked for it).
async fn put_issued(
    store: &dyn Store,
    sa: &ServiceAccount,
    credential_id: &str,
    generation: u64,
    account_record: &str,
) -> bool {
    let (hash, rec) = token(sa);
    let issuer = Issuer {
        credential_id,
        generation,
        account_record,
    };
    let stored = ok(store.put_token(&hash, &rec, 60, Some(issuer)).await, "put");
    assert_eq!(stored, ok(store.get_token(&hash).await, "get").is_some());
    stored
}

/// The issuer check of a token write: stored while the credential has the
/// generation verified and its account the record read; refused, with
/// nothing stored or counted, once the credential was rotated or deleted,
/// or the account changed (its scopes) or disabled.
async fn a_token_is_stored_only_while_its_issuer_holds(store: &dyn Store) {
    let org = new_org();
    let sa = account(&org, "issuer");
    let cred = credential(&sa, "first");
    ok(store.create_service_account(&sa, &cred).await, "create");
    let read = ok(store.find_client(&cred.client_id).await, "find")
        .expect("found")
        .account_record;
    assert!(put_issued(store, &sa, &cred.id, 0, &read).await);
    // Rotated since the verification: refused, not stored.
    let mut rotated = cred.clone();
    rotated.generation = 1;
    assert!(ok(store.put_credential(&rotated, Some(0)).await, "rotate"));
    assert!(!put_issued(store, &sa, &cred.id, 0, &read).await);
    let limits = TokenLimits {
        max_live: Some(100),
        issue_rate: Some((1, 60_000)),
    };
    let (hash, rec) = token(&sa);
    let stale = Issuer {
        credential_id: &cred.id,
        generation: 0,
        account_record: &read,
    };
    let answer = ok(
        store
            .put_token_limited(&hash, &rec, 60, limits, Some(stale))
            .await,
        "put_limited",
    );
    assert_eq!(answer, TokenPut::IssuerChanged);
    assert!(ok(store.get_token(&hash).await, "get").is_none());
    // Not counted: the one issuance the window allows is still there.
    let fresh = Issuer {
        generation: 1,
        ..stale
    };
    let answer = ok(
        store
            .put_token_limited(&hash, &rec, 60, limits, Some(fresh))
            .await,
        "put_limited",
    );
    assert_eq!(answer, TokenPut::Stored);
    // The account's scopes changed (a revocation comes with it): refused.
    let mut narrowed = sa.clone();
    narrowed.scopes = scopes(&["logs:read"]);
    assert!(update_account(store, &narrowed).await);
    assert!(!put_issued(store, &sa, &cred.id, 1, &read).await);
    let read = ok(store.find_client(&cred.client_id).await, "find")
        .expect("found")
        .account_record;
    assert!(put_issued(store, &sa, &cred.id, 1, &read).await);
    // Disabled: refused, even with the record read after the disable.
    let mut disabled = narrowed.clone();
    disabled.status = SaStatus::Disabled;
    assert!(update_account(store, &disabled).await);
    let read_disabled = ok(store.find_client(&cred.client_id).await, "find")
        .expect("found")
        .account_record;
    assert!(!put_issued(store, &sa, &cred.id, 1, &read_disabled).await);
    // Without an issuer, nothing is checked.
    let (hash, rec) = token(&sa);
    assert!(ok(store.put_token(&hash, &rec, 60, None).await, "put"));
    // The credential deleted: refused.
    assert!(update_account(store, &narrowed).await);
    ok(
        store.delete_credential(&org, &sa.id, &cred.id).await,
        "delete",
    );
    assert!(!put_issued(store, &sa, &cred.id, 1, &read).await);
}

/// `max_live` counts the account's live tokens only: another account's,
/// expired and revoked ones do not count; a refused token is not stored.
async fn live_tokens_are_capped_per_account(store: &dyn Store) {
    let org = new_id();
    let sa = stored_account(store, &org, "capped").await;
    let other = stored_account(store, &org, "other").await;
    let cap = TokenLimits {
        max_live: Some(2),
        issue_rate: None,
    };
    stored_token(store, &other, 60).await;
    stored_token(store, &other, 60).await;
    let (first, first_hash) = put_limited(store, &sa, 60, cap).await;
    assert_eq!(first, TokenPut::Stored);
    let (second, _) = put_limited(store, &sa, 90, cap).await;
    assert_eq!(second, TokenPut::Stored);
    let (third, third_hash) = put_limited(store, &sa, 60, cap).await;
    match third {
        TokenPut::TooManyLive { retry_after_ms } => assert!(
            (55_000..=61_000).contains(&retry_after_ms),
            "the oldest live token expires in about 60 s: {retry_after_ms}"
        ),
        other => panic!("a third live token must be refused, got {other:?}"),
    }
    assert_eq!(
        ok(store.get_token(&third_hash).await, "get_token"),
        None,
        "a refused token is not stored"
    );
    ok(
        store.revoke_token(&first_hash, &org, &sa.id).await,
        "revoke",
    );
    let (after_revoke, _) = put_limited(store, &sa, 60, cap).await;
    assert_eq!(
        after_revoke,
        TokenPut::Stored,
        "a revoked token frees its place"
    );

    let short = stored_account(store, &org, "short").await;
    let (one, _) = put_limited(
        store,
        &short,
        1,
        TokenLimits {
            max_live: Some(1),
            issue_rate: None,
        },
    )
    .await;
    assert_eq!(one, TokenPut::Stored);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (after_expiry, _) = put_limited(
        store,
        &short,
        60,
        TokenLimits {
            max_live: Some(1),
            issue_rate: None,
        },
    )
    .await;
    assert_eq!(
        after_expiry,
        TokenPut::Stored,
        "an expired token frees its place"
    );
}

/// `issue_rate` counts stored issuances of the account within a sliding
/// window; refusals do not count, and the window moves on.
async fn issuance_is_limited_per_account_and_window(store: &dyn Store) {
    let org = new_id();
    let sa = stored_account(store, &org, "limited").await;
    let other = stored_account(store, &org, "unlimited").await;
    let limit = TokenLimits {
        max_live: None,
        issue_rate: Some((3, 1_500)),
    };
    for i in 0..3 {
        let (put, _) = put_limited(store, &sa, 60, limit).await;
        assert_eq!(put, TokenPut::Stored, "issuance {i}");
    }
    for _ in 0..2 {
        match put_limited(store, &sa, 60, limit).await.0 {
            TokenPut::IssueRateLimited { retry_after_ms } => {
                assert!((1..=1_500).contains(&retry_after_ms), "{retry_after_ms}")
            }
            other => panic!("a fourth issuance within the window is refused, got {other:?}"),
        }
    }
    let (others, _) = put_limited(store, &other, 60, limit).await;
    assert_eq!(
        others,
        TokenPut::Stored,
        "another account has its own count"
    );
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (later, _) = put_limited(store, &sa, 60, limit).await;
    assert_eq!(later, TokenPut::Stored, "the window has moved on");
}
