// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// Why a command sent to Redis got no reply.
enum RedisConnectionFailure: Error, Sendable, Equatable {
    /// The connection closed (or was closed) before the reply came.
    case closed
    /// The server sent bytes that are not RESP2, or a reply nobody asked for: the stream is out of step.
    case protocolError(String)
    /// The server refused a command of the connection's handshake (a wrong password, an unknown ACL user, a
    /// database out of range): the connection is of no use until the configuration changes.
    case refused(String)

    var reason: String {
        switch self {
        case .closed: return "connection closed"
        case .protocolError(let why): return "protocol error: \(why)"
        case .refused(let why): return why
        }
    }
}

/// What a pooled connection sends before any script: `AUTH` (with the ACL user, if one is configured) and
/// `SELECT`, each answered `+OK` or the connection is refused.
///
/// Per connection, because Redis keeps both per connection; pipelined ahead of the scripts, because Redis answers
/// in order, so nothing waits for the handshake's round trip except the first check on a new connection.
struct RedisHandshake: Sendable, Equatable {
    /// One command of the handshake, and what it is called in a refusal (never with the password).
    struct Step: Sendable, Equatable {
        let command: [UInt8]
        let name: String
    }

    let steps: [Step]

    /// `password` nil: no AUTH (a Redis without requirepass). `database` 0: no SELECT (every connection starts
    /// there).
    init(username: String? = nil, password: String? = nil, database: Int = 0) {
        var steps: [Step] = []
        if let password {
            // Redis 6 (ACL): AUTH username password. Without a user, AUTH password is the `default` user.
            let arguments = username.map { ["AUTH", $0, password] } ?? ["AUTH", password]
            let name = username.map { "AUTH as \($0)" } ?? "AUTH"
            steps.append(Step(command: RESPEncoder.command(arguments), name: name))
        }
        if database != 0 {
            steps.append(Step(command: RESPEncoder.command(["SELECT", String(database)]), name: "SELECT \(database)"))
        }
        self.steps = steps
    }

    /// Why `reply` to `step` refuses the connection, or nil for `+OK`. An error reply carries Redis's reason
    /// (`WRONGPASS invalid username-password pair`, `ERR DB index is out of range`), which never holds the password.
    static func refusal(of step: Step, reply: RESPValue) -> String? {
        switch reply {
        case .simpleString("OK"): return nil
        case .error(let message): return "\(step.name) refused: \(message)"
        default: return "\(step.name) refused: unexpected reply \(reply)"
        }
    }
}

/// What a Redis connection tells the limiter that owns it.
protocol RedisConnectionOwner: AnyObject {
    /// The connection closed; every command still waiting on it has already been failed with `.closed`.
    func redisConnectionClosed(_ connection: RedisConnection, failure: RedisConnectionFailure)
}

/// One client connection to Redis: writes commands, matches replies to them in order (RESP replies come in the
/// order of the commands, which is what makes pipelining safe), and fails what is left when it closes.
///
/// It knows nothing of rate limits or time-outs: a command's waiter decides how long to wait, and a reply that
/// comes after its waiter gave up is still consumed here, keeping the stream in step. Loop-confined, hence
/// `@unchecked Sendable`.
final class RedisConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    /// Called with a command's reply, or why there is none.
    typealias Reply = (Result<RESPValue, RedisConnectionFailure>) -> Void

    private struct Waiting {
        let sentAt: NIODeadline
        let reply: Reply
    }

    /// Strong until the connection closes (then cleared): the owner's `shutdown()` closes every connection.
    private var owner: (any RedisConnectionOwner)?
    private var context: ChannelHandlerContext?
    private var decoder = RESPDecoder()
    private var waiting = CircularBuffer<Waiting>(initialCapacity: 16)
    private var isClosed = false
    /// Commands written since the last flush; flushed at the end of the loop tick (see `send`).
    private var flushPending = false

    init(owner: any RedisConnectionOwner) {
        self.owner = owner
    }

    /// Commands sent and not answered yet: the pool sends on the connection with the fewest.
    var outstanding: Int { waiting.count }

    /// When the oldest unanswered command was sent: a connection whose replies stopped coming is closed.
    var oldestSentAt: NIODeadline? { waiting.first?.sentAt }

    /// Open, and not told to close.
    var isUsable: Bool { context != nil && !isClosed }

    /// Sends one command; `reply` is called exactly once, on the loop. Writes made in one loop tick share one
    /// flush (many checks of one tick become one `write` system call).
    func send(_ command: [UInt8], now: NIODeadline, reply: @escaping Reply) {
        guard let context, !isClosed else {
            reply(.failure(.closed))
            return
        }
        waiting.append(Waiting(sentAt: now, reply: reply))
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: command)), promise: nil)
        guard !flushPending else { return }
        flushPending = true
        context.eventLoop.execute {
            self.flushPending = false
            self.context?.flush()
        }
    }

    /// Sends `handshake`'s commands; `opened` is called once, on the loop: with success when every one was
    /// answered `+OK` (at once when there are none), or with why not, after the connection was closed (a refusal
    /// closes it: whatever was pipelined behind it would be refused too).
    func open(
        _ handshake: RedisHandshake, now: NIODeadline,
        opened: @escaping (Result<Void, RedisConnectionFailure>) -> Void
    ) {
        var pending = handshake.steps.count
        guard pending > 0 else {
            opened(.success(()))
            return
        }
        var answered = false
        for step in handshake.steps {
            send(step.command, now: now) { result in
                guard !answered else { return }
                switch result {
                case .failure(let failure):
                    answered = true
                    opened(.failure(failure))
                case .success(let reply):
                    if let refusal = RedisHandshake.refusal(of: step, reply: reply) {
                        answered = true
                        self.fail(.refused(refusal))
                        opened(.failure(.refused(refusal)))
                        return
                    }
                    pending -= 1
                    if pending == 0 {
                        answered = true
                        opened(.success(()))
                    }
                }
            }
        }
    }

    /// Closes the connection; waiting commands fail with `.closed` and the owner hears of it.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        if let context {
            context.close(promise: nil)
        } else {
            finish(.closed)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        bytes.withUnsafeReadableBytes { decoder.feed($0) }
        do {
            while let value = try decoder.next() {
                guard let next = waiting.popFirst() else {
                    // RESP2 has no push messages without a subscription, so this is a reply to nothing.
                    fail(.protocolError("a reply nobody asked for"))
                    return
                }
                next.reply(.success(value))
            }
        } catch {
            fail(.protocolError(error.message))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.closed)
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func fail(_ failure: RedisConnectionFailure) {
        isClosed = true
        finish(failure)
        context?.close(promise: nil)
    }

    /// Fails every waiting command and tells the owner, once.
    private func finish(_ failure: RedisConnectionFailure) {
        isClosed = true
        let failed = waiting
        waiting.removeAll()
        for entry in failed { entry.reply(.failure(failure)) }
        let owner = self.owner
        self.owner = nil
        owner?.redisConnectionClosed(self, failure: failure)
    }
}
