//! The Redis backend (in progress).
