//! Config files: the shipped examples are valid, and bad files are rejected with key paths.

use std::path::Path;

use bff_gateway::config::{Bff, Config, ConfigError, from_toml};

fn example(bff: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bffs").join(bff).join("config.example.toml")
}

/// The example of BFF `B` as shipped, without environment overrides.
fn shipped<B: Bff>(bff: &str) -> Config<B::Own> {
    let path = example(bff);
    from_toml::<B>(&std::fs::read_to_string(&path).unwrap(), &path, []).unwrap()
}

#[test]
fn the_shipped_example_configs_are_valid() {
    let mobile = shipped::<mobile_bff::Mobile>("mobile");
    assert_eq!(mobile.server.listen_addr().port(), 4101);
    assert_eq!(mobile.server.max_concurrent_requests, 256);
    assert_eq!(mobile.server.header_read_timeout, std::time::Duration::from_secs(10));
    let web = shipped::<web_bff::Web>("web");
    assert_eq!(web.upstreams.get("inventory").unwrap().url.port(), Some(5004));
    let partner = shipped::<partner_bff::Partner>("partner");
    // The example's key hash is the devstack's demo key.
    assert_eq!(partner.auth.api_keys[0].sha256, bff_gateway::auth::ApiKeys::hash(bff_platform::DEMO_PARTNER_API_KEY));
}

fn mobile(text: &str, env: &[(&str, &str)]) -> Result<mobile_bff::Config, ConfigError> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    from_toml::<mobile_bff::Mobile>(text, Path::new("test.toml"), env)
}

fn example_text() -> String {
    std::fs::read_to_string(example("mobile")).unwrap()
}

#[test]
fn unknown_keys_are_reported_with_their_path() {
    let text =
        example_text().replace("request_timeout = \"10s\"", "request_timeout = \"10s\"\nrequest_timout = \"5s\"");
    let error = mobile(&text, &[]).unwrap_err();
    assert!(error.to_string().contains("request_timout"), "{error}");
    assert_eq!(error.keys(), ["server.request_timout"]);
}

#[test]
fn bad_durations_and_urls_are_reported_with_their_path() {
    let text =
        example_text().replace("timeout = \"2s\"\nconnect_timeout", "timeout = \"two seconds\"\nconnect_timeout");
    let error = mobile(&text, &[]).unwrap_err();
    assert_eq!(error.keys(), ["upstreams.users.timeout"], "{error}");

    let text = example_text().replace("url = \"http://127.0.0.1:5005\"", "url = \"not a url\"");
    let error = mobile(&text, &[]).unwrap_err();
    assert_eq!(error.keys(), ["upstreams.recommendations.url"], "{error}");

    let text = example_text().replace("url = \"http://127.0.0.1:5005\"", "url = \"ftp://127.0.0.1:5005\"");
    let error = mobile(&text, &[]).unwrap_err();
    assert_eq!(error.keys(), ["upstreams.recommendations.url"], "{error}");
}

#[test]
fn every_validation_problem_is_reported_at_once() {
    let text = example_text()
        .replace("body_limit_bytes = 262144", "body_limit_bytes = 10")
        .replace("audience = \"mobile\"", "audience = \"\"");
    let error = mobile(&text, &[]).unwrap_err();
    assert_eq!(error.keys(), ["server.body_limit_bytes", "auth.jwt.audience"], "{error}");
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let config = mobile(
        &example_text(),
        &[
            ("MOBILE_BFF__SERVER__LISTEN", "0.0.0.0:9000"),
            ("MOBILE_BFF__UPSTREAMS__USERS__TIMEOUT", "750ms"),
            ("OTHER", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.listen_addr().to_string(), "0.0.0.0:9000");
    assert_eq!(config.upstreams.get("users").unwrap().timeout, std::time::Duration::from_millis(750));

    let error = mobile(&example_text(), &[("MOBILE_BFF__SERVER__REQUEST_TIMEOUT", "soon")]).unwrap_err();
    assert_eq!(error.keys(), ["server.request_timeout"], "{error}");
}

#[test]
fn devstack_defaults_and_overrides() {
    use bff_platform::StackConfig;

    let args = |list: &[&str]| StackConfig::from_args(list.iter().map(|s| (*s).to_owned()));
    let defaults = args(&[]).unwrap();
    assert_eq!((defaults.mobile_port, defaults.web_port, defaults.partner_port), (4001, 4002, 4003));
    assert_eq!(defaults.demo.ports.control, 5999);
    assert_eq!(defaults.upstream_timeout, std::time::Duration::from_secs(2));
    assert_eq!(defaults.partner_api_key, "demo-partner-key");

    let custom = args(&[
        "--mobile-port",
        "7001",
        "--orders-port",
        "7103",
        "--upstream-timeout",
        "750ms",
        "--partner-api-key",
        "k",
    ])
    .unwrap();
    assert_eq!(custom.mobile_port, 7001);
    assert_eq!(custom.demo.ports.orders, 7103);
    assert_eq!(custom.upstream_timeout, std::time::Duration::from_millis(750));
    assert_eq!(custom.partner_api_key, "k");

    for bad in [&["--mobile-port", "70000"][..], &["--upstream-timeout", "soon"], &["--nope", "1"], &["--web-port"]] {
        assert!(args(bad).is_err(), "{bad:?}");
    }
}
