//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod admin;
pub mod audit;
pub mod config;
pub mod hashing;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod netaddr;
pub mod oauth;
pub mod openapi;
pub mod registry;
pub mod scope;
pub mod secret;
pub mod store;
pub mod upstream;
