// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import Foundation
import JesterControlPlaneGRPC
import JesterControlPlaneServer
import JesterLogging
import JesterSystem
import Logging

/// `jester control-plane`: the control plane's server (jester-control-plane(8)), run by its own systemd unit.
struct ControlPlaneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane",
        abstract: "Run the control plane: a REST API that keeps versioned routes, upstreams, filters and policies.")

    @Option(help: "Where the REST API listens (HOST:PORT; [::1]:PORT for IPv6).")
    var listen = "127.0.0.1:9400"

    @Option(help: "Where the data planes' gRPC stream listens (HOST:PORT; \"off\": no stream).")
    var grpcListen = "127.0.0.1:9401"

    @Option(help: "The stream's certificate chain (PEM); with --grpc-key and --grpc-ca, mutual TLS.")
    var grpcCert: String?

    @Option(help: "The stream's private key (PEM).")
    var grpcKey: String?

    @Option(help: "The CA (PEM) data planes' client certificates must chain to.")
    var grpcCa: String?

    @Option(help: "The directory of versions and the audit log (created if missing).")
    var dataDir = "/var/lib/jester-control-plane"

    @Option(help: ArgumentHelp(
        "etcd endpoints (http://HOST:PORT, comma-separated): keep versions there instead of --data-dir, shared "
            + "with every replica given the same endpoints and --etcd-prefix."))
    var etcd: String?

    @Option(help: "The keys' common start in etcd: one per control plane, the same for all its replicas.")
    var etcdPrefix = "/jester/control-plane/"

    @Option(help: "Bearer tokens, one 'ROLE TOKEN NAME' per line (ROLE is read or write). Needed off loopback.")
    var tokensFile: String?

    @Option(help: "A data plane's bootstrap file to check changes over (default: each change on its own).")
    var bootstrap: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func run() throws {
        // Before any thread exists (the log writer's, the event loop's), so every thread inherits the mask and
        // SIGTERM reaches only the signal thread that stops the server cleanly.
        SignalWaiter.blockHandledSignals()
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info)
        var streamTLS: StreamTLSFiles?
        switch (grpcCert, grpcKey, grpcCa) {
        case (nil, nil, nil):
            break
        case (let cert?, let key?, let ca?):
            streamTLS = StreamTLSFiles(certificate: cert, key: key, ca: ca)
        default:
            FileHandle.standardError.write(Data(
                "jester control-plane: --grpc-cert, --grpc-key and --grpc-ca go together (mutual TLS)\n".utf8))
            throw ExitCode(1)
        }
        let server: ControlPlaneServer
        do {
            server = try ControlPlaneServer(settings: .init(
                listen: listen, dataDirectory: dataDir, tokensFile: tokensFile, bootstrapFile: bootstrap,
                streamListen: grpcListen == "off" ? nil : grpcListen, streamTLS: streamTLS,
                etcdEndpoints: etcd.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } },
                etcdPrefix: etcdPrefix))
        } catch {
            FileHandle.standardError.write(Data("jester control-plane: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
        do {
            try server.runUntilStopped()
        } catch {
            FileHandle.standardError.write(Data("jester control-plane: cannot listen: \(error)\n".utf8))
            throw ExitCode(1)
        }
        LogWriter.standardError.flush()
        LogWriter.standardOutput.flush()
    }
}
