// DataMesh testnet dashboard: refreshes the node table from /testnet/state.json every
// two seconds. The actions are plain forms (the page works without this script).
// Text goes in with textContent only (never innerHTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function render(nodes) {
    let up = 0;
    for (const n of nodes) {
      const row = document.querySelector('#nodes tr[data-node="' + n.index + '"]');
      if (!row) continue;
      if (n.up) up++;
      const s = n.status;
      const state = row.querySelector(".state");
      state.textContent = n.up ? (s ? "up" : "up, API not answering") : "down";
      state.className = "state " + (n.up ? (s ? "ok" : "warn") : "down");
      row.querySelector(".peers").textContent = s ? s.routing_table_peers + " (" + s.connected_peers + " connected)" : "–";
      row.querySelector(".shards").textContent = s ? String(s.shards) : "–";
      row.querySelector(".bytes").textContent = s ? bytes(s.bytes_stored) : "–";
      row.querySelector("button.kill").disabled = !n.up;
      row.querySelector("button.start").disabled = n.up;
    }
    $("up-count").textContent = String(up);
  }

  async function poll() {
    try {
      const response = await fetch("/testnet/state.json", { credentials: "same-origin" });
      if (response.status === 401) { location.assign("/testnet/login"); return; }
      if (response.ok) {
        const state = await response.json();
        render(state.nodes);
        document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
      }
    } catch (e) {
      // The dashboard's process is gone or busy: keep the last view, try again.
    }
    setTimeout(poll, 2000);
  }

  // A form's button says it is working while the action (a start waits for the DHT)
  // runs; the page comes back when it is done.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", () => {
      const button = form.querySelector("button");
      if (button) { button.setAttribute("aria-busy", "true"); button.textContent += "…"; }
      $("flash").textContent = "Working…";
    });
  }
  poll();
})();
