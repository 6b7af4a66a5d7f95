//! The integration suite: one test binary that starts the real tollgate
//! binary, a real Redis and real upstreams on free loopback ports through
//! one harness (`common`). One binary rather than one per file: each item
//! of the harness is used here, so dead code in it is reported, and the
//! suite links once instead of once per file.
//!
//! A module a file: `cargo test --test integration oauth::` runs one of them.

mod common;

mod account_tokens;
mod admin_api;
mod browser;
mod cli;
mod cluster;
mod console;
mod decisions;
mod enforcement;
mod forwarding;
mod grpc;
mod harness;
mod http2;
mod instances;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod oauth;
mod oauth_client;
mod openapi;
mod outage;
mod rate_limits;
mod reload;
mod tenancy;
mod tenant_admin;
mod tls;
mod upstream_frameworks;
