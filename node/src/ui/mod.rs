//! The dashboard: `/ui` on the API's own listener (loopback unless the node was told
//! otherwise), for a person with a browser rather than the CLI.
//!
//! * **Login.** `GET /ui/login` is a form for the API token; `POST /ui/login` compares it
//!   in constant time and, if it matches, starts a session ([`session`]): a random id in
//!   an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`, expiring after
//!   [`web::session::SESSION_LIFETIME`]. The token never appears in a URL, a page or a log.
//!   `POST /ui/logout` ends the session and clears the cookie. Logins are limited to
//!   [`web::LOGIN_ATTEMPTS`] per [`web::LOGIN_WINDOW`] (429 past that).
//! * **Pages and data.** `GET /ui` is the dashboard (server-rendered HTML: the node, its
//!   key versions in use; the rest filled by `app.js`), `GET /ui/state.json` its live
//!   data, polled every two seconds. Both need the session cookie; without it the page
//!   sends the browser to the login form and the JSON answers 401.
//! * **Actions.** `POST /ui/files/{id}/check[?repair=1]` runs a check (or repair) and
//!   keeps its per-stripe outcome for the page. Every state-changing request (login,
//!   logout, check) must come from the page itself: its `Origin` must be this listener
//!   (`http://<Host>`; a cross-site form post is refused, even from another port of
//!   127.0.0.1, which is the *same site* for `SameSite`), and logout and check must carry
//!   the session's CSRF token (a hidden field, or the `X-CSRF-Token` header).
//! * **Hosts.** Every `/ui` request must name the node by an IP address or `localhost`
//!   in its `Host` header: a DNS-rebinding page under another name is refused.
//! * **Assets** (`assets/`, and the stylesheet of [`web`]) are compiled in with
//!   `include_str!`: no build step, no web font, no request leaves the node. The
//!   Content-Security-Policy allows scripts and styles from the node only.
//!
//! The sessions, the origin and host checks, the login limit and the security headers
//! are in [`web`], shared with the testnet's dashboard (`datamesh testnet ui`).

mod pages;
pub mod web;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datamesh_core::FileId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::api::ApiState;
use crate::check::CheckReport;
use crate::files::KeyAccess;
use web::session::{Authenticated, Cookie, Sessions};
use web::{LoginLimiter, same_origin};

/// The node dashboard's session cookie.
const COOKIE: Cookie = Cookie {
    name: "datamesh_session",
    path: "/ui",
};
/// Files the dashboard lists at most (the newest first).
const MAX_FILES_SHOWN: usize = 500;
/// Check outcomes the dashboard remembers (recent activity).
const RECENT_CHECKS: usize = 20;

/// The dashboard's state besides the API's.
struct Ui {
    api: ApiState,
    sessions: Sessions,
    logins: LoginLimiter,
    started: Instant,
    /// The last check of each file run from the dashboard.
    health: Mutex<HashMap<FileId, FileHealth>>,
    /// The latest check outcomes, newest last.
    recent: Mutex<VecDeque<RecentCheck>>,
}

type Shared = Arc<Ui>;

/// The `/ui` routes, to be merged into the API's router (they do their own
/// authentication: the session cookie, not the bearer token).
pub(crate) fn router(api: ApiState) -> Router {
    let ui = Arc::new(Ui {
        api,
        sessions: Sessions::default(),
        logins: LoginLimiter::default(),
        started: Instant::now(),
        health: Mutex::new(HashMap::new()),
        recent: Mutex::new(VecDeque::new()),
    });
    Router::new()
        .route("/ui", get(dashboard))
        .route("/ui/", get(dashboard))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/state.json", get(state_json))
        .route("/ui/files/{id}/check", post(check_file))
        .route("/ui/assets/app.js", get(app_js))
        .route("/ui/assets/style.css", get(style_css))
        .layer(middleware::from_fn(web::guard))
        .with_state(ui)
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn session_of(ui: &Ui, headers: &HeaderMap) -> Option<(Zeroizing<String>, Authenticated)> {
    let id = Zeroizing::new(COOKIE.value(headers)?);
    let found = ui.sessions.find(&id, Instant::now())?;
    Some((id, found))
}

async fn login_page(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&ui, &headers).is_some() {
        return see_other("/ui");
    }
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(ui): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = Zeroizing::new(form.token);
    if !same_origin(&headers) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: a login must come from the dashboard's own page (Origin)",
        );
    }
    if let Err(wait) = ui.logins.attempt(Instant::now()) {
        tracing::info!("dashboard login refused: too many attempts");
        return web::too_many_logins(wait);
    }
    if !ui.api.token.matches(token.trim()) {
        tracing::info!("dashboard login refused: wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That is not this node's API token.")),
        );
    }
    let id = ui.sessions.create(Instant::now());
    tracing::info!("dashboard login");
    let cookie = COOKIE.set(&id);
    let mut response = see_other("/ui");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(ui): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some((id, session)) = session_of(&ui, &headers) else {
        return plain(StatusCode::UNAUTHORIZED, "not logged in");
    };
    if !same_origin(&headers) || !session.csrf_matches(&form.csrf) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: a logout must come from the dashboard's own page (Origin, CSRF token)",
        );
    }
    ui.sessions.end(&id);
    let mut response = see_other("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&COOKIE.clear()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn dashboard(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&ui, &headers) else {
        return see_other("/ui/login");
    };
    let info = ui.api.net.info().await.ok();
    let files = ui.api.files.clone();
    let keys = tokio::task::spawn_blocking(move || files.key_usage(KeyAccess::Live)).await;
    let keys = match keys {
        Ok(Ok(usage)) => {
            let mut count: Vec<(String, usize)> = Vec::new();
            for (_, ids) in &usage {
                for id in ids {
                    let id = id.to_string();
                    match count.iter_mut().find(|(k, _)| *k == id) {
                        Some((_, n)) => *n += 1,
                        None => count.push((id, 1)),
                    }
                }
            }
            Ok(count)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    html(
        StatusCode::OK,
        pages::dashboard(&pages::Dashboard {
            csrf: session.csrf(),
            peer_id: info.as_ref().map(|i| i.peer_id.to_string()),
            addresses: info
                .map(|i| i.listen_addresses.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            keys,
        }),
    )
}

/// One stripe's health as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
struct StripeView {
    stripe: u64,
    /// Shards (of 6) with an intact copy on a live peer.
    healthy: usize,
    /// Distinct live peers holding distinct healthy shards.
    peers: usize,
    state: &'static str,
}

/// The last check of a file run from the dashboard.
#[derive(Clone, Debug, Serialize)]
struct FileHealth {
    checked: u64,
    state: &'static str,
    stripes: Vec<StripeView>,
}

#[derive(Clone, Debug, Serialize)]
struct RecentCheck {
    file: String,
    at: u64,
    repair: bool,
    before: &'static str,
    after: &'static str,
    repaired_shards: usize,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn record(ui: &Ui, report: &CheckReport) {
    let at = unix_now();
    let stripes = report
        .stripes
        .iter()
        .map(|s| StripeView {
            stripe: s.stripe,
            healthy: s.after.healthy,
            peers: s.after.peers,
            state: s.after.state().as_str(),
        })
        .collect();
    let health = FileHealth {
        checked: at,
        state: report.state().as_str(),
        stripes,
    };
    ui.health
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(report.id, health);
    let mut recent = ui.recent.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() == RECENT_CHECKS {
        recent.pop_front();
    }
    recent.push_back(RecentCheck {
        file: report.id.to_string(),
        at,
        repair: report.repair,
        before: report.state_before().as_str(),
        after: report.state().as_str(),
        repaired_shards: report.repaired_shards(),
    });
}

#[derive(Deserialize)]
struct CheckQuery {
    #[serde(default)]
    repair: Option<String>,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn check_file(
    State(ui): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<CheckQuery>,
) -> Response {
    let Some((_, session)) = session_of(&ui, &headers) else {
        return json_error(StatusCode::UNAUTHORIZED, "not logged in");
    };
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_origin(&headers) || !session.csrf_matches(csrf) {
        return json_error(
            StatusCode::FORBIDDEN,
            "refused: not from the dashboard's own page (Origin, CSRF token)",
        );
    }
    let Ok(id) = id.parse::<FileId>() else {
        return json_error(StatusCode::BAD_REQUEST, "not a file id");
    };
    let repair = matches!(query.repair.as_deref(), Some("1" | "true"));
    let result = if repair {
        ui.api
            .checker
            .repair(id, false)
            .await
            .map_err(|e| e.to_string())
    } else {
        ui.api
            .checker
            .check(id, false)
            .await
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(report) => {
            record(&ui, &report);
            axum::Json(report.to_api()).into_response()
        }
        Err(e) => json_error(StatusCode::BAD_GATEWAY, &e),
    }
}

#[derive(Serialize)]
struct PeerView {
    peer_id: String,
    addresses: Vec<String>,
    connected: bool,
    /// Strikes against it now (shards that did not match their id, bad frames, over
    /// budget); absent: none.
    strikes: i64,
}

#[derive(Serialize)]
struct FileView {
    id: String,
    name: String,
    size: u64,
    stripes: u64,
    created: u64,
    /// Below full health at the last self-check.
    below_full_health: bool,
    health: Option<FileHealth>,
}

async fn state_json(State(ui): State<Shared>, headers: HeaderMap) -> Response {
    if session_of(&ui, &headers).is_none() {
        return json_error(StatusCode::UNAUTHORIZED, "not logged in");
    }
    let api = &ui.api;
    let info = api.net.info().await.ok();
    let peers = api.net.peers().await.unwrap_or_default();
    let metrics = &api.metrics;
    let peers: Vec<PeerView> = peers
        .iter()
        .map(|p| {
            let id = p.peer_id.to_string();
            let strikes = metrics
                .peer_strikes_now
                .get(&[("peer", id.clone())])
                .map_or(0, |g| g.get());
            PeerView {
                peer_id: id,
                addresses: p.addresses.iter().map(ToString::to_string).collect(),
                connected: p.connected,
                strikes,
            }
        })
        .collect();
    let store = Arc::clone(&api.store);
    let catalog = api.files.catalog().clone();
    let read = tokio::task::spawn_blocking(move || {
        let used = store.used_bytes().unwrap_or(0);
        let shards = store.shard_count().unwrap_or(0);
        (used, shards, catalog.list())
    })
    .await;
    let (bytes, shards, entries) = match read {
        Ok((b, s, Ok(entries))) => (b, s, entries),
        Ok((b, s, Err(_))) => (b, s, Vec::new()),
        Err(_) => (0, 0, Vec::new()),
    };
    let last = api.checker.last_self_check();
    let below: Vec<FileId> = last
        .as_ref()
        .map(|c| c.below_full_health.clone())
        .unwrap_or_default();
    let health = ui.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut entries = entries;
    entries.sort_by_key(|e| std::cmp::Reverse(e.created));
    let files: Vec<FileView> = entries
        .iter()
        .take(MAX_FILES_SHOWN)
        .map(|e| FileView {
            id: e.id.to_string(),
            name: e.name.clone(),
            size: e.size,
            stripes: e.stripes,
            created: e.created,
            below_full_health: below.contains(&e.id),
            health: health.get(&e.id).cloned(),
        })
        .collect();
    let recent: Vec<RecentCheck> = ui
        .recent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
        .cloned()
        .collect();
    let body = serde_json::json!({
        "now": unix_now(),
        "uptime_secs": ui.started.elapsed().as_secs(),
        "peer_id": info.as_ref().map(|i| i.peer_id.to_string()),
        "listen_addresses": info.as_ref().map(|i| i.listen_addresses.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default(),
        "connected_peers": info.as_ref().map_or(0, |i| i.connected_peers),
        "routing_table_peers": info.as_ref().map_or(0, |i| i.routing_table_peers),
        "storage": { "shards": shards, "bytes": bytes, "quota": api.store.config().max_bytes() },
        "peers": peers,
        "files": files,
        "files_total": entries.len(),
        "self_check": last.as_ref().map(|c| serde_json::json!({
            "finished": c.finished,
            "files": c.files,
            "below_full_health": c.below_full_health.len(),
            "repaired_shards": c.repaired_shards,
        })),
        "recent_checks": recent,
        "counters": {
            "puts": metrics.puts.get(),
            "gets": metrics.gets.get(),
            "failures": metrics.failures.get(),
            "put_bytes": metrics.put_bytes.get(),
            "get_bytes": metrics.get_bytes.get(),
            "shard_bytes_in": metrics.bytes_in.get(),
            "shard_bytes_out": metrics.bytes_out.get(),
            "repaired_shards": metrics.repaired_shards.get(),
            "bad_shards_fetched": metrics.bad_shards_fetched.get(),
        },
    });
    axum::Json(body).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", web::STYLE_CSS)
}
