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

/// Signing keys fetched over plain http from another host could be swapped by anyone on the path.
#[test]
fn check_config_refuses_a_plain_http_jwks_off_loopback() {
    let bad = std::env::temp_dir().join(format!("mobile-jwks-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("jwks_url = \"http://127.0.0.1:5000/", "jwks_url = \"http://idp.example.com/");
    assert!(text.contains("http://idp.example.com/"), "the example's jwks_url moved");
    std::fs::write(&bad, text).unwrap();
    let output = run(&["--config", bad.to_str().unwrap(), "--check-config"]);
    std::fs::remove_file(&bad).ok();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.jwt.jwks_url") && stderr.contains("https"), "{stderr}");
}

#[test]
fn missing_config_is_a_usage_error() {
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

/// The binary really serves: started on a free port, it answers `/healthz`, and SIGTERM stops
/// it cleanly.
#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let config = std::env::temp_dir().join(format!("mobile-serve-{}.toml", std::process::id()));
    let text =
        std::fs::read_to_string(example()).unwrap().replace("listen = \"127.0.0.1:4101\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mobile-bff"))
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("the binary logs its address before anything else").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["message"] == "listening" {
            break event["address"].as_str().unwrap().to_owned();
        }
    };
    std::fs::remove_file(&config).ok();

    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: bff\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("x-request-id"), "{response}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    // Logs are written off the request path; what was logged up to the exit still reaches stdout.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("draining")), "{rest:?}");
}

/// `healthcheck` (the image's HEALTHCHECK, which has no shell or curl) asks the admin listener
/// the config names: 0 while the BFF serves, even when the file has since been broken by an edit
/// a reload would refuse; 1 once it has stopped.
#[test]
fn healthcheck_says_whether_the_configured_bff_answers() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (public, admin) = (free(), free());
    let config = std::env::temp_dir().join(format!("mobile-health-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("listen = \"127.0.0.1:4101\"", &format!("listen = \"{public}\""))
        .replace("admin_listen = \"127.0.0.1:9101\"", &format!("admin_listen = \"{admin}\""));
    assert!(text.contains(&admin.to_string()), "the example's admin_listen moved");
    std::fs::write(&config, &text).unwrap();
    let healthcheck = || run(&["healthcheck", "--config", config.to_str().unwrap()]);
    assert_eq!(healthcheck().status.code(), Some(1), "nothing serves yet");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mobile-bff"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next().expect("the binary logs its listeners").unwrap().contains("admin listening") {}
    let healthy = healthcheck();
    assert_eq!(healthy.status.code(), Some(0), "{}", String::from_utf8_lossy(&healthy.stderr));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains(&admin.to_string()), "it asked the admin listener");
    std::fs::write(&config, text.replace("request_timeout = \"10s\"", "request_timeout = \"ten\"")).unwrap();
    assert_eq!(healthcheck().status.code(), Some(0), "a broken edit is not a dead replica");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    assert_eq!(healthcheck().status.code(), Some(1), "stopped");
    std::fs::remove_file(&config).ok();
}
