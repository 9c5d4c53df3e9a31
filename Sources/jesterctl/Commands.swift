// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterControl

/// Parses the arguments (without the program's name) and does what they ask: a command, help, the version or a
/// completion script; a usage error exits 64.
func jesterctl(_ arguments: [String]) -> Never {
    switch ControlCommandLine.parse(arguments) {
    case .run(let invocation):
        Commands(invocation: invocation).run()
    case .help(let text):
        print(text, terminator: "")
    case .version:
        print(JesterVersion.current)
    case .completion(let script):
        print(script, terminator: "")
    case .usageError(let message, let usage):
        // The command's own help, when the usage names one: `jesterctl tap --help`.
        let command = usage.split(separator: " ").prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") }
        fail("jesterctl: \(message)\nUsage: \(usage)\n  See '\(command.joined(separator: " ")) --help' for more "
            + "information.", status: .usage)
    }
    finish(.success)
}

/// The commands: each asks the master, prints the answer for people or, with `--json`, for programs, and
/// exits with the status jesterctl(8) documents.
struct Commands {
    var invocation: ControlInvocation
    var json: Bool { invocation.json }

    func run() -> Never {
        switch invocation.command {
        case .status: status()
        case .reload(let wait): reload(wait: wait)
        case .upgrade(let wait): upgrade(wait: wait)
        case .upstreams: upstreams()
        case .upstream(let action, let pool, let target): upstream(action, pool: pool, target: target)
        case .drain(let timeout):
            let client = connect(invocation)
            client.send(.drain(timeoutSeconds: timeout))
            finish(awaitStop(client, timeoutSeconds: (timeout ?? 600) + 30))
        case .stop(let fast, let wait): stop(fast: fast, wait: wait)
        case .reopenLogs: reopenLogs()
        case .tap(let filter, let count): tap(filter, count: count)
        case .metrics(let accept): metrics(accept: accept)
        case .cacheStatus: cacheStatus()
        case .cachePurge(let target): cachePurge(target)
        }
        finish(.success)
    }

    func status() {
        let client = connect(invocation)
        client.send(.status)
        guard case .statusReport(let report) = client.receive() else { fail("jesterctl: no status from the master") }
        if json { return printJSON(report) }
        let now = now()
        print("master   pid \(report.pid)  version \(report.version)  uptime \(Int(now - report.startedAt))s  "
            + "state \(report.state)")
        print("config   \(report.configFile)  hash \(report.configHash)  generation \(report.generation)")
        if report.binaryReplaced == true {
            print("binary   replaced on disk since the master started: `jesterctl upgrade` switches to it")
        }
        if let plane = report.controlPlane {
            print("control  \(plane.address)  \(plane.state)  version \(plane.version.map(String.init) ?? "none (the file alone)")")
            if let refusal = plane.lastRefusal { print("refused  \(refusal)") }
        }
        if let failed = report.lastFailedReload {
            print("failed   last \(failed.kind) \(Int(now - failed.at))s ago, still serving generation "
                + "\(report.generation):")
            for error in failed.errors { print("         \(error)") }
        }
        if let listeners = report.listeners, !listeners.isEmpty {
            print("")
            var rows = [["LISTENER", "ADDRESS", "PROTOCOL", "TLS"]]
            for listener in listeners {
                rows.append([listener.name, listener.address, listener.protocol, listener.tls ? "yes" : "no"])
            }
            printTable(rows)
        }
        print("")
        // One row per generation, then one per worker.
        var generations: [Int: [WorkerStatus]] = [:]
        for worker in report.workers { generations[worker.generation, default: []].append(worker) }
        var generationRows = [["GEN", "CONFIG", "STARTED", "WORKERS", "CONNS", "STATE", "DRAIN DEADLINE"]]
        for (number, members) in generations.sorted(by: { $0.key > $1.key }) {
            let started = members.compactMap(\.startedAt).min().map { "\(Int(now - $0))s ago" } ?? "-"
            let deadline = members.compactMap(\.drainDeadline).max().map { "in \(max(0, Int($0 - now)))s" } ?? "-"
            let ready = members.allSatisfy { $0.state == "ready" }
            let state = number == report.generation ? (ready ? "serving" : "starting")
                : (number > report.generation ? "starting" : "draining")
            generationRows.append([
                "\(number)", members.first?.configHash ?? "-", started, "\(members.count)",
                "\(members.reduce(0) { $0 + $1.connections })", state, deadline,
            ])
        }
        printTable(generationRows)
        print("")
        var rows = [["PID", "SLOT", "GEN", "STATE", "CONNS", "REQUESTS", "RSS"]]
        for worker in report.workers {
            rows.append([
                "\(worker.pid)", "\(worker.slot)", "\(worker.generation)", worker.state, "\(worker.connections)",
                "\(worker.requests)", formatBytes(worker.rssBytes),
            ])
        }
        printTable(rows)
        if let policies = report.policies, !policies.isEmpty {
            print("")
            var policyRows = [["POLICY", "STATE", "CALLS", "FAILURES", "MEMORY", "MODULE"]]
            for policy in policies {
                let state = policy.failedWorkers > 0 ? "failed in \(policy.failedWorkers) worker(s)" : "ok"
                policyRows.append([
                    policy.name, state, "\(policy.calls)", "\(policy.failures)", formatBytes(policy.memoryBytes),
                    policy.module + (policy.digest.isEmpty ? "" : " (sha256 \(policy.digest.prefix(12)))"),
                ])
            }
            printTable(policyRows)
        }
    }

    func formatBytes(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? oneDecimal(Double(bytes) / Double(1 << 20)) + "MiB" : "\(bytes / 1024)KiB"
    }

    func reload(wait: Bool) {
        let client = connect(invocation)
        client.send(wait ? .reloadAndWait : .reload)
        // A watched reload can last as long as the drain: wait for messages, not for a fixed total time.
        while true {
            switch client.receive(timeoutSeconds: wait ? 3600 : 120) {
            case .progress(let progress):
                if json { printJSONLine(progress) } else { writeOut(phaseLine(progress) + "\n", to: STDOUT_FILENO) }
            case .reloadResult(let result):
                if json {
                    if wait { printJSONLine(result) } else { printJSON(result) }
                } else if result.success {
                    print("reloaded: generation \(result.generation), config hash \(result.configHash)")
                } else {
                    writeOut("reload failed; still serving generation \(result.generation):\n", to: STDERR_FILENO)
                    for error in result.errors { writeOut(error + "\n", to: STDERR_FILENO) }
                }
                finish(result.success ? .success : .operationFailed)
            default:
                fail("jesterctl: the master closed the connection during the reload")
            }
        }
    }

    /// One line per phase of a reload or upgrade.
    func phaseLine(_ progress: ProgressReport) -> String {
        let generation = progress.generation.map { "generation \($0)" } ?? ""
        switch progress.phase {
        case "validated": return "validated: configuration is valid"
        case "probing": return "probing: running the new binary on the configuration"
        case "exec": return "exec: the master runs the new binary; \(generation) keeps serving meanwhile"
        case "spawning":
            let binary = invocation.command == .upgrade(wait: true) || invocation.command == .upgrade(wait: false)
                ? " of the new binary" : ""
            return "spawning: \(generation), \(progress.workers) workers\(binary)"
        case "ready": return "ready: \(generation) serves"
        case "draining":
            return "draining: \(generation), \(progress.connections) connections on \(progress.workers) workers"
        default: return "\(progress.phase): \(generation)"
        }
    }

    func upgrade(wait: Bool) {
        let client = connect(invocation)
        client.send(.upgrade)
        var executed = false
        while !executed {
            switch client.receive(timeoutSeconds: 120) {
            case .progress(let progress):
                show(progress)
                if progress.phase == "exec" { executed = true }
            case .reloadResult(let result):
                upgraded(result)
            case nil:
                fail("jesterctl: the master closed the connection before the upgrade started")
            default:
                fail("jesterctl: unexpected answer from the master")
            }
        }
        // The exec closes our connection; the new program serves the same control socket.
        while client.receive(timeoutSeconds: 30) != nil {}
        let successor = reconnect()
        successor.send(.awaitUpgrade(untilDrained: wait))
        while true {
            switch successor.receive(timeoutSeconds: 3600) {
            case .progress(let progress):
                show(progress)
            case .reloadResult(let result):
                upgraded(result)
            default:
                fail("jesterctl: the new master closed the connection during the upgrade (see its log)")
            }
        }
    }

    /// The new program needs a moment to start: connections made meanwhile wait in the socket's queue, and a
    /// refused one (a master that died instead) is retried for a while.
    func reconnect() -> ControlClient {
        let deadline = now() + 30
        while true {
            let socket = chooseSocket(invocation).path
            if let client = try? ControlClient(path: socket) { return client }
            if now() > deadline { fail("jesterctl: no master answers on \(socket) after the upgrade (see its log)") }
            usleep(100_000)
        }
    }

    func show(_ progress: ProgressReport) {
        if json { printJSONLine(progress) } else { writeOut(phaseLine(progress) + "\n", to: STDOUT_FILENO) }
    }

    func upgraded(_ result: ReloadResult) -> Never {
        if json {
            printJSONLine(result)
        } else if result.success {
            print("upgraded: generation \(result.generation), config hash \(result.configHash)")
        } else {
            writeOut("upgrade failed; still serving generation \(result.generation):\n", to: STDERR_FILENO)
            for error in result.errors { writeOut(error + "\n", to: STDERR_FILENO) }
        }
        finish(result.success ? .success : .operationFailed)
    }

    func upstreams() {
        let client = connect(invocation)
        client.send(.upstreams)
        guard case .upstreamsReport(let targets) = client.receive() else {
            fail("jesterctl: no answer from the master")
        }
        if json { return printJSON(targets) }
        var rows = [
            ["UPSTREAM", "TARGET", "HEALTH", "ADMIN", "EJECTED BY", "ACTIVE", "REQUESTS", "FAILURES", "LATENCY"]
        ]
        for target in targets {
            rows.append([
                // A pool failing open sends to unhealthy targets anyway: say so where the health is read.
                target.state.upstream, target.state.target,
                target.state.health + (target.failOpen == true ? " (fail open)" : ""), target.state.admin,
                target.ejectedBy > 0 ? "\(target.ejectedBy) workers" : "-", "\(target.active)", "\(target.requests)",
                "\(target.failures)",
                target.latencyMilliseconds > 0 ? oneDecimal(target.latencyMilliseconds) + "ms" : "-",
            ])
        }
        printTable(rows)
    }

    func upstream(_ action: UpstreamAdminAction, pool: String?, target: String) {
        let client = connect(invocation)
        client.send(.setTargetAdmin(upstream: pool, target: target, state: action.state))
        guard case .done(_, let text) = client.receive() else { fail("jesterctl: no answer from the master") }
        print(text)
    }

    func stop(fast: Bool, wait: Bool) {
        let client = connect(invocation)
        client.send(.stop(fast: fast, wait: wait))
        guard case .done(_, let text) = client.receive() else { fail("jesterctl: no answer from the master") }
        if !json { print(text) }
        if wait { finish(awaitStop(client, timeoutSeconds: 3600)) }
    }

    /// Follows a stop to its end: progress lines while the workers drain, then the master's last word (how the
    /// stop ended), then the connection closing as the master exits. The status `jesterctl` exits with.
    func awaitStop(_ client: ControlClient, timeoutSeconds: Double) -> ControlExitStatus {
        var outcome: (success: Bool, text: String)?
        while let message = client.receive(timeoutSeconds: timeoutSeconds) {
            switch message {
            case .progress(let progress):
                if json {
                    printJSONLine(progress)
                } else {
                    writeOut("draining: \(progress.connections) connections open in \(progress.workers) workers\n",
                        to: STDOUT_FILENO)
                }
            case .done(let success, let text):
                outcome = (success, text)
            default:
                break
            }
        }
        guard let outcome else {
            let text = "the master closed the connection without saying how it stopped (see its log)"
            if json {
                printJSONLine(StopOutcome(done: false, message: text))
            } else {
                writeOut(text + "\n", to: STDERR_FILENO)
            }
            return .operationFailed
        }
        if json {
            printJSONLine(StopOutcome(done: outcome.success, message: outcome.text))
        } else {
            writeOut(outcome.text + "\n", to: outcome.success ? STDOUT_FILENO : STDERR_FILENO)
        }
        return outcome.success ? .success : .operationFailed
    }

    func reopenLogs() {
        let client = connect(invocation)
        client.send(.reopenLogs)
        guard case .done(let success, let text) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if json {
            printJSONLine(StopOutcome(done: success, message: text))
        } else {
            writeOut(text + "\n", to: success ? STDOUT_FILENO : STDERR_FILENO)
        }
        finish(success ? .success : .operationFailed)
    }

    func tap(_ filter: TapFilter, count: Int?) {
        let client = connect(invocation)
        client.send(.tap(filter))
        var shown = 0
        // (Waits as long as it takes: a quiet route sends nothing.)
        while let message = client.receive(timeoutSeconds: 20 * 86_400) {
            guard case .tapRecords(let records, let dropped) = message else { continue }
            if dropped > 0 { writeOut("jesterctl: \(dropped) records dropped\n", to: STDERR_FILENO) }
            for record in records {
                writeOut(record.line + "\n", to: STDOUT_FILENO)
                shown += 1
                if let count, shown >= count { return }
            }
        }
        fail("jesterctl: the master closed the connection", status: .unreachable)
    }

    func metrics(accept: String?) {
        let client = connect(invocation)
        client.send(.metrics(accept: accept))
        guard case .metricsExposition(_, let body) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        writeOut(body, to: STDOUT_FILENO)
    }

    func cacheStatus() {
        let client = connect(invocation)
        client.send(.cacheStatus)
        guard case .cacheReport(let report) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if json { return printJSON(report) }
        for line in CacheStatusText.lines(report) { print(line) }
    }

    func cachePurge(_ target: CachePurgeTarget) {
        let client = connect(invocation)
        client.send(.cachePurge(target))
        guard case .cachePurged(let result) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if json {
            printJSONLine(result)
        } else {
            print(result.removed == 1 ? "purged 1 entry" : "purged \(result.removed) entries")
        }
    }
}

/// The last JSON line of `drain --json`, `stop --wait --json` and `reopen-logs --json`.
struct StopOutcome: Encodable {
    var done: Bool
    var message: String
}
