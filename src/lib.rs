//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod account_policy;
pub(crate) mod admin;
pub(crate) mod audit;
pub mod authorize;
pub(crate) mod bus;
pub(crate) mod cache;
pub mod config;
pub(crate) mod console;
pub mod decisions;
pub mod dev;
pub(crate) mod errors;
pub(crate) mod hangup;
pub(crate) mod hashing;
pub mod ids;
pub mod limits;
pub(crate) mod listen;
pub(crate) mod metrics;
pub mod model;
pub mod oauth;
pub(crate) mod openapi;
pub mod policy;
pub(crate) mod proxy;
pub(crate) mod registry;
pub mod runtime;
pub mod scope;
pub mod secret;
pub mod server;
pub mod store;
pub mod tls;

// `tollgate explain` and the request-target rules live in `authorize/`; the
// short paths stay for policy matching, the CLI, the fuzz targets and benches.
pub use authorize::{explain, pathnorm};
