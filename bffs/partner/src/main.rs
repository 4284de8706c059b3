//! `partner-bff --config PATH [--check-config]`: see `config.example.toml`.

// mimalloc, tuned to give memory back: see `bff_allocator` for the measurements.
#[global_allocator]
static ALLOCATOR: bff_allocator::Allocator = bff_allocator::Allocator;

fn main() -> std::process::ExitCode {
    bff_allocator::configure();
    bff_gateway::cli::main::<partner_bff::Partner, _>(partner_bff::stack)
}
