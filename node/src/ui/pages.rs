//! The dashboard's HTML: the login form and the dashboard's frame (what is known when
//! the page is served; `app.js` fills in the live parts from `/ui/state.json`).
//! Everything interpolated is escaped.

use std::fmt::Write as _;

use super::web::escape;

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\n",
        escape(title)
    )
}

/// The login form (with an error line after a wrong token).
pub(crate) fn login(error: Option<&str>) -> String {
    let mut page = head("DataMesh node: log in");
    page.push_str("</head>\n<body>\n<main class=\"login\">\n<h1>DataMesh node</h1>\n");
    if let Some(error) = error {
        let _ = writeln!(
            page,
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(error)
        );
    }
    page.push_str(concat!(
        "<form method=\"post\" action=\"/ui/login\">\n",
        "<label for=\"token\">API token</label>\n",
        "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\n",
        "<p class=\"hint\">The token is in the node's home: <code>api-token</code>.</p>\n",
        "<button type=\"submit\" id=\"login\">Log in</button>\n",
        "</form>\n</main>\n</body>\n</html>\n"
    ));
    page
}

/// What the dashboard's frame shows.
pub(crate) struct Dashboard<'a> {
    /// The session's CSRF token.
    pub(crate) csrf: &'a str,
    pub(crate) peer_id: Option<String>,
    pub(crate) addresses: Vec<String>,
    /// Key ids (public) and how many files each opens, or why they are not known.
    pub(crate) keys: Result<Vec<(String, usize)>, String>,
}

/// The dashboard.
pub(crate) fn dashboard(d: &Dashboard<'_>) -> String {
    let csrf = escape(d.csrf);
    let mut page = head("DataMesh node dashboard");
    let _ = writeln!(page, "<meta name=\"csrf-token\" content=\"{csrf}\">");
    page.push_str("<script src=\"/ui/assets/app.js\" defer></script>\n</head>\n<body>\n");
    let _ = write!(
        page,
        concat!(
            "<header>\n<h1>DataMesh node</h1>\n",
            "<form method=\"post\" action=\"/ui/logout\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">",
            "<button type=\"submit\" id=\"logout\">Log out</button></form>\n",
            "</header>\n<main>\n"
        ),
        csrf = csrf
    );
    // The node.
    page.push_str("<section aria-labelledby=\"node-h\">\n<h2 id=\"node-h\">Node</h2>\n<dl>\n");
    let _ = writeln!(
        page,
        "<dt>Peer id</dt><dd><code id=\"peer-id\">{}</code></dd>",
        escape(
            d.peer_id
                .as_deref()
                .unwrap_or("unknown (the swarm does not answer)")
        )
    );
    page.push_str("<dt>Addresses</dt><dd><ul id=\"addresses\">");
    for a in &d.addresses {
        let _ = write!(page, "<li><code>{}</code></li>", escape(a));
    }
    page.push_str("</ul></dd>\n<dt>Up for</dt><dd id=\"uptime\">…</dd>\n");
    page.push_str("<dt>Keys in use</dt><dd id=\"keys\">");
    match &d.keys {
        Ok(keys) if keys.is_empty() => page.push_str("no file of the catalog yet"),
        Ok(keys) => {
            page.push_str("<ul>");
            for (id, files) in keys {
                let _ = write!(
                    page,
                    "<li>key <code>{}</code> opens {files} file{}</li>",
                    escape(id),
                    if *files == 1 { "" } else { "s" }
                );
            }
            page.push_str("</ul>");
        }
        Err(e) => {
            let _ = write!(page, "not known: {}", escape(e));
        }
    }
    page.push_str("</dd>\n</dl>\n</section>\n");
    page.push_str(concat!(
        "<section aria-labelledby=\"storage-h\">\n<h2 id=\"storage-h\">Storage</h2>\n",
        "<p><span id=\"shards\">…</span> shards, <span id=\"bytes\">…</span> of <span id=\"quota\">…</span> quota</p>\n",
        "<label for=\"quota-bar\">Quota used</label> ",
        "<meter id=\"quota-bar\" min=\"0\" max=\"1\" value=\"0\"></meter> <span id=\"quota-pct\"></span>\n",
        "</section>\n",
        "<section aria-labelledby=\"traffic-h\">\n<h2 id=\"traffic-h\">Throughput</h2>\n",
        "<p aria-live=\"polite\">Put <span id=\"put-rate\">0 B/s</span>, get <span id=\"get-rate\">0 B/s</span>; ",
        "shards in <span id=\"in-rate\">0 B/s</span>, out <span id=\"out-rate\">0 B/s</span>. ",
        "Totals: <span id=\"puts\">0</span> puts, <span id=\"gets\">0</span> gets, <span id=\"failures\">0</span> failures.</p>\n",
        "</section>\n",
        "<section aria-labelledby=\"peers-h\">\n<h2 id=\"peers-h\">Peers: <span id=\"peer-count\">…</span> in the routing table, <span id=\"connected-count\">…</span> connected</h2>\n",
        "<table><caption>The routing table</caption><thead><tr><th scope=\"col\">Peer id</th><th scope=\"col\">Connection</th><th scope=\"col\">Strikes</th><th scope=\"col\">Addresses</th></tr></thead>\n",
        "<tbody id=\"peers\"></tbody></table>\n</section>\n",
        "<section aria-labelledby=\"files-h\">\n<h2 id=\"files-h\">Files: <span id=\"file-count\">…</span></h2>\n",
        "<p>Health per stripe is shown after a check (healthy shards of 6 on distinct live peers).</p>\n",
        "<table><caption>This node's files</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Id</th><th scope=\"col\">Size</th><th scope=\"col\">Health</th><th scope=\"col\">Stripes</th><th scope=\"col\">Actions</th></tr></thead>\n",
        "<tbody id=\"files\"></tbody></table>\n</section>\n",
        "<section aria-labelledby=\"activity-h\">\n<h2 id=\"activity-h\">Checks and repairs</h2>\n",
        "<p id=\"self-check\">No self-check yet.</p>\n<ul id=\"recent\"></ul>\n</section>\n",
        "<p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\n",
        "</main>\n</body>\n</html>\n"
    ));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let page = login(Some("<script>"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        let page = dashboard(&Dashboard {
            csrf: "\"><evil-csrf",
            peer_id: Some("<evil-peer>".into()),
            addresses: vec!["<evil-address>".into()],
            keys: Err("<evil-key>".into()),
        });
        for evil in ["<evil-csrf", "<evil-peer>", "<evil-address>", "<evil-key>"] {
            assert!(!page.contains(evil), "{evil}");
        }
        assert!(page.contains("&lt;evil-peer&gt;"));
    }
}
