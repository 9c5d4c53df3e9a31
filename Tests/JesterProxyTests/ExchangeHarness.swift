// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterHTTP2
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// The embedded tier of the proxied exchange: an HTTP/1.1 client connection (`DownstreamConnection` on an
/// `EmbeddedChannel`) proxying to targets the test plays through `EmbeddedConnector`, all on one
/// `EmbeddedEventLoop` whose clock stands in for time. Scenarios read like HAProxy's: upstreams and a route,
/// what the client sends, what each target sees and answers, what the client gets.
final class ExchangeHarness {
    let loop = EmbeddedEventLoop()
    let connector: EmbeddedConnector
    let runtime: WorkerRuntime
    let client: EmbeddedChannel

    /// `body`: upstreams, filters and routes (the listener "main" is there already); `listener`: more of its keys.
    init(_ body: String, http: String = "", listener: String = "") throws {
        let configuration = try ConfigLoader(environment: [:]).load(text: """
            [log]
            access_log = false

            [http]
            \(http)

            [[listeners]]
            name = "main"
            address = "127.0.0.1:8080"
            \(listener)

            \(body)
            """, file: "test.toml")
        connector = EmbeddedConnector(loop: loop)
        runtime = WorkerRuntime(configuration: configuration, eventLoop: loop, slot: 0, connector: connector)
        client = EmbeddedChannel(handler: DownstreamConnection(runtime: runtime, listener: "main"), loop: loop)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.9", port: 40000)).wait()
    }

    func send(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
    }

    /// Everything written to the client so far, as text.
    func received() throws -> String {
        var text = ""
        while let buffer = try client.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// The newest connection to the target on `port` (the test expects one).
    func upstream(_ port: Int) throws -> EmbeddedUpstream {
        try #require(connector.upstreams(port: port).last)
    }

    /// The one connection that came up, whichever target the balancer picked.
    func onlyUpstream() throws -> EmbeddedUpstream {
        try #require(connector.upstreams.count == 1)
        return connector.upstreams[0]
    }
}

/// Two targets and a route to them; `route` adds keys to the route, `pool` to the upstream.
func proxying(route: String = "", pool: String = "", targets: String = #""127.0.0.1:9001", "127.0.0.1:9002""#)
    -> String
{
    """
    [upstreams.app]
    targets = [\(targets)]
    \(pool)

    [[routes]]
    path_prefix = "/"
    upstream = "app"
    \(route)
    """
}

/// A complete small answer from a target, for scenarios where what it says does not matter.
let okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


/// An HTTP/2 peer the test plays with nghttp2 (`HTTP2Session`): the client role facing a listener with
/// `http2 = true` (prior knowledge), or the server role playing a target of an h2 pool. Frames are carried to and
/// from the embedded channel by `exchange`, so the peer's SETTINGS, ACKs and WINDOW_UPDATEs flow as on a socket.
final class HTTP2Peer {
    let session: HTTP2Session
    /// What the peer received and has not been taken yet.
    private var events: [HTTP2Event] = []

    init(_ role: HTTP2Session.Role) throws {
        session = try HTTP2Session(role: role)
    }

    /// Carries frames both ways between this peer and `channel` (Jester's side), running the loop between, until
    /// neither side has more to say. `deliver` hands the peer's bytes to Jester.
    func exchange(with channel: EmbeddedChannel, loop: EmbeddedEventLoop, deliver: (ByteBuffer) throws -> Void) throws {
        for _ in 0..<16 {
            var moved = false
            if let out = session.takeOutput(allocator: ByteBufferAllocator()) {
                try deliver(out)
                moved = true
            }
            events += session.takeEvents()
            loop.run()
            while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
                events += try session.receive(bytes).get()
                moved = true
            }
            if !moved { return }
        }
    }

    /// The events received so far (and forgets them).
    func takeEvents() -> [HTTP2Event] {
        defer { events = [] }
        return events
    }

    /// One stream's message as received: its header fields, body and whether it ended.
    struct Message {
        var fields: [HTTP2Field] = []
        var body = ""
        var ended = false
        var reset: UInt32?
        var trailers: [HTTP2Field] = []

        func field(_ name: String) -> String? { fields.first { $0.name == name }?.value }
    }

    /// What `stream` received so far, from `events`.
    static func message(_ stream: Int32, in events: [HTTP2Event]) -> Message {
        var message = Message()
        for event in events {
            switch event {
            case .headers(stream, let fields, let endStream):
                message.fields += fields
                message.ended = message.ended || endStream
            case .data(stream, let bytes):
                message.body += String(buffer: bytes)
            case .trailers(stream, let fields):
                message.trailers += fields
                message.ended = true
            case .endStream(stream):
                message.ended = true
            case .streamClosed(stream, let code) where code != 0:
                message.reset = code
            default:
                break
            }
        }
        return message
    }
}
