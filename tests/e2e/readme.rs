//! The README's commands to run one BFF alone, run as printed from the repository root.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every `cargo run -p …` line of the README's shell blocks, as printed.
fn readme_run_lines() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    readme
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("cargo run -p "))
        .map(|line| line.split(" # ").next().unwrap().trim().to_owned())
        .collect()
}

fn sh(line: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(line).current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

#[test]
fn the_readme_commands_to_run_one_bff_work_as_printed() {
    bff_upstream::tls::install_default_provider();
    let lines = readme_run_lines();
    assert!(lines.len() >= 3, "the README lost its run-alone commands: {lines:?}");
    for line in &lines {
        if line.contains(" routes ") {
            let output = sh(line).output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "`{line}`: {}", String::from_utf8_lossy(&output.stderr));
            assert!(stdout.starts_with("route ") && stdout.lines().count() > 1, "`{line}`: {stdout}");
            continue;
        }
        if line.contains("--check-config") {
            let output = sh(line).output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "`{line}`: {}", String::from_utf8_lossy(&output.stderr));
            assert!(stdout.contains("is valid"), "`{line}`: {stdout}");
            continue;
        }
        // A server: it must come up and answer; then its whole process group is stopped.
        let mut child = sh(line).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0).spawn().unwrap();
        let _stop = StopGroup(child.id());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if event["message"] == "listening" {
                    let _ = tx.send(event["address"].as_str().unwrap_or_default().to_owned());
                }
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(300));
        let answered = address.as_ref().ok().map(|address| {
            let url = format!("http://{address}/healthz");
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) })
        });
        drop(_stop);
        let _ = child.wait();
        let address = address.unwrap_or_else(|_| panic!("`{line}` never logged `listening`"));
        assert_eq!(answered.unwrap().ok(), Some(200), "`{line}` on {address}");
    }
}

/// Stops a process group when dropped, even when an assertion fails first: a server left running
/// would hold its port for the next run.
struct StopGroup(u32);

impl Drop for StopGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0)]).status();
    }
}

/// The bold names of a numbered list in the README section headed `heading`, in order.
fn readme_steps(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("the README has no `{heading}`"));
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|line| line.split_once(". ").is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok()))
        .filter_map(|line| line.split("**").nth(1).map(str::to_owned))
        .collect()
}

/// The inbound stack the README describes is the one the core composes, step for step: the
/// names come from the very function that applies the layers.
#[tokio::test]
async fn the_readme_lists_the_inbound_stack_in_the_order_it_is_composed() {
    bff_upstream::tls::install_default_provider();
    let demo_free = "http://127.0.0.1:9".to_owned();
    let config = bff_gateway::config::from_toml::<mobile_bff::Mobile>(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("bffs/mobile/config.example.toml"))
            .unwrap(),
        Path::new("config.example.toml"),
        [("MOBILE_BFF__AUTH__JWT__JWKS_URL".to_owned(), format!("{demo_free}/.well-known/jwks.json"))],
    )
    .unwrap();
    let (_, composed) = mobile_bff::stack(config).unwrap().compose();
    let documented = readme_steps("## What every request meets");
    assert_eq!(documented, composed, "README.md's inbound stack is not the composed one");
}
