import JesterConfig
import JesterCore
import NIOCore
import NIOPosix

/// Why an exchange with an upstream failed, and so which status the client gets.
enum UpstreamFailure: Error, Sendable {
    /// The target refused or reset the connection attempt: 502.
    case connectFailed(String)
    /// No connection within `connect_timeout`: 504.
    case connectTimedOut
    /// No response head within `response_timeout`: 504.
    case responseTimedOut
    /// The connection closed before the response was complete.
    case closedEarly
    /// The response could not be parsed or was framed ambiguously: 502.
    case invalidResponse(HTTPParseError)

    var status: Int {
        switch self {
        case .connectTimedOut, .responseTimedOut: return 504
        default: return 502
        }
    }

    var reason: String {
        switch self {
        case .connectFailed(let reason): return "connect failed: \(reason)"
        case .connectTimedOut: return "connect timed out"
        case .responseTimedOut: return "response timed out"
        case .closedEarly: return "upstream closed the connection early"
        case .invalidResponse(let error): return "invalid response: \(error.reason)"
        }
    }
}

/// One upstream pool in one worker: its targets, round-robin position and idle keep-alive connections.
///
/// Pools are per worker on purpose: a connection belongs to the event loop that opened it, and round-robin per
/// worker still spreads load evenly. Loop-confined, hence `@unchecked Sendable`.
final class UpstreamPool: @unchecked Sendable {
    let settings: UpstreamSettings
    let eventLoop: any EventLoop
    private let addresses: [SocketAddress?]
    /// "host:port" of each target, rendered once: logs and headers ask for it on every request.
    private let descriptions: [String]
    private var balancer: RoundRobin
    private var idle: [[UpstreamConnection]]

    init(settings: UpstreamSettings, eventLoop: any EventLoop, firstTarget: Int) {
        self.settings = settings
        self.eventLoop = eventLoop
        addresses = settings.targets.map { try? SocketAddress.makeAddressResolvingHost($0.host, port: $0.port) }
        descriptions = settings.targets.map(\.description)
        balancer = RoundRobin(offset: firstTarget)
        idle = Array(repeating: [], count: settings.targets.count)
    }

    var name: String { settings.name }

    /// A connection to the next target: a kept-alive idle one when there is one (unless `fresh` asks for a new
    /// connection, as a replay after a stale keep-alive connection does), else a new one.
    func acquire(fresh: Bool = false, _ completion: @escaping (Result<UpstreamConnection, UpstreamFailure>) -> Void) {
        let target = balancer.next(count: settings.targets.count)
        while !fresh, let connection = idle[target].popLast() {
            if connection.isUsable {
                connection.leaveIdle()
                completion(.success(connection))
                return
            }
        }
        guard let address = addresses[target] else {
            completion(.failure(.connectFailed("cannot resolve \(settings.targets[target])")))
            return
        }
        let connection = UpstreamConnection(pool: self, target: target)
        let timeout = TimeAmount.nanoseconds(Int64(settings.connectTimeout.components.seconds) * 1_000_000_000
            + settings.connectTimeout.components.attoseconds / 1_000_000_000)
        ClientBootstrap(group: eventLoop)
            .channelOption(.autoRead, value: false)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .assumeIsolated()  // the pool's own loop: the completion stays loop-confined
            .whenComplete { result in
                switch result {
                case .success:
                    completion(.success(connection))
                case .failure(let error):
                    if case ChannelError.connectTimeout = error {
                        completion(.failure(.connectTimedOut))
                    } else {
                        completion(.failure(.connectFailed("\(error)")))
                    }
                }
            }
    }

    /// The address of a target, for logs.
    func targetDescription(_ target: Int) -> String { descriptions[target] }

    /// Takes back a connection after an exchange: kept for reuse when it can carry another request and the idle
    /// list has room, closed otherwise.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        guard reusable, connection.isUsable, idle[connection.target].count < settings.maxIdleConnections else {
            connection.close()
            return
        }
        idle[connection.target].append(connection)
        connection.enterIdle(timeout: settings.idleTimeout)
    }

    /// Forgets an idle connection that closed or timed out.
    func remove(_ connection: UpstreamConnection) {
        idle[connection.target].removeAll { $0 === connection }
    }

    /// Closes every idle connection (the worker is exiting).
    func closeIdle() {
        for list in idle { for connection in list { connection.close() } }
        idle = Array(repeating: [], count: idle.count)
    }
}
