//! `web-bff --config PATH [--check-config]`: see `config.example.toml`.

fn main() -> std::process::ExitCode {
    bff_gateway::cli::main::<web_bff::Web, _>(web_bff::stack)
}
