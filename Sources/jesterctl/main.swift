// SPDX-License-Identifier: Apache-2.0
// `jesterctl`: talks to a running Jester master over its control socket.
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // JSON and Data without the full Foundation and its ICU data (see bench/PERFORMANCE.md)
#else
import Foundation
#endif
import Glibc
import JesterConfig
import JesterControl
import JesterSystem

struct ControlOptions: ParsableArguments {
    @Option(
        name: [.short, .long],
        help: "The master's control socket (default: $JESTER_CONTROL_SOCKET, else \(ControlSocketChoice.defaultPath)).")
    var socket: String?

    @Option(name: [.short, .long], help: "Read the control socket from this configuration file, as the master does.")
    var config: String?

    @Flag(help: "Print machine-readable JSON (snake_case keys, like the configuration and the logs).")
    var json = false

    /// The socket to talk to, or exit 64 saying why none can be chosen.
    func choice() -> ControlSocketChoice {
        do {
            return try ControlSocketChoice.choose(
                socket: socket, config: config,
                environment: ProcessInfo.processInfo.environment["JESTER_CONTROL_SOCKET"],
                configuredSocket: Self.configuredSocket)
        } catch {
            fail("jesterctl: \(error)", status: .usage)
        }
    }

    /// The `control_socket` of the configuration at `path`, read with the master's loader (includes, `${VAR}`).
    static func configuredSocket(_ path: String) throws -> String {
        do throws(ConfigError) {
            return try ConfigLoader().load(file: path).server.controlSocket
        } catch {
            let errors = error.diagnostics.map(\.description).joined(separator: "\n")
            throw ConfigUnreadable(text: "cannot read the control socket from \(path):\n\(errors)")
        }
    }

    struct ConfigUnreadable: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }

    /// Connects, or exits 2 with a message that says what to check.
    func connect() -> ControlClient {
        let choice = choice()
        let socket = choice.path
        do {
            return try ControlClient(path: socket)
        } catch {
            let from = choice.source == .builtIn ? "the default socket" : "\(socket) (from \(choice.source.rawValue))"
            switch error.errorNumber {
            case ENOENT, ECONNREFUSED:
                fail("jesterctl: no Jester master is listening on \(from) (is it running? see --socket and --config)")
            case EACCES, EPERM:
                fail("jesterctl: permission denied on \(socket): run as root, as the master's user, or as a member of "
                    + "its control_group")
            default:
                fail("jesterctl: cannot connect to \(socket): \(error)")
            }
        }
    }
}

/// Writes `message` to standard error and exits with `status` (see `ControlExitStatus` and jesterctl(8)).
func fail(_ message: String, status: ControlExitStatus = .unreachable) -> Never {
    writeOut(message + "\n", to: STDERR_FILENO)
    exit(status.rawValue)
}

/// Ends a command that ran to its end with `status`.
func finish(_ status: ControlExitStatus) throws {
    if status != .success { throw ExitCode(status.rawValue) }
}

/// One request/response conversation with the master.
final class ControlClient {
    private let connection: UnixSocketClient
    private var codec = ControlFrameCodec()
    /// The correlation id of the last request; answers carry it (a master from before ids sends none).
    private var requestID: UInt64 = 0

    init(path: String) throws(SystemError) {
        connection = try UnixSocketClient(path: path)
    }

    func send(_ message: ControlMessage) {
        do {
            requestID += 1
            try connection.write(ControlFrameCodec.encode(message, id: requestID))
        } catch {
            // The master may have refused us and closed already: its reason is more useful than EPIPE.
            _ = receive(timeoutSeconds: 1)
            fail("jesterctl: \(error)")
        }
    }

    /// The next message, or nil when the master closed the connection. A failure the master reports ends
    /// jesterctl with the status its reason maps to.
    func receive(timeoutSeconds: Double = 60) -> ControlMessage? {
        while true {
            do {
                if let envelope = try codec.nextEnvelope() {
                    if case .failure(let text, let reason) = envelope.message {
                        fail("jesterctl: \(text)", status: ControlExitStatus(failure: reason))
                    }
                    if let id = envelope.id, id != requestID {
                        fail("jesterctl: the master answered request \(id), not \(requestID)")
                    }
                    return envelope.message
                }
                let bytes = try connection.read(timeoutMilliseconds: Int32(timeoutSeconds * 1000))
                if bytes.isEmpty { return nil }
                codec.append(bytes)
            } catch let error as SystemError where error.errorNumber == ECONNRESET {
                return nil
            } catch {
                fail("jesterctl: \(error)")
            }
        }
    }
}

/// One compact JSON object per line, unbuffered: for streams of progress that a program reads as they come.
func printJSONLine<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    writeOut(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self) + "\n", to: STDOUT_FILENO)
}

/// Rows of columns, each column as wide as its widest cell.
func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { $1 + String(repeating: " ", count: max(0, widths[$0] - $1.count)) }
        print(cells.joined(separator: "  "))
    }
}

/// Pretty JSON with snake_case keys, like the configuration and the logs (the wire format keeps Swift's names).
func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
}

struct JesterCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jesterctl",
        abstract: "Control a running Jester instance.",
        discussion: """
            Exit status: 0 success; 1 the operation failed; 2 the master could not be reached, refused the \
            connection or broke off; 3 no such upstream or target; 64 usage error. See jesterctl(8).
            """,
        version: JesterVersion.current,
        subcommands: [
            Status.self, Reload.self, Upgrade.self, Upstreams.self, UpstreamCommand.self, Drain.self, Stop.self,
            ReopenLogs.self, Tap.self, Metrics.self, Cache.self,
        ])
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the master and one row per worker.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = options.connect()
        client.send(.status)
        guard case .statusReport(let report) = client.receive() else { fail("jesterctl: no status from the master") }
        if options.json {
            printJSON(report)
            return
        }
        let uptime = Int(Date().timeIntervalSince1970 - report.startedAt)
        print("master   pid \(report.pid)  version \(report.version)  uptime \(uptime)s  state \(report.state)")
        print("config   \(report.configFile)  hash \(report.configHash)  generation \(report.generation)")
        if report.binaryReplaced == true {
            print("binary   replaced on disk since the master started: `jesterctl upgrade` switches to it")
        }
        if let failed = report.lastFailedReload {
            let ago = Int(Date().timeIntervalSince1970 - failed.at)
            print("failed   last \(failed.kind) \(ago)s ago, still serving generation \(report.generation):")
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
        let generations = Dictionary(grouping: report.workers, by: \.generation).sorted { $0.key > $1.key }
        var generationRows = [["GEN", "CONFIG", "STARTED", "WORKERS", "CONNS", "STATE", "DRAIN DEADLINE"]]
        for (number, members) in generations {
            let started = members.compactMap(\.startedAt).min()
                .map { "\(Int(Date().timeIntervalSince1970 - $0))s ago" } ?? "-"
            let deadline = members.compactMap(\.drainDeadline).max()
                .map { "in \(max(0, Int($0 - Date().timeIntervalSince1970)))s" } ?? "-"
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
        let header = ["PID", "SLOT", "GEN", "STATE", "CONNS", "REQUESTS", "RSS"]
        var rows = [header]
        for worker in report.workers {
            rows.append([
                "\(worker.pid)", "\(worker.slot)", "\(worker.generation)", worker.state, "\(worker.connections)",
                "\(worker.requests)", formatBytes(worker.rssBytes),
            ])
        }
        printTable(rows)
    }

    func formatBytes(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? oneDecimal(Double(bytes) / Double(1 << 20)) + "MiB" : "\(bytes / 1024)KiB"
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the configuration and replace the workers; exit 1 with the errors if it is invalid.")
    @OptionGroup var options: ControlOptions

    @Flag(help: """
        Show the phases as they happen (validated, spawning, ready, draining) and return once the old generation \
        has drained.
        """)
    var wait = false

    func run() throws {
        let client = options.connect()
        client.send(wait ? .reloadAndWait : .reload)
        var result: ReloadResult?
        // A watched reload can last as long as the drain: wait for messages, not for a fixed total time.
        while result == nil {
            switch client.receive(timeoutSeconds: wait ? 3600 : 120) {
            case .progress(let progress):
                if options.json {
                    printJSONLine(progress)
                } else {
                    printPhase(progress)
                }
            case .reloadResult(let final):
                result = final
            default:
                fail("jesterctl: the master closed the connection during the reload")
            }
        }
        guard let result else { return }
        if options.json {
            if wait { printJSONLine(result) } else { printJSON(result) }
        } else if result.success {
            print("reloaded: generation \(result.generation), config hash \(result.configHash)")
        } else {
            writeOut("reload failed; still serving generation \(result.generation):\n", to: STDERR_FILENO)
            for error in result.errors { writeOut(error + "\n", to: STDERR_FILENO) }
        }
        if !result.success { throw ExitCode(1) }
    }

    /// One line per phase, written straight to the file descriptor so a pipe sees it as it happens.
    func printPhase(_ progress: ProgressReport) {
        let generation = progress.generation.map { "generation \($0)" } ?? ""
        let line: String
        switch progress.phase {
        case "validated": line = "validated: configuration is valid"
        case "spawning": line = "spawning: \(generation), \(progress.workers) workers"
        case "ready": line = "ready: \(generation) serves"
        case "draining":
            line = "draining: \(generation), \(progress.connections) connections on \(progress.workers) workers"
        default: line = "\(progress.phase): \(generation)"
        }
        writeOut(line + "\n", to: STDOUT_FILENO)
    }
}

struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Switch the running master to the binary now installed, without dropping a connection.",
        discussion: """
            The master first runs the new binary on its configuration, then executes it in place (same PID); the \
            new program adopts the running workers, starts its own generation and drains the old one. Returns \
            once the new generation serves (with --wait: once the old one has drained). Exit status 1: the \
            upgrade failed and the previous binary's workers keep serving.
            """)
    @OptionGroup var options: ControlOptions

    @Flag(help: "Return only once the old generation has drained, showing its progress.")
    var wait = false

    func run() throws {
        let client = options.connect()
        client.send(.upgrade)
        var executed = false
        while !executed {
            switch client.receive(timeoutSeconds: 120) {
            case .progress(let progress):
                show(progress)
                if progress.phase == "exec" { executed = true }
            case .reloadResult(let result):
                try finish(result)
                return
            case nil:
                fail("jesterctl: the master closed the connection before the upgrade started")
            default:
                fail("jesterctl: unexpected answer from the master")
            }
        }
        // The exec closes our connection; the new program serves the same control socket.
        while client.receive(timeoutSeconds: 30) != nil {}
        let successor = try reconnect()
        successor.send(.awaitUpgrade(untilDrained: wait))
        while true {
            switch successor.receive(timeoutSeconds: 3600) {
            case .progress(let progress):
                show(progress)
            case .reloadResult(let result):
                try finish(result)
                return
            default:
                fail("jesterctl: the new master closed the connection during the upgrade (see its log)")
            }
        }
    }

    /// The new program needs a moment to start: connections made meanwhile wait in the socket's queue, and a
    /// refused one (a master that died instead) is retried for a while.
    func reconnect() throws -> ControlClient {
        let deadline = Date().addingTimeInterval(30)
        while true {
            let socket = options.choice().path
            if let client = try? ControlClient(path: socket) { return client }
            if Date() > deadline { fail("jesterctl: no master answers on \(socket) after the upgrade (see its log)") }
            usleep(100_000)
        }
    }

    func show(_ progress: ProgressReport) {
        if options.json {
            printJSONLine(progress)
            return
        }
        let generation = progress.generation.map { "generation \($0)" } ?? ""
        let line: String
        switch progress.phase {
        case "probing": line = "probing: running the new binary on the configuration"
        case "exec": line = "exec: the master runs the new binary; \(generation) keeps serving meanwhile"
        case "spawning": line = "spawning: \(generation), \(progress.workers) workers of the new binary"
        case "ready": line = "ready: \(generation) serves"
        case "draining":
            line = "draining: \(generation), \(progress.connections) connections on \(progress.workers) workers"
        default: line = "\(progress.phase): \(generation)"
        }
        writeOut(line + "\n", to: STDOUT_FILENO)
    }

    func finish(_ result: ReloadResult) throws {
        if options.json {
            printJSONLine(result)
        } else if result.success {
            print("upgraded: generation \(result.generation), config hash \(result.configHash)")
        } else {
            writeOut("upgrade failed; still serving generation \(result.generation):\n", to: STDERR_FILENO)
            for error in result.errors { writeOut(error + "\n", to: STDERR_FILENO) }
        }
        if !result.success { throw ExitCode(1) }
    }
}

struct Upstreams: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List upstream pools and targets: health, admin state, requests in flight, requests, failures, "
            + "latency.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = options.connect()
        client.send(.upstreams)
        guard case .upstreamsReport(let targets) = client.receive() else {
            fail("jesterctl: no answer from the master")
        }
        if options.json {
            printJSON(targets)
            return
        }
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
}

struct UpstreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upstream",
        abstract: "Change a target's admin state on every worker: drain (no new requests; in-flight ones finish), "
            + "disable (also close its idle connections), enable.",
        discussion: """
            With a pool, the target in that pool; without, in every pool that has it (a server under maintenance \
            is usually in several). The state survives reloads while the target stays in the configuration, and \
            binary upgrades. Exit status 3: no such pool, or no pool has that target.
            """)
    @OptionGroup var options: ControlOptions

    @Argument(help: "drain, disable or enable")
    var action: String
    @Argument(help: "The upstream pool; given alone, the target, in every pool that has it.")
    var pool: String
    @Argument(help: "The target, as configured (host:port).")
    var target: String?

    static let states = ["drain": "drain", "disable": "disabled", "enable": "enabled"]

    func validate() throws {
        guard Self.states[action] != nil else { throw ValidationError("'\(action)' is not drain, disable or enable") }
    }

    /// The pool (nil: every pool) and the target the arguments name: one argument is the target alone.
    var request: (pool: String?, target: String) {
        target.map { (pool, $0) } ?? (nil, pool)
    }

    func run() throws {
        let client = options.connect()
        client.send(.setTargetAdmin(upstream: request.pool, target: request.target, state: Self.states[action]!))
        guard case .done(_, let text) = client.receive() else { fail("jesterctl: no answer from the master") }
        print(text)
    }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop accepting, finish in-flight requests, and exit; shows progress while it waits.",
        discussion: """
            Exit status 0 once every worker drained and the master exited; 1 when the timeout passed with \
            requests still in flight (they were cut: the message says how many) or the master exited uncleanly.
            """)
    @OptionGroup var options: ControlOptions
    @Option(help: "Seconds to wait for in-flight requests before closing them (default: drain_timeout).")
    var timeout: Double?

    func run() throws {
        let client = options.connect()
        client.send(.drain(timeoutSeconds: timeout))
        try finish(awaitStop(client, json: options.json, timeoutSeconds: (timeout ?? 600) + 30))
    }
}

/// Follows a stop to its end: progress lines while the workers drain, then the master's last word (how the stop
/// ended), then the connection closing as the master exits. The status `jesterctl` exits with.
func awaitStop(_ client: ControlClient, json: Bool, timeoutSeconds: Double) -> ControlExitStatus {
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

/// The last JSON line of `drain --json` and `stop --wait --json`.
struct StopOutcome: Encodable {
    var done: Bool
    var message: String
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop Jester: gracefully (like SIGTERM) or, with --fast, at once (like SIGINT).",
        discussion: """
            Returns once the master has accepted the stop; with --wait, once it has exited: exit status 0 when \
            it exited cleanly, 1 when it did not (requests cut by the drain timeout, or a non-zero exit status).
            """)
    @OptionGroup var options: ControlOptions
    @Flag(help: "Do not wait for in-flight requests.")
    var fast = false
    @Flag(help: "Return only once the master has exited, showing the drain's progress.")
    var wait = false

    func run() throws {
        let client = options.connect()
        client.send(.stop(fast: fast, wait: wait))
        guard case .done(_, let text) = client.receive() else { fail("jesterctl: no answer from the master") }
        if !options.json { print(text) }
        guard wait else { return }
        try finish(awaitStop(client, json: options.json, timeoutSeconds: 3600))
    }
}

struct ReopenLogs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reopen-logs",
        abstract: "Reopen the access-log file (after logrotate moved it) in the master and every worker; like SIGUSR1.",
        discussion: """
            Returns once every worker writes to the new file, lines written before the reopen having gone whole \
            to the old one. Exit status 1 when the file cannot be opened or a worker did not switch (named).
            """)
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = options.connect()
        client.send(.reopenLogs)
        guard case .done(let success, let text) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if options.json {
            printJSONLine(StopOutcome(done: success, message: text))
        } else {
            writeOut(text + "\n", to: success ? STDOUT_FILENO : STDERR_FILENO)
        }
        try finish(success ? .success : .operationFailed)
    }
}

struct Tap: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream the access records of every worker as they happen, filtered; until interrupted.",
        discussion: """
            Each record is its access-log line (JSON, every field), whether or not the access log is on. Workers \
            send records only while a tap is open, in batches at most 100 ms apart; a worker that cannot keep up \
            drops records and the count is reported on standard error ("N records dropped").
            """)
    @OptionGroup var options: ControlOptions
    @Option(help: "Only this route's requests (its name, or route-N as `jester config dump` shows it).")
    var route: String?
    @Option(help: "Only requests answered with this status (404) or status class (5xx).")
    var status: String?
    @Option(help: "Only requests sent to this upstream pool.")
    var upstream: String?
    @Option(help: "Stop after this many records.")
    var count: Int?

    func validate() throws {
        if let status, !TapFilter.isValidStatus(status) {
            throw ValidationError("--status takes a status such as 404 or a class such as 5xx, not \"\(status)\"")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        let client = options.connect()
        client.send(.tap(TapFilter(route: route, upstream: upstream, status: status)))
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
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the instance's metrics, as a Prometheus scrape gets them (see jester-metrics(7)).",
        discussion: """
            The sums over the master and every worker of every generation, in the Prometheus text format, or \
            in OpenMetrics with --openmetrics. --accept passes an HTTP Accept header to negotiate as a scrape \
            would.
            """)
    @OptionGroup var options: ControlOptions
    @Flag(help: "OpenMetrics 1.0 text instead of the Prometheus text format.")
    var openmetrics = false
    @Option(help: "An HTTP Accept header to negotiate the format with, as a scraper sends it.")
    var accept: String?

    func validate() throws {
        if openmetrics, accept != nil { throw ValidationError("--openmetrics and --accept cannot be combined") }
    }

    func run() throws {
        let client = options.connect()
        client.send(.metrics(accept: openmetrics ? "application/openmetrics-text; version=1.0.0" : accept))
        switch client.receive(timeoutSeconds: 30) {
        case .metricsExposition(_, let body):
            writeOut(body, to: STDOUT_FILENO)
        case .failure(let message, _):
            fail("jesterctl: \(message)", status: .operationFailed)
        default:
            fail("jesterctl: no answer from the master")
        }
    }
}

struct Cache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The shared HTTP cache: its size and counters, and purging stored responses.",
        subcommands: [CacheStatus.self, CachePurge.self])
}

struct CacheStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Bytes used of the budget, entries, hits, misses, stores, evictions, collapsed requests, hit ratio.",
        discussion: "Exit status 3 when no route caches.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = options.connect()
        client.send(.cacheStatus)
        guard case .cacheReport(let report) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if options.json {
            printJSON(report)
            return
        }
        for line in CacheStatusText.lines(report) { print(line) }
    }
}

struct CachePurge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Remove a stored response (KEY) or every one under a prefix (--prefix) from the shared cache.",
        discussion: """
            KEY is the request's URI as the cache keys it (https://example.com/a?b); --prefix removes every key \
            that starts with PREFIX (https://example.com/img/). Exit status 3 when no route caches.
            """)
    @OptionGroup var options: ControlOptions
    @Argument(help: "The key to remove.")
    var key: String?
    @Option(help: "Remove every key that starts with this.")
    var prefix: String?

    func validate() throws {
        switch (key, prefix) {
        case (nil, nil): throw ValidationError("give a KEY or --prefix PREFIX")
        case (.some, .some): throw ValidationError("give a KEY or --prefix PREFIX, not both")
        case (.some(let key), nil) where key.isEmpty: throw ValidationError("the KEY is empty")
        case (nil, .some(let prefix)) where prefix.isEmpty:
            throw ValidationError("--prefix needs a prefix (an empty one would purge everything)")
        default: break
        }
    }

    func run() throws {
        let client = options.connect()
        client.send(.cachePurge(key.map { .key($0) } ?? .prefix(prefix ?? "")))
        guard case .cachePurged(let result) = client.receive(timeoutSeconds: 30) else {
            fail("jesterctl: no answer from the master")
        }
        if options.json {
            printJSONLine(result)
        } else {
            print(result.removed == 1 ? "purged 1 entry" : "purged \(result.removed) entries")
        }
    }
}

JesterCtl.main()

/// `value` with one decimal ("12.3"), as `String(format: "%.1f")` prints it, without Foundation's formatter.
func oneDecimal(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(abs(tenths % 10))"
}

/// Writes `text` to `descriptor` now, after whatever `print` buffered (progress is read as it comes).
func writeOut(_ text: String, to descriptor: Int32) {
    fflush(nil)
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}
