//! The integration test binary of the conformance suite (one binary for link time): transcript
//! replay and the boot sequence.

mod boot;
mod conformance;
mod generation;
mod hooks;
mod hostile;
mod include;
mod lbpg;
mod pipeline;
mod remote;
mod robustness;
mod rules;
mod streams;
mod support;
mod twin;
mod validation;
