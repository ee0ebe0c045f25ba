//! `datamesh testnet ui`: one page for a whole testnet, served by this process on
//! 127.0.0.1 (`/testnet`), so a user can watch the network heal.
//!
//! * **What it shows.** Every node (up/down, pid, peers in its routing table and
//!   connected, shards, bytes), refreshed every two seconds by `testnet.js` from
//!   `GET /testnet/state.json`; and, for a chosen file, a grid of which node holds which
//!   shard of each stripe, with `k/n` (healthy shards of six) per stripe, from the last
//!   check run here.
//! * **What it does.** `POST /testnet/nodes/{i}/kill|start` kills (SIGKILL) or starts a
//!   node through [`datamesh_testnet::Testnet`] (this process can, being on the same
//!   machine as the testnet folder); `POST /testnet/files/{id}/check` runs a check, or
//!   with `repair=1` a repair, through a running node whose catalog holds the file. One
//!   action at a time; each ends with a redirect back to the page, which says what
//!   happened.
//! * **The nodes' tokens stay here.** This process talks to each node's API with that
//!   node's token, read from its home ([`Testnet::with_api`]; on a testnet of hosts from
//!   inside the node's namespace, so the page on 127.0.0.1 works there too). The browser
//!   logs in with the testnet's own token (`D/dashboard-token`, 0600, made on first use;
//!   [`datamesh_testnet::dashboard`]) and holds only a session cookie.
//! * **Security** is the node dashboard's, from [`datamesh_node::web`]: loopback only,
//!   `Host` must be an address, an `HttpOnly`, `SameSite=Strict` cookie (named and scoped
//!   apart from the node's, as both can run on 127.0.0.1), a CSRF token in every form,
//!   `Origin` checked on every POST, at most 10 login attempts a minute, a
//!   Content-Security-Policy allowing nothing from elsewhere.

mod pages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datamesh_api::{CheckReport, Client, ListedFile, Status};
use datamesh_core::FileId;
use datamesh_node::web::session::{Authenticated, Cookie, Sessions};
use datamesh_node::web::{self, LoginLimiter, same_origin};
use datamesh_testnet::{Testnet, dashboard};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Context;

/// The page's prefix.
const PREFIX: &str = "/testnet";
/// Its session cookie: not the node dashboard's name nor path.
const COOKIE: Cookie = Cookie {
    name: "datamesh_testnet_session",
    path: PREFIX,
};
/// How long one node's status may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a check, and a repair, may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
const REPAIR_TIMEOUT: Duration = Duration::from_secs(600);
/// Files listed at most (the newest first).
const MAX_FILES: usize = 200;
/// Stripes shown at most in a grid.
const MAX_STRIPES_SHOWN: usize = 256;

/// The dashboard's state.
struct Dash {
    binary: PathBuf,
    dir: PathBuf,
    token: Zeroizing<String>,
    sessions: Sessions,
    logins: LoginLimiter,
    /// One action (kill, start, check, repair) at a time.
    action: tokio::sync::Mutex<()>,
    /// What the last action did (shown once on the page).
    flash: Mutex<Option<(bool, String)>>,
    /// The last check's grid (one file's).
    grid: Mutex<Option<Grid>>,
}

type Shared = Arc<Dash>;

/// Serves the dashboard of the testnet in `dir` on `127.0.0.1:port` (0: any free port)
/// until SIGINT or SIGTERM.
pub(crate) fn serve(ctx: &Context, binary: &Path, dir: &Path, port: u16) -> anyhow::Result<()> {
    Testnet::attach(binary, dir)?;
    if let Some(running) = dashboard::running(dir)? {
        bail!(
            "a dashboard already runs for {}: {} (pid {})",
            dir.display(),
            running.url,
            running.pid
        );
    }
    let token = Zeroizing::new(dashboard::token(dir)?);
    let dash = Arc::new(Dash {
        binary: binary.to_path_buf(),
        dir: dir.to_path_buf(),
        token,
        sessions: Sessions::default(),
        logins: LoginLimiter::default(),
        action: tokio::sync::Mutex::new(()),
        flash: Mutex::new(None),
        grid: Mutex::new(None),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}{PREFIX}");
        dashboard::write_running(dir, &url)?;
        ctx.out.result(&url);
        ctx.out.info(format_args!(
            "dashboard of the testnet in {d}: {url} (log in with the token in {t}); Ctrl-C stops it",
            d = dir.display(),
            t = dashboard::token_path(dir).display()
        ));
        let served = axum::serve(listener, router(dash))
            .with_graceful_shutdown(stopped())
            .await;
        dashboard::remove_running(dir);
        served.context("the dashboard's server failed")
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn router(dash: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { see_other(PREFIX.to_string()) }))
        .route(PREFIX, get(page))
        .route("/testnet/", get(page))
        .route("/testnet/login", get(login_page).post(login))
        .route("/testnet/logout", post(logout))
        .route("/testnet/state.json", get(state_json))
        .route("/testnet/nodes/{index}/{action}", post(node_action))
        .route("/testnet/files/{id}/check", post(check_file))
        .route("/testnet/assets/style.css", get(style_css))
        .route("/testnet/assets/testnet.js", get(app_js))
        .layer(middleware::from_fn(web::guard))
        .with_state(dash)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(to: String) -> Response {
    match HeaderValue::try_from(to) {
        Ok(to) => (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    }
}

fn refused(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

fn session_of(dash: &Dash, headers: &HeaderMap) -> Option<(Zeroizing<String>, Authenticated)> {
    let id = Zeroizing::new(COOKIE.value(headers)?);
    let found = dash.sessions.find(&id, Instant::now())?;
    Some((id, found))
}

/// The session of a state-changing request from the page itself, or the refusal.
fn authorised(
    dash: &Dash,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Authenticated, (StatusCode, &'static str)> {
    let Some((_, session)) = session_of(dash, headers) else {
        return Err((StatusCode::UNAUTHORIZED, "not logged in"));
    };
    if !same_origin(headers) || !session.csrf_matches(csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: not from the dashboard's own page (Origin, CSRF token)",
        ));
    }
    Ok(session)
}

async fn login_page(State(dash): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&dash, &headers).is_some() {
        return see_other(PREFIX.to_string());
    }
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(dash): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = Zeroizing::new(form.token);
    if !same_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "refused: a login must come from the dashboard's own page (Origin)",
        );
    }
    if let Err(wait) = dash.logins.attempt(Instant::now()) {
        return web::too_many_logins(wait);
    }
    if !web::secret_eq(&dash.token, token.trim()) {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That is not this testnet's dashboard token.")),
        );
    }
    let id = dash.sessions.create(Instant::now());
    let mut response = see_other(PREFIX.to_string());
    if let Ok(v) = HeaderValue::from_str(&COOKIE.set(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(dash): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err((status, refusal)) = authorised(&dash, &headers, &form.csrf) {
        return refused(status, refusal);
    }
    if let Some((id, _)) = session_of(&dash, &headers) {
        dash.sessions.end(&id);
    }
    let mut response = see_other(format!("{PREFIX}/login"));
    if let Ok(v) = HeaderValue::from_str(&COOKIE.clear()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// One node as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct NodeView {
    index: usize,
    up: bool,
    pid: Option<u32>,
    /// From `node.json` (also of a node that is down).
    peer_id: String,
    /// Its status, if its API answered.
    status: Option<Status>,
    /// Why there is no status of a running node.
    error: Option<String>,
}

/// A file some running node's catalog lists.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FileView {
    id: String,
    name: String,
    size: u64,
    stripes: u64,
    created: u64,
    /// The first running node that lists it (checks run there).
    node: usize,
}

/// The testnet now: its nodes and the files their catalogs list.
struct Snapshot {
    nodes: Vec<NodeView>,
    files: Vec<FileView>,
}

fn snapshot(binary: &Path, dir: &Path, with_files: bool) -> anyhow::Result<Snapshot> {
    let net = Testnet::attach(binary, dir)?;
    let mut nodes = Vec::with_capacity(net.len());
    let mut files: BTreeMap<String, FileView> = BTreeMap::new();
    for i in 0..net.len() {
        let pid = net.pid(i);
        let peer_id = net.peer_id(i).unwrap_or_default();
        let (status, error) = match pid {
            Some(_) => match net.with_api(i, STATUS_TIMEOUT, "the status", Client::status) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        };
        if with_files && status.is_some() {
            let listed: Vec<ListedFile> = net
                .with_api(i, STATUS_TIMEOUT, "the catalog", Client::list)
                .unwrap_or_default();
            for f in listed {
                files.entry(f.id.clone()).or_insert(FileView {
                    id: f.id,
                    name: f.name,
                    size: f.size,
                    stripes: f.stripes,
                    created: f.created,
                    node: i,
                });
            }
        }
        nodes.push(NodeView {
            index: i,
            up: pid.is_some(),
            pid,
            peer_id,
            status,
            error,
        });
    }
    let mut files: Vec<FileView> = files.into_values().collect();
    files.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    files.truncate(MAX_FILES);
    Ok(Snapshot { nodes, files })
}

async fn take_snapshot(dash: &Shared, with_files: bool) -> Result<Snapshot, String> {
    let (binary, dir) = (dash.binary.clone(), dash.dir.clone());
    tokio::task::spawn_blocking(move || snapshot(&binary, &dir, with_files))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    file: Option<String>,
}

async fn page(
    State(dash): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some((_, session)) = session_of(&dash, &headers) else {
        return see_other(format!("{PREFIX}/login"));
    };
    let snapshot = take_snapshot(&dash, true).await;
    let flash = dash.flash.lock().unwrap_or_else(|e| e.into_inner()).take();
    let chosen = query
        .file
        .filter(|f| f.parse::<FileId>().is_ok())
        .or_else(|| {
            snapshot
                .as_ref()
                .ok()
                .and_then(|s| s.files.first().map(|f| f.id.clone()))
        });
    let grid = dash
        .grid
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|g| Some(&g.file) == chosen.as_ref());
    let dir = dash.dir.display().to_string();
    let body = match &snapshot {
        Ok(s) => pages::dashboard(&pages::Page {
            csrf: session.csrf(),
            dir: &dir,
            nodes: &s.nodes,
            files: &s.files,
            chosen: chosen.as_deref(),
            grid: grid.as_ref(),
            flash: flash.as_ref().map(|(ok, m)| (*ok, m.as_str())),
        }),
        Err(e) => pages::unavailable(session.csrf(), e),
    };
    html(StatusCode::OK, body)
}

async fn state_json(State(dash): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&dash, &headers).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": "not logged in" })),
        )
            .into_response();
    }
    match take_snapshot(&dash, false).await {
        Ok(s) => axum::Json(serde_json::json!({ "nodes": s.nodes })).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

fn set_flash(dash: &Dash, ok: bool, message: String) {
    *dash.flash.lock().unwrap_or_else(|e| e.into_inner()) = Some((ok, message));
}

/// Where an action sends the browser back to: the page, with the file it showed.
fn back(file: Option<&str>) -> Response {
    match file.filter(|f| f.parse::<FileId>().is_ok()) {
        Some(f) => see_other(format!("{PREFIX}?file={f}")),
        None => see_other(PREFIX.to_string()),
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    /// The file the page showed (to come back to).
    #[serde(default)]
    file: Option<String>,
    /// `1`: repair rather than check.
    #[serde(default)]
    repair: Option<String>,
}

async fn node_action(
    State(dash): State<Shared>,
    headers: HeaderMap,
    UrlPath((index, action)): UrlPath<(usize, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err((status, refusal)) = authorised(&dash, &headers, &form.csrf) {
        return refused(status, refusal);
    }
    let kill = match action.as_str() {
        "kill" => true,
        "start" => false,
        _ => return refused(StatusCode::NOT_FOUND, "no such action: kill or start"),
    };
    let Ok(_one) = dash.action.try_lock() else {
        set_flash(&dash, false, "another action is still running".into());
        return back(form.file.as_deref());
    };
    let (binary, dir) = (dash.binary.clone(), dash.dir.clone());
    let done = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut net = Testnet::attach(&binary, &dir)?;
        if index >= net.len() {
            bail!("there is no node {index}");
        }
        if kill {
            net.kill(index)?;
        } else {
            net.start(index)?;
        }
        Ok(())
    })
    .await;
    let outcome = match done {
        Ok(Ok(())) if kill => (true, format!("Killed node {index} (SIGKILL).")),
        Ok(Ok(())) => (true, format!("Started node {index}.")),
        Ok(Err(e)) => (false, format!("Node {index}: {e:#}")),
        Err(e) => (false, format!("Node {index}: {e}")),
    };
    set_flash(&dash, outcome.0, outcome.1);
    back(form.file.as_deref())
}

/// One stripe of the grid.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct GridRow {
    stripe: u64,
    /// Healthy shards, and shards per stripe (`k/n`).
    healthy: usize,
    shards: usize,
    state: &'static str,
    /// Per node of the testnet, the shard indices it holds a healthy copy of.
    cells: Vec<Vec<usize>>,
    /// Healthy copies on peers that are not nodes of this testnet.
    elsewhere: usize,
}

/// A file's stripes by node, from one check.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Grid {
    file: String,
    /// The node the check ran on.
    via: usize,
    repair: bool,
    /// Unix seconds.
    at: u64,
    state: &'static str,
    stripes_total: usize,
    repaired_shards: usize,
    nodes: usize,
    rows: Vec<GridRow>,
}

fn grid_of(report: &CheckReport, via: usize, peers: &[String]) -> Grid {
    let rows = report
        .stripes
        .iter()
        .take(MAX_STRIPES_SHOWN)
        .map(|s| {
            let mut cells = vec![Vec::new(); peers.len()];
            let mut elsewhere = 0;
            for (index, holders) in s.holders.iter().enumerate() {
                for holder in holders {
                    match peers.iter().position(|p| p == holder) {
                        Some(node) => cells[node].push(index),
                        None => elsewhere += 1,
                    }
                }
            }
            GridRow {
                stripe: s.stripe,
                healthy: s.healthy,
                shards: s.holders.len(),
                state: s.state.as_str(),
                cells,
                elsewhere,
            }
        })
        .collect();
    Grid {
        file: report.id.clone(),
        via,
        repair: report.repair,
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        state: report.state.as_str(),
        stripes_total: report.stripes_total,
        repaired_shards: report.repaired_shards,
        nodes: peers.len(),
        rows,
    }
}

async fn check_file(
    State(dash): State<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err((status, refusal)) = authorised(&dash, &headers, &form.csrf) {
        return refused(status, refusal);
    }
    let Ok(file) = id.parse::<FileId>() else {
        return refused(StatusCode::BAD_REQUEST, "not a file id");
    };
    let repair = matches!(form.repair.as_deref(), Some("1"));
    let Ok(_one) = dash.action.try_lock() else {
        set_flash(&dash, false, "another action is still running".into());
        return back(Some(&id));
    };
    let (binary, dir) = (dash.binary.clone(), dash.dir.clone());
    let done = tokio::task::spawn_blocking(move || -> anyhow::Result<Grid> {
        let net = Testnet::attach(&binary, &dir)?;
        let peers: Vec<String> = (0..net.len())
            .map(|i| net.peer_id(i).unwrap_or_default())
            .collect();
        let text = file.to_string();
        // The first running node whose catalog lists the file: only it can repair it.
        let via = (0..net.len())
            .filter(|&i| net.pid(i).is_some())
            .find(|&i| {
                net.with_api(i, STATUS_TIMEOUT, "the catalog", Client::list)
                    .is_ok_and(|l| l.iter().any(|f| f.id == text))
            })
            .with_context(|| format!("no running node has {text} in its catalog"))?;
        let timeout = if repair {
            REPAIR_TIMEOUT
        } else {
            CHECK_TIMEOUT
        };
        let what = if repair { "the repair" } else { "the check" };
        let report = net.with_api(via, timeout, what, |c| c.check(&file, false, repair))?;
        Ok(grid_of(&report, via, &peers))
    })
    .await;
    let what = if repair { "Repair" } else { "Check" };
    match done {
        Ok(Ok(grid)) => {
            let mut message = format!("{what} of {id} through node {}: {}", grid.via, grid.state);
            if repair {
                message.push_str(&format!(", {} shards rebuilt", grid.repaired_shards));
            }
            set_flash(&dash, true, format!("{message}."));
            *dash.grid.lock().unwrap_or_else(|e| e.into_inner()) = Some(grid);
        }
        Ok(Err(e)) => set_flash(&dash, false, format!("{what} of {id}: {e:#}")),
        Err(e) => set_flash(&dash, false, format!("{what} of {id}: {e}")),
    }
    back(Some(&id))
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        web::STYLE_CSS,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/testnet.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use datamesh_api::{CheckSummary, Health, StripeCheck, StripeCounts};

    use super::*;

    fn summary() -> CheckSummary {
        CheckSummary {
            state: Health::Degraded,
            healthy_stripes: 0,
            degraded_stripes: 1,
            unrecoverable_stripes: 0,
            manifest_copies: 3,
            envelope_copies: 3,
        }
    }

    #[test]
    fn the_grid_puts_each_healthy_copy_under_its_node() {
        let peers: Vec<String> = ["a", "b", "c"].iter().map(|p| p.to_string()).collect();
        let report = CheckReport {
            id: "dm1x".into(),
            verified: false,
            repair: false,
            state: Health::Degraded,
            stripes_total: 1,
            peers_asked: 3,
            peers_answered: 3,
            bad_peers: vec![],
            repaired_shards: 0,
            kept_until: None,
            envelope: None,
            manifest_holders: vec![],
            responsible: None,
            before: summary(),
            after: summary(),
            stripes: vec![StripeCheck {
                stripe: 0,
                healthy: 4,
                peers: 4,
                state: Health::Degraded,
                before: StripeCounts {
                    healthy: 4,
                    peers: 4,
                    state: Health::Degraded,
                },
                holders: vec![
                    vec!["a".into()],
                    vec!["c".into()],
                    vec![],
                    vec!["stranger".into()],
                    vec!["a".into(), "b".into()],
                    vec![],
                ],
                bad: vec![],
                unreachable: vec![],
                repaired: vec![],
                error: None,
            }],
        };
        let grid = grid_of(&report, 1, &peers);
        assert_eq!(grid.nodes, 3);
        let row = &grid.rows[0];
        assert_eq!((row.healthy, row.shards, row.state), (4, 6, "degraded"));
        assert_eq!(row.cells, vec![vec![0, 4], vec![4], vec![1]]);
        assert_eq!(row.elsewhere, 1);
    }
}
