// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterTLS
import JesterTracing
import NIOCore

/// The request head Jester sends upstream, whichever protocol the client spoke: origin-form target (rewritten
/// as the route says), HTTP/1.1, hop-by-hop fields removed, X-Forwarded-*, Forwarded and X-Request-Id added,
/// the route's header edits applied, framing declared once. HTTP/1 connections render their parsed head with
/// it; HTTP/2 streams render the HTTP/1.1 head they were translated to.
struct UpstreamRequest {
    let runtime: WorkerRuntime
    let route: CompiledRoute
    let clientAddress: String
    /// What the client's TLS handshake established; nil on plain text.
    let tls: TLSSessionFacts?
    /// The listener's `client_subject_header`.
    let clientSubjectHeader: [UInt8]?
    /// The body goes upstream chunked (the client's was chunked, or came in HTTP/2 DATA frames without a length).
    let chunked: Bool
    /// A WebSocket upgrade.
    let upgrade: Bool
    /// Fields the request filters set (claims forwarded as headers): a client's field of the same name is dropped.
    var filterFields: [LocalResponse.Field] = []
    /// The request goes upstream before its client's handshake completed (HTTP/3 0-RTT): `Early-Data: 1` is
    /// added unless the client sent the field itself (RFC 8470 §5.1: forwarded as it came, never removed).
    var earlyData = false

    /// `requestID`: the exchange's (assigned): the client's own is forwarded among its fields, Jester's is added
    /// (and a client field it replaced, one too long to keep, is not forwarded).
    /// `trace`: the attempt's context with `[tracing]`, sent as `traceparent`/`tracestate` instead of the client's.
    func renderHead(
        _ bytes: UnsafeRawBufferPointer, head: HTTPHead, target: String, requestID: RequestExchange.RequestID,
        trace: TraceContext? = nil, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var replacedRequestID: Int?
        if case .generated = requestID {
            replacedRequestID = RequestExchange.requestIDFieldIndex(in: head, bytes, runtime: runtime)
        }
        var out = allocator.buffer(capacity: bytes.count + 256)
        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.method]))
        out.writeStaticString(" ")
        if let newPath = route.pathRewrite.rewrite(bytes, path: head.path) {
            // The rewritten path, then the query as it came.
            out.writeBytes(newPath)
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.path.upperBound..<head.target.upperBound]))
        } else if head.absoluteAuthority.isEmpty {
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.target]))
        } else if head.path.lowerBound == head.target.upperBound {
            out.writeStaticString("/")
        } else {
            // absolute-form becomes origin-form (RFC 9112 §3.2.2); a query without a path gets "/".
            if bytes[head.path.lowerBound] != UInt8(ascii: "/") { out.writeStaticString("/") }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.path.lowerBound..<head.target.upperBound]))
        }
        out.writeStaticString(" HTTP/1.1\r\n")
        var forwardedFor: [Range<Int>] = []
        for (index, field) in head.fields.enumerated() where !field.isHopByHop {
            if index == replacedRequestID { continue }
            if trace != nil, RequestExchange.isTraceField(bytes, field.name) { continue }
            switch field.kind {
            case .xForwardedFor:
                forwardedFor.append(field.value)
                continue
            case .xForwardedProto, .xForwardedHost, .forwarded:
                continue
            case .expect where head.version == .http1_0:
                continue
            case .contentLength:
                // Re-declared below as one canonical value ("5, 5" or a repeated field never goes upstream).
                continue
            case .other where field.hasUnderscore && runtime.dropsUnderscoredFields:
                continue
            case .host where route.upstreamHost != nil:
                continue
            case .other where !route.requestEdits.isEmpty && route.requestEdits.drops(bytes, field.name):
                continue
            case .other where clientSubjectHeader.map({ isField(bytes, field.name, named: $0) }) ?? false:
                // Only Jester says who the verified client is.
                continue
            case .other where !filterFields.isEmpty
                && filterFields.contains(where: { isField(bytes, field.name, named: Array($0.name.lowercased().utf8)) }):
                // Nor what the filters found out (a forwarded claim).
                continue
            default:
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.line]))
                out.writeStaticString("\r\n")
            }
        }
        let host = head.hostField.map { head.fields[$0].value }
        if let upstreamHost = route.upstreamHost {
            out.writeStaticString("Host: ")
            out.writeBytes(upstreamHost)
            out.writeStaticString("\r\n")
        } else if host == nil {
            out.writeString("Host: \(target)\r\n")
        }
        if !route.requestEdits.rendered.isEmpty { out.writeBytes(route.requestEdits.rendered) }
        for field in filterFields where !field.value.isEmpty {
            out.writeString(field.name)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("X-Forwarded-For: ")
        for range in forwardedFor where !range.isEmpty {
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[range]))
            out.writeStaticString(", ")
        }
        out.writeString(clientAddress)
        if tls == nil {
            out.writeStaticString("\r\nX-Forwarded-Proto: http\r\n")
        } else {
            out.writeStaticString("\r\nX-Forwarded-Proto: https\r\n")
        }
        if let clientSubjectHeader, let subject = tls?.clientCertificateSubject {
            out.writeBytes(clientSubjectHeader)
            out.writeStaticString(": ")
            // RFC 2253 escapes specials but may carry UTF-8; control bytes never reach a header.
            out.writeBytes(subject.utf8.map { $0 < 0x20 || $0 == 0x7F ? UInt8(ascii: "?") : $0 })
            out.writeStaticString("\r\n")
        }
        if let host {
            out.writeStaticString("X-Forwarded-Host: ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[host]))
            out.writeStaticString("\r\n")
        }
        if runtime.configuration.http.forwardedHeader {
            let forValue = clientAddress.contains(":") ? "\"[\(clientAddress)]\"" : clientAddress
            out.writeString("Forwarded: for=\(forValue);proto=\(tls == nil ? "http" : "https")")
            if let host {
                out.writeStaticString(";host=\"")
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[host]))
                out.writeStaticString("\"")
            }
            out.writeStaticString("\r\n")
        }
        if case .generated(let high, let low) = requestID {
            out.writeBytes(runtime.requestIDField.lineStart)
            RequestIDGenerator.withID(high, low) { _ = out.writeBytes($0) }
            out.writeStaticString("\r\n")
        }
        if let trace { RequestExchange.writeTraceFields(trace, into: &out) }
        if earlyData, !head.fields.contains(where: { isField(bytes, $0.name, named: Self.earlyDataName) }) {
            out.writeStaticString("Early-Data: 1\r\n")
        }
        if chunked {
            out.writeStaticString("Transfer-Encoding: chunked\r\n")
        } else if let length = head.contentLength {
            out.writeStaticString("Content-Length: ")
            out.writeDecimal(length)
            out.writeStaticString("\r\n")
        }
        if upgrade { out.writeStaticString("Connection: upgrade\r\nUpgrade: websocket\r\n") }
        out.writeStaticString("\r\n")
        return out
    }

    private static let earlyDataName = Array("early-data".utf8)

    private func isField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>, named wanted: [UInt8]) -> Bool {
        wanted.withUnsafeBytes { ASCII.equalsIgnoringCase(bytes, name, $0, 0..<$0.count) }
    }
}
