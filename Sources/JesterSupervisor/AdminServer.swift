// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import JesterConfig
import JesterControl
import NIOCore

/// The master's admin API server (jester-admin(7)): what it listens on, who may use it, and its connections.
///
/// It runs on the master's event loop like the control socket, and answers through the same dispatcher
/// (`Master.controlRequest`): an HTTP request becomes a control request with a reply target that collects the
/// answer (`AdminReplyCollector`), so the API and jesterctl cannot disagree about what an action does. The
/// listening descriptor is the master's own, handed across a binary upgrade like the control socket's.
final class AdminServer {
    /// The listening channel, nil while the API is off.
    var channel: (any Channel)?
    /// Its descriptor (-1: none), which an upgrade hands to the new program.
    var fd: Int32 = -1
    /// What `fd` is bound to.
    var endpoint: AdminSettings.Endpoint?
    /// The tokens in force, re-read at start and on every reload.
    var authorization = AdminAuthorization(tokens: nil)
    /// A reload's new endpoint, bound in `prepare` and served from `commit` (nil: no change).
    var pending: PendingEndpoint?
    /// Open API connections; past `maxConnections` new ones are closed at once, so a client that opens many
    /// cannot take the master's descriptors.
    var connections = 0
    /// Numbers each API request's control exchange (its correlation id, also in the log).
    var nextRequestID: UInt64 = 1
    /// The last reloads and upgrades, for `GET /api/v1/reloads` and the dashboard.
    var reloads = ReloadHistory()
    /// The dashboard's tap of recent access records (open while a dashboard polls).
    let recentAccess = RecentAccessTap()

    /// The most API connections open at once.
    static let maxConnections = 64
    /// How long a connection may stay without a byte from the client.
    static let idleTimeout = TimeAmount.seconds(60)

    /// `GET /metrics`: the lead's metrics core fills this with the exposition for an `Accept` field (nil: the
    /// field was absent), returning its content type and bytes, or nil when metrics are off (404 saying so).
    /// Nil: the route answers 404.
    var metricsExposition: ((_ accept: String?) -> (contentType: String, body: [UInt8])?)?

    /// A reload's change of endpoint: the socket bound for the new one (nil: the API turns off).
    struct PendingEndpoint {
        var endpoint: AdminSettings.Endpoint?
        var fd: Int32
    }
}

/// One admin API connection: reads requests (`APIRequestReader`), answers them one at a time in order, keeps
/// the connection alive between them, and closes it after a framing error or when idle.
final class AdminConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private let master: Master
    private var reader = APIRequestReader()
    /// A request is being answered: the next one waits (pipelined requests are answered in order).
    private var answering = false
    private var closing = false

    init(master: Master) {
        self.master = master
    }

    func channelActive(context: ChannelHandlerContext) {
        master.adminServer.connections += 1
        if master.adminServer.connections > AdminServer.maxConnections {
            closing = true
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        master.adminServer.connections -= 1
        closing = true
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reader.append(unwrapInboundIn(data).readableBytesView)
        processNext(context.channel)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent, !answering {
            closing = true
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closing = true
        context.close(promise: nil)
    }

    private func processNext(_ channel: any Channel) {
        guard !answering, !closing else { return }
        switch reader.next() {
        case .needMoreBytes:
            return
        case .refuse(let status, let message):
            closing = true
            let response = APIResponse.error(status, message)
            channel.writeAndFlush(ByteBuffer(bytes: response.serialized(keepAlive: false))).whenComplete { _ in
                channel.close(promise: nil)
            }
        case .request(let request):
            answering = true
            master.adminRequest(request, on: channel) { [self] response in
                answering = false
                let keepAlive = request.keepAlive && !response.closesConnection
                let written = channel.writeAndFlush(ByteBuffer(bytes: response.serialized(keepAlive: keepAlive)))
                if keepAlive {
                    processNext(channel)
                } else {
                    closing = true
                    written.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }
}

/// The answers the dispatcher gives one admin API request: the first that settles it (a report, a result, done or
/// a failure) goes to `settle`, once; progress lines before it are not the answer and are skipped.
final class AdminReplyCollector: ControlReplyTarget, @unchecked Sendable {
    /// The correlation id of the request (the API's own numbering, for the log).
    let id: UInt64
    private let channel: any Channel
    private var settle: ((ControlMessage) -> Void)?

    init(id: UInt64, channel: any Channel, settle: @escaping (ControlMessage) -> Void) {
        self.id = id
        self.channel = channel
        self.settle = settle
    }

    func send(_ message: ControlMessage) {
        if case .progress = message { return }
        guard let settle else { return }
        self.settle = nil
        settle(message)
    }

    /// Open until settled, and while the client is still connected (a reload whose client left is still carried
    /// out; nobody hears its result).
    var isOpen: Bool { settle != nil && channel.isActive }

    func close() {
        settle = nil
    }
}
