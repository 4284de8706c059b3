//! `mobile-bff --config PATH [--check-config]`: see `config.example.toml`.

fn main() -> std::process::ExitCode {
    bff_gateway::cli::main::<mobile_bff::Mobile, _>(mobile_bff::stack)
}
