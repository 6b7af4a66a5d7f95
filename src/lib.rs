//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod ids;
pub mod model;
pub mod netaddr;
pub mod oauth;
pub mod scope;
pub mod secret;
