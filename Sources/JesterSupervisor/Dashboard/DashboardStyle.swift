// SPDX-License-Identifier: Apache-2.0

/// The dashboard's style sheet (`GET /dashboard/dashboard.css`): plain CSS, system fonts, no web fonts to fetch.
enum DashboardStyle {
    static let css = #"""
:root {
  --bg: #f6f7f9; --fg: #1d2330; --muted: #687385; --card: #ffffff; --line: #dde1e8;
  --good: #1b7f3b; --bad: #b3261e; --warn: #9a6700; --accent: #2f5bd3;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif;
  font-size: 14px;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 20px; padding: 10px 20px;
  background: #1d2330; color: #fff; }
header h1 { margin: 0; font-size: 20px; letter-spacing: 0.02em; }
header .muted { color: #b9c0cc; }
#token-form { margin-left: auto; display: flex; align-items: center; gap: 6px; }
#token-form input { width: 16em; padding: 4px 6px; border: 1px solid #485165; border-radius: 4px;
  background: #2a3242; color: #fff; }
button { padding: 4px 10px; border: 1px solid var(--line); border-radius: 4px; background: #fff; color: var(--fg);
  cursor: pointer; font: inherit; }
button:hover { border-color: var(--accent); }
button:disabled { opacity: 0.5; cursor: default; }
button.drain { color: var(--warn); }
button.enable { color: var(--good); }
.message { margin: 10px 20px 0; padding: 8px 12px; border-radius: 4px; background: #fff4d6; border: 1px solid #e6c86e; }
.message.error { background: #fde8e6; border-color: #e7a39d; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; padding: 16px 20px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
  overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 8px; font-size: 15px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
td.wrap { white-space: normal; overflow-wrap: anywhere; }
td.errors { max-width: 36em; overflow: hidden; text-overflow: ellipsis; }
tbody tr:last-child td { border-bottom: none; }
.good { color: var(--good); }
.bad { color: var(--bad); }
.warn { color: var(--warn); }
.muted { color: var(--muted); }
footer { padding: 0 20px 16px; font-size: 12px; }
"""#
}
