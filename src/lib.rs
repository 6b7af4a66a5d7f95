//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod config;
pub mod ids;
pub mod model;
pub mod scope;
pub mod secret;
pub mod store;
