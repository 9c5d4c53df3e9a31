// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterLogging
import JesterTLS
import NIOCore

/// The access log: one JSON line per request, on standard output or the file the master opened
/// (`log.access_log_file`), written by a background thread (`LogWriter.accessLog`).
///
/// Every request gets a line, however it ends: answered, refused, cut by the drain timeout (status 0: nothing was
/// answered), or abandoned by its client (499, nginx's convention, timed to when the client left). Numbers are
/// JSON numbers, and `log.access_log_fields` chooses the fields and their order.
final class AccessLog: Sendable {
    /// What is logged about one exchange, filled in as it happens.
    struct Record {
        var start: NIODeadline
        /// Whether the record collects anything beyond status and failure (there is an access log).
        private(set) var detailed = false
        var requestID = ""
        /// The trace id, with `[tracing]` (32 hex digits).
        var traceID = ""
        var client = ""
        var method = ""
        var target = ""
        var host = ""
        var userAgent = ""
        var referer = ""
        var route = "-"
        var upstream = ""
        var upstreamTarget = ""
        /// The status the upstream answered with (0: none), which may differ from `status` (a refused 101 is
        /// answered 502; a retried 503 is replaced).
        var upstreamStatus = 0
        var status = 0
        var bytesIn = 0
        var bytesOut = 0
        var failure = ""
        /// Who a request filter found the client to be (basic-auth user, token subject).
        var user = ""
        /// The request arrived in TLS early data (HTTP/3 0-RTT), before the client's handshake completed.
        var earlyData = false
        /// The last upstream attempt's moments: asking the pool for a connection, having one, the response head,
        /// the response's end. Read only when `detailed`.
        private(set) var upstreamTimes = UpstreamTimes()
        /// When the exchange ended, if earlier than the line is written (the client left while a response was
        /// awaited): the line's duration ends there.
        var ended: NIODeadline?

        /// The moments of one upstream attempt.
        struct UpstreamTimes {
            var asked: NIODeadline?
            var connected: NIODeadline?
            var firstByte: NIODeadline?
            var finished: NIODeadline?
        }

        /// What happened with the upstream, timed when there is an access log.
        enum UpstreamEvent {
            /// An attempt starts (again, on a retry: the times are the last attempt's).
            case asked
            case connected
            case responseHead
            case responseEnd
        }

        /// A record timed from now (a connection's, for errors before any request).
        init() {
            start = .now()
        }

        private init(start: NIODeadline) {
            self.start = start
        }

        /// Starts a record for a request head (only the parts that parsed are taken). Without an access log
        /// (`detailed` false) only the status and the failure are kept: no strings are made and no clock is read
        /// on the hot path.
        /// `timed`: the clock is read for the request's duration (the metrics' histogram) even without details.
        mutating func begin(head: HTTPHead, bytes: ByteBuffer, client: String, detailed: Bool, timed: Bool = false) {
            guard detailed else {
                self = Record(start: timed ? .now() : start)
                return
            }
            self = Record()
            self.detailed = true
            self.client = client
            bytes.withUnsafeReadableBytes { raw in
                func text(_ range: Range<Int>, limit: Int = 1024) -> String {
                    guard !range.isEmpty, range.upperBound <= raw.count else { return "" }
                    return String(decoding: UnsafeRawBufferPointer(rebasing: raw[range.prefix(limit)]), as: UTF8.self)
                }
                method = text(head.method)
                target = text(head.target)
                if let host = head.hostField { self.host = text(head.fields[host].value) }
                for field in head.fields {
                    if ASCII.equalsIgnoringCase(raw, field.name, "user-agent") {
                        userAgent = text(field.value, limit: 512)
                    } else if ASCII.equalsIgnoringCase(raw, field.name, "referer") {
                        referer = text(field.value)
                    }
                }
            }
        }

        /// Notes an upstream event's time (only when there is an access log).
        mutating func mark(_ event: UpstreamEvent) {
            guard detailed else { return }
            let now = NIODeadline.now()
            switch event {
            case .asked: upstreamTimes = UpstreamTimes(asked: now)
            case .connected: upstreamTimes.connected = now
            case .responseHead: upstreamTimes.firstByte = now
            case .responseEnd: upstreamTimes.finished = now
            }
        }
    }

    /// The fields written, in order (`log.access_log_fields`, or all).
    private let fields: [AccessLogField]
    private let writer = LogWriter.accessLog

    init(fields: [AccessLogField]? = nil) {
        self.fields = fields ?? AccessLogField.allCases
    }

    /// `protocol`: what the client spoke ("HTTP/1.1", "HTTP/2.0"); `tls`: its connection's handshake, whose
    /// version, cipher and server name are logged (read from the connection, not copied into every record).
    func write(_ record: Record, protocol: StaticString, tls: TLSSessionFacts?) {
        writer.write(Self.render(record, fields: fields, protocol: `protocol`, tls: tls))
    }

    /// One access line: `fields` in order. Fields with nothing to say (no TLS, no upstream, no user, no error) are
    /// left out rather than empty. (Also what `jesterctl tap` streams, with every field.)
    static func render(
        _ record: Record, fields: [AccessLogField], protocol: StaticString, tls: TLSSessionFacts?
    ) -> [UInt8] {
        var line = JSONLine()
        let end = record.ended ?? .now()
        func milliseconds(_ from: NIODeadline?, _ to: NIODeadline?) -> Double? {
            guard let from, let to else { return nil }
            return Double((to - from).nanoseconds) / 1_000_000
        }
        let times = record.upstreamTimes
        for field in fields {
            let name = field.rawValue
            switch field {
            case .time: line.field(name, JSONLine.timestamp())
            case .type: line.field(name, "access")
            case .requestID: line.field(name, record.requestID)
            case .traceID: if !record.traceID.isEmpty { line.field(name, record.traceID) }
            case .client: line.field(name, record.client)
            case .protocol: line.field(name, "\(`protocol`)")
            case .tlsVersion: if let tls { line.field(name, tls.version) }
            case .tlsCipher: if let tls, !tls.cipher.isEmpty { line.field(name, tls.cipher) }
            case .tlsServerName: if let serverName = tls?.serverName { line.field(name, serverName) }
            case .tlsClientSubject: if let subject = tls?.clientCertificateSubject { line.field(name, subject) }
            case .tlsEarlyData: if record.earlyData { line.field(name, true) }
            case .method: line.field(name, record.method)
            case .target: line.field(name, record.target)
            case .host: line.field(name, record.host)
            case .route: line.field(name, record.route)
            case .upstream: if !record.upstream.isEmpty { line.field(name, record.upstream) }
            case .upstreamTarget: if !record.upstreamTarget.isEmpty { line.field(name, record.upstreamTarget) }
            case .upstreamStatus: if record.upstreamStatus != 0 { line.field(name, record.upstreamStatus) }
            case .upstreamConnectMs:
                if let value = milliseconds(times.asked, times.connected) { line.field(name, value) }
            case .upstreamFirstByteMs:
                if let value = milliseconds(times.asked, times.firstByte) { line.field(name, value) }
            case .upstreamDurationMs:
                if let value = milliseconds(times.asked, times.finished ?? (times.firstByte == nil ? nil : end)) {
                    line.field(name, value)
                }
            case .user: if !record.user.isEmpty { line.field(name, record.user) }
            case .userAgent: if !record.userAgent.isEmpty { line.field(name, record.userAgent) }
            case .referer: if !record.referer.isEmpty { line.field(name, record.referer) }
            case .status: line.field(name, record.status)
            case .bytesIn: line.field(name, record.bytesIn)
            case .bytesOut: line.field(name, record.bytesOut)
            case .durationMs: line.field(name, Double((end - record.start).nanoseconds) / 1_000_000)
            case .error: if !record.failure.isEmpty { line.field(name, record.failure) }
            }
        }
        return line.finish()
    }
}
