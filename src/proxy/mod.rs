//! The proxy listener: what it decides, what it forwards and how.
//!
//! | module | owns |
//! |---|---|
//! | `gateway` | the per-request entry: facts, plan, look-up, decision |
//! | `engine` | forwarding over pingora's HTTP/1 sessions |
//! | `lookup` | the decision cache or one store round trip |
//! | `upstream` | upstream peers, load balancing and health checks |
//! | `netaddr` | source addresses, trusted proxies, throttle buckets |

pub mod engine;
pub mod gateway;
pub mod lookup;
pub mod netaddr;
pub mod upstream;

pub use engine::Engine;
pub use gateway::Gateway;
