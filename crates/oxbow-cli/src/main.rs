//! The plain `oxbow` binary: serves or checks any LoopBack 3 app directory (no Rust plugins).

/// mimalloc: faster small allocations and less fragmentation than glibc for the many
/// short-lived request buffers and long-lived rows (measured in docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    oxbow_cli::run(Vec::new(), None)
}
