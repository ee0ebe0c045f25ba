//! The testnet's dashboard (`datamesh testnet ui`, issue 20) in headless Chromium, with
//! real processes: eight nodes, the dashboard's own process, chromedriver. Log in, see
//! the eight nodes and their peers, put a file, kill two of its holders from the page,
//! see its stripe grid at 4/6, press Repair, see 6/6, start a node again, log out.
//! Requests without the session cookie, a foreign `Host` and a cross-site form post are
//! refused; logins past the limit answer 429, on this page and on a node's own `/ui`.
//!
//! Screenshots of each page go to `<target>/tmp/testnet-ui-screenshots/` (not
//! committed); their paths and each page's load time (navigation timing, start to the
//! end of the `load` event) are printed, not asserted.
//!
//! Needs Debian's `chromium` and `chromium-driver`: fails, naming them, without.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use datamesh_testnet::browser::{Browser, Element};
use datamesh_testnet::input::make_file;
use datamesh_testnet::run::{output, serial};
use datamesh_testnet::{Config, Kdf, Testnet, dashboard};

mod support;
use support::{bin, require_root};

/// How long any one thing the page does may take (a repair, a node's start).
const WAIT: Duration = Duration::from_secs(120);
const NODES: usize = 8;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("testnet-ui-screenshots")
}

/// Writes a screenshot of the current page and prints its path and load time.
#[allow(clippy::print_stdout)]
fn snap(browser: &Browser, name: &str) -> anyhow::Result<()> {
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

fn body_text(browser: &Browser) -> anyhow::Result<String> {
    Ok(browser.text(&browser.find("body")?)?)
}

/// Waits for an element; on timeout, says where the browser is and what it shows.
fn wait_for(browser: &Browser, css: &str) -> anyhow::Result<Element> {
    browser.wait_for(css, WAIT).map_err(|e| {
        let url = browser.url().unwrap_or_default();
        let text = body_text(browser).unwrap_or_default();
        anyhow::anyhow!("{e}; the browser is at {url}, showing: {text}")
    })
}

/// Waits until a script returns true; on timeout, says what the page shows.
fn wait_until(browser: &Browser, what: &str, script: &str) -> anyhow::Result<()> {
    browser.wait_until(what, script, WAIT).map_err(|e| {
        let text = body_text(browser).unwrap_or_default();
        anyhow::anyhow!("{e}; the page shows: {text}")
    })
}

/// One answer to [`request`].
struct Answer {
    status: u16,
    /// The status line and headers.
    head: String,
    body: String,
}

/// Plain HTTP/1.1 without a browser: one request, its answer.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = form.unwrap_or("");
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {:?}", head.lines().next()))?;
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// The status of one request.
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> anyhow::Result<u16> {
    Ok(request(addr, method, path, headers, form)?.status)
}

/// Logs in without a browser: the session cookie (`name=value`) and the page's CSRF
/// token.
fn raw_session(addr: SocketAddr, origin: &str, token: &str) -> anyhow::Result<(String, String)> {
    let login = request(
        addr,
        "POST",
        "/testnet/login",
        &[("Origin", origin)],
        Some(&format!("token={token}")),
    )?;
    ensure!(
        login.status == 303,
        "login: {} {}",
        login.status,
        login.body
    );
    let cookie = login
        .head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_string())
        })
        .context("no session cookie")?;
    let page = request(addr, "GET", "/testnet", &[("Cookie", &cookie)], None)?;
    let marker = "name=\"csrf\" value=\"";
    let csrf = page
        .body
        .split_once(marker)
        .and_then(|(_, rest)| rest.split('"').next())
        .context("no CSRF token in the page")?
        .to_string();
    Ok((cookie, csrf))
}

/// A second origin (another port of 127.0.0.1, the same *site*): a page whose form
/// posts to `action` by itself, as a malicious site would. Serves a few requests on a
/// thread that ends with the test process.
fn evil_origin(action: &str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{action}\"><input type=hidden name=csrf value=guess></form><script>document.getElementById('f').submit()</script></body></html>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let (status, body) = match buf[..n].starts_with(b"GET / ") {
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

/// The dashboard's process, and every node it may have started: stopped when the test
/// ends, also on failure (the testnet's own nodes are stopped by its drop).
struct Cleanup {
    dashboard: Child,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.dashboard.kill();
        let _ = self.dashboard.wait();
        if let Ok(bin) = bin()
            && let Ok(mut net) = Testnet::attach(bin, &self.dir)
        {
            let _ = net.down();
        }
    }
}

/// Starts `datamesh testnet ui` for `dir`; its process and its page's address.
fn start_dashboard(dir: &Path, scratch: &Path) -> anyhow::Result<(Cleanup, String)> {
    let log = fs::File::create(scratch.join("dashboard.log"))?;
    let child = Command::new(bin()?)
        .args(["testnet", "ui", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let cleanup = Cleanup {
        dashboard: child,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(running) = dashboard::running(dir)?
            && running.pid == pid
        {
            return Ok((cleanup, running.url));
        }
        if Instant::now() >= deadline {
            bail!(
                "the dashboard did not start: {}",
                fs::read_to_string(scratch.join("dashboard.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The nodes holding a shard of the grid's first stripe.
fn holders(browser: &Browser) -> anyhow::Result<Vec<usize>> {
    let v = browser.eval(
        "return [...document.querySelectorAll('#grid tbody tr:first-child td.held')].map(c => Number(c.dataset.node));",
    )?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect()
        })
        .unwrap_or_default())
}

/// Waits for the grid, every stripe at `k` of 6.
fn wait_grid(browser: &Browser, k: usize) -> anyhow::Result<()> {
    wait_until(
        browser,
        &format!("the stripe grid at {k}/6"),
        &format!(
            "const c = [...document.querySelectorAll('#grid .chip')]; return document.readyState === 'complete' && c.length > 0 && c.every(x => x.textContent === '{k}/6');"
        ),
    )
}

/// Presses a button that posts a form and waits for the page it leads to (the
/// button is gone from the old page) to say `flash`.
fn press(browser: &Browser, css: &str, flash: &str) -> anyhow::Result<()> {
    browser.click(&browser.find(css)?)?;
    let quoted = serde_json::to_string(flash)?;
    wait_until(
        browser,
        &format!("the page after {css} to say {flash}"),
        &format!(
            "const f = document.getElementById('flash'); return document.readyState === 'complete' && f !== null && f.textContent.includes({quoted});"
        ),
    )
}

#[test]
fn the_testnet_dashboard_in_a_browser_kills_repairs_and_refuses_foreign_requests()
-> anyhow::Result<()> {
    let _one = serial();
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("net");
    let mut net = Testnet::up_with(Config::new(bin()?, &dir, NODES).with_kdf(Kdf::FAST))?;
    let (_cleanup, url) = start_dashboard(&dir, scratch.path())?;
    let origin = url
        .strip_suffix("/testnet")
        .with_context(|| format!("an address not ending in /testnet: {url}"))?
        .to_string();
    let addr: SocketAddr = origin.trim_start_matches("http://").parse()?;
    ensure!(addr.ip().is_loopback(), "the dashboard listens on {addr}");
    let token = dashboard::token(&dir)?;
    let mode = fs::metadata(dashboard::token_path(&dir))?
        .permissions()
        .mode();
    ensure!(mode & 0o777 == 0o600, "the token file is {mode:o}");

    // Without the cookie: the page sends to the login form; the data and the actions
    // answer 401, even from the right origin with a CSRF guess; a foreign Host, 421.
    let o = origin.as_str();
    assert_eq!(raw(addr, "GET", "/testnet", &[], None)?, 303);
    assert_eq!(raw(addr, "GET", "/testnet/state.json", &[], None)?, 401);
    let csrf_guess = Some("csrf=guess");
    for action in ["/testnet/nodes/1/kill", "/testnet/logout"] {
        let status = raw(addr, "POST", action, &[("Origin", o)], csrf_guess)?;
        assert_eq!(status, 401, "{action}");
    }
    assert_eq!(
        raw(
            addr,
            "GET",
            "/testnet/login",
            &[("Host", "evil.example")],
            None
        )?,
        421
    );
    // A node's API token is no way in: the dashboard has its own.
    let node_token = fs::read_to_string(net.home(0).join("api-token"))?;
    let login = |token: &str| -> anyhow::Result<u16> {
        let form = format!("token={}", token.trim());
        raw(
            addr,
            "POST",
            "/testnet/login",
            &[("Origin", o)],
            Some(&form),
        )
    };
    assert_eq!(login(&node_token)?, 401);

    let browser = Browser::start()?;
    browser.goto(&url)?;
    wait_for(&browser, "#token")?;
    assert_eq!(browser.url()?, format!("{url}/login"));
    snap(&browser, "testnet-login")?;

    // A wrong token: the form again, with an error; then the right one.
    browser.type_into(&browser.find("#token")?, "not-the-token")?;
    browser.click(&browser.find("#login")?)?;
    let error = wait_for(&browser, "#login-error")?;
    assert!(browser.text(&error)?.contains("not this testnet's"));
    browser.type_into(&browser.find("#token")?, &token)?;
    browser.click(&browser.find("#login")?)?;
    wait_for(&browser, "#nodes")?;
    assert_eq!(browser.url()?, url);
    wait_until(
        &browser,
        "the node table's first refresh",
        "return Number(document.body.dataset.loaded || 0) >= 1;",
    )?;
    assert_eq!(
        browser.text(&browser.find("#up-count")?)?,
        NODES.to_string()
    );
    // Every node up with the seven others in its routing table.
    let peers = browser.eval(
        "return [...document.querySelectorAll('#nodes tr[data-node]')].map(r => r.querySelector('.state').textContent + ' ' + r.querySelector('.peers').textContent.split(' ')[0]);",
    )?;
    let want: Vec<String> = (0..NODES).map(|_| format!("up {}", NODES - 1)).collect();
    assert_eq!(peers, serde_json::json!(want), "states and peers shown");
    assert_eq!(
        browser.eval("return document.cookie;")?,
        serde_json::json!(""),
        "the cookie is HttpOnly"
    );
    assert!(!body_text(&browser)?.contains(node_token.trim()));
    snap(&browser, "testnet-dashboard")?;

    // A file of one stripe, put through node 0.
    let input = make_file(scratch.path(), 300_000, 20)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&input);
    let id = String::from_utf8(output(&mut put)?)?.trim().to_string();
    browser.goto(&format!("{url}?file={id}"))?;
    wait_for(&browser, "#check")?;
    press(&browser, "#check", "Check of")?;
    wait_grid(&browser, 6)?;
    snap(&browser, "testnet-grid-healthy")?;

    // Kill two of the stripe's holders (not node 0, where the checks run) from the page.
    let victims: Vec<usize> = holders(&browser)?
        .into_iter()
        .filter(|&i| i != 0)
        .take(2)
        .collect();
    ensure!(victims.len() == 2, "holders of stripe 0: {victims:?}");
    for &v in &victims {
        press(
            &browser,
            &format!("#nodes tr[data-node=\"{v}\"] button.kill"),
            &format!("Killed node {v}"),
        )?;
        ensure!(!net.is_running(v), "node {v} still runs");
    }
    wait_until(
        &browser,
        "two nodes down in the table",
        &format!(
            "return document.getElementById('up-count').textContent === '{}';",
            NODES - 2
        ),
    )?;
    press(&browser, "#check", "Check of")?;
    wait_grid(&browser, 4)?;
    snap(&browser, "testnet-grid-degraded")?;

    // Repair: the grid back at 6/6, on other nodes.
    press(&browser, "#repair", "Repair of")?;
    wait_grid(&browser, 6)?;
    assert!(body_text(&browser)?.contains("shards rebuilt"));
    let now = holders(&browser)?;
    ensure!(
        victims.iter().all(|v| !now.contains(v)),
        "after the repair, holders {now:?} include a killed node of {victims:?}"
    );
    snap(&browser, "testnet-grid-repaired")?;
    // The node's own check agrees.
    let mut check = net.cli(0);
    check.args(["--json", "check", &id]);
    let report: serde_json::Value = serde_json::from_slice(&output(&mut check)?)?;
    assert_eq!(report["state"], "healthy", "{report}");

    // Start a killed node again from the page.
    let back = victims[0];
    press(
        &browser,
        &format!("#nodes tr[data-node=\"{back}\"] button.start"),
        &format!("Started node {back}"),
    )?;
    ensure!(net.is_running(back) || Testnet::attach(bin()?, &dir)?.is_running(back));
    wait_until(
        &browser,
        "the restarted node up in the table",
        &format!(
            "return document.getElementById('up-count').textContent === '{}';",
            NODES - 1
        ),
    )?;
    snap(&browser, "testnet-node-started")?;

    // A cross-site form post (another port of 127.0.0.1, same site for the cookie) to
    // kill node 0: refused, node 0 lives, the session lives on.
    let kill0 = format!("{url}/nodes/0/kill");
    let evil = evil_origin(&kill0)?;
    browser.goto(&format!("http://{evil}/"))?;
    wait_until(
        &browser,
        "the cross-site post's answer",
        &format!("return location.href === '{kill0}';"),
    )?;
    let refusal = body_text(&browser)?;
    assert!(refusal.contains("refused"), "{refusal}");
    snap(&browser, "testnet-cross-site-post")?;
    ensure!(net.is_running(0), "node 0 was killed by a cross-site post");
    browser.goto(&url)?;
    wait_for(&browser, "#logout")?;
    assert_eq!(browser.url()?, url, "still logged in");

    // Log out: back to the form, and the page is closed again.
    browser.click(&browser.find("#logout")?)?;
    wait_for(&browser, "#token")?;
    assert_eq!(browser.url()?, format!("{url}/login"));
    browser.goto(&url)?;
    wait_for(&browser, "#token")?;
    assert_eq!(browser.url()?, format!("{url}/login"), "logged out");
    snap(&browser, "testnet-logged-out")?;
    drop(browser);

    // Every parameter of an action is checked, even from a logged-in session with the
    // right CSRF token and Origin: a node that is not this testnet's, an index that is
    // no number, an unknown action, a file id that is none.
    let (cookie, csrf) = raw_session(addr, o, &token)?;
    let auth = [("Origin", o), ("Cookie", cookie.as_str())];
    let form = format!("csrf={csrf}");
    let post = |path: &str| raw(addr, "POST", path, &auth, Some(&form));
    assert_eq!(post(&format!("/testnet/nodes/{NODES}/kill"))?, 303);
    let page = request(addr, "GET", "/testnet", &auth[1..], None)?;
    assert!(
        page.body.contains(&format!("there is no node {NODES}")),
        "{}",
        page.body
    );
    for bad in [
        "/testnet/nodes/-1/kill",
        "/testnet/nodes/abc/kill",
        "/testnet/nodes/18446744073709551616/start",
        "/testnet/files/not-a-file-id/check",
        "/testnet/files/%3Cscript%3E/check",
    ] {
        assert_eq!(post(bad)?, 400, "{bad}");
    }
    assert_eq!(post("/testnet/nodes/0/stop")?, 404);
    assert_eq!(post("/testnet/nodes/0/freeze")?, 404);
    ensure!(net.is_running(0), "node 0 stopped by a refused action");
    // The right session without its CSRF token, or from another origin: refused.
    let wrong_csrf = raw(
        addr,
        "POST",
        "/testnet/nodes/0/kill",
        &auth,
        Some("csrf=0000"),
    )?;
    assert_eq!(wrong_csrf, 403);
    let evil = format!("http://{evil}");
    let foreign = raw(
        addr,
        "POST",
        "/testnet/nodes/0/kill",
        &[("Origin", &evil), ("Cookie", &cookie)],
        Some(&form),
    )?;
    assert_eq!(foreign, 403);
    let no_origin = raw(
        addr,
        "POST",
        "/testnet/nodes/0/kill",
        &auth[1..],
        Some(&form),
    )?;
    assert_eq!(no_origin, 403);
    ensure!(net.is_running(0), "node 0 killed by a refused request");
    // A hostile `file` in the page's query is not echoed.
    let page = request(
        addr,
        "GET",
        "/testnet?file=%3Cscript%3Ealert(1)%3C/script%3E",
        &auth[1..],
        None,
    )?;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    // Logged out, the session's cookie opens nothing.
    assert_eq!(post("/testnet/logout")?, 303);
    assert_eq!(post("/testnet/nodes/0/kill")?, 401);
    assert_eq!(
        raw(addr, "GET", "/testnet/state.json", &auth[1..], None)?,
        401
    );

    // Logins past the limit (10 a minute, every attempt counts; four were made above,
    // perhaps in an earlier window) answer 429, then the right token too.
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) && statuses.len() < 22 {
        statuses.push(login("wrong")?);
    }
    let refused = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        statuses.last() == Some(&429) && refused <= 10,
        "{statuses:?}"
    );
    assert_eq!(login(&token)?, 429);
    // The same on a node's own /ui.
    let api = net.run_file(0)?.context("node 0 has no node.json")?.api;
    let node_origin = format!("http://{api}");
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(raw(
            api,
            "POST",
            "/ui/login",
            &[("Origin", &node_origin)],
            Some("token=wrong"),
        )?);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    Ok(())
}

/// On a testnet of separate hosts the nodes' APIs listen on their namespaces' loopback,
/// out of the machine's reach; the page the demo prints is on the machine's 127.0.0.1
/// and reaches every node (its process enters each node's namespace for the call).
/// Without a browser: a login and the state the page polls. Needs root.
#[test]
fn on_a_testnet_of_hosts_the_page_on_the_machine_reaches_every_node() -> anyhow::Result<()> {
    require_root()?;
    let _one = serial();
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("net");
    let hosts = 3;
    let net = Testnet::up_with(
        Config::new(bin()?, &dir, hosts)
            .with_hosts(hosts)
            .with_kdf(Kdf::FAST),
    )?;
    ensure!(net.namespace_of(0).is_some(), "not a testnet of hosts");
    let (_cleanup, url) = start_dashboard(&dir, scratch.path())?;
    let origin = url.trim_end_matches("/testnet").to_string();
    let addr: SocketAddr = origin.trim_start_matches("http://").parse()?;
    let token = dashboard::token(&dir)?;
    let (cookie, _) = raw_session(addr, &origin, &token)?;
    let state = request(
        addr,
        "GET",
        "/testnet/state.json",
        &[("Cookie", &cookie)],
        None,
    )?;
    ensure!(
        state.status == 200,
        "state: {} {}",
        state.status,
        state.body
    );
    let state: serde_json::Value = serde_json::from_str(&state.body)?;
    let nodes = state["nodes"].as_array().context("no nodes")?;
    ensure!(nodes.len() == hosts, "{state}");
    for node in nodes {
        ensure!(
            node["up"] == true && node["status"]["routing_table_peers"] == hosts - 1,
            "a node not reached through its namespace: {node}"
        );
    }
    Ok(())
}
