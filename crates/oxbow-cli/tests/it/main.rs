//! The process-level tests of the `oxbow` binary, in one test binary (one link of actix and
//! tokio-postgres instead of three): `check`, `serve` and `routes`, crash safety, several
//! instances on one PostgreSQL.

mod cli;
mod common;
mod crash;
mod event_rights;
mod hostile;
mod instances;
