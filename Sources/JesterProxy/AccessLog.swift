// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterLogging
import JesterTLS
import NIOCore

/// The access log: one JSON line per request on standard output, written by a background thread.
final class AccessLog: Sendable {
    /// What is logged about one exchange, filled in as it happens.
    struct Record {
        var start: NIODeadline
        var requestID = ""
        var client = ""
        var method = ""
        var target = ""
        var host = ""
        var route = "-"
        var upstream = ""
        var upstreamTarget = ""
        var status = 0
        var bytesIn = 0
        var bytesOut = 0
        var failure = ""
        /// Who a request filter found the client to be (basic-auth user, token subject).
        var user = ""

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
        mutating func begin(head: HTTPHead, bytes: ByteBuffer, client: String, detailed: Bool) {
            guard detailed else {
                self = Record(start: start)
                return
            }
            self = Record()
            self.client = client
            bytes.withUnsafeReadableBytes { raw in
                if !head.method.isEmpty, head.method.upperBound <= raw.count {
                    method = String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.method]), as: UTF8.self)
                }
                if !head.target.isEmpty, head.target.upperBound <= raw.count {
                    target = String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.target.prefix(1024)]), as: UTF8.self)
                }
                if let host = head.hostField, head.fields[host].value.upperBound <= raw.count {
                    self.host = String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.fields[host].value]), as: UTF8.self)
                }
            }
        }
    }

    private let writer = LogWriter.accessLog

    /// `protocol`: what the client spoke ("HTTP/1.1", "HTTP/2.0"); `tls`: its connection's handshake, whose
    /// version, cipher and server name are logged (read from the connection, not copied into every record).
    func write(_ record: Record, protocol: StaticString, tls: TLSSessionFacts?) {
        var line = JSONLine()
        line.field("time", JSONLine.timestamp())
        line.field("type", "access")
        line.field("request_id", record.requestID)
        line.field("client", record.client)
        line.field("protocol", "\(`protocol`)")
        if let tls {
            line.field("tls_version", tls.version)
            line.field("tls_cipher", tls.cipher)
            if let serverName = tls.serverName { line.field("tls_server_name", serverName) }
            if let subject = tls.clientCertificateSubject { line.field("tls_client_subject", subject) }
        }
        line.field("method", record.method)
        line.field("target", record.target)
        line.field("host", record.host)
        line.field("route", record.route)
        if !record.upstream.isEmpty {
            line.field("upstream", record.upstream)
            line.field("upstream_target", record.upstreamTarget)
        }
        if !record.user.isEmpty { line.field("user", record.user) }
        line.field("status", record.status)
        line.field("bytes_in", record.bytesIn)
        line.field("bytes_out", record.bytesOut)
        let elapsed = NIODeadline.now() - record.start
        line.field("duration_ms", Double(elapsed.nanoseconds) / 1_000_000)
        if !record.failure.isEmpty { line.field("error", record.failure) }
        writer.write(line.finish())
    }
}
