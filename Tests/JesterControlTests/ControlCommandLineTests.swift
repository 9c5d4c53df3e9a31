// SPDX-License-Identifier: Apache-2.0
import JesterControl
import Testing

// jesterctl's command line, as jesterctl(8) and the live tests describe it: every command, option and usage error.

private func parse(_ line: String) -> ControlCommandLine.Outcome {
    ControlCommandLine.parse(line.split(separator: " ").map(String.init))
}

private func command(_ line: String) -> ControlInvocation? {
    if case .run(let invocation) = parse(line) { return invocation }
    return nil
}

private func usageError(_ line: String) -> String? {
    if case .usageError(let message, _) = parse(line) { return message }
    return nil
}

@Test func everyCommandParses() {
    let cases: [(String, ControlCommand)] = [
        ("status", .status), ("reload", .reload(wait: false)), ("reload --wait", .reload(wait: true)),
        ("upgrade --wait", .upgrade(wait: true)), ("upstreams", .upstreams),
        ("upstream drain app 10.0.0.7:80", .upstream(.drain, pool: "app", target: "10.0.0.7:80")),
        ("upstream disable 10.0.0.7:80", .upstream(.disable, pool: nil, target: "10.0.0.7:80")),
        ("upstream enable api t", .upstream(.enable, pool: "api", target: "t")),
        ("drain", .drain(timeoutSeconds: nil)), ("drain --timeout 2.5", .drain(timeoutSeconds: 2.5)),
        ("drain --timeout=30", .drain(timeoutSeconds: 30)),
        ("stop", .stop(fast: false, wait: false)), ("stop --fast --wait", .stop(fast: true, wait: true)),
        ("reopen-logs", .reopenLogs),
        ("tap --route api --status 5xx --upstream app --count 3",
         .tap(TapFilter(route: "api", upstream: "app", status: "5xx"), count: 3)),
        ("tap", .tap(TapFilter(), count: nil)),
        ("metrics", .metrics(accept: nil)),
        ("metrics --openmetrics", .metrics(accept: "application/openmetrics-text; version=1.0.0")),
        ("metrics --accept text/plain", .metrics(accept: "text/plain")),
        ("cache status", .cacheStatus),
        ("cache purge https://a.example/x?y", .cachePurge(.key("https://a.example/x?y"))),
        ("cache purge --prefix https://a.example/", .cachePurge(.prefix("https://a.example/"))),
    ]
    for (line, expected) in cases {
        #expect(command(line)?.command == expected, "\(line)")
    }
    #expect(UpstreamAdminAction.disable.state == "disabled" && UpstreamAdminAction.enable.state == "enabled")
}

@Test func theCommonOptionsGoAnywhere() {
    #expect(command("status --json -c /etc/j.toml") == ControlInvocation(command: .status, config: "/etc/j.toml",
        json: true))
    #expect(command("-s /run/x.sock status") == ControlInvocation(command: .status, socket: "/run/x.sock"))
    #expect(command("status --socket=/run/x.sock --socket /run/y.sock")?.socket == "/run/y.sock")
    #expect(command("cache --json status")?.json == true)
    // After `--`, words are arguments even when they start with a dash.
    #expect(command("cache purge -- --odd-key")?.command == .cachePurge(.key("--odd-key")))
}

@Test func mistakesAreUsageErrorsThatSayWhat() {
    #expect(usageError("no-such-command") == "unknown command 'no-such-command'")
    #expect(usageError("") == "missing a command: status, reload, upgrade, upstreams, upstream, drain, stop, "
        + "reopen-logs, tap, metrics, cache")
    #expect(usageError("cache") == "missing a command: status, purge")
    #expect(usageError("cache sweep") == "unknown cache command 'sweep'")
    #expect(usageError("status --bogus") == "unknown option '--bogus'")
    #expect(usageError("status --wait") == "'status' takes no option --wait")
    #expect(usageError("status extra") == "unexpected argument 'extra'")
    #expect(usageError("upstream pause app t") == "'pause' is not drain, disable or enable")
    #expect(usageError("upstream drain") == "missing the <pool> argument")
    #expect(usageError("upstream drain a b c") == "unexpected argument 'c'")
    #expect(usageError("drain --timeout soon") == "--timeout takes a number of seconds, not \"soon\"")
    #expect(usageError("drain --timeout") == "'--timeout' needs a value")
    #expect(usageError("stop --fast=yes") == "'--fast' takes no value")
    #expect(usageError("tap --status 600")?.contains("--status") == true)
    #expect(usageError("tap --count 0") == "--count must be at least 1")
    #expect(usageError("metrics --openmetrics --accept x") == "--openmetrics and --accept cannot be combined")
    #expect(usageError("cache purge") == "give a KEY or --prefix PREFIX")
    #expect(usageError("cache purge k --prefix p") == "give a KEY or --prefix PREFIX, not both")
    #expect(usageError("cache purge --prefix=") == "--prefix needs a prefix (an empty one would purge everything)")
    #expect(usageError("--generate-completion-script tcsh") == "--generate-completion-script takes bash, zsh or fish")
    if case .usageError(_, let usage) = parse("tap --count 0") {
        #expect(usage.hasPrefix("jesterctl tap [--route <route>] [--status <status>]"))
    } else {
        Issue.record("not a usage error")
    }
}

@Test func helpVersionAndCompletions() {
    guard case .help(let root) = parse("--help") else {
        Issue.record("no help")
        return
    }
    #expect(root.hasPrefix("OVERVIEW: Control a running Jester instance.\n"))
    #expect(root.contains("usage error. See jesterctl(8).") && root.contains("  reopen-logs "))
    #expect(root.contains("  cache                   The shared HTTP cache: its size and counters (status),\n"))
    #expect(parse("help") == parse("-h"))
    guard case .help(let purge) = parse("help cache purge") else {
        Issue.record("no help")
        return
    }
    #expect(purge.contains("USAGE: jesterctl cache purge [<key>] [--prefix <prefix>]"))
    #expect(purge.contains("  <key>                   The key to remove."))
    #expect(purge.contains("  -s, --socket <path>     The master's control socket"))
    #expect(parse("cache purge --help") == parse("help cache purge"))
    guard case .help(let cache) = parse("cache --help") else {
        Issue.record("no help")
        return
    }
    #expect(cache.contains("  status  ") && cache.contains("  purge  "))
    for text in [root, purge, cache] {
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(text)")
    }
    #expect(parse("status --version") == .version)
    for shell in ["bash", "zsh", "fish"] {
        guard case .completion(let script) = parse("--generate-completion-script \(shell)") else {
            Issue.record("no \(shell) script")
            return
        }
        #expect(script.contains("reopen-logs") && script.contains("purge") && script.contains("prefix"), "\(shell)")
        #expect(parse("--generate-completion-script=\(shell)") == .completion(script))
    }
}
