//! `partner-bff --config PATH [--check-config]`: see `config.example.toml`.

fn main() -> std::process::ExitCode {
    bff_gateway::cli::main::<partner_bff::Partner, _>(partner_bff::stack)
}
