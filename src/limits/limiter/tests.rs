use std::sync::Arc;

use super::*;
use crate::limits::{PerText, RateOverride};
use crate::policy::load_str;
use crate::scope::default_resources;
use crate::store::memory::MemoryStore;

fn routes() -> crate::policy::PolicySet {
    load_str(
        "t.toml",
        "[[route]]\nname = \"limited\"\npath = \"/a\"\nupstream = \"u\"\nscope = \"logs:read\"\n\
         rate_limit = { requests = 20, per = \"1h\", by = \"service_account\" }\n\
         [[route]]\nname = \"free\"\npath = \"/b\"\nupstream = \"u\"\nscope = \"logs:read\"\n\
         [[route]]\nname = \"big\"\npath = \"/c\"\nupstream = \"u\"\nscope = \"logs:read\"\n\
         rate_limit = { requests = 100000, per = \"1h\", by = \"client\" }\n",
        &default_resources(),
        |_| true,
    )
    .expect("valid")
}

fn caller(sa: &str) -> TokenRecord {
    TokenRecord {
        organization_id: "o".into(),
        service_account_id: sa.into(),
        client_id: format!("sa_{sa}"),
        scopes: Default::default(),
        expires_at: i64::MAX,
        header_values: Default::default(),
        allowed_sources: None,
    }
}

fn limiter(store: Arc<MemoryStore>) -> Limiter {
    Limiter::new(store, LimitsConfig::default())
}

#[tokio::test]
async fn a_route_without_a_limit_is_decided_in_memory_once_the_account_was_read() {
    let set = routes();
    let free = set.route("free").expect("route");
    let l = limiter(Arc::new(MemoryStore::new()));
    let who = caller("s1");
    // Nothing read yet: the account's settings need the store once.
    assert_eq!(l.check_now(free, Some(&who), None, 0), None);
    assert_eq!(l.check(free, Some(&who), None, 0).await, Verdict::Unlimited);
    for _ in 0..100 {
        assert_eq!(
            l.check_now(free, Some(&who), None, 0),
            Some(Verdict::Unlimited)
        );
    }
    // No token, no limit: nothing to look up at all.
    assert_eq!(l.check_now(free, None, None, 0), Some(Verdict::Unlimited));
}

#[tokio::test]
async fn leased_units_are_spent_in_memory_and_the_limit_holds() {
    let set = routes();
    let limited = set.route("limited").expect("route");
    let store = Arc::new(MemoryStore::new());
    let l = limiter(store.clone());
    let who = caller("s2");
    let mut allowed = 0;
    for _ in 0..30 {
        let v = match l.check_now(limited, Some(&who), None, 0) {
            Some(v) => v,
            None => l.check(limited, Some(&who), None, 0).await,
        };
        match v {
            Verdict::Ok => allowed += 1,
            Verdict::Limited(r) => {
                assert_eq!(
                    (r.exceeded, r.limit, r.window_secs),
                    (Exceeded::Rate, 20, 3600)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allowed, 20);
    // Far from a limit, leases are large: almost every request is decided
    // in memory.
    let big = set.route("big").expect("route");
    let mut in_memory = 0;
    for _ in 0..1000 {
        let v = match l.check_now(big, Some(&who), None, 0) {
            Some(v) => {
                in_memory += 1;
                v
            }
            None => l.check(big, Some(&who), None, 0).await,
        };
        assert_eq!(v, Verdict::Ok);
    }
    assert!(
        in_memory >= 980,
        "only {in_memory} of 1000 decided in memory"
    );
    // Another account has its own counter.
    assert_eq!(
        l.check(limited, Some(&caller("s3")), None, 0).await,
        Verdict::Ok
    );
}

#[tokio::test]
async fn an_override_applies_to_its_account_and_a_quota_refuses_when_used_up() {
    let set = routes();
    let (limited, free) = (
        set.route("limited").expect("r"),
        set.route("free").expect("r"),
    );
    let store = Arc::new(MemoryStore::new());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sa = crate::model::ServiceAccount {
        id: "s4".into(),
        organization_id: "o".into(),
        name: "n".into(),
        description: None,
        scopes: Default::default(),
        status: crate::model::SaStatus::Active,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
        policy: Default::default(),
    };
    let cred = crate::model::StoredCredential {
        id: "c".into(),
        organization_id: "o".into(),
        service_account_id: "s4".into(),
        client_id: "sa_s4".into(),
        name: "c".into(),
        description: None,
        secret_hash: String::new(),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        secret_check: None,
        previous_secret_check: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        last_used_at: None,
        generation: 0,
    };
    store
        .create_service_account(&sa, &cred)
        .await
        .expect("create");
    let limits = AccountLimits {
        rate_limit: Some(RateOverride {
            requests: 2,
            per: PerText(Per::Minute),
        }),
        daily_quota: Some(3),
        monthly_quota: None,
    };
    assert!(store
        .put_account_limits("o", "s4", &limits)
        .await
        .expect("put"));
    let l = limiter(store.clone());
    let who = caller("s4");
    assert_eq!(l.check(limited, Some(&who), None, now).await, Verdict::Ok);
    assert_eq!(l.check(limited, Some(&who), None, now).await, Verdict::Ok);
    match l.check(limited, Some(&who), None, now).await {
        Verdict::Limited(r) => assert_eq!(
            (r.exceeded, r.limit, r.window_secs),
            (Exceeded::Rate, 2, 60)
        ),
        other => panic!("{other:?}"),
    }
    // Two forwarded so far count against the quota of 3.
    assert_eq!(l.check(free, Some(&who), None, now).await, Verdict::Ok);
    match l.check(free, Some(&who), None, now).await {
        Verdict::Limited(r) => {
            assert_eq!(r.exceeded, Exceeded::Quota(Period::Daily));
            assert_eq!((r.limit, r.window_secs), (3, 86_400));
            assert!(r.reset <= Duration::from_secs(86_400));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .quota_usage("o", "s4", now)
            .await
            .expect("usage")
            .daily,
        3
    );
}
