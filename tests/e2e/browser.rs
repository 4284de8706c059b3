//! GraphiQL in a real browser. Headless Chromium is driven through chromedriver's W3C WebDriver
//! HTTP API on reqwest, with no Selenium. The page and its assets come from the BFF itself
//! (shared/gateway/assets/graphiql/), so the test also shows that GraphiQL needs no CDN.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

const INSTALL_HINT: &str = "install with: apt-get install -y chromium chromium-driver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key under which WebDriver returns an element reference (fixed by the W3C spec).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);

/// Selectors in graphiql 3.9.0's DOM. They change between GraphiQL versions.
const EXECUTE_BUTTON: &str = ".graphiql-execute-button";
const RESPONSE_PANE: &str = ".graphiql-response";

pub struct WebDriver {
    http: reqwest::Client,
    base: String,
    session: String,
    port: u16,
    driver: Child,
}

impl WebDriver {
    /// Spawns chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Self {
        // The workspace's reqwest is built without a default rustls provider.
        bff_upstream::tls::install_default_provider();
        assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} not found; {INSTALL_HINT}");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromedriver ({e}); {INSTALL_HINT}"));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a reqwest client");
        let base = format!("http://127.0.0.1:{port}");
        let mut webdriver = Self { http, base, session: String::new(), port, driver };

        // chromedriver needs a moment before it listens.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let status = webdriver.call(Method::GET, "/status", None).await;
            if status.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready on port {port} after {TIMEOUT:?}");
            tokio::time::sleep(POLL).await;
        }

        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"],
            },
        }}});
        let session = webdriver.call(Method::POST, "/session", Some(capabilities)).await.expect("a browser session");
        webdriver.session = session["sessionId"].as_str().expect("a session id").to_owned();
        webdriver
    }

    /// One WebDriver command. Returns its `value`, or the error WebDriver sent back.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let mut reply: Value = response.json().await.map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {reply}"));
        }
        Ok(reply.get_mut("value").map(Value::take).unwrap_or_default())
    }

    /// A command on this session that must succeed.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await.unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    pub async fn navigate(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// The first element matching `css`. Waits for it, because React renders after page load.
    pub async fn find(&self, css: &str) -> String {
        let body = json!({ "using": "css selector", "value": css });
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let path = format!("/session/{}/element", self.session);
            if let Ok(found) = self.call(Method::POST, &path, Some(body.clone())).await {
                return found[ELEMENT_KEY].as_str().expect("an element reference").to_owned();
            }
            assert!(Instant::now() < deadline, "no element matches {css:?} after {TIMEOUT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn click(&self, element: &str) {
        self.command(Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    pub async fn text(&self, element: &str) -> String {
        let text = self.command(Method::GET, &format!("/element/{element}/text"), None).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.command(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let png = self.command(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64 text")).expect("a base64 PNG")
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        // Killing chromedriver alone leaves Chromium running, so end the session first. That
        // closes the browser. Drop cannot await, so this is a plain blocking HTTP request.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read(&mut [0u8; 1024]);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Opens the BFF's GraphiQL at `{base_url}/graphql`, with `query` in the query editor and
/// `Authorization: Bearer {token}` in the header editor (both from the URL). Clicks Execute,
/// waits until the response pane shows `expect_text` and saves a screenshot.
pub async fn run_graphiql_query(base_url: &str, token: &str, query: &str, expect_text: &str, screenshot_path: &Path) {
    let headers = json!({ "Authorization": format!("Bearer {token}") }).to_string();
    let page = reqwest::Url::parse_with_params(
        &format!("{base_url}/graphql"),
        [("query", query), ("headers", headers.as_str())],
    )
    .expect("a valid base URL");

    let browser = WebDriver::start().await;
    browser.navigate(page.as_str()).await;
    let execute = browser.find(EXECUTE_BUTTON).await;

    // GraphiQL shows a failed introspection in the response pane. The expected text must
    // appear only because of the click.
    let before = browser.text(&browser.find(RESPONSE_PANE).await).await;
    assert!(!before.contains(expect_text), "the response pane shows {expect_text:?} before Execute: {before}");

    browser.click(&execute).await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // Look the pane up again each time: React may replace the element.
        let text = browser.text(&browser.find(RESPONSE_PANE).await).await;
        if text.contains(expect_text) {
            break;
        }
        if Instant::now() >= deadline {
            std::fs::write(screenshot_path, browser.screenshot().await).expect("the screenshot is written");
            panic!(
                "no {expect_text:?} in the response pane after {TIMEOUT:?}: {text}; see {}",
                screenshot_path.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }

    // Every resource the page loaded came from the BFF: no CDN (data: fonts are not listed).
    let foreign = browser
        .execute("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))")
        .await;
    assert_eq!(foreign, json!([]), "GraphiQL loaded resources from another origin");

    std::fs::write(screenshot_path, browser.screenshot().await).expect("the screenshot is written");
}
