//! Hot-path pieces in isolation: path normalisation, route matching over 10
//! and 1,000 routes, and the whole decision with its inputs at hand.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::authorize::{self, HeaderFacts, Lookup, RequestFacts};
use tollgate::model::{EnvironmentRef, EnvironmentRole, TokenRecord};
use tollgate::pathnorm::normalize_target;
use tollgate::policy::{load_str, PolicySet};
use tollgate::scope::{default_resources, Role, ScopeSet};

fn routes(n: usize) -> PolicySet {
    let resources = default_resources();
    let mut text = String::new();
    for i in 0..n {
        let resource = &resources[i % resources.len()];
        text.push_str(&format!(
            "[[route]]\nname = \"r{i}\"\nmethods = [\"GET\"]\npath = \"/api/v{i}/{resource}/{{id}}/**\"\nupstream = \"backend\"\nscope = \"{resource}:read\"\nworkspace_role = \"member\"\n\n"
        ));
    }
    #[allow(clippy::expect_used)]
    load_str("bench.toml", &text, &resources, |u| u == "backend").expect("bench policy loads")
}

fn bench(c: &mut Criterion) {
    c.bench_function("normalize a typical target", |b| {
        b.iter(|| {
            normalize_target(
                black_box("/api/v1/workflows/abc/runs?environmentId=prod"),
                false,
            )
        })
    });
    c.bench_function("normalize a hostile target", |b| {
        b.iter(|| normalize_target(black_box("/api/v1/%77orkflows/./a/../b/%7e%41?x=1"), false))
    });

    for n in [10usize, 1000] {
        let set = routes(n);
        let path = format!("/api/v{}/workflows/abc/runs/1", n - 1 - (n - 1) % 7 + 1);
        c.bench_function(&format!("match over {n} routes"), |b| {
            b.iter(|| set.lookup(black_box("GET"), black_box(&path)))
        });
    }

    let set = routes(10);
    let scopes = ScopeSet::from_stored("workflows:write");
    let record = Arc::new(TokenRecord {
        organization_id: "org".into(),
        service_account_id: "sa".into(),
        client_id: "sa_client".into(),
        scopes,
        expires_at: i64::MAX,
        allowed_sources: None,
        header_values: Default::default(),
    });
    let env = EnvironmentRole {
        environment: Some(Arc::new(EnvironmentRef {
            id: "prod".into(),
            workspace_id: "ws".into(),
            organization_id: "org".into(),
            header_values: Default::default(),
        })),
        role: Some(Role::Member),
    };
    let bearer = format!("Bearer tg_at_{}", "a".repeat(43));
    let decide = |set: &PolicySet, record: &Arc<TokenRecord>, target: &[u8]| {
        let auth = [bearer.as_bytes()];
        let facts = RequestFacts::gather(
            "GET",
            black_box(target),
            HeaderFacts {
                authorization: &auth,
                content_length: false,
                transfer_encoding: false,
                host_missing: false,
            },
            false,
        );
        if record.allowed_sources.is_some() {
            let _ = facts.source.set([10, 1, 2, 3].into());
        }
        authorize::authorize(
            &facts,
            set,
            Lookup::Found(record),
            Some(Lookup::Found(&env)),
            1_000,
        )
    };
    c.bench_function("decide an allowed request (facts, plan, decide)", |b| {
        b.iter(|| {
            decide(
                &set,
                &record,
                b"/api/v1/workflows/abc/runs?environmentId=prod",
            )
        })
    });
    // The same request on a route bound to the tenant and the environment
    // in its path, and by a token whose account checks every source.
    let bound = bound_routes();
    let checked = Arc::new(TokenRecord {
        allowed_sources: Some(vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())].into()),
        ..TokenRecord::clone(&record)
    });
    for (set, record, target) in [
        (
            &set,
            &record,
            &b"/api/v1/workflows/abc/runs?environmentId=prod"[..],
        ),
        (&bound, &record, b"/tenants/org/envs/prod/workflows/abc"),
        (
            &set,
            &checked,
            b"/api/v1/workflows/abc/runs?environmentId=prod",
        ),
    ] {
        assert_eq!(
            decide(set, record, target).outcome,
            authorize::Outcome::Allow
        );
    }
    c.bench_function("decide an allowed request on a tenant-bound route", |b| {
        b.iter(|| decide(&bound, &record, b"/tenants/org/envs/prod/workflows/abc"))
    });
    c.bench_function("decide an allowed request with a source allowlist", |b| {
        b.iter(|| {
            decide(
                &set,
                &checked,
                b"/api/v1/workflows/abc/runs?environmentId=prod",
            )
        })
    });
}

fn bound_routes() -> PolicySet {
    let text = "[[route]]\nname = \"bound\"\nmethods = [\"GET\"]\npath = \"/tenants/{tenantId}/envs/{envId}/workflows/**\"\n\
                upstream = \"backend\"\nscope = \"workflows:read\"\nworkspace_role = \"member\"\n\
                organization_param = \"tenantId\"\nenvironment_param = \"envId\"\n";
    #[allow(clippy::expect_used)]
    load_str("bench.toml", text, &default_resources(), |u| u == "backend")
        .expect("bench policy loads")
}

criterion_group!(benches, bench);
criterion_main!(benches);
