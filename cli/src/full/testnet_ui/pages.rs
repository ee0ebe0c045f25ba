//! The testnet dashboard's HTML: the login form and the page (nodes, files, a file's
//! stripe grid, the action buttons as plain forms, so it works without JavaScript;
//! `testnet.js` only refreshes the node table). Everything interpolated is escaped.

use std::fmt::Write as _;

use datamesh_node::web::escape;

use super::{FileView, Grid, NodeView, PREFIX};

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<link rel=\"stylesheet\" href=\"{PREFIX}/assets/style.css\">\n",
        escape(title)
    )
}

/// The login form (with an error line after a wrong token).
pub(crate) fn login(error: Option<&str>) -> String {
    let mut page = head("DataMesh testnet: log in");
    page.push_str("</head>\n<body>\n<main class=\"login\">\n<h1>DataMesh testnet</h1>\n");
    if let Some(error) = error {
        let _ = writeln!(
            page,
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(error)
        );
    }
    let _ = write!(
        page,
        concat!(
            "<form method=\"post\" action=\"{p}/login\">\n",
            "<label for=\"token\">Dashboard token</label>\n",
            "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\n",
            "<p class=\"hint\">The token is in the testnet folder: <code>dashboard-token</code>.</p>\n",
            "<button type=\"submit\" id=\"login\">Log in</button>\n",
            "</form>\n</main>\n</body>\n</html>\n"
        ),
        p = PREFIX
    );
    page
}

/// What the page shows.
pub(crate) struct Page<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) dir: &'a str,
    pub(crate) nodes: &'a [NodeView],
    pub(crate) files: &'a [FileView],
    /// The file whose grid is shown.
    pub(crate) chosen: Option<&'a str>,
    /// Its last check, if any.
    pub(crate) grid: Option<&'a Grid>,
    /// What the last action did: (succeeded, message).
    pub(crate) flash: Option<(bool, &'a str)>,
}

fn header(page: &mut String, csrf: &str, title: &str) {
    let _ = write!(
        page,
        concat!(
            "<header>\n<h1>{title}</h1>\n",
            "<form method=\"post\" action=\"{p}/logout\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">",
            "<button type=\"submit\" id=\"logout\">Log out</button></form>\n",
            "</header>\n<main>\n"
        ),
        title = escape(title),
        p = PREFIX,
        csrf = escape(csrf)
    );
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

/// A hidden CSRF field and the file to come back to.
fn hidden(csrf: &str, file: Option<&str>) -> String {
    let mut out = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    );
    if let Some(f) = file {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"file\" value=\"{}\">",
            escape(f)
        );
    }
    out
}

fn node_row(page: &mut String, n: &NodeView, csrf: &str, file: Option<&str>) {
    let (state, class) = match (n.up, &n.status) {
        (true, Some(_)) => ("up", "ok"),
        (true, None) => ("up, API not answering", "warn"),
        (false, _) => ("down", "down"),
    };
    let (peers, shards, stored) = match &n.status {
        Some(s) => (
            format!(
                "{} ({} connected)",
                s.routing_table_peers, s.connected_peers
            ),
            s.shards.to_string(),
            bytes(s.bytes_stored),
        ),
        None => ("–".into(), "–".into(), "–".into()),
    };
    let i = n.index;
    let _ = write!(
        page,
        concat!(
            "<tr data-node=\"{i}\"><th scope=\"row\">Node {i}</th>",
            "<td class=\"state {class}\">{state}</td>",
            "<td class=\"peers\">{peers}</td><td class=\"shards\">{shards}</td><td class=\"bytes\">{stored}</td>",
            "<td class=\"mono small\" title=\"{peer}\">{short}</td><td class=\"actions\">",
            "<form method=\"post\" action=\"{p}/nodes/{i}/kill\">{hidden}",
            "<button type=\"submit\" class=\"kill\" aria-label=\"Kill node {i}\"{kill_off}>Kill</button></form> ",
            "<form method=\"post\" action=\"{p}/nodes/{i}/start\">{hidden}",
            "<button type=\"submit\" class=\"start\" aria-label=\"Start node {i}\"{start_off}>Start</button></form>",
            "</td></tr>\n"
        ),
        i = i,
        class = class,
        state = escape(state),
        peers = escape(&peers),
        shards = shards,
        stored = escape(&stored),
        peer = escape(&n.peer_id),
        short = escape(short(&n.peer_id)),
        p = PREFIX,
        hidden = hidden(csrf, file),
        kill_off = if n.up { "" } else { " disabled" },
        start_off = if n.up { " disabled" } else { "" },
    );
    if let Some(e) = &n.error {
        let _ = writeln!(
            page,
            "<tr class=\"note\"><td></td><td colspan=\"6\" class=\"warn small\">{}</td></tr>",
            escape(e)
        );
    }
}

fn grid_table(page: &mut String, grid: &Grid, nodes: &[NodeView]) {
    let _ = write!(
        page,
        concat!(
            "<p id=\"grid-summary\">Last {what} through node {via}: <strong class=\"{state}\">{state}</strong>, ",
            "{total} stripe{s}{repaired}.</p>\n",
            "<div class=\"scroll\"><table class=\"grid\" id=\"grid\">",
            "<caption>Which node holds which shard (index 0-5) of each stripe; k/n: healthy shards of n</caption>\n",
            "<thead><tr><th scope=\"col\">Stripe</th>"
        ),
        what = if grid.repair { "repair" } else { "check" },
        via = grid.via,
        state = grid.state,
        total = grid.stripes_total,
        s = if grid.stripes_total == 1 { "" } else { "s" },
        repaired = if grid.repair {
            format!(", {} shards rebuilt", grid.repaired_shards)
        } else {
            String::new()
        },
    );
    for i in 0..grid.nodes {
        let down = nodes.get(i).is_some_and(|n| !n.up);
        let _ = write!(
            page,
            "<th scope=\"col\"{}>Node {i}{}</th>",
            if down { " class=\"down\"" } else { "" },
            if down { " (down)" } else { "" }
        );
    }
    page.push_str(
        "<th scope=\"col\">Elsewhere</th><th scope=\"col\">k/n</th></tr></thead>\n<tbody>\n",
    );
    for row in &grid.rows {
        let _ = write!(
            page,
            "<tr data-stripe=\"{}\"><th scope=\"row\">{}</th>",
            row.stripe, row.stripe
        );
        for (node, held) in row.cells.iter().enumerate() {
            if held.is_empty() {
                let _ = write!(page, "<td class=\"missing\" data-node=\"{node}\">–</td>");
            } else {
                let list: Vec<String> = held.iter().map(ToString::to_string).collect();
                let _ = write!(
                    page,
                    "<td class=\"held\" data-node=\"{node}\">{}</td>",
                    list.join(" ")
                );
            }
        }
        let _ = writeln!(
            page,
            "<td>{}</td><td><span class=\"chip {state}\" data-k=\"{k}\" data-n=\"{n}\">{k}/{n}</span></td></tr>",
            row.elsewhere,
            state = row.state,
            k = row.healthy,
            n = row.shards
        );
    }
    page.push_str("</tbody></table></div>\n");
    if grid.rows.len() < grid.stripes_total {
        let _ = writeln!(
            page,
            "<p class=\"hint\">The first {} of {} stripes.</p>",
            grid.rows.len(),
            grid.stripes_total
        );
    }
}

/// The page.
pub(crate) fn dashboard(p: &Page<'_>) -> String {
    let mut page = head("DataMesh testnet");
    let _ = writeln!(
        page,
        "<script src=\"{PREFIX}/assets/testnet.js\" defer></script>\n</head>\n<body>"
    );
    header(&mut page, p.csrf, "DataMesh testnet");
    let up = p.nodes.iter().filter(|n| n.up).count();
    match p.flash {
        Some((ok, message)) => {
            let _ = writeln!(
                page,
                "<p id=\"flash\" role=\"status\" class=\"{}\">{}</p>",
                if ok { "ok" } else { "bad" },
                escape(message)
            );
        }
        None => page.push_str("<p id=\"flash\" role=\"status\"></p>\n"),
    }
    let _ = write!(
        page,
        concat!(
            "<section aria-labelledby=\"nodes-h\">\n",
            "<h2 id=\"nodes-h\">Nodes: <span id=\"up-count\">{up}</span> of <span id=\"node-count\">{all}</span> up</h2>\n",
            "<p class=\"hint\">Testnet folder <code>{dir}</code>. Peers: in the routing table (connected).</p>\n",
            "<table id=\"nodes-table\"><caption>The testnet's nodes</caption><thead><tr>",
            "<th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Peers</th>",
            "<th scope=\"col\">Shards</th><th scope=\"col\">Stored</th><th scope=\"col\">Peer id</th><th scope=\"col\">Actions</th>",
            "</tr></thead>\n<tbody id=\"nodes\">\n"
        ),
        up = up,
        all = p.nodes.len(),
        dir = escape(p.dir),
    );
    for n in p.nodes {
        node_row(&mut page, n, p.csrf, p.chosen);
    }
    page.push_str("</tbody></table>\n</section>\n");

    page.push_str("<section aria-labelledby=\"files-h\">\n<h2 id=\"files-h\">Files</h2>\n");
    if p.files.is_empty() {
        page.push_str("<p id=\"no-files\">No running node's catalog lists a file yet: put one (<code>datamesh --home D/node-0 put FILE</code>) and reload.</p>\n");
    } else {
        let _ = write!(
            page,
            "<form method=\"get\" action=\"{PREFIX}\" class=\"inline\"><label for=\"file\">File</label> <select id=\"file\" name=\"file\">"
        );
        for f in p.files {
            let selected = if Some(f.id.as_str()) == p.chosen {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                page,
                "<option value=\"{id}\"{selected}>{name} ({size}, {stripes} stripe{s}) {short}…</option>",
                id = escape(&f.id),
                name = escape(&f.name),
                size = bytes(f.size),
                stripes = f.stripes,
                s = if f.stripes == 1 { "" } else { "s" },
                short = escape(short(&f.id)),
            );
        }
        page.push_str("</select> <button type=\"submit\" id=\"show\">Show</button></form>\n");
    }
    if let Some(chosen) = p.chosen.filter(|c| p.files.iter().any(|f| f.id == *c)) {
        let _ = write!(
            page,
            concat!(
                "<h3>Stripes of <code id=\"chosen\">{id}</code></h3>\n<div class=\"buttons\">",
                "<form method=\"post\" action=\"{p}/files/{id}/check\">{hidden}",
                "<button type=\"submit\" id=\"check\">Check</button></form> ",
                "<form method=\"post\" action=\"{p}/files/{id}/check\">{hidden}",
                "<input type=\"hidden\" name=\"repair\" value=\"1\">",
                "<button type=\"submit\" id=\"repair\">Repair</button></form></div>\n"
            ),
            id = escape(chosen),
            p = PREFIX,
            hidden = hidden(p.csrf, Some(chosen)),
        );
        match p.grid {
            Some(grid) => grid_table(&mut page, grid, p.nodes),
            None => page.push_str(
                "<p id=\"grid-none\">Not checked from this page yet: press Check to see which node holds which shard.</p>\n",
            ),
        }
    }
    page.push_str("</section>\n</main>\n</body>\n</html>\n");
    page
}

/// The page when the testnet cannot be read.
pub(crate) fn unavailable(csrf: &str, error: &str) -> String {
    let mut page = head("DataMesh testnet");
    page.push_str("</head>\n<body>\n");
    header(&mut page, csrf, "DataMesh testnet");
    let _ = writeln!(
        page,
        "<p class=\"error\" role=\"alert\">The testnet cannot be read: {}</p>\n</main>\n</body>\n</html>",
        escape(error)
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_errors_are_escaped() {
        let nodes = [NodeView {
            index: 0,
            up: true,
            pid: Some(1),
            peer_id: "<evil-peer>".into(),
            status: None,
            error: Some("<evil-error>".into()),
        }];
        let files = [FileView {
            id: "dm1abc".into(),
            name: "<evil-name>".into(),
            size: 1,
            stripes: 1,
            created: 0,
            node: 0,
        }];
        let page = dashboard(&Page {
            csrf: "\"><evil-csrf",
            dir: "<evil-dir>",
            nodes: &nodes,
            files: &files,
            chosen: Some("dm1abc"),
            grid: None,
            flash: Some((false, "<evil-flash>")),
        });
        for evil in [
            "<evil-peer>",
            "<evil-error>",
            "<evil-name>",
            "<evil-csrf",
            "<evil-dir>",
            "<evil-flash>",
        ] {
            assert!(!page.contains(evil), "{evil}");
        }
        assert!(page.contains("&lt;evil-name&gt;"));
        assert!(login(Some("<x>")).contains("&lt;x&gt;"));
    }
}
