// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// What the exchange adds to every response, whatever answered it (an upstream, a route, a filter, an error), and
/// the redirects it renders per request. Written once here so that each protocol adapter only frames it.
extension RequestExchange {
    // MARK: Fields on every response

    /// Writes, as HTTP/1.1 field lines, the fields every response of this request carries: the filters' (such as
    /// `RateLimit`), the request id (`http.request_id_header`) and the listener's `Strict-Transport-Security`.
    mutating func writeResponseFields(into out: inout ByteBuffer, runtime: WorkerRuntime, routes: ListenerRoutes) {
        if let filterContext {
            for field in filterContext.responseFields {
                out.writeString(field.name)
                out.writeStaticString(": ")
                out.writeString(field.value)
                out.writeStaticString("\r\n")
            }
        }
        out.writeBytes(runtime.requestIDField.lineStart)
        withRequestID(runtime: runtime) { _ = out.writeBytes($0) }
        out.writeStaticString("\r\n")
        if let hsts = routes.hstsLine { out.writeBytes(hsts) }
        if let altSvc = routes.altSvcLine { out.writeBytes(altSvc) }
    }

    /// The same fields as `writeResponseFields`, one by one, as bytes (no string is made for the request id),
    /// names lowercased for HTTP/2 and HTTP/3. `unique`: the value is this response's own (the request id), so
    /// header compression should not remember it (it would evict the fields that do repeat: measured, an
    /// HTTP/2 request cost 10 % more CPU with the id indexed).
    mutating func forEachLowercasedResponseField(
        runtime: WorkerRuntime, routes: ListenerRoutes,
        _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ unique: Bool) -> Void
    ) {
        if let filterContext {
            for field in filterContext.responseFields {
                var name = field.name.lowercased()
                var value = field.value
                name.withUTF8 { name in
                    value.withUTF8 { body(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer($0), false) }
                }
            }
        }
        runtime.requestIDField.lowercased.withUnsafeBytes { name in
            withRequestID(runtime: runtime) { body(name, $0, true) }
        }
        if let hsts = routes.hstsField {
            Self.hstsName.withUnsafeBytes { name in hsts.withUnsafeBytes { body(name, $0, false) } }
        }
        if let altSvc = routes.altSvcField {
            Self.altSvcName.withUnsafeBytes { name in altSvc.withUnsafeBytes { body(name, $0, false) } }
        }
    }

    private static let hstsName = Array("strict-transport-security".utf8)
    private static let altSvcName = Array("alt-svc".utf8)

    /// Which field of an upstream's HTTP/1.1 response head the exchange writes itself: the request id, which
    /// upstreams often echo, and the client must see once. Static, like every per-response helper here that does
    /// not change the exchange: a non-mutating method called on the exchange kept in its adapter would copy it.
    static func fieldWrittenByExchange(
        in response: HTTPHead, _ bytes: UnsafeRawBufferPointer, runtime: WorkerRuntime
    ) -> Int? {
        requestIDFieldIndex(in: response, bytes, runtime: runtime)
    }

    /// Where a head's request id field (`http.request_id_header`) is: the head parser already found
    /// X-Request-Id while parsing; another name is looked for only when configured.
    static func requestIDFieldIndex(
        in head: HTTPHead, _ bytes: UnsafeRawBufferPointer, runtime: WorkerRuntime
    ) -> Int? {
        runtime.requestIDField.isDefault
            ? head.requestIDField : head.fieldIndex(named: runtime.requestIDField.lowercased, in: bytes)
    }

    // MARK: An upstream's response

    /// Writes, as HTTP/1.1 field lines, what Jester adds to an upstream's response head: the route's
    /// `response_headers` (`set`, `add`), the sticky cookie when the client is new to `target` of the exchange's
    /// pool (or its target went away), then the fields every response carries. What it leaves out of the
    /// upstream's fields is `dropsUpstreamField` and `fieldWrittenByExchange`.
    mutating func writeUpstreamResponseAdditions(
        into out: inout ByteBuffer, target: Int, secure: Bool, runtime: WorkerRuntime, routes: ListenerRoutes
    ) {
        if let edits = route?.responseEdits, !edits.rendered.isEmpty { out.writeBytes(edits.rendered) }
        if let pool,
            let cookie = Self.stickyCookie(pool: pool, target: target, stickyTarget: stickyTarget, secure: secure)
        {
            out.writeStaticString("Set-Cookie: ")
            out.writeString(cookie)
            out.writeStaticString("\r\n")
        }
        writeResponseFields(into: &out, runtime: runtime, routes: routes)
    }

    /// The same additions as `writeUpstreamResponseAdditions`, one by one with lowercase names, for HTTP/2 (and
    /// HTTP/3) responses. `unique`: see `forEachLowercasedResponseField`.
    mutating func forEachLowercasedUpstreamResponseAddition(
        target: Int, secure: Bool, runtime: WorkerRuntime, routes: ListenerRoutes,
        _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ unique: Bool) -> Void
    ) {
        func pass(_ name: String, _ value: String) {
            var name = name
            var value = value
            name.withUTF8 { name in
                value.withUTF8 { body(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer($0), false) }
            }
        }
        if let edits = route?.responseEdits {
            for field in edits.appended { pass(field.name, field.value) }
        }
        if let pool,
            let cookie = Self.stickyCookie(pool: pool, target: target, stickyTarget: stickyTarget, secure: secure)
        {
            pass("set-cookie", cookie)
        }
        forEachLowercasedResponseField(runtime: runtime, routes: routes, body)
    }

    /// Whether an upstream's response field named `name` (a range of `bytes`) is left out: the route's
    /// `response_headers` remove it, or `set` replaces it. Static for the reason `fieldWrittenByExchange` is.
    static func dropsUpstreamField(_ bytes: UnsafeRawBufferPointer, name: Range<Int>, route: CompiledRoute?) -> Bool {
        guard let route else { return false }
        if route.replacesCORSFields, name.count > 15,
            ASCII.equalsIgnoringCase(bytes, name.lowerBound..<name.lowerBound + 15, "access-control-")
        {
            return true
        }
        guard !route.responseEdits.isEmpty else { return false }
        return route.responseEdits.drops(bytes, name)
    }

    // MARK: Redirects

    /// A redirect whose location names parts of the request (`{host}`, `{target}`, ...), rendered for this one.
    /// `secure`: the client reached Jester over TLS (`{scheme}`).
    mutating func redirect(status: Int, to location: RedirectTemplate, secure: Bool) -> LocalResponse {
        guard let headBytes else { return .error(500) }
        let rendered = headBytes.withUnsafeReadableBytes { bytes -> String in
            func text(_ range: Range<Int>) -> Substring {
                Substring(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
            }
            let host = head.hostField.map { text(head.fields[$0].value) } ?? ""
            return location.render(scheme: secure ? "https" : "http", host: host, target: text(head.target))
        }
        log.status = status
        return LocalResponse(status: status, fields: [LocalResponse.Field("Location", rendered)])
    }
}
