// SPDX-License-Identifier: Apache-2.0
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import JesterControlPlane

/// One stream from a data plane's master to the control plane: opened once, ended by either side or `close`.
///
/// It decides nothing: it reports what happens (`Event`) to the master, whose `ControlPlaneLink` decides, and
/// sends what the master gives it (`send`). A new connection is made for every stream, so the link's backoff, not
/// the gRPC client's, paces reconnections.
public final class SnapshotStreamClient: Sendable {
    /// What happened on the stream, delivered in order on a thread of gRPC's: hop to the master's loop.
    public enum Event: Sendable {
        /// The call is open: `hello` can go.
        case opened
        case push(SnapshotPush)
        /// The stream ended; `opened` says whether it had been open (a lost stream) or never was (a failed
        /// connection).
        case ended(reason: String, opened: Bool)
    }

    private let outbound: AsyncStream<SnapshotStreamReply>.Continuation
    private let task: Task<Void, Never>

    /// Opens a stream to `host:port` (numeric). With `tls`, the control plane's certificate must chain to
    /// `tls.ca` and name `host`, and this end presents its own (mutual TLS); without, plaintext.
    public init(host: String, port: Int, tls: StreamTLSFiles?, onEvent: @escaping @Sendable (Event) -> Void) {
        let (replies, outbound) = AsyncStream.makeStream(of: SnapshotStreamReply.self)
        self.outbound = outbound
        task = Task {
            let opened = OpenedFlag()
            do {
                let security: HTTP2ClientTransport.Posix.TransportSecurity
                if let tls {
                    security = .mTLS(
                        certificateChain: [.file(path: tls.certificate, format: .pem)],
                        privateKey: .file(path: tls.key, format: .pem)
                    ) { config in
                        config.trustRoots = .certificates([.file(path: tls.ca, format: .pem)])
                        config.serverCertificateVerification = .fullVerification
                    }
                } else {
                    security = .plaintext
                }
                var config = HTTP2ClientTransport.Posix.Config.defaults
                // A half-open connection (a partition, a host lost) is noticed within a minute, not when TCP gives up.
                config.connection.keepalive = .init(time: .seconds(30), timeout: .seconds(10), allowWithoutCalls: true)
                let transport = try HTTP2ClientTransport.Posix(
                    target: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port),
                    transportSecurity: security, config: config)
                try await withGRPCClient(transport: transport) { client in
                    let stub = Jester_Controlplane_V1_SnapshotStream.Client(wrapping: client)
                    var options = CallOptions.defaults
                    // Fail at once when the control plane cannot be reached: the link backs off and retries.
                    options.waitForReady = false
                    // A push carries a whole snapshot, as large as the REST API takes (gRPC's default is 4 MiB).
                    options.maxResponseMessageBytes = SnapshotStreamServer.maxMessageBytes
                    options.maxRequestMessageBytes = SnapshotStreamServer.maxMessageBytes
                    try await stub.stream(options: options, requestProducer: { writer in
                        for await reply in replies { try await writer.write(reply.message) }
                    }, onResponse: { response in
                        // A refusal without a stream (trailers only) is not an open stream.
                        if case .failure(let error) = response.accepted { throw error }
                        // The response's metadata arrived: the call is established.
                        opened.set()
                        onEvent(.opened)
                        for try await message in response.messages {
                            if let push = SnapshotPush(message) { onEvent(.push(push)) }
                        }
                    })
                }
                onEvent(.ended(reason: "the control plane ended the stream", opened: opened.value))
            } catch {
                onEvent(.ended(reason: Self.describe(error), opened: opened.value))
            }
        }
    }

    /// Sends a reply (after `opened`; replies sent before wait).
    public func send(_ reply: SnapshotStreamReply) {
        outbound.yield(reply)
    }

    /// Ends the stream; an `ended` event follows.
    public func close() {
        outbound.finish()
        task.cancel()
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? RPCError { return "\(error.code): \(error.message)" }
        return "\(error)"
    }

    /// Whether the call was ever established, read after it ended.
    private final class OpenedFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var opened = false
        func set() { lock.withLock { opened = true } }
        var value: Bool { lock.withLock { opened } }
    }
}
