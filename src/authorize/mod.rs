//! The enforcement decision of docs/contract.md §5.2 as pure functions. The proxy gathers
//! `RequestFacts`, asks `plan` what to load, loads it, and calls `decide` with
//! the results and the current time; `Denial` is the one mapping to HTTP.

mod decide;
pub mod explain;
pub mod pathnorm;

pub use decide::*;
