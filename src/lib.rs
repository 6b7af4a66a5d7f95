//! tollgate: a reverse proxy that is a policy enforcement point for machine identities.

pub mod model;
pub mod scope;
pub mod ids;
pub mod secret;
pub mod pathnorm;
pub mod policy;
pub mod authorize;
