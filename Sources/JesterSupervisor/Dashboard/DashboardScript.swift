// SPDX-License-Identifier: Apache-2.0

/// The dashboard's script (`GET /dashboard/dashboard.js`): polls the admin API every 1.5 s and renders what it
/// reads.
///
/// Rates and latency percentiles are the change between two successive scrapes of `GET /metrics`, computed in
/// the browser, so the master keeps no time series: `histogram_quantile`'s estimate over the bucket increases of
/// `jester_http_request_duration_seconds` (per route) and `jester_upstream_response_duration_seconds` (per
/// target). Everything the server sends is put into the page with `textContent`, never as markup: request paths
/// and user agents in the access records are a client's words. The token is kept in `sessionStorage` (gone with
/// the tab) and sent as `Authorization: Bearer`; fetches omit credentials, so no cookie is involved and a forged
/// request from another site has nothing to ride on. `window.jesterDashboard` exposes the pure helpers to the live
/// test.
enum DashboardScript {
    static let source = #"""
"use strict";
// Jester's dashboard (jester-admin(7)): polls the admin API, renders with textContent only (never markup from the
// server: request paths and user agents are the client's words), and keeps the token in sessionStorage, sent as
// Authorization: Bearer, so no cookie ever carries it and another site cannot act with it.
(function () {
  const POLL_MS = 1500;
  const TOKEN_KEY = "jester.adminToken";
  const QUANTILES = [0.5, 0.95, 0.99];
  const ACCESS_ROWS = 25;
  let previous = null;      // the last scrape: {at, requests, routeBuckets, targetBuckets}
  let inFlight = false;
  let pollFailed = false;   // the message shown is a failed poll's, cleared by the next good one

  // MARK: Pure helpers (also reachable as window.jesterDashboard, which the live test calls)

  // Prometheus text exposition -> [{name, labels, value}]; comments and malformed lines are skipped.
  function parseExposition(text) {
    const samples = [];
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const raw of text.split("\n")) {
      if (raw === "" || raw[0] === "#") continue;
      const match = line.exec(raw);
      if (!match) continue;
      const labels = {};
      if (match[2]) {
        label.lastIndex = 0;
        let pair;
        while ((pair = label.exec(match[2])) !== null) {
          labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        }
      }
      samples.push({ name: match[1], labels: labels, value: parseFloat(match[3]) });
    }
    return samples;
  }

  // Sums the samples called `name` by the labels `keys` (a key string joined with "\u0000" -> value).
  function sumBy(samples, name, keys, where) {
    const sums = new Map();
    for (const s of samples) {
      if (s.name !== name || (where && !where(s.labels))) continue;
      const key = keys.map((k) => s.labels[k] || "").join("\u0000");
      sums.set(key, (sums.get(key) || 0) + s.value);
    }
    return sums;
  }

  // Cumulative histogram buckets by `keys`: key -> Map(le -> count).
  function bucketsBy(samples, name, keys) {
    const all = new Map();
    for (const s of samples) {
      if (s.name !== name + "_bucket") continue;
      const key = keys.map((k) => s.labels[k] || "").join("\u0000");
      if (!all.has(key)) all.set(key, new Map());
      const buckets = all.get(key);
      const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    }
    return all;
  }

  // The q-quantile of cumulative buckets [[le, count], ...] (any order), as Prometheus's histogram_quantile:
  // linear within the bucket holding the rank, the highest finite bound if that is +Inf; null without
  // observations.
  function quantile(q, buckets) {
    const sorted = buckets.slice().sort((a, b) => a[0] - b[0]);
    if (sorted.length === 0) return null;
    const total = sorted[sorted.length - 1][1];
    if (!(total > 0)) return null;
    const rank = q * total;
    let lowerBound = 0;
    let lowerCount = 0;
    for (const [le, count] of sorted) {
      if (count >= rank) {
        if (le === Infinity) return lowerBound;
        if (count === lowerCount) return le;
        return lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
      }
      lowerBound = le;
      lowerCount = count;
    }
    return lowerBound;
  }

  // The bucket increases between two scrapes (a counter that went down, a restarted series, counts from zero).
  function bucketDelta(now, before) {
    const delta = [];
    for (const [le, count] of now) {
      const earlier = before ? before.get(le) || 0 : 0;
      delta.push([le, count >= earlier ? count - earlier : count]);
    }
    return delta;
  }

  function rate(now, before, seconds) {
    if (before === undefined || seconds <= 0) return null;
    return Math.max(0, now - before) / seconds;
  }

  // MARK: Formatting

  function fixed(value, digits) {
    return value === null || value === undefined || Number.isNaN(value) ? "–" : value.toFixed(digits);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + " ms";
    return seconds.toFixed(2) + " s";
  }

  function uptime(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const parts = d > 0 ? [d + "d", h + "h", m + "m"] : h > 0 ? [h + "h", m + "m"] : [m + "m"];
    return parts.join(" ") + " " + (s % 60) + "s";
  }

  function bytes(n) {
    if (!(n >= 0)) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString();
  }

  // MARK: DOM (textContent only)

  function $(id) { return document.getElementById(id); }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  // Puts `rows` into a table. Rows with the same keys and cells as those shown are updated in place rather than
  // replaced, so a button under the pointer stays the same element across polls and a click is never lost.
  function fillTable(id, rows) {
    const body = $(id).tBodies[0];
    const shown = [...body.rows];
    const shape = (row) => JSON.stringify([{ ...row.dataset }, row.cells.length,
      [...row.cells].map((td) => td.querySelectorAll("button").length)]);
    if (shown.length !== rows.length || rows.some((row, i) => shape(row) !== shape(shown[i]))) {
      body.replaceChildren(...rows);
      return;
    }
    rows.forEach((row, i) => {
      [...row.cells].forEach((fresh, j) => {
        const td = shown[i].cells[j];
        const buttons = fresh.querySelectorAll("button");
        if (buttons.length > 0) {
          const kept = td.querySelectorAll("button");
          buttons.forEach((button, k) => { kept[k].disabled = button.disabled; });
          return;
        }
        if (td.textContent !== fresh.textContent) td.textContent = fresh.textContent;
        if (td.className !== fresh.className) td.className = fresh.className;
      });
    });
  }

  function show(message, isError) {
    const box = $("message");
    if (!message) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.hidden = false;
    box.textContent = message;
    box.className = isError ? "message error" : "message";
  }

  // MARK: The API

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function call(method, path) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    // credentials "omit": no cookie or HTTP auth of the browser's goes along, only the token above.
    const response = await fetch(path, { method: method, headers: headers, cache: "no-store", credentials: "omit" });
    const type = response.headers.get("Content-Type") || "";
    const body = type.startsWith("application/json") ? await response.json() : await response.text();
    if (!response.ok) {
      const message = body && body.message ? body.message : response.status + " " + response.statusText;
      throw new APIError(response.status, message);
    }
    return body;
  }

  // MARK: Rendering

  function renderStatus(status) {
    $("version").textContent = status.version;
    $("pid").textContent = String(status.pid);
    $("uptime").textContent = uptime(Date.now() / 1000 - status.started_at);
    $("state").textContent = status.state;
    $("generation").textContent = String(status.generation);
    $("config").textContent = status.config_file + " (" + status.config_hash.slice(0, 12) + ")";
    $("summary").textContent = "pid " + status.pid + " · generation " + status.generation + " · " +
      status.workers.length + " workers";
    fillTable("workers", status.workers.map((w) => {
      const row = document.createElement("tr");
      row.dataset.pid = String(w.pid);
      row.append(cell(w.pid), cell(w.slot), cell(w.generation),
        cell(w.state, w.state === "ready" ? "good" : "warn"), cell(w.connections, "num"), cell(w.requests, "num"),
        cell(bytes(w.rss_bytes), "num"), cell(w.restarts, "num"));
      return row;
    }));
  }

  function renderReloads(history) {
    const rows = history.reloads.map((r) => {
      const row = document.createElement("tr");
      row.append(cell(clock(r.at)), cell(r.kind), cell(r.success ? "ok" : "failed", r.success ? "good" : "bad"),
        cell(r.generation), cell(r.config_hash.slice(0, 12)));
      // One line here; the whole text on hover.
      const errors = cell(r.errors.join("; "), "errors");
      errors.title = r.errors.join("\n");
      row.append(errors);
      return row;
    });
    if (rows.length === 0) {
      const row = document.createElement("tr");
      const td = cell("none since the master started", "muted");
      td.colSpan = 6;
      row.append(td);
      rows.push(row);
    }
    fillTable("reloads", rows);
  }

  function scrape(text) {
    const samples = parseExposition(text);
    const requests = "jester_http_requests_total";
    return {
      at: performance.now() / 1000,
      routeTotal: sumBy(samples, requests, ["route"]),
      route4xx: sumBy(samples, requests, ["route"], (l) => l.status_class === "4xx"),
      route5xx: sumBy(samples, requests, ["route"], (l) => l.status_class === "5xx"),
      targetTotal: sumBy(samples, requests, ["upstream", "target"], (l) => l.target !== ""),
      target5xx: sumBy(samples, requests, ["upstream", "target"], (l) => l.target !== "" && l.status_class === "5xx"),
      routeBuckets: bucketsBy(samples, "jester_http_request_duration_seconds", ["route"]),
      targetBuckets: bucketsBy(samples, "jester_upstream_response_duration_seconds", ["upstream", "target"]),
    };
  }

  function percentiles(now, before) {
    if (!now || !before) return QUANTILES.map(() => null);
    const delta = bucketDelta(now, before);
    return QUANTILES.map((q) => quantile(q, delta));
  }

  function renderRoutes(current) {
    const seconds = previous ? current.at - previous.at : 0;
    const rows = [];
    for (const [route, total] of [...current.routeTotal].sort((a, b) => a[0].localeCompare(b[0]))) {
      const before = previous ? previous.routeTotal.get(route) : undefined;
      const errors = total > 0 ? (100 * (current.route5xx.get(route) || 0)) / total : null;
      const [p50, p95, p99] = percentiles(current.routeBuckets.get(route),
        previous ? previous.routeBuckets.get(route) : null);
      const row = document.createElement("tr");
      row.dataset.route = route;
      row.append(cell(route === "" ? "(no route)" : route),
        cell(total, "num requests"),
        cell(fixed(rate(total, before, seconds), 1), "num rate"),
        cell(fixed(rate(current.route4xx.get(route) || 0, previous ? previous.route4xx.get(route) || 0 : undefined,
          seconds), 1), "num rate4xx"),
        cell(fixed(rate(current.route5xx.get(route) || 0, previous ? previous.route5xx.get(route) || 0 : undefined,
          seconds), 1), "num rate5xx"),
        cell(errors === null ? "–" : errors.toFixed(1) + " %", "num errors"),
        cell(duration(p50), "num p50"), cell(duration(p95), "num p95"), cell(duration(p99), "num p99"));
      rows.push(row);
    }
    fillTable("routes", rows);
  }

  function renderTargets(upstreams, current) {
    const seconds = previous && current ? current.at - previous.at : 0;
    const rows = [];
    for (const pool of upstreams.pools) {
      for (const t of pool.targets) {
        const key = pool.name + "\u0000" + t.address;
        const total = current ? current.targetTotal.get(key) || 0 : null;
        const before = previous ? previous.targetTotal.get(key) || 0 : undefined;
        const errors5xx = current ? current.target5xx.get(key) || 0 : 0;
        const [p50, p95, p99] = percentiles(current ? current.targetBuckets.get(key) : null,
          previous ? previous.targetBuckets.get(key) : null);
        const row = document.createElement("tr");
        row.dataset.pool = pool.name;
        row.dataset.target = t.address;
        const health = t.health === "healthy" ? "good" : t.health === "unhealthy" ? "bad" : "muted";
        const admin = t.admin === "enabled" ? "good" : "warn";
        row.append(cell(pool.name + (pool.fail_open ? " (fail-open)" : "")), cell(t.address),
          cell(t.health, "health " + health), cell(t.admin, "admin " + admin), cell(t.active, "num"),
          cell(total === null ? t.requests : total, "num requests"),
          cell(fixed(rate(total, before, seconds), 1), "num rate"),
          cell(fixed(rate(errors5xx, previous ? previous.target5xx.get(key) || 0 : undefined, seconds), 1),
            "num rate5xx"),
          cell(duration(p50), "num p50"), cell(duration(p95), "num p95"), cell(duration(p99), "num p99"));
        const actions = document.createElement("td");
        actions.className = "actions";
        for (const action of ["drain", "enable"]) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = action;
          button.textContent = action === "drain" ? "Drain" : "Enable";
          button.disabled = action === "drain" ? t.admin === "drain" : t.admin === "enabled";
          button.addEventListener("click", () => act(pool.name, t.address, action, button));
          actions.append(button);
        }
        row.append(actions);
        rows.push(row);
      }
    }
    fillTable("targets", rows);
  }

  function renderAccess(recent) {
    const rows = recent.records.slice(0, ACCESS_ROWS).map((r) => {
      const row = document.createElement("tr");
      const status = r.status >= 500 ? "bad" : r.status >= 400 ? "warn" : "good";
      // The time of day of an RFC 3339 stamp (the date is today's, or in the title).
      const time = cell(/^\d{4}-\d\d-\d\dT/.test(r.time || "") ? r.time.slice(11, 23) : r.time);
      time.title = r.time || "";
      row.append(time, cell(r.client), cell(r.method), cell(r.target, "wrap"),
        cell(r.status, "status " + status), cell(r.route), cell(r.upstream_target),
        cell(r.duration_ms === undefined ? "–" : r.duration_ms.toFixed(1) + " ms", "num"));
      return row;
    });
    if (rows.length === 0) {
      const row = document.createElement("tr");
      const td = cell(recent.tapping ? "no requests since the dashboard opened" : "listening for requests…",
        "muted");
      td.colSpan = 8;
      row.append(td);
      rows.push(row);
    }
    fillTable("access", rows);
  }

  // MARK: Actions

  async function act(pool, target, action, button) {
    button.disabled = true;
    try {
      const path = "/api/v1/upstreams/" + encodeURIComponent(pool) + "/targets/" + encodeURIComponent(target) +
        "/" + action;
      const result = await call("POST", path);
      show(target + " in " + result.pools.join(", ") + ": " + result.admin, false);
    } catch (error) {
      show(action + " " + target + ": " + error.message, true);
    }
    refresh();
  }

  // MARK: Polling

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const [status, history, upstreams, metrics, recent] = await Promise.all([
        call("GET", "/api/v1/status"), call("GET", "/api/v1/reloads"), call("GET", "/api/v1/upstreams"),
        call("GET", "/metrics").catch((error) => (error.status === 404 ? null : Promise.reject(error))),
        call("GET", "/api/v1/access/recent"),
      ]);
      const current = typeof metrics === "string" ? scrape(metrics) : null;
      renderStatus(status);
      renderReloads(history);
      if (current) renderRoutes(current);
      renderTargets(upstreams, current);
      renderAccess(recent);
      previous = current;
      $("updated").textContent = new Date().toLocaleTimeString();
      // An action's outcome stays until the next action; a failed poll's message goes once polls work again.
      if (pollFailed) show("", false);
      pollFailed = false;
    } catch (error) {
      pollFailed = true;
      if (error.status === 401) {
        show("Enter an admin token (read to watch, write for Drain and Enable): " + error.message, true);
      } else {
        show("Cannot reach the admin API: " + error.message, true);
      }
    } finally {
      inFlight = false;
    }
  }

  function start() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      show("", false);
      previous = null;
      refresh();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      show("Token forgotten.", false);
    });
    refresh();
    setInterval(refresh, POLL_MS);
  }

  window.jesterDashboard = { parseExposition: parseExposition, quantile: quantile, refresh: refresh };
  document.addEventListener("DOMContentLoaded", start);
})();
"""#
}
