//! The proxy listener: what it decides, what it forwards and how.
//!
//! | module | owns |
//! |---|---|
//! | `engine` | pingora's HTTP/1 sessions: reads a request, asks a [`engine::Gate`], forwards over pooled upstream connections, relays the answer or a WebSocket tunnel |
//! | `gateway` | the [`Gateway`], the engine's `Gate`: built from the parts it uses |
//! | `admit` | per request: facts, request safety, plan, look-up, decision (`decide_request`, shared with the decision listener) |
//! | `ctx` | the per-request state and a tunnel's re-check guard |
//! | `builtin` | what the listener answers itself: token, revocation, metadata, whoami |
//! | `reply` | writing those answers; the one JSON error answer |
//! | `headers` | identity headers, spoofed and override headers, `X-Forwarded-*`, hop-by-hop fields of requests and answers |
//! | `lookup` | the bearer look-up: decision cache, else one store round trip |
//! | `upstream` | upstream peers, load balancing and health checks |
//! | `h2up` | forwarding to HTTP/2 upstreams (`protocol = "h2"`/`"h2c"`, gRPC): pingora's HTTP/2 connector, bodies both ways at once, trailers |
//! | `netaddr` | source addresses, trusted proxies, throttle buckets |
//!
//! Dependencies point one way: `engine` knows only its `Gate` trait and
//! `headers`; `gateway` implements `Gate`; nothing here imports the server module.

mod admit;
mod builtin;
mod ctx;
mod engine;
mod gateway;
mod h2up;
mod headers;
mod lookup;
pub(crate) mod netaddr;
mod reply;
pub mod upstream;

pub(crate) use admit::{apply_limit, decide_request, first_two, Decided};
pub(crate) use engine::Engine;
pub(crate) use gateway::Gateway;
pub(crate) use headers::{Fields, HeaderRules};
