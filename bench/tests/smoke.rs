//! The harness runs every scenario and mode for a moment, so it cannot rot. No timing is asserted:
//! only that each figure is printed and recorded, that every answer was correct (the harness
//! refuses to start when the BFF's answer is not the baseline's, and counts every sampled body that
//! differs), and the counts that do not depend on speed: backend calls and access-log lines per
//! request.

use std::path::PathBuf;
use std::process::Command;

fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bff-bench")).args(args).output().expect("bff-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bff-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The BFF's and the baseline's figures on the row starting with `name`.
fn row(output: &str, name: &str) -> (String, String) {
    let line = output.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no `{name}` row in\n{output}"));
    let mut figures = line[name.len()..].split_whitespace().rev();
    let baseline = figures.next().expect("a baseline figure").to_owned();
    let bff = figures.next().expect("a BFF figure").to_owned();
    (bff, baseline)
}

fn number(figure: &str) -> f64 {
    figure.parse().unwrap_or_else(|_| panic!("`{figure}` is not a number"))
}

fn results_file(scenario: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-results-{scenario}.md"));
    let _ = std::fs::remove_file(&path);
    path
}

fn smoke(scenario: &str, calls_per_request: f64) -> String {
    smoke_with(scenario, calls_per_request, calls_per_request)
}

/// [`smoke`] where the BFF makes `bff_calls` backend calls per request against the baseline's
/// `calls_per_request` (fewer: answered from its cache).
fn smoke_with(scenario: &str, bff_calls_per_request: f64, calls_per_request: f64) -> String {
    let results = results_file(scenario);
    let results_arg = results.to_str().expect("a UTF-8 path");
    let out = bench(&["--scenario", scenario, "--duration", "1s", "--concurrency", "4", "--results", results_arg]);

    for name in [
        "requests/s (closed loop",
        "closed-loop latency p50 ms",
        "closed-loop latency p99.9 ms",
        "CPU per request ms",
        "peak RSS MiB",
    ] {
        let (bff, baseline) = row(&out, name);
        assert!(number(&bff) > 0.0 && number(&baseline) > 0.0, "{name}: {bff} {baseline}\n{out}");
    }
    for name in ["errors (closed loop)", "wrong answers (closed loop)", "open loop at"] {
        let (bff, baseline) = row(&out, name);
        if !name.starts_with("open loop at") {
            assert_eq!((number(&bff), number(&baseline)), (0.0, 0.0), "{name}\n{out}");
        }
    }
    for name in [" errors", " wrong answers"] {
        let line = out.lines().find(|l| l.starts_with("open loop at") && l.contains(&format!("/s:{name}")));
        let line = line.unwrap_or_else(|| panic!("no open-loop{name} row in\n{out}"));
        let zeros: Vec<&str> = line.split_whitespace().rev().take(2).collect();
        assert_eq!(zeros, ["0", "0"], "{line}");
    }
    let (checked, _) = row(&out, "bodies checked (closed loop)");
    assert!(number(&checked) > 0.0, "no body was checked\n{out}");
    assert!(out.contains("all answers correct"), "{out}");
    let (bff_calls, baseline_calls) = row(&out, "backend calls per request");
    assert_eq!(number(&bff_calls), bff_calls_per_request, "{out}");
    assert_eq!(number(&baseline_calls), calls_per_request, "{out}");
    // The production access log is on: exactly one line per request, and none from the baseline.
    let (access, baseline_access) = row(&out, "access-log lines per request");
    assert_eq!((number(&access), number(&baseline_access)), (1.0, 0.0), "{out}");

    let ratios: Vec<&str> = out.lines().filter(|l| l.contains("ratio")).collect();
    assert!(ratios.iter().any(|l| l.starts_with("throughput ratio BFF/baseline: ")), "{out}");
    assert!(ratios.iter().any(|l| l.starts_with("CPU-per-request ratio BFF/baseline: ")), "{out}");
    assert!(out.contains("gateway-added latency at"), "{out}");

    let recorded = std::fs::read_to_string(&results).expect("the results file was written");
    assert!(recorded.contains(&format!("### {scenario} ")), "{recorded}");
    assert!(recorded.contains("CPU-per-request ratio"), "{recorded}");
    out
}

#[test]
fn mobile_home() {
    let out = smoke("mobile-home", 3.0);
    // By default the BFF traces the share of requests the shipped deployments do.
    let deployed: Vec<String> = ["mobile", "web", "partner"]
        .iter()
        .map(|bff| {
            let path = format!("{}/../deploy/k8s/{bff}/configmap.yaml", env!("CARGO_MANIFEST_DIR"));
            let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let line = manifest.lines().find_map(|l| l.trim().strip_prefix("sampling_ratio = "));
            line.unwrap_or_else(|| panic!("no sampling_ratio in {path}")).to_owned()
        })
        .collect();
    assert!(deployed.iter().all(|ratio| ratio == &deployed[0]), "{deployed:?}");
    assert!(out.contains(&format!("traces sampled {}", deployed[0])), "deployed {}\n{out}", deployed[0]);
}

#[test]
fn web_orders_page() {
    // A page of 10 orders of up to 8 items: users, orders, one catalog batch, one inventory batch.
    smoke("web-orders-page", 4.0);
}

#[test]
fn partner_product() {
    smoke("partner-product", 1.0);
}

#[test]
fn product_page() {
    // The first read of the run stores the product; every later one is a cache hit. (Two
    // decimals: one call in a few thousand requests prints as 0.00.)
    smoke_with("product-page", 0.0, 1.0);
}

#[test]
fn auth_reject() {
    smoke("auth-reject", 0.0);
}

#[test]
fn large_token() {
    smoke("large-token", 3.0);
}

#[test]
fn large_document_hit() {
    smoke("large-document-hit", 3.0);
}

#[test]
fn large_document_miss() {
    smoke("large-document-miss", 3.0);
}

#[test]
fn soak_prints_rss_over_time() {
    let results = results_file("soak");
    let out = bench(&["--soak", "3s", "--concurrency", "4", "--results", results.to_str().expect("a UTF-8 path")]);
    let samples = out.lines().filter(|l| l.starts_with("soak t=") && l.contains(" MiB")).count();
    assert!(samples >= 2, "{out}");
    assert!(out.contains("soak rss after warm-up"), "{out}");
    let recorded = std::fs::read_to_string(&results).expect("the results file was written");
    assert!(recorded.contains("### mobile-home soak ") && recorded.contains("soak rss after warm-up"), "{recorded}");
}

#[test]
fn holds_idle_connections() {
    let results = results_file("connections");
    let out = bench(&["--connections", "50", "--results", results.to_str().expect("a UTF-8 path")]);
    assert!(out.contains("50 idle keep-alive connections held (0 failed), 50 open when memory was read"), "{out}");
    assert!(out.contains("with the connections"), "{out}");
    let recorded = std::fs::read_to_string(&results).expect("the results file was written");
    assert!(recorded.contains("### mobile-home connections "), "{recorded}");
}
