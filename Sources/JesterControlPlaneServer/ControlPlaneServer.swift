// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControlPlane
import JesterControlPlaneGRPC
import JesterHTTPAPI
import JesterLogging
import JesterSystem
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The control plane's process (`jester control-plane`): its REST API over HTTP/1.1 and its store.
///
/// One event loop does everything: the API's decisions (`ControlPlaneAPI`) are taken there one request at a time,
/// and a change is stored durably (`FileSnapshotStore`, or `EtcdSnapshotStore` for replicas) before it is answered
/// or made current, so an answered change survives a crash and a refused or unstored one never existed. Changes
/// are rare and small next to what a data plane does; one loop keeps their order the order of the history.
///
/// With etcd, versions made by other replicas are read as they appear and made current on the loop
/// (ControlPlaneServer+Replicas), and a change
/// whose number another replica took first is decided again over the versions it missed.
public final class ControlPlaneServer: @unchecked Sendable {
    /// What the command line sets.
    public struct Settings: Sendable {
        /// `HOST:PORT` (`[::1]:9400` for IPv6).
        public var listen: String
        public var dataDirectory: String
        /// The API's bearer tokens (`ROLE TOKEN NAME` lines); nil: none, loopback only.
        public var tokensFile: String?
        /// A data plane's bootstrap file to check documents over (nil: each document on its own).
        public var bootstrapFile: String?
        /// Where the data planes' stream listens (`HOST:PORT`; nil: no stream).
        public var streamListen: String?
        /// The stream's mutual TLS (nil: plaintext, loopback only).
        public var streamTLS: StreamTLSFiles?
        /// etcd's client URLs (nil: the files in `dataDirectory`).
        public var etcdEndpoints: [String]?
        /// The keys' common start in etcd.
        public var etcdPrefix: String

        public init(
            listen: String, dataDirectory: String, tokensFile: String?, bootstrapFile: String?,
            streamListen: String? = nil, streamTLS: StreamTLSFiles? = nil, etcdEndpoints: [String]? = nil,
            etcdPrefix: String = "/jester/control-plane/"
        ) {
            self.etcdEndpoints = etcdEndpoints
            self.etcdPrefix = etcdPrefix
            self.streamListen = streamListen
            self.streamTLS = streamTLS
            self.listen = listen
            self.dataDirectory = dataDirectory
            self.tokensFile = tokensFile
            self.bootstrapFile = bootstrapFile
        }
    }

    /// Why the control plane cannot start: said once, on standard error, with what to fix.
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The most API connections open at once; past it new ones are closed.
    static let maxConnections = 64
    /// How long a connection may stay without a byte from the client.
    static let idleTimeout = TimeAmount.seconds(60)
    /// How many times a change is decided when other replicas keep taking its version number first.
    static let maxDecisions = 10
    /// The largest request body: a whole snapshot of tens of thousands of routes.
    static let maxBodySize = 64 * 1024 * 1024

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    /// The one loop every decision is taken on.
    var loop: any EventLoop { group.any() }
    var api: ControlPlaneAPI
    /// The open data-plane streams' push queues, by stream.
    var streams: [UInt64: AsyncStream<SnapshotPush>.Continuation] = [:]
    var nextStream: UInt64 = 0
    /// Set as the stop finishes every push queue: a stream opened after that gets a finished one.
    var streamsClosed = false
    let streamAddress: SocketAddress?
    let streamTLS: StreamTLSFiles?
    var streamServer: SnapshotStreamServer?
    /// The stream server's serving task, awaited (briefly) at stop so its handlers end before the loop does.
    private var streamServing: Task<Void, any Error>?
    /// Set once the loop is shutting down: the stream's handlers, on gRPC's threads, then hand it nothing more.
    let loopClosed = NIOLockedValueBox(false)
    let store: any SnapshotStore
    /// The current version's number, for the store's watch thread (which reads what follows it).
    let committedVersion = NIOLockedValueBox(0)
    /// Counts this replica's writes of audit records and refusals (`StoreChanges.localWritesSeen`).
    let localWrites = NIOLockedValueBox(0)
    /// Data planes whose refusals could not be written to the replicas' store: written again at the next
    /// catch-up, and meanwhile not overwritten from it.
    var refusalsNotShared: Set<String> = []
    let logger = Logger(component: .controlPlane)
    let address: SocketAddress
    var connections = 0
    private var channel: (any Channel)?

    /// Opens the store, reads the tokens and the bootstrap file, and checks the address; nothing listens yet.
    public init(settings: Settings) throws(StartError) {
        do {
            address = try Self.parseAddress(settings.listen)
        } catch {
            throw StartError(description: "--listen \(settings.listen): \(error.description)")
        }
        streamTLS = settings.streamTLS
        if let stream = settings.streamListen {
            let address: SocketAddress
            do {
                address = try Self.parseAddress(stream)
            } catch {
                throw StartError(description: "--grpc-listen \(stream): \(error.description)")
            }
            guard settings.streamTLS != nil || Self.isLoopback(address) else {
                // The stream carries every route to every data plane and takes their answers: off this host
                // only with mutual TLS.
                throw StartError(description:
                    "--grpc-listen \(stream) is not a loopback address: give --grpc-cert, --grpc-key and --grpc-ca "
                        + "(mutual TLS), or anyone who can reach it could read every route and pose as a data plane")
            }
            if let tls = settings.streamTLS {
                for (option, path) in [("--grpc-cert", tls.certificate), ("--grpc-key", tls.key), ("--grpc-ca", tls.ca)]
                where !FileManager.default.isReadableFile(atPath: path) {
                    throw StartError(description: "\(option) \(path): cannot read it")
                }
            }
            streamAddress = address
        } else {
            streamAddress = nil
        }
        var tokens: AdminTokens?
        if let path = settings.tokensFile {
            let (loaded, problems) = AdminTokens.load(path: path)
            if !problems.isEmpty {
                throw StartError(description: problems.map { "\(path): \($0)" }.joined(separator: "\n"))
            }
            tokens = loaded
        } else if !Self.isLoopback(address) {
            throw StartError(description:
                "--listen \(settings.listen) is not a loopback address: give --tokens-file, or anyone who can reach "
                    + "it could change every data plane's routes")
        }
        var validator = SnapshotValidator()
        if let path = settings.bootstrapFile {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw StartError(description: "--bootstrap \(path): cannot read it")
            }
            validator = SnapshotValidator(bootstrapText: String(decoding: data, as: UTF8.self), bootstrapFile: path)
            let problems = validator.problems(Array("{}".utf8))
            if !problems.isEmpty {
                throw StartError(description: "--bootstrap \(path) is not a valid configuration:\n"
                    + problems.map { "  \($0.message)" }.joined(separator: "\n"))
            }
        }
        do {
            if let endpoints = settings.etcdEndpoints {
                store = try EtcdSnapshotStore(endpoints: endpoints, prefix: settings.etcdPrefix)
            } else {
                store = try FileSnapshotStore(directory: settings.dataDirectory)
            }
            let versions = try store.loadVersions()
            api = ControlPlaneAPI(
                history: versions, recentAudit: store.loadAudit(limit: ControlPlaneAPI.recentAuditLimit),
                validator: validator, authorization: BearerAuthorization(tokens: tokens))
            api.dataPlanes = DataPlaneRegistry(store: store.identity)
            committedVersion.withLockedValue { $0 = versions.last?.number ?? 0 }
        } catch {
            throw StartError(description: error.description)
        }
    }

    /// Starts listening; returns the address bound (its port, when 0 was asked for).
    public func start() throws -> SocketAddress {
        let version = api.current.number  // before the loop can change it
        let authorization = api.authorization
        // Large bodies (whole snapshots) only from clients that may write; the rest get the admin API's limit
        // before any of their body is buffered.
        let bodyLimit: @Sendable (String, [(name: String, value: String)]) -> Int = { _, fields in
            let presented = fields.first { $0.name == "authorization" }?.value
            if case .allowed = authorization.decide(authorization: presented, required: .write) {
                return Self.maxBodySize
            }
            return APIRequestReader.defaultMaxBodySize
        }
        let bound = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlPlaneConnection(server: self, bodyLimit: bodyLimit))
                }
            }
            .bind(to: address).wait()
        channel = bound
        logger.info("control plane serving", metadata: [
            "address": "\(bound.localAddress.map { "\($0)" } ?? "?")", "version": "\(version)",
            "store": "\(store.location)",
        ])
        startWatchingTheStore()
        return bound.localAddress ?? address
    }

    /// Starts the data planes' stream server, if one was asked for; returns its port once bound.
    public func startStream() throws -> Int? {
        guard let address = streamAddress, let host = address.ipAddress, let port = address.port else { return nil }
        let server = SnapshotStreamServer(host: host, port: port, tls: streamTLS, hub: self)
        streamServer = server
        let serving = Task { try await server.serve() }
        streamServing = serving
        let bound = BoundPort()
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            do {
                bound.port = try await server.boundPort()
            } catch {
                bound.error = "\(error)"
                _ = await serving.result
            }
            semaphore.signal()
        }
        semaphore.wait()
        if let error = bound.error { throw StartError(description: "cannot serve the stream on \(address): \(error)") }
        logger.info("serving the data planes' stream", metadata: ["port": "\(bound.port ?? 0)"])
        return bound.port
    }

    private final class BoundPort: @unchecked Sendable {
        var port: Int?
        var error: String?
    }

    /// Stops accepting, lets the loop finish what it is doing, and shuts it down.
    public func stop() {
        store.stopWatching()
        streamServer?.stop()
        try? loop.submit { [self] in
            streamsClosed = true
            for continuation in streams.values { continuation.finish() }
            streams.removeAll()
        }.wait()
        if let serving = streamServing {
            // The streams' handlers end once their push queues are finished; give them a moment.
            let ended = DispatchSemaphore(value: 0)
            Task {
                _ = await serving.result
                ended.signal()
            }
            _ = ended.wait(timeout: .now() + 5)
        }
        loopClosed.withLockedValue { $0 = true }
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// Decides one request on the loop, stores what it changed, and answers. Called by the connection.
    func answer(_ request: APIRequest) -> APIResponse {
        if store.sharesRefusals, request.method == "POST", request.path.hasPrefix("/api/v1/data-planes/"),
            request.path.hasSuffix("/retry"),
            case .allowed = api.authorization.decide(authorization: request.field("authorization"), required: .write),
            let node = PercentDecoding.decoded(request.path.dropFirst("/api/v1/data-planes/".count).dropLast("/retry".count))
        {
            // A retry for a data plane that streams to another replica: known here from the store.
            adoptSharedRefusals(of: node)
        }
        var decision = api.handle(request, now: Self.timestamp())
        var response = decision.response
        var audit = decision.audit
        // Another replica may take the version's number first: the change is then decided again over what it
        // made (an If-Match now fails, a PUT applies to the newer document), a few times at most.
        var attempts = 0
        while let version = decision.version {
            attempts += 1
            do {
                try store.store(version)
                commit(version)
                pushCurrentVersion()
                logger.info("version \(version.number) made", metadata: [
                    "actor": "\(version.actor)", "action": "\(version.action.rawValue)",
                    "changes": "\(version.changes.map(\.summary).joined(separator: "; "))",
                ])
                break
            } catch where error.isConflict && attempts < Self.maxDecisions {
                logger.info("another replica made a version first; deciding again", metadata: [
                    "version": "\(version.number)",
                ])
                // A moment of jitter (at most 50 ms), so that two replicas racing on a busy store stop colliding.
                usleep(UInt32.random(in: 0...UInt32(min(50_000, 1_000 << attempts))))
                catchUp()
                decision = api.handle(request, now: Self.timestamp())
                response = decision.response
                audit = decision.audit
            } catch {
                if error.isConflict {
                    logger.warning("a change lost every race to other replicas", metadata: [
                        "error": "\(error.description)",
                    ])
                    response = .error(409,
                        "other replicas made versions first \(Self.maxDecisions) times; the change was not made: send it again")
                } else if error.isUncertain {
                    logger.error("a change may not have been stored", metadata: ["error": "\(error.description)"])
                    response = .error(503, "the change may or may not have been made: \(error.description); "
                        + "read /api/v1/versions before sending it again")
                } else {
                    logger.error("a change could not be stored", metadata: ["error": "\(error.description)"])
                    response = ControlPlaneAPI.storageFailed(error.description)
                }
                audit?.outcome = .refused
                audit?.status = response.status
                audit?.version = api.current.number
                audit?.reason = (error.isUncertain ? "perhaps not stored: " : "not stored: ") + error.description
                break
            }
        }
        if let node = decision.retry, api.dataPlanes.forgetRefusals(of: node) {
            logger.info("a data plane's refusals were forgotten", metadata: ["node": "\(node)"])
            shareRefusals(of: node)
            pushCurrentVersion()
        }
        if let audit {
            if audit.outcome == .refused {
                logger.notice("a change was refused", metadata: [
                    "actor": "\(audit.actor)", "path": "\(audit.path)", "status": "\(audit.status)",
                    "reason": "\(audit.reason ?? "")",
                ])
            }
            defer { localWrites.withLockedValue { $0 += 1 } }  // once the write has ended (see `adopt`)
            do {
                try store.append(audit)
            } catch {
                logger.error("the audit log could not be written", metadata: ["error": "\(error.description)"])
            }
            api.remember(audit)
        }
        return response
    }

    /// Now, RFC 3339 in UTC with milliseconds.
    static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }

    struct AddressError: Error {
        var description: String
    }

    /// `HOST:PORT` or `[V6]:PORT`, numeric only (a control plane's address is not looked up in DNS).
    static func parseAddress(_ text: String) throws(AddressError) -> SocketAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { throw AddressError(description: "expected HOST:PORT, like 127.0.0.1:9400 or [::1]:9400") }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        do {
            return try SocketAddress(ipAddress: host, port: port)
        } catch {
            throw AddressError(description: "'\(host)' is not an IP address")
        }
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        SocketAddressSpec(host: address.ipAddress ?? "", port: 0).isLoopback
    }
}

/// One API connection: requests read whole (`APIRequestReader`), answered one at a time in order. It stops
/// taking the next request while its answers are not being read (the channel is not writable), so a client
/// that pipelines requests and never reads cannot make the server buffer answers without end.
final class ControlPlaneConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ControlPlaneServer
    private var reader: APIRequestReader
    private var closing = false

    init(server: ControlPlaneServer, bodyLimit: @escaping @Sendable (String, [(name: String, value: String)]) -> Int) {
        self.server = server
        reader = APIRequestReader(maxBodySize: ControlPlaneServer.maxBodySize)
        reader.bodyLimit = bodyLimit
    }

    func channelActive(context: ChannelHandlerContext) {
        server.connections += 1
        if server.connections > ControlPlaneServer.maxConnections {
            closing = true
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.connections -= 1
        closing = true
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reader.append(unwrapInboundIn(data).readableBytesView)
        answerPending(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        answerPending(context)
        context.fireChannelWritabilityChanged()
    }

    private func answerPending(_ context: ChannelHandlerContext) {
        while !closing, context.channel.isWritable {
            switch reader.next() {
            case .needMoreBytes:
                return
            case .refuse(let status, let message):
                closing = true
                let response = APIResponse.error(status, message)
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: response.serialized(keepAlive: false))))
                    .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            case .request(let request):
                let response = server.answer(request)
                let keepAlive = request.keepAlive && !response.closesConnection
                let written = context.writeAndFlush(
                    wrapOutboundOut(ByteBuffer(bytes: response.serialized(keepAlive: keepAlive))))
                if !keepAlive {
                    closing = true
                    written.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
                }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            closing = true
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closing = true
        context.close(promise: nil)
    }
}

extension ControlPlaneServer {
    /// Serves until SIGTERM or SIGINT, telling systemd when it is ready and when it stops. The caller blocks the
    /// handled signals (`SignalWaiter.blockHandledSignals`) before it starts any thread, this server's included.
    public func runUntilStopped() throws {
        let stopped = DispatchSemaphore(value: 0)
        _ = SignalWaiter { signal in
            if signal == SIGTERM || signal == SIGINT { stopped.signal() }
        }
        let version = api.current.number  // read before the loop can change it
        _ = try start()
        _ = try startStream()
        _ = Systemd.notify("READY=1\nSTATUS=serving version \(version)")
        stopped.wait()
        _ = Systemd.notify("STOPPING=1")
        logger.info("control plane stopping")
        stop()
    }
}
