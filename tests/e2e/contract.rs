//! The partner API against its own published contract, checked by a property-based fuzzer:
//! schemathesis reads `/v1/openapi.json` and `/v2/openapi.json` from the running BFF, sends what
//! they allow and what they do not, alone and in sequences that follow the links between
//! operations (stateful), and checks every answer against the document (`--checks all`): never a
//! 5xx; only declared statuses, content types and headers; bodies that match their schemas;
//! schema-valid requests accepted and invalid ones refused; every operation refusing a missing or
//! bad credential. Seeded and bounded, so a run is repeatable and short.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::support::{TestStack, at};

/// The schemathesis release this test is written against: another one generates other requests
/// from the same seed, so the run would not be the one CI makes.
const SCHEMATHESIS_VERSION: &str = "4.32.5";
const INSTALL_HINT: &str = "install with: python3 -m pip install schemathesis==4.32.5 (.ci/run installs it)";
/// Printed by the launcher when schemathesis is missing or not the pinned release.
const NOT_INSTALLED: &str = "schemathesis-not-installed:";
const SEED: &str = "20261201";
/// Test cases per operation and phase: enough to reach every status each operation declares.
const MAX_EXAMPLES: &str = "25";

/// Runs the pinned schemathesis CLI with the arguments after the version, or says what is wrong.
const LAUNCHER: &str = r#"
import importlib.metadata, sys
try:
    installed = importlib.metadata.version("schemathesis")
except importlib.metadata.PackageNotFoundError:
    installed = None
if installed != sys.argv[1]:
    print(f"schemathesis-not-installed: found {installed or 'none'}, need {sys.argv[1]}")
    sys.exit(3)
from schemathesis.cli import schemathesis
sys.argv = ["schemathesis", *sys.argv[2:]]
schemathesis()
"#;

/// What schemathesis cannot learn from the documents: the credential, and data that only the
/// server issues. `{cursor}` is a cursor the API issued in this run.
///
/// - A `cursor` is one a previous page handed out (the document says so; no schema can). An
///   invented one is refused with 400, as declared, so lists start from an issued cursor.
/// - Products come from the catalog: fuzzing and stateful sequences order and read real ones, so
///   orders are placed and the links from `createOrder` lead to real orders.
/// - `createOrder` refuses some well-formed requests because of state, each with a status its
///   document declares: 422 for an `Idempotency-Key` sent again with another body (as the IETF
///   Idempotency-Key draft says); and, in the coverage phase only (it takes no test data and
///   invents product ids), 400 for a product the orders service does not sell. Schemathesis's
///   defaults accept only 404 and 409 for refusals of valid data.
/// - Any operation may answer 429 when the fuzzing outruns the demo plan's quota (50 a second):
///   a documented refusal of valid data, with its headers.
const CONFIG: &str = r#"
[auth.openapi.apiKey]
api_key = "${PARTNER_API_KEY}"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "429"]

[dictionaries.products]
values = ["p-1", "p-2", "p-3", "p-7", "p-42"]

[parameters]
"query.cursor" = "{cursor}"
"body.lines[*].productId" = { dictionary = "products" }
"body.items[*].product_id" = { dictionary = "products" }

[[operations]]
include-operation-id = "getProduct"
parameters = { "path.id" = { dictionary = "products", probability = 0.5 } }

[[operations]]
include-operation-id = "getStock"
parameters = { "path.id" = { dictionary = "products", probability = 0.5 } }

[[operations]]
include-operation-id = "createOrder"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
phases.coverage.checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]
"#;

#[tokio::test]
async fn the_partner_api_keeps_its_published_contract() {
    let t = TestStack::start().await;
    let cursor = issued_cursor(&t).await;
    let dir = std::env::temp_dir().join(format!("partner-contract-{}-{}", std::process::id(), SEED));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG.replace("{cursor}", &cursor)).unwrap();

    // Both versions at once: each run is mostly one Python thread, and there are two cores.
    let started = Instant::now();
    let runs: Vec<_> = ["v1", "v2"]
        .into_iter()
        .map(|version| {
            let url = format!("http://{}/{version}/openapi.json", t.stack.partner);
            let child = schemathesis(&dir, &config, &url);
            (version, tokio::task::spawn_blocking(move || child.wait_with_output()))
        })
        .collect();
    let mut failed = Vec::new();
    for (version, run) in runs {
        let output = run.await.unwrap().unwrap_or_else(|e| panic!("schemathesis ({version}): {e}; {INSTALL_HINT}"));
        let printed = printed(&output);
        assert!(!printed.contains(NOT_INSTALLED), "{}; {INSTALL_HINT}", printed.trim());
        if !output.status.success() {
            failed.push(format!("== {version} ({}):\n{printed}", output.status));
        }
    }
    assert!(failed.is_empty(), "schemathesis found the partner API breaking its contract:\n{}", failed.join("\n"));
    println!("schemathesis: v1 and v2 in {:.1?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cursor the API issued, from a one-order page of the partner's own orders.
async fn issued_cursor(t: &TestStack) -> String {
    let key = ("x-api-key", bff_platform::DEMO_PARTNER_API_KEY);
    for product in ["p-1", "p-2"] {
        let body = json!({ "lines": [{ "productId": product, "quantity": 1 }] });
        let request = t.http.post(TestStack::url(t.stack.partner, "/v2/orders")).header(key.0, key.1).json(&body);
        let reply = TestStack::reply(request).await;
        assert_eq!(reply.status, 201, "{:#}", reply.body);
    }
    let page = t.get(t.stack.partner, "/v1/orders?limit=1&fields=id", &[key]).await;
    assert_eq!(page.status, 200, "{:#}", page.body);
    at(&page.body, "/next_cursor").as_str().expect("a next cursor").to_owned()
}

fn schemathesis(dir: &Path, config: &Path, url: &str) -> std::process::Child {
    Command::new("python3")
        .args(["-c", LAUNCHER, SCHEMATHESIS_VERSION, "--config-file"])
        .arg(config)
        .args(["run", url, "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES, "--workers", "1"])
        // Nothing kept between runs, so every run is the same one; and no color in the log.
        .args(["--generation-database", "none", "--no-color", "--output-sanitize", "false"])
        // A busy machine is not a finding.
        .args(["--suppress-health-check", "too_slow", "--request-timeout", "10"])
        .env("PARTNER_API_KEY", bff_platform::DEMO_PARTNER_API_KEY)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"))
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
