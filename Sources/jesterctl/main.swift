// SPDX-License-Identifier: Apache-2.0
// `jesterctl`: talks to a running Jester master over its control socket.
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // JSON and Data without the full Foundation and its ICU data (see bench/PERFORMANCE.md)
#else
import Foundation
#endif
import Glibc
import JesterControl
import JesterSystem

struct ControlOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "The master's control socket (or $JESTER_CONTROL_SOCKET).")
    var socket: String = ProcessInfo.processInfo.environment["JESTER_CONTROL_SOCKET"] ?? "/run/jester/control.sock"

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    /// Connects, or exits 2 with a message that says what to check.
    func connect() throws -> ControlClient {
        do {
            return try ControlClient(path: socket)
        } catch {
            switch error.errorNumber {
            case ENOENT, ECONNREFUSED:
                fail("jesterctl: no Jester master is listening on \(socket) (is it running? see --socket)")
            case EACCES, EPERM:
                fail("jesterctl: permission denied on \(socket): run as root, as the master's user, or as a member of its control_group")
            default:
                fail("jesterctl: cannot connect to \(socket): \(error)")
            }
        }
    }
}

/// Exit codes: 0 success, 1 the operation failed (for example a reload with config errors), 2 could not talk
/// to the master.
func fail(_ message: String, code: Int32 = 2) -> Never {
    writeOut(message + "\n", to: STDERR_FILENO)
    exit(code)
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

    /// The next message, or nil when the master closed the connection.
    func receive(timeoutSeconds: Double = 60) -> ControlMessage? {
        while true {
            do {
                if let envelope = try codec.nextEnvelope() {
                    if case .failure(let reason) = envelope.message { fail("jesterctl: \(reason)") }
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
    writeOut(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self) + "\n", to: STDOUT_FILENO)
}

/// Rows of columns, each column as wide as its widest cell.
func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        print(row.enumerated().map { $1 + String(repeating: " ", count: max(0, widths[$0] - $1.count)) }.joined(separator: "  "))
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
}

struct JesterCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jesterctl",
        abstract: "Control a running Jester instance.",
        subcommands: [Status.self, Reload.self, Upgrade.self, Upstreams.self, UpstreamCommand.self, Drain.self, Stop.self])
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the master and one row per worker.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = try options.connect()
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
        print("")
        // One row per generation, then one per worker.
        let generations = Dictionary(grouping: report.workers, by: \.generation).sorted { $0.key > $1.key }
        var generationRows = [["GEN", "CONFIG", "STARTED", "WORKERS", "CONNS", "STATE", "DRAIN DEADLINE"]]
        for (number, members) in generations {
            let started = members.compactMap(\.startedAt).min().map { "\(Int(Date().timeIntervalSince1970 - $0))s ago" } ?? "-"
            let deadline = members.compactMap(\.drainDeadline).max()
                .map { "in \(max(0, Int($0 - Date().timeIntervalSince1970)))s" } ?? "-"
            let state = number == report.generation ? (members.allSatisfy { $0.state == "ready" } ? "serving" : "starting")
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

    @Flag(help: "Show the phases as they happen (validated, spawning, ready, draining) and return once the old generation has drained.")
    var wait = false

    func run() throws {
        let client = try options.connect()
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
        case "draining": line = "draining: \(generation), \(progress.connections) connections on \(progress.workers) workers"
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
        let client = try options.connect()
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
            if let client = try? ControlClient(path: options.socket) { return client }
            if Date() > deadline { fail("jesterctl: no master answers on \(options.socket) after the upgrade (see its log)") }
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
        case "draining": line = "draining: \(generation), \(progress.connections) connections on \(progress.workers) workers"
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
        abstract: "List upstream pools and targets: health, admin state, requests in flight, requests, failures, latency.")
    @OptionGroup var options: ControlOptions

    func run() throws {
        let client = try options.connect()
        client.send(.upstreams)
        guard case .upstreamsReport(let targets) = client.receive() else { fail("jesterctl: no answer from the master") }
        if options.json {
            printJSON(targets)
            return
        }
        var rows = [["UPSTREAM", "TARGET", "HEALTH", "ADMIN", "EJECTED BY", "ACTIVE", "REQUESTS", "FAILURES", "LATENCY"]]
        for target in targets {
            rows.append([
                target.state.upstream, target.state.target, target.state.health, target.state.admin,
                target.ejectedBy > 0 ? "\(target.ejectedBy) workers" : "-", "\(target.active)", "\(target.requests)",
                "\(target.failures)", target.latencyMilliseconds > 0 ? oneDecimal(target.latencyMilliseconds) + "ms" : "-",
            ])
        }
        printTable(rows)
    }
}

struct UpstreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upstream",
        abstract: "Change a target's admin state on every worker: drain (no new requests; in-flight ones finish), disable (also close its idle connections), enable.",
        discussion: "The state survives reloads while the target stays in the configuration, and binary upgrades.")
    @OptionGroup var options: ControlOptions

    @Argument(help: "drain, disable or enable")
    var action: String
    @Argument(help: "The upstream pool.")
    var pool: String
    @Argument(help: "The target, as configured (host:port).")
    var target: String

    func run() throws {
        let states = ["drain": "drain", "disable": "disabled", "enable": "enabled"]
        guard let state = states[action] else { fail("jesterctl: '\(action)' is not drain, disable or enable", code: 1) }
        let client = try options.connect()
        client.send(.setTargetAdmin(upstream: pool, target: target, state: state))
        guard case .done(_, let text) = client.receive() else { fail("jesterctl: no answer from the master") }
        print(text)
    }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop accepting, finish in-flight requests, and exit; shows progress while it waits.")
    @OptionGroup var options: ControlOptions
    @Option(help: "Seconds to wait for in-flight requests before closing them (default: drain_timeout).")
    var timeout: Double?

    func run() throws {
        let client = try options.connect()
        client.send(.drain(timeoutSeconds: timeout))
        while let message = client.receive(timeoutSeconds: (timeout ?? 600) + 30) {
            switch message {
            case .progress(let progress):
                if options.json {
                    printJSON(progress)
                } else {
                    print("draining: \(progress.connections) connections open in \(progress.workers) workers")
                }
            case .done(let success, let text):
                print(options.json ? "{\"done\": \(success)}" : text)
                if !success { throw ExitCode(1) }
                return
            default:
                break
            }
        }
        print("drained: the master has exited")
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop Jester: gracefully (like SIGTERM) or, with --fast, at once (like SIGINT).")
    @OptionGroup var options: ControlOptions
    @Flag(help: "Do not wait for in-flight requests.")
    var fast = false

    func run() throws {
        let client = try options.connect()
        client.send(.stop(fast: fast))
        if case .done(_, let text) = client.receive() { print(text) }
        // Wait for the master to close the socket as it exits.
        while client.receive(timeoutSeconds: 120) != nil {}
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
