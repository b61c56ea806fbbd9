//! The integration test binary of oxbow (one binary for link time): transcript replay, the
//! default app end to end over real sockets, and config error cases.

mod conformance;
mod e2e;
