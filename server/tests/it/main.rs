//! The default app's end-to-end tests, in one test binary (one link instead of three): the
//! real `oxbow-default-app` binary on real sockets, its change streams, and its live page in
//! a real browser.

mod browser;
mod change_stream;
mod common;
mod e2e;
