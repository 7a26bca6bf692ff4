//! The dashboard in a real browser: Debian's Chromium driven over WebDriver (chromedriver) by
//! fantoccini, against the service replaying a recorded day with the golden alert rules.
//!
//! It loads `/`, sees the watchlist move, filters it from the keyboard, opens a symbol, switches
//! the interval and sees a bar close and the indicator pane fill, sees alerts arrive (each one
//! the service fired), stops and restarts the service and sees the page recover by itself, and
//! fails on any console error but the refused connections of the deliberate outage. Screenshots
//! go to `target/tmp/dashboard/`.
//!
//! `.ci/run` installs `chromium` and `chromium-driver` and sets `TICKSTREAM_BROWSER_TESTS=1`,
//! which makes a missing driver a failure; elsewhere the test says it was skipped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tickstream::config::ServeArgs;

use crate::alerts::{equities_with_rules, golden, rule_args};
use crate::support::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The service's API token in the first test: rule edits need it.
const TOKEN: &str = "dashboard-test-token";

/// A chromedriver process on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_driver() -> Option<Driver> {
    let required = std::env::var_os("TICKSTREAM_BROWSER_TESTS").is_some();
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "TICKSTREAM_BROWSER_TESTS is set but {CHROMEDRIVER} or {CHROMIUM} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "SKIPPED: the dashboard's browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver); CI runs it"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{}/status", driver.url)).send().await
            && response.status().is_success()
        {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

async fn open_browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The browser's console entries since the last call (chromedriver's log endpoint).
async fn console(driver: &Driver, browser: &Client) -> Vec<Value> {
    let session = browser
        .session_id()
        .await
        .expect("session id")
        .expect("a session");
    let response = reqwest::Client::new()
        .post(format!("{}/session/{session}/se/log", driver.url))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .expect("log endpoint");
    let body: Value = response.json().await.expect("log JSON");
    body["value"].as_array().cloned().unwrap_or_default()
}

fn severe(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect()
}

/// A JavaScript expression's value, polled until `ready` accepts it (a safety limit only).
async fn wait_until(
    browser: &Client,
    what: &str,
    script: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..1200 {
        last = browser
            .execute(&format!("return ({script});"), vec![])
            .await
            .expect("script runs");
        if ready(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: still {last} after 120 s");
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

async fn screenshot(browser: &Client, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = browser.screenshot().await.expect("screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

/// The service replaying the recorded day with the golden rules, paced so the page sees it
/// move: a 6.5-hour session in about 80 s, a 1-minute bar closing every 0.2 s.
async fn service(address: Option<SocketAddr>) -> TestApp {
    let golden = golden();
    TestApp::spawn(ServeArgs {
        speed: Some("300".into()),
        max_pause: Some("50ms".into()),
        listen: address.map(|a| a.to_string()),
        api_token: Some(TOKEN.into()),
        ..equities_with_rules(rule_args(&golden))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_market_live_and_recovers_from_a_restart() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let app = service(None).await;
    let address = app.address;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = open_browser(&driver, profile.path()).await;
    browser.goto(&app.url("/")).await.expect("load /");

    // The watchlist fills and moves.
    wait_until(
        &browser,
        "watchlist rows",
        "document.querySelectorAll('#watchlist tbody tr').length",
        |v| v.as_u64() == Some(2),
    )
    .await;
    let price =
        "document.querySelector('#watchlist tr[data-symbol=\"IBM\"] td:nth-child(2)').textContent";
    let first = wait_until(&browser, "an IBM price", price, |v| v != "—").await;
    wait_until(&browser, "the IBM price moves", price, |v| *v != first).await;
    assert_eq!(
        browser
            .execute("return document.body.dataset.stream", vec![])
            .await
            .expect("script"),
        "live"
    );
    let feeds = wait_until(
        &browser,
        "the feeds panel",
        "document.querySelectorAll('#feeds li').length",
        |v| v.as_u64() >= Some(1),
    )
    .await;
    assert_eq!(feeds, 1);
    screenshot(&browser, "1-watchlist").await;

    // Keyboard: '/' focuses the filter, typing narrows the list.
    browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys("/")
        .await
        .expect("keys");
    let focused = browser
        .execute("return document.activeElement.id", vec![])
        .await
        .expect("script");
    assert_eq!(focused, "filter");
    browser
        .find(Locator::Id("filter"))
        .await
        .expect("filter")
        .send_keys("ib")
        .await
        .expect("type");
    wait_until(
        &browser,
        "the filter",
        "[...document.querySelectorAll('#watchlist tbody tr')].map(r => r.dataset.symbol).join()",
        |v| v == "IBM",
    )
    .await;

    // Sorting by a column orders the rows by it.
    browser
        .find(Locator::Css("#watchlist th[data-key=\"volume\"] button"))
        .await
        .expect("volume header")
        .click()
        .await
        .expect("sort");
    assert_eq!(
        browser
            .execute(
                "return document.querySelector('#watchlist th[data-key=\"volume\"]').getAttribute('aria-sort')",
                vec![]
            )
            .await
            .expect("script"),
        "descending"
    );

    // Alerts arrive, each one the service fired.
    // (The shown alert's id, rule and symbol read at once: new ones keep arriving on top.)
    let shown = wait_until(
        &browser,
        "an alert in the panel",
        "(() => { const li = document.querySelector('#alerts li'); return li && [li.dataset.alertId, li.dataset.rule, li.querySelector('.sym').textContent]; })()",
        |v| v.is_array(),
    )
    .await;
    let (_, fired) = app.get("/v1/alerts?limit=10000").await;
    assert!(
        fired["alerts"].as_array().expect("alerts").iter().any(|a| {
            a["id"].as_u64().map(|id| id.to_string()).as_deref() == shown[0].as_str()
                && a["rule_id"] == shown[1]
                && a["symbol"] == shown[2]
        }),
        "alert {shown} was fired by the service"
    );

    // Rules: an edit without the token is refused and says why; with it, added and deleted.
    browser
        .find(Locator::Css("#rules-panel summary"))
        .await
        .expect("rules")
        .click()
        .await
        .expect("open the rules");
    let rule =
        r#"{"id": "from-the-page", "kind": "price_above", "symbol": "IBM", "threshold": 500}"#;
    browser
        .execute(
            "document.getElementById('rule-json').value = arguments[0]; return true;",
            vec![json!(rule)],
        )
        .await
        .expect("rule text");
    let add = browser
        .find(Locator::Css("#rule-form button[type=submit]"))
        .await
        .expect("add button");
    add.click().await.expect("add");
    wait_until(
        &browser,
        "the refusal",
        "document.getElementById('rule-message').textContent",
        |v| v.as_str().is_some_and(|m| m.contains("API token")),
    )
    .await;
    browser
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    add.click().await.expect("add");
    wait_until(
        &browser,
        "the rule added",
        "[...document.querySelectorAll('#rules code')].some((c) => c.textContent.includes('from-the-page'))",
        |v| *v == Value::Bool(true),
    )
    .await;
    let (_, rules) = app.get("/v1/alerts/rules").await;
    assert!(
        rules["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["id"] == "from-the-page"),
        "{rules}"
    );
    browser
        .find(Locator::Css(
            "#rules button[aria-label=\"Delete rule from-the-page\"]",
        ))
        .await
        .expect("delete button")
        .click()
        .await
        .expect("delete");
    wait_until(
        &browser,
        "the rule deleted",
        "[...document.querySelectorAll('#rules code')].some((c) => c.textContent.includes('from-the-page'))",
        |v| *v == Value::Bool(false),
    )
    .await;
    let (_, rules) = app.get("/v1/alerts/rules").await;
    assert!(
        !rules["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["id"] == "from-the-page")
    );
    // The token lives in the page's memory only.
    let stored = browser
        .execute(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie",
            vec![],
        )
        .await
        .expect("storage");
    assert!(
        !stored.as_str().unwrap_or_default().contains(TOKEN),
        "{stored}"
    );

    // Open IBM: candles, volume, the RSI pane; switch the interval and see a bar close.
    browser
        .execute(
            "document.querySelector('#rules-panel').open = false; window.scrollTo(0, 0); return true;",
            vec![],
        )
        .await
        .expect("scroll to the top");
    browser
        .find(Locator::Css("#watchlist tr[data-symbol=\"IBM\"] a"))
        .await
        .expect("IBM link")
        .click()
        .await
        .expect("open IBM");
    let url = browser.current_url().await.expect("url");
    assert_eq!(url.fragment(), Some("/symbols/IBM"));
    wait_until(
        &browser,
        "IBM's candles",
        "Number(document.getElementById('chart').dataset.bars)",
        |v| v.as_f64() > Some(0.0),
    )
    .await;
    wait_until(
        &browser,
        "the RSI pane",
        "Number(document.getElementById('chart').dataset.indicatorPoints)",
        |v| v.as_f64() > Some(0.0),
    )
    .await;
    wait_until(
        &browser,
        "the windows table",
        "document.querySelectorAll('#symbol-stats tbody tr').length",
        |v| v.as_u64() == Some(6),
    )
    .await;
    screenshot(&browser, "2-symbol-1m-rsi").await;
    browser
        .find(Locator::Id("interval"))
        .await
        .expect("interval")
        .select_by_value("5m")
        .await
        .expect("switch to 5m");
    wait_until(
        &browser,
        "the 5m bars",
        "document.getElementById('chart').dataset.interval",
        |v| v == "5m",
    )
    .await;
    let closed = number(
        &wait_until(
            &browser,
            "closed 5m bars",
            "document.getElementById('chart').dataset.closed",
            |v| number(v) > 0.0,
        )
        .await,
    );
    wait_until(
        &browser,
        "a 5m bar closes",
        "document.getElementById('chart').dataset.closed",
        |v| number(v) > closed,
    )
    .await;
    // MACD in the lower pane.
    browser
        .find(Locator::Id("pane"))
        .await
        .expect("pane")
        .select_by_value("macd")
        .await
        .expect("macd");
    wait_until(
        &browser,
        "the MACD pane",
        "document.getElementById('chart').dataset.pane === 'macd' && Number(document.getElementById('chart').dataset.indicatorPoints)",
        |v| v.as_f64() > Some(0.0),
    )
    .await;
    screenshot(&browser, "3-symbol-5m-macd").await;
    let errors = console(&driver, &browser).await;
    assert!(
        severe(&errors).is_empty(),
        "console errors: {:#?}",
        severe(&errors)
    );

    // A phone's width: one column, the chart still drawn.
    browser.set_window_size(390, 844).await.expect("resize");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let width = browser
        .execute(
            "return document.getElementById('chart').getBoundingClientRect().width",
            vec![],
        )
        .await
        .expect("script");
    assert!(number(&width) <= 390.0, "chart width {width}");
    screenshot(&browser, "4-phone").await;
    browser.set_window_size(1400, 900).await.expect("resize");

    // Back to the watchlist with Escape.
    browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys("\u{e00c}")
        .await
        .expect("escape");
    wait_until(
        &browser,
        "the watchlist again",
        "!document.getElementById('watchlist-view').hidden",
        |v| *v == Value::Bool(true),
    )
    .await;

    // The service stops: the page says so; it comes back: the page resumes by itself.
    let alerts_before = number(
        &browser
            .execute(
                "return document.getElementById('alerts').dataset.count",
                vec![],
            )
            .await
            .expect("script"),
    );
    app.stop().await;
    wait_until(
        &browser,
        "the outage shown",
        "document.body.dataset.stream",
        |v| v == "down",
    )
    .await;
    screenshot(&browser, "5-outage").await;
    let app = service(Some(address)).await;
    wait_until(
        &browser,
        "the stream back",
        "document.body.dataset.stream",
        |v| v == "live",
    )
    .await;
    let updates = number(
        &browser
            .execute(
                "return document.getElementById('watchlist').dataset.updates",
                vec![],
            )
            .await
            .expect("script"),
    );
    wait_until(
        &browser,
        "the watchlist moving again",
        "document.getElementById('watchlist').dataset.updates",
        |v| number(v) > updates + 4.0,
    )
    .await;
    wait_until(
        &browser,
        "alerts of the new run",
        "Number(document.getElementById('alerts').dataset.count)",
        |v| number(v) > alerts_before,
    )
    .await;
    screenshot(&browser, "6-recovered").await;
    // Only the deliberate outage's refused connections may have been logged.
    let entries = console(&driver, &browser).await;
    let unexpected: Vec<&Value> = severe(&entries)
        .into_iter()
        .filter(|e| {
            let message = e["message"].as_str().unwrap_or_default();
            !(message.contains("net::ERR_CONNECTION_REFUSED")
                || message.contains("net::ERR_INCOMPLETE_CHUNKED_ENCODING")
                || message.contains("net::ERR_EMPTY_RESPONSE")
                || message.contains("net::ERR_CONNECTION_RESET"))
        })
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:#?}");
    browser.close().await.expect("close the browser");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchlist_keeps_up_with_a_thousand_symbols() {
    let Some(driver) = start_driver().await else {
        return;
    };
    // 1,000 symbols trading in turn, each one every second of event time, played at 5×: every
    // symbol trades five times a second, and the stream offers the page 4,000 stats a second.
    let dir = tempfile::tempdir().expect("dir");
    let path = symbols_in_turn_csv(dir.path(), 100_000, 1_000);
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        speed: Some("5".into()),
        max_pause: Some("10ms".into()),
        replay_loop: true,
        ..ServeArgs::default()
    })
    .await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = open_browser(&driver, profile.path()).await;
    browser.goto(&app.url("/")).await.expect("load /");
    wait_until(
        &browser,
        "1,000 rows",
        "document.querySelectorAll('#watchlist tbody tr').length",
        |v| v.as_u64() == Some(1_000),
    )
    .await;
    browser
        .execute(
            "window.__long = []; new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__long.push(e.duration))).observe({type: 'longtask', buffered: true}); return true;",
            vec![],
        )
        .await
        .expect("observer");
    // Trades over the last hour: it grows with every trade of the symbol.
    browser
        .find(Locator::Id("window"))
        .await
        .expect("window")
        .select_by_value("1h")
        .await
        .expect("1h window");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every row's count as the page holds it (rows off screen are filled when they scroll in).
    let prices = "[...document.querySelectorAll('#watchlist tbody tr')].map((r) => r.children[7].textContent)";
    // The rows in view: inside the table's scrolling box and the window.
    let on_screen = "(() => { const w = document.querySelector('#watchlist-view .table-wrap').getBoundingClientRect(); return [...document.querySelectorAll('#watchlist tbody tr')].filter((r) => { const b = r.getBoundingClientRect(); return b.bottom > Math.max(w.top, 0) && b.top < Math.min(w.bottom, innerHeight); }).map((r) => r.dataset.symbol); })()";
    let updates = "Number(document.getElementById('watchlist').dataset.updates)";
    let before = browser
        .execute(&format!("return {prices};"), vec![])
        .await
        .expect("prices");
    let renders_before = number(
        &browser
            .execute(&format!("return {updates};"), vec![])
            .await
            .expect("updates"),
    );
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let renders = number(
        &browser
            .execute(&format!("return {updates};"), vec![])
            .await
            .expect("updates"),
    ) - renders_before;
    let seconds = started.elapsed().as_secs_f64();
    let after = browser
        .execute(&format!("return {prices};"), vec![])
        .await
        .expect("prices");
    let (before, after) = (
        before.as_array().expect("prices").clone(),
        after.as_array().expect("prices").clone(),
    );
    let shown = browser
        .execute(&format!("return {on_screen};"), vec![])
        .await
        .expect("rows on screen");
    let shown: Vec<usize> = shown
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(|s| s.as_str()?.strip_prefix('S')?.parse().ok())
        .collect();
    let changed = shown.iter().filter(|&&i| before[i] != after[i]).count();
    // The rows further down were left alone; scrolled into view, they are brought up to date.
    browser
        .execute(
            "document.querySelector('#watchlist tbody tr:last-child').scrollIntoView(); return true;",
            vec![],
        )
        .await
        .expect("scroll");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_scroll = browser
        .execute(&format!("return {prices};"), vec![])
        .await
        .expect("prices");
    let last = after_scroll.as_array().expect("prices").len() - 1;
    assert_ne!(
        after_scroll[last], before[last],
        "the last row, scrolled into view, shows its current count"
    );
    let long = browser
        .execute("return window.__long;", vec![])
        .await
        .expect("long tasks");
    let long: Vec<f64> = long
        .as_array()
        .map(|l| l.iter().map(number).collect())
        .unwrap_or_default();
    eprintln!(
        "1,000 symbols: {renders} renders in {seconds:.1} s, {changed} of {} rows on screen changed; long tasks (> 50 ms): {}, longest {:.0} ms",
        shown.len(),
        long.len(),
        long.iter().cloned().fold(0.0, f64::max)
    );
    // Every symbol traded about 25 times: every row on screen follows.
    assert!(shown.len() >= 10, "{} rows on screen", shown.len());
    assert_eq!(changed, shown.len(), "every row on screen changed");
    // The page renders at most four times a second, however fast the stream.
    assert!(
        renders <= 4.0 * seconds + 2.0,
        "{renders} renders in {seconds:.1} s"
    );
    assert!(renders >= 1.0, "the watchlist rendered");
    screenshot(&browser, "7-thousand-symbols").await;
    let errors = console(&driver, &browser).await;
    assert!(
        severe(&errors).is_empty(),
        "console errors: {:#?}",
        severe(&errors)
    );
    browser.close().await.expect("close the browser");
    app.stop().await;
}
