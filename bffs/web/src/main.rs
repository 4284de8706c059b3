//! `web-bff --config PATH [--check-config]`: see `config.example.toml`.

fn main() -> std::process::ExitCode {
    bff_gateway::cli::main::<web_bff::Config, _>(web_bff::app)
}
