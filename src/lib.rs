//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod admin;
pub mod audit;
pub mod authorize;
pub mod bus;
pub mod cache;
pub mod config;
pub mod dev;
pub mod hashing;
pub mod ids;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod openapi;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod server;
pub mod store;

// `tollgate explain` and the request-target rules live in `authorize/`; the
// short paths stay for policy matching, the CLI, the fuzz targets and benches.
pub use authorize::{explain, pathnorm};
