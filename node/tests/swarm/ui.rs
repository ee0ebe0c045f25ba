//! The dashboard (`/ui`) in headless Chromium through chromedriver: log in, see the
//! peers and a file's stripes after a check, log out; requests without the session
//! cookie and a cross-site form post (from a second origin served here) are refused.
//! Screenshots of each page go to `target/tmp/ui-screenshots/` (their paths printed),
//! with each page's load time (navigation timing; printed, not asserted).
//!
//! Needs Debian's `chromium` and `chromium-driver`: fails, naming them, without.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;

use datamesh_testnet::browser::Browser;

use super::*;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(60);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
}

/// Writes a screenshot of the current page and prints its path and load time.
#[allow(clippy::print_stdout)]
fn snap(browser: &Browser, name: &str) -> AnyResult<()> {
    let path = shots().join(format!("{name}.png"));
    browser.screenshot(&path)?;
    let load = browser
        .load_time_ms()?
        .map_or("unknown".to_string(), |ms| format!("{ms:.0} ms"));
    println!(
        "page {name}: {} (load {load}); screenshot {}",
        browser.url()?,
        path.display()
    );
    Ok(())
}

/// A second origin (another port of 127.0.0.1): a page whose form posts to the node's
/// logout by itself, as a malicious site would. Serves until the test process ends.
fn evil_origin(node: SocketAddr) -> AnyResult<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"http://{node}/ui/logout\"><input type=hidden name=csrf value=guess></form><script>document.getElementById('f').submit()</script></body></html>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let root = buf[..n].starts_with(b"GET / ");
            let (status, body) = match root {
                true => ("200 OK", page.as_str()),
                false => ("404 Not Found", ""),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(addr)
}

/// Waits for an element; on timeout, says where the browser is and what it shows.
fn wait_for(
    browser: &Browser,
    css: &str,
    timeout: Duration,
) -> AnyResult<datamesh_testnet::browser::Element> {
    browser.wait_for(css, timeout).map_err(|e| {
        let url = browser.url().unwrap_or_default();
        let text = body_text(browser).unwrap_or_default();
        format!("{e}; the browser is at {url}, showing: {text}").into()
    })
}

fn body_text(browser: &Browser) -> AnyResult<String> {
    Ok(browser.text(&browser.find("body")?)?)
}

fn is_at(browser: &Browser, node: SocketAddr, path: &str) -> AnyResult<bool> {
    Ok(browser.url()? == format!("http://{node}{path}"))
}

/// Plain HTTP without a browser: status of a request with the given headers.
fn raw(method: &str, url: &str, headers: &[(&str, &str)]) -> AnyResult<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = match method {
        "GET" => {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()?
        }
        _ => {
            let mut r = agent.post(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send_empty()?
        }
    };
    Ok(response.status().as_u16())
}

fn dashboard_session(node: SocketAddr, peers: usize) -> AnyResult<()> {
    // A file whose name is markup: it must show as text.
    let client = datamesh_api::Client::new(node, "test-token");
    let put = client.put(
        std::io::Cursor::new(data(300_000)),
        "<b>report</b>.bin",
        &[],
    )?;
    let origin = format!("http://{node}");
    let base = |path: &str| format!("{origin}{path}");

    // Without the cookie: the page sends to the login form, the data and the actions
    // answer 401, even from the right origin.
    assert_eq!(raw("GET", &base("/ui"), &[])?, 303);
    assert_eq!(raw("GET", &base("/ui/state.json"), &[])?, 401);
    let check = base(&format!("/ui/files/{}/check?repair=1", put.id));
    assert_eq!(
        raw(
            "POST",
            &check,
            &[("origin", &origin), ("x-csrf-token", "x")]
        )?,
        401
    );
    // The bearer token is no way into the dashboard either.
    assert_eq!(
        raw(
            "GET",
            &base("/ui/state.json"),
            &[("authorization", "Bearer test-token")]
        )?,
        401
    );
    // A DNS-rebinding name is refused.
    assert_eq!(
        raw("GET", &base("/ui/login"), &[("host", "evil.example")])?,
        421
    );

    let browser = Browser::start()?;
    browser.goto(&base("/ui"))?;
    assert!(is_at(&browser, node, "/ui/login")?, "{}", browser.url()?);
    snap(&browser, "node-login")?;
    browser.goto(&base("/ui/state.json"))?;
    assert!(body_text(&browser)?.contains("not logged in"));

    // A wrong token: the form again, with an error.
    browser.goto(&base("/ui/login"))?;
    browser.type_into(&browser.find("#token")?, "not-the-token")?;
    browser.click(&browser.find("#login")?)?;
    let error = wait_for(&browser, "#login-error", WAIT)?;
    assert!(browser.text(&error)?.contains("not this node's"));
    snap(&browser, "node-login-wrong-token")?;

    // The right one: the dashboard, the peers, the file.
    browser.type_into(&browser.find("#token")?, "test-token")?;
    browser.click(&browser.find("#login")?)?;
    wait_for(&browser, "#peers", WAIT)?;
    assert!(is_at(&browser, node, "/ui")?, "{}", browser.url()?);
    browser.wait_until(
        "the dashboard's first data",
        "return Number(document.body.dataset.loaded || 0) >= 1;",
        WAIT,
    )?;
    let shown = browser.text(&browser.find("#peer-count")?)?;
    assert_eq!(shown, peers.to_string(), "peers shown");
    let rows = browser.eval("return document.querySelectorAll('#peers tr').length;")?;
    assert_eq!(rows.as_u64(), Some(peers as u64));
    assert!(
        browser.eval("return document.cookie;")?.as_str() == Some(""),
        "the cookie is HttpOnly"
    );
    let row = format!("tr[data-file=\"{}\"]", put.id);
    assert_eq!(
        browser.text(&browser.find(&format!("{row} td"))?)?,
        "<b>report</b>.bin"
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#files b').length;")?,
        serde_json::json!(0)
    );
    snap(&browser, "node-dashboard")?;

    // Check the file from the page: one chip per stripe, each 6/6.
    browser.click(&browser.find(&format!("{row} button"))?)?;
    let chips = format!("document.querySelectorAll('{row} .chip')");
    browser.wait_until(
        "the file's stripe health after a check",
        &format!(
            "const c = {chips}; return c.length === {} && [...c].every(x => x.textContent === '6/6');",
            put.stripes
        ),
        WAIT,
    )?;
    assert!(body_text(&browser)?.contains("check"));
    snap(&browser, "node-dashboard-checked")?;

    // A cross-site form post (another port of 127.0.0.1, same site for the cookie) to
    // the logout: refused, and the session lives on.
    let evil = evil_origin(node)?;
    browser.goto(&format!("http://{evil}/"))?;
    browser.wait_until(
        "the cross-site post's answer",
        &format!("return location.href === '{}';", base("/ui/logout")),
        WAIT,
    )?;
    assert!(
        body_text(&browser)?.contains("refused"),
        "{}",
        body_text(&browser)?
    );
    snap(&browser, "node-cross-site-post")?;
    browser.goto(&base("/ui"))?;
    assert!(is_at(&browser, node, "/ui")?, "still logged in");

    // Log out: back to the form, and the dashboard is closed again.
    browser.wait_until(
        "the dashboard",
        "return Number(document.body.dataset.loaded || 0) >= 1;",
        WAIT,
    )?;
    browser.click(&browser.find("#logout")?)?;
    wait_for(&browser, "#token", WAIT)?;
    assert!(is_at(&browser, node, "/ui/login")?, "{}", browser.url()?);
    browser.goto(&base("/ui"))?;
    assert!(is_at(&browser, node, "/ui/login")?, "logged out");
    snap(&browser, "node-logged-out")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_a_browser_logs_in_shows_peers_and_files_and_refuses_foreign_requests()
-> TestResult {
    let net = start_net(6, |_| 1 << 30).await?;
    let addr = net.node(0).api_addr();
    let outcome = tokio::task::spawn_blocking(move || dashboard_session(addr, 5)).await?;
    net.shutdown().await?;
    outcome
}
