/// The management port's status page (`GET /`): one self-contained HTML document, no external
/// assets and no build step. It holds no data itself: its script reads the management token from
/// the URL fragment (`/#token=…`, which browsers never send to the server) or asks for it, then
/// fetches `/cluster/status`, `/arvados/v1/dispatch/instances` and `/containers` with it every
/// two seconds.
enum StatusPage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>Convoy</title>
    <style>
      body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #fafbfc; }
      h1 { font-size: 20px; margin: 0 0 .2em; } h2 { font-size: 16px; margin: 1.4em 0 .4em; }
      table { border-collapse: collapse; width: 100%; background: #fff; }
      th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; white-space: nowrap; }
      th { background: #eef1f4; font-weight: 600; }
      .muted { color: #6b7280; } .leader { font-weight: 600; color: #0a7d32; }
      .state-Running, .state-running { color: #0b5cad; } .state-Complete, .state-idle { color: #0a7d32; }
      .state-Cancelled, .state-shutdown, .error { color: #b42318; } .state-Queued, .state-booting { color: #8a6100; }
      #summary span { margin-right: 1.2em; }
    </style>
    </head>
    <body>
    <h1>Convoy <span class="muted" id="cluster"></span></h1>
    <div id="summary" class="muted">loading…</div>
    <h2>Members</h2>
    <table id="members"><thead><tr><th>member</th><th>role</th><th>address</th><th>management</th><th>host</th><th>pid</th><th>version</th><th>heartbeat</th></tr></thead><tbody></tbody></table>
    <h2>Instances</h2>
    <table id="instances"><thead><tr><th>instance</th><th>type</th><th>state</th><th>idle behaviour</th><th>hosted by</th><th>price/h</th><th>containers</th><th>address</th></tr></thead><tbody></tbody></table>
    <h2>Containers</h2>
    <table id="containers"><thead><tr><th>uuid</th><th>state</th><th>priority</th><th>instance type</th><th>instance</th><th>status</th></tr></thead><tbody></tbody></table>
    <p class="muted" id="updated"></p>
    <script>
    "use strict";
    let token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("convoy-token");
    if (!token) { token = prompt("Management token"); }
    if (token) { sessionStorage.setItem("convoy-token", token); }
    function cell(row, text, cls) {
      const td = row.insertCell(); td.textContent = text == null ? "" : String(text); if (cls) td.className = cls; return td;
    }
    function fill(id, items, columns) {
      const body = document.querySelector("#" + id + " tbody");
      body.replaceChildren();
      if (items.length === 0) { const r = body.insertRow(); const td = cell(r, "none", "muted"); td.colSpan = 8; return; }
      for (const item of items) { const r = body.insertRow(); for (const c of columns) { const [text, cls] = c(item); cell(r, text, cls); } }
    }
    async function get(path) {
      const response = await fetch(path, { headers: { "Authorization": "Bearer " + token } });
      if (!response.ok) { throw new Error(path + ": " + response.status + (response.status === 401 ? " (wrong management token)" : "")); }
      return response.json();
    }
    async function refresh() {
      try {
        const status = await get("/cluster/status");
        document.getElementById("cluster").textContent = status.cluster_id + " · leader " + (status.leader || "none") + " · epoch " + status.epoch;
        fill("members", status.members, [
          m => [m.member_id, m.member_id === status.leader ? "leader" : ""], m => [m.member_id === status.leader ? "leader" : "follower", m.member_id === status.leader ? "leader" : ""],
          m => [m.address], m => [m.management_address], m => [m.host], m => [m.pid], m => [m.version], m => [m.heartbeat_age.toFixed(1) + " s ago"]]);
        let instances = [], containers = [], poolError = "";
        try { instances = (await get("/arvados/v1/dispatch/instances")).items; containers = (await get("/arvados/v1/dispatch/containers")).items; }
        catch (e) { poolError = String(e.message); }
        fill("instances", instances, [
          i => [i.instance], i => [i.instance_type + " (" + i.provider_type + ")"], i => [i.worker_state, "state-" + i.worker_state],
          i => [i.idle_behavior], i => [i.hosted_by || "-"], i => [i.price.toFixed(3)], i => [i.containers.join(" ") || "-"], i => [i.address]]);
        fill("containers", containers, [
          c => [c.uuid], c => [c.state, "state-" + c.state], c => [c.priority], c => [c.instance_type || "-"], c => [c.instance || "-"], c => [c.scheduling_status]]);
        const byState = {}; for (const c of containers) byState[c.state] = (byState[c.state] || 0) + 1;
        const price = instances.reduce((sum, i) => sum + i.price, 0);
        document.getElementById("summary").innerHTML = "";
        for (const text of [status.members.length + " members", instances.length + " instances ($" + price.toFixed(2) + "/h)",
                            ...Object.entries(byState).map(([s, n]) => n + " " + s), poolError]) {
          if (!text) continue; const span = document.createElement("span"); span.textContent = text; if (text === poolError) span.className = "error";
          document.getElementById("summary").appendChild(span);
        }
        document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      } catch (e) {
        document.getElementById("summary").innerHTML = ""; const span = document.createElement("span"); span.className = "error";
        span.textContent = e.message; document.getElementById("summary").appendChild(span);
      }
    }
    refresh(); setInterval(refresh, 2000);
    </script>
    </body>
    </html>
    """#
}
