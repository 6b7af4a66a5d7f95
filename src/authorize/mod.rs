//! The enforcement decision of docs/contract.md §5.2 as pure functions. The proxy gathers
//! `RequestFacts`, asks `plan` what to load, loads it, and calls `decide` with
//! the results and the current time; `Denial` is the one mapping to HTTP.
//!
//! - `facts`: what the request says (bearer, query, headers);
//! - `binding`: a route's `organization_param` and `environment_param`;
//! - `decide`: the two phases, `plan` and `decide`, and their steps;
//! - `outcome`: `Decision`, `DenyReason`, `RequestProblem`, `Denial`;
//! - `explain`: `tollgate explain`, the decision printed step by step;
//! - `pathnorm`: request-target safety and normalisation (step 1).

mod binding;
mod decide;
pub mod explain;
mod facts;
mod outcome;
pub mod pathnorm;

pub use decide::{authorize, Lookup};
pub(crate) use decide::{check_request, check_source, decide, plan, Load, Plan};
pub use facts::{
    parse_bearer, parse_query, Bearer, EnvironmentParam, HeaderFacts, QueryFacts, RequestFacts,
};
pub(crate) use outcome::Denial;
pub use outcome::{Decision, DenyReason, Identity, Outcome, RequestProblem, WorkspaceIdentity};

#[cfg(test)]
mod tests;
