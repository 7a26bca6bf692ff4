//! Scale-out tests, in a binary of their own: each starts a NATS JetStream cluster and a
//! handful of tickstream processes, so they run after the other integration tests (cargo runs
//! test binaries one after another) rather than loading the machine beside them.
//!
//! - `nats`: a real NATS JetStream cluster on loopback.
//! - `scale_out`: ingest and analytics nodes on a real three-server cluster against one process.

// The shared support of the integration tests; this binary uses part of it.
#[allow(dead_code, unused_imports)]
#[path = "../it/support/mod.rs"]
mod support;

mod nats;
mod scale_out;
