#![allow(clippy::unwrap_used)]

//! The binary's contract: `--check-config` validates and exits; a bad file exits non-zero and
//! names the key. (The CLI is shared gateway code; the mobile binary stands in for all three.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mobile-bff")).args(args).env_remove("MOBILE_BFF__SERVER__LISTEN").output().unwrap()
}

#[test]
fn check_config_accepts_the_example() {
    let output = run(&["--config", example().to_str().unwrap(), "--check-config"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("is valid"));
}

#[test]
fn check_config_rejects_a_bad_file_naming_the_key() {
    let bad = std::env::temp_dir().join(format!("mobile-bad-{}.toml", std::process::id()));
    let text =
        std::fs::read_to_string(example()).unwrap().replace("request_timeout = \"10s\"", "request_timeout = \"ten\"");
    std::fs::write(&bad, text).unwrap();
    let output = run(&["--config", bad.to_str().unwrap(), "--check-config"]);
    std::fs::remove_file(&bad).ok();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.request_timeout"), "{stderr}");
}

#[test]
fn missing_config_is_a_usage_error() {
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}
