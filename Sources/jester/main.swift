// SPDX-License-Identifier: Apache-2.0
// The `jester` executable: parses arguments and dispatches to the master, a worker, or a config tool.
import ArgumentParser
import Foundation
import JesterConfig
import JesterControl
import JesterHTTP2
import JesterHTTP3
import JesterLogging
import JesterProxy
import JesterSupervisor
import JesterSystem
import JesterTLS
import Logging

// A worker is this binary started by the master with `--worker` and its sockets at fds 3, 4, ...
if CommandLine.arguments.dropFirst().first == "--worker" {
    Worker.run()
}

struct Jester: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jester",
        abstract: "A reverse proxy, load balancer and API gateway.",
        version: JesterVersion.current,
        subcommands: [Run.self, Config.self, Diag.self, Policy.self, ControlPlaneCommand.self, Version.self],
        defaultSubcommand: Run.self)
}

let defaultConfigPath = "/etc/jester/jester.toml"

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the master and its workers (the default).")

    @Option(name: [.short, .long], help: "The configuration file.")
    var config: String = defaultConfigPath

    @Flag(name: .customShort("t"), help: "Validate the configuration and exit, as `jester config validate` (nginx -t).")
    var testConfiguration = false

    func run() throws {
        if testConfiguration { return try Config.Validate.validate(config) }
        // Before any thread exists, so every thread inherits the mask and signals reach only SignalWaiter.
        SignalWaiter.blockHandledSignals()
        // Started by a binary upgrade of a running master: adopt its workers instead of starting fresh.
        if let code = Master.resumeUpgrade(configPath: config, loader: ConfigLoader.checkingTLS) {
            LogWriter.standardError.flush()
            LogWriter.standardOutput.flush()
            throw ExitCode(code)
        }
        try probeParser(config)
        let loader = ConfigLoader.checkingTLS
        let configuration: Configuration
        let (loaded, snapshot, snapshotWarning) = Master.loadAtStart(config, loader: loader)
        switch loaded {
        case .success(let value):
            configuration = value
        case .failure(let error):
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(1)
        }
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: configuration.log.level) ?? .info)
        let startLogger = Logger(component: .config)
        for warning in configuration.warnings { startLogger.warning("\(warning.description)") }
        if let snapshotWarning { startLogger.warning("\(snapshotWarning)") }
        if let snapshot {
            startLogger.info("serving the control plane's last good version", metadata: ["version": "\(snapshot.version)"])
        }
        let master = Master(configPath: config, configuration: configuration, loader: loader, snapshot: snapshot)
        let code = master.run()
        LogWriter.standardError.flush()
        LogWriter.standardOutput.flush()
        throw ExitCode(code)
    }
}

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check, show and describe configuration.",
        subcommands: [Validate.self, Dump.self, Schema.self])

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file; print every error as file:line:column and exit 1 if any.")

        @OptionGroup var source: ConfigSource

        @Flag(help: .hidden)
        var probe = false

        @Option(help: ArgumentHelp(
            "A control plane's snapshot (JSON: routes, upstreams, filters, policies) to check laid over the file, "
                + "as a data plane would apply it; its errors point at the field (snapshot FILE#/json/pointer).",
            valueName: "FILE"))
        var snapshot: String?

        func run() throws {
            let file = try source.path()
            if let snapshot { return try Self.validate(file, snapshot: snapshot) }
            if probe {
                // The child side of ConfigProbe: parse, say nothing, exit 0 or 1. A crash is the answer too.
                do {
                    _ = try ConfigLoader.checkingTLS.load(file: file)
                } catch {
                    throw ExitCode(1)
                }
                return
            }
            try Self.validate(file)
        }

        /// Loads `file` as start and reload do; prints every error (and warning) and exits 1 on errors.
        static func validate(_ file: String, snapshot: String? = nil) throws {
            try probeParser(file)
            var document: [UInt8]?
            if let snapshot {
                guard let bytes = FileManager.default.contents(atPath: snapshot) else {
                    FileHandle.standardError.write(Data("\(snapshot): cannot read the snapshot\n".utf8))
                    throw ExitCode(1)
                }
                document = Array(bytes)
            }
            do {
                let configuration: Configuration
                if let snapshot, let document {
                    configuration = try ConfigLoader.checkingTLS.load(
                        file: file, snapshot: ConfigSnapshot(version: snapshot, document: document))
                } else {
                    configuration = try ConfigLoader.checkingTLS.load(file: file)
                }
                // Warnings (an unused filter) do not make the file invalid, but the operator should see them.
                for warning in configuration.warnings {
                    FileHandle.standardError.write(Data((warning.description + "\n").utf8))
                }
                print("\(file)\(snapshot.map { " with \($0)" } ?? ""): configuration is valid (hash \(configuration.hash))")
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective configuration: includes merged, environment resolved, defaults filled in.")

        @OptionGroup var source: ConfigSource

        func run() throws {
            let file = try source.path()
            try probeParser(file)
            do {
                print(try ConfigLoader.checkingTLS.load(file: file).renderTOML(), terminator: "")
            } catch {
                FileHandle.standardError.write(Data((error.description + "\n").utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Schema: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the JSON Schema of the configuration format.")

        @Flag(help: "Print the key reference of jester.toml(5) (roff) instead.")
        var manual = false

        @Flag(help: "Print the schema of an included file (conf.d): every table but include, none required.")
        var fragment = false

        func run() {
            print(manual ? ConfigSchema.manualReference() : ConfigSchema.jsonSchema(fragment ? .fragment : .main),
                terminator: "")
        }
    }
}

/// `jester diag`: the effective configuration and the graph it makes, for an operator or a tool.
struct Diag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the effective configuration (secrets redacted) and its graph: listeners, routes in match "
            + "order, filters, pools, targets.")

    @OptionGroup var source: ConfigSource

    @Option(help: "text (the configuration, then a tree), json (jester(8) gives its shape) or dot (Graphviz).")
    var format: ConfigGraph.Format = .text

    func run() throws {
        let file = try source.path()
        try probeParser(file)
        do {
            let configuration = try ConfigLoader.checkingTLS.load(file: file)
            print(ConfigGraph(configuration).render(format), terminator: "")
        } catch {
            // The same file:line:column errors as `config validate`.
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(1)
        }
    }
}

extension ConfigGraph.Format: ExpressibleByArgument {}

/// The file a config tool reads: `-c FILE` as `jester run` takes it, or the older positional argument.
struct ConfigSource: ParsableArguments {
    @Option(name: [.short, .long], help: "The configuration file (default \(defaultConfigPath)).")
    var config: String?

    @Argument(help: "The configuration file (the same as -c).")
    var file: String?

    /// The path given, or the default; both given differently is a usage error rather than a guess.
    func path() throws -> String {
        if let config, let file, config != file {
            throw ValidationError("give the configuration file once: -c \(config) or \(file)")
        }
        return config ?? file ?? defaultConfigPath
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the linked system libraries.")

    func run() {
        print("jester \(JesterVersion.current)")
        print("openssl \(OpenSSLLibrary.version)")
        print("nghttp2 \(NGHTTP2Library.version)")
        print("ngtcp2 \(QUICLibraries.ngtcp2Version) (gnutls crypto: \(QUICLibraries.gnutlsCryptoHelperLinked ? "linked" : "missing"))")
        print("nghttp3 \(QUICLibraries.nghttp3Version)")
        print("systemd notify: \(Systemd.isNotifying ? "yes" : "no")")
    }
}

Jester.main()

/// Runs the parser on `file` in a child first (see ConfigProbe): a file that crashes the TOML library gets a
/// clear error and exit status 1 instead of an abort.
func probeParser(_ file: String) throws {
    if case .parserCrashed(let detail) = ConfigProbe.check(file: file) {
        FileHandle.standardError.write(Data(
            "\(file): error: the TOML parser crashed on this file (\(detail)); check its syntax near brackets and braces\n".utf8))
        throw ExitCode(1)
    }
}

extension ConfigLoader {
    /// The loader every command uses: certificates and keys are checked with OpenSSL while the file is loaded,
    /// so `config validate`, start-up and reloads reject what a worker could not serve.
    static var checkingTLS: ConfigLoader {
        ConfigLoader(
            tlsCheck: { TLSListener.problem($0) }, upstreamTLSCheck: { UpstreamTLS.problem($0) },
            policyCheck: PolicyCheck.check)
    }
}
