// SPDX-License-Identifier: Apache-2.0
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import JesterControlPlane

/// What the control plane's stream service asks of the process that owns the versions (`ControlPlaneServer`):
/// the decisions stay there, on its loop (`DataPlaneRegistry`); this module only moves messages.
public protocol SnapshotStreamHub: Sendable {
    /// A stream opened: its number and the pushes to send on it (finished when the hub closes the stream).
    func openStream() async -> (stream: UInt64, pushes: AsyncStream<SnapshotPush>)
    /// A reply arrived on `stream`.
    func receive(_ reply: SnapshotStreamReply, on stream: UInt64) async
    /// The stream ended (the data plane left, or the connection failed).
    func closeStream(_ stream: UInt64) async
}

/// The PEM files of one end of the stream's mutual TLS: its own certificate chain and key, and the CA the other
/// end's certificate must chain to.
public struct StreamTLSFiles: Sendable, Equatable {
    public var certificate: String
    public var key: String
    public var ca: String

    public init(certificate: String, key: String, ca: String) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
    }
}

/// The control plane's gRPC server for the stream: one `SnapshotStream.Stream` call per data plane.
public final class SnapshotStreamServer: Sendable {
    /// The largest message either way: a push of the largest snapshot the REST API takes (64 MiB), with room for
    /// its framing; a NACK's detail is far smaller.
    public static let maxMessageBytes = 64 * 1024 * 1024 + 64 * 1024

    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix

    /// A server on `host:port` (numeric) that hands every stream to `hub`. With `tls`, every data plane must
    /// present a certificate that chains to `tls.ca` (mutual TLS); without, plaintext (loopback only: the caller
    /// checks).
    public init(host: String, port: Int, tls: StreamTLSFiles?, hub: any SnapshotStreamHub) {
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls {
            security = .mTLS(
                certificateChain: [.file(path: tls.certificate, format: .pem)],
                privateKey: .file(path: tls.key, format: .pem)
            ) { config in
                config.trustRoots = .certificates([.file(path: tls.ca, format: .pem)])
                // Data planes are known by their CA, not by a name the server could check.
                config.clientCertificateVerification = .noHostnameVerification
            }
        } else {
            security = .plaintext
        }
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.rpc.maxRequestPayloadSize = Self.maxMessageBytes
        // Pings both ways, so a data plane gone without a FIN is listed as disconnected within a minute.
        config.connection.keepalive = .init(
            time: .seconds(30), timeout: .seconds(10),
            clientBehavior: .init(minPingIntervalWithoutCalls: .seconds(10), allowWithoutCalls: true))
        transport = HTTP2ServerTransport.Posix(
            address: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port),
            transportSecurity: security, config: config)
        server = GRPCServer(transport: transport, services: [SnapshotStreamService(hub: hub)])
    }

    /// Serves until `stop`; throws when the address cannot be bound.
    public func serve() async throws {
        try await server.serve()
    }

    /// The port bound, once it is (for `--grpc-listen HOST:0`); throws when binding failed.
    public func boundPort() async throws -> Int? {
        let address = try await transport.listeningAddress
        return address.ipv4?.port ?? address.ipv6?.port
    }

    /// Stops accepting streams and ends the open ones.
    public func stop() {
        server.beginGracefulShutdown()
    }
}

/// The service: reads a data plane's replies into the hub and writes the hub's pushes back, until either side
/// ends the stream.
struct SnapshotStreamService: Jester_Controlplane_V1_SnapshotStream.SimpleServiceProtocol {
    let hub: any SnapshotStreamHub

    func stream(
        request: RPCAsyncSequence<Jester_Controlplane_V1_DataPlaneMessage, any Error>,
        response: RPCWriter<Jester_Controlplane_V1_ControlPlaneMessage>,
        context: ServerContext
    ) async throws {
        let (stream, pushes) = await hub.openStream()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await push in pushes { try await response.write(push.message) }
                }
                group.addTask {
                    for try await message in request {
                        guard let reply = SnapshotStreamReply(message) else { continue }
                        await hub.receive(reply, on: stream)
                    }
                }
                // Whichever ends first ends the call: the data plane hung up, or the hub closed the stream.
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await hub.closeStream(stream)
            throw error
        }
        await hub.closeStream(stream)
    }
}
