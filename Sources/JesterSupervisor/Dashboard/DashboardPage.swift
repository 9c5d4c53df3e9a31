// SPDX-License-Identifier: Apache-2.0

/// The dashboard's page (`GET /`, `GET /dashboard/`): the frame that `DashboardScript` fills.
///
/// Hand-written, no framework and nothing from another origin (the Content-Security-Policy of `DashboardAsset`
/// would refuse it anyway). No inline script or style: the policy forbids both, and the page works without
/// exceptions to it. Element ids are what the script and the live test (Tests/Live/test_dashboard.py) look up.
enum DashboardPage {
    static let html = #"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Jester</title>
<link rel="stylesheet" href="/dashboard/dashboard.css">
<script src="/dashboard/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Jester</h1>
  <span id="summary" class="muted">connecting…</span>
  <form id="token-form" autocomplete="off">
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" spellcheck="false" placeholder="read or write token">
    <button type="submit" id="token-use">Use</button>
    <button type="button" id="token-forget">Forget</button>
  </form>
</header>
<p id="message" role="status" class="message" hidden></p>
<main>
  <section id="instance">
    <h2>Instance</h2>
    <dl>
      <dt>Version</dt><dd id="version">–</dd>
      <dt>PID</dt><dd id="pid">–</dd>
      <dt>Uptime</dt><dd id="uptime">–</dd>
      <dt>State</dt><dd id="state">–</dd>
      <dt>Generation</dt><dd id="generation">–</dd>
      <dt>Configuration</dt><dd id="config">–</dd>
      <dt>Updated</dt><dd id="updated">–</dd>
    </dl>
  </section>
  <section id="workers-section">
    <h2>Workers</h2>
    <table id="workers">
      <thead><tr><th>PID</th><th>Slot</th><th>Generation</th><th>State</th><th class="num">Connections</th>
        <th class="num">Requests</th><th class="num">RSS</th><th class="num">Restarts</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="reloads-section" class="wide">
    <h2>Reloads</h2>
    <table id="reloads">
      <thead><tr><th>When</th><th>Kind</th><th>Outcome</th><th>Generation</th><th>Configuration</th>
        <th>Errors</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="routes-section" class="wide">
    <h2>Routes</h2>
    <table id="routes">
      <thead><tr><th>Route</th><th class="num">Requests</th><th class="num">Req/s</th><th class="num">4xx/s</th>
        <th class="num">5xx/s</th><th class="num">Errors</th><th class="num">p50</th><th class="num">p95</th>
        <th class="num">p99</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="targets-section" class="wide">
    <h2>Targets</h2>
    <table id="targets">
      <thead><tr><th>Pool</th><th>Target</th><th>Health</th><th>Admin</th><th class="num">Active</th>
        <th class="num">Requests</th><th class="num">Req/s</th><th class="num">5xx/s</th><th class="num">p50</th>
        <th class="num">p95</th><th class="num">p99</th><th>Actions</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="access-section" class="wide">
    <h2>Recent requests</h2>
    <table id="access">
      <thead><tr><th>Time</th><th>Client</th><th>Method</th><th>Target</th><th>Status</th><th>Route</th>
        <th>Upstream target</th><th class="num">Duration</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<footer class="muted">Rates and percentiles are estimated from the change between two scrapes of /metrics
  (percentiles from histogram buckets, like Prometheus's histogram_quantile).</footer>
</body>
</html>
"""#
}
