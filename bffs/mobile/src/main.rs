//! `mobile-bff --config PATH [--check-config]`: see `config.example.toml`.

// A request makes many small, short-lived allocations (headers, JSON, GraphQL values, futures):
// mimalloc's per-thread free lists take about a tenth off the BFF's CPU per request against
// glibc's malloc (bff-bench mobile-home), for about 12 MiB more resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bff_gateway::cli::main::<mobile_bff::Mobile, _>(mobile_bff::app)
}
