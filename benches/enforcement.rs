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
    c.bench_function("decide an allowed request (facts, plan, decide)", |b| {
        b.iter(|| {
            let auth = [bearer.as_bytes()];
            let facts = RequestFacts::gather(
                "GET",
                black_box(b"/api/v1/workflows/abc/runs?environmentId=prod"),
                HeaderFacts {
                    authorization: &auth,
                    content_length: false,
                    transfer_encoding: false,
                    host_missing: false,
                },
                false,
            );
            authorize::authorize(
                &facts,
                &set,
                Lookup::Found(&record),
                Some(Lookup::Found(&env)),
                1_000,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
