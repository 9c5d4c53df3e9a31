// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterCore

/// etcd's v3 API through the JSON gateway every v3 server has on its client port (`POST /v3/kv/range`,
/// `/v3/kv/txn`, `/v3/kv/put`, `/v3/watch`): the one place the etcd store talks to etcd.
///
/// JSON over HTTP/1.1 rather than etcd's gRPC: the gateway needs no code generated from etcd's protos, and what
/// the store asks (a few small reads and writes per change, one watch) is not worth a second gRPC client. Each
/// call is one connection (`Connection: close`) with deadlines on connecting and on every read, so a dead member
/// costs a timeout, never a hang. A member that cannot be reached, does not answer in time or answers 5xx (no
/// leader, a timeout inside etcd) hands the call to the next, and later calls start from the member that answered
/// last. So every call may reach etcd twice: the store's calls are reads, puts of one value, and creates whose
/// caller compares what is stored. Plain HTTP only: etcd's client port belongs on loopback or a private network
/// (TLS to etcd is not built).
final class EtcdClient: @unchecked Sendable {
    struct Endpoint: Sendable, CustomStringConvertible {
        var host: String
        var port: Int
        var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    /// A key and its value, as stored.
    struct KeyValue: Sendable {
        var key: String
        var value: [UInt8]
        /// The revision of etcd's history that created the key (etcd orders every write by one).
        var createRevision: Int
    }

    let endpoints: [Endpoint]
    /// Seconds allowed to connect, and between two reads of an answer.
    let timeout: Int
    /// The member that answered last, where calls start. Calls come from the loop and the watch's thread.
    private let preferredLock = NSLock()
    private var preferred = 0

    /// The endpoints in the order to try them.
    private var rotation: [(index: Int, endpoint: Endpoint)] {
        let first = preferredLock.withLock { preferred }
        return (0..<endpoints.count).map { offset in
            let index = (first + offset) % endpoints.count
            return (index, endpoints[index])
        }
    }

    /// `endpoints`: `http://HOST:PORT` each (a v3 member's client URL).
    init(endpoints: [String], timeout: Int = 5) throws(SnapshotStoreError) {
        var parsed: [Endpoint] = []
        for text in endpoints {
            guard text.hasPrefix("http://") else {
                throw SnapshotStoreError(description: "etcd endpoint \(text): expected http://HOST:PORT")
            }
            let rest = text.dropFirst("http://".count).split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                (1...65535).contains(port)
            else { throw SnapshotStoreError(description: "etcd endpoint \(text): expected http://HOST:PORT") }
            var host = String(rest[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { throw SnapshotStoreError(description: "etcd endpoint \(text): no host") }
            parsed.append(Endpoint(host: host, port: port))
        }
        guard !parsed.isEmpty else { throw SnapshotStoreError(description: "no etcd endpoint given") }
        self.endpoints = parsed
        self.timeout = timeout
    }

    /// The keys from `key` up to (not including) `end` (nil: `key` alone), in key order or reversed, at most
    /// `limit` of them (0: all).
    /// `createdAfter`: only keys created after that revision. `descending`: the newest first, by key or (with
    /// `byCreation`) by the revision that created them.
    func range(
        from key: String, to end: String? = nil, limit: Int = 0, descending: Bool = false, byCreation: Bool = false,
        createdAfter: Int? = nil
    ) throws(SnapshotStoreError) -> [KeyValue] {
        var request: [String: JSONTree] = ["key": Self.encoded(key)]
        if let end { request["range_end"] = Self.encoded(end) }
        if limit > 0 { request["limit"] = .number(String(limit)) }
        if let createdAfter { request["min_create_revision"] = .string(String(createdAfter + 1)) }
        if descending {
            request["sort_order"] = .string("DESCEND")
            request["sort_target"] = .string(byCreation ? "CREATE" : "KEY")
        }
        let answer = try call("/v3/kv/range", .object(request))
        guard case .object(let members) = answer else { return [] }
        guard case .array(let kvs) = members["kvs"] ?? .array([]) else {
            throw SnapshotStoreError(description: "etcd answered a range without a list of keys")
        }
        var result: [KeyValue] = []
        for kv in kvs {
            guard case .object(let fields) = kv, case .string(let key64) = fields["key"],
                let key = Base64Bytes.decode(key64)
            else { throw SnapshotStoreError(description: "etcd answered a key that is not base64") }
            var value: [UInt8] = []
            if case .string(let value64) = fields["value"] {
                guard let bytes = Base64Bytes.decode(value64) else {
                    throw SnapshotStoreError(description: "etcd answered a value that is not base64")
                }
                value = bytes
            }
            // int64 is a string in protobuf's JSON form.
            var revision = 0
            switch fields["create_revision"] {
            case .string(let text)?, .number(let text)?: revision = Int(text) ?? 0
            default: break
            }
            result.append(KeyValue(key: String(decoding: key, as: UTF8.self), value: value, createRevision: revision))
        }
        return result
    }

    /// Stores `value` at `key` only if no value is there (a transaction comparing the key's create revision with
    /// 0); false when one was.
    func createIfAbsent(_ key: String, _ value: [UInt8]) throws(SnapshotStoreError) -> Bool {
        let request: JSONTree = .object([
            "compare": .array([.object([
                "key": Self.encoded(key), "target": .string("CREATE"), "result": .string("EQUAL"),
                "create_revision": .string("0"),
            ])]),
            "success": .array([.object(["request_put": .object([
                "key": Self.encoded(key), "value": .string(Base64Bytes.encode(value)),
            ])])]),
        ])
        guard case .object(let members) = try call("/v3/kv/txn", request) else { return false }
        // Protobuf's JSON form leaves out a false `succeeded`.
        return members["succeeded"] == .bool(true)
    }

    /// Stores `value` at `key`, over any value there.
    func put(_ key: String, _ value: [UInt8]) throws(SnapshotStoreError) {
        _ = try call("/v3/kv/put", .object(["key": Self.encoded(key), "value": .string(Base64Bytes.encode(value))]))
    }

    /// Watches the keys from `key` up to `end`, calling `received` on every piece of the answer that arrives (the
    /// watch's creation, then its events), until the connection ends, `idle` seconds pass without a byte, or
    /// `watching` is stopped. Blocks the calling thread.
    func watch(from key: String, to end: String, idle: Int, watching: Watching, received: () -> Void)
        throws(SnapshotStoreError)
    {
        let request: JSONTree = .object(["create_request": .object([
            "key": Self.encoded(key), "range_end": Self.encoded(end),
        ])])
        var lastError = SnapshotStoreError(description: "no etcd endpoint")
        for (_, endpoint) in rotation {
            let descriptor: Int32
            do {
                descriptor = try connect(endpoint)
            } catch {
                lastError = error
                continue
            }
            guard watching.adopt(descriptor) else {
                close(descriptor)
                return
            }
            defer { watching.release(descriptor) }
            setReadTimeout(descriptor, seconds: idle)
            try send(request: "/v3/watch", body: request.serialized(), to: endpoint, on: descriptor)
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            var headerSeen = false
            var head: [UInt8] = []
            while true {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return }
                if !headerSeen {
                    head += buffer[0..<count]
                    guard let answer = try Self.head(of: head) else { continue }
                    guard answer.status == 200 else {
                        throw SnapshotStoreError(description: "etcd \(endpoint) refused the watch (HTTP \(answer.status))")
                    }
                    headerSeen = true
                    if answer.bodyStart < head.count { received() }
                } else {
                    received()
                }
            }
        }
        throw lastError
    }

    /// A watch's connection, so another thread can end it.
    final class Watching: @unchecked Sendable {
        private let lock = NSLock()
        private var descriptor: Int32 = -1
        private var stopped = false

        var isStopped: Bool { lock.withLock { stopped } }

        /// Ends the watch now and any later one.
        func stop() {
            lock.withLock {
                stopped = true
                if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
            }
        }

        fileprivate func adopt(_ descriptor: Int32) -> Bool {
            lock.withLock {
                guard !stopped else { return false }
                self.descriptor = descriptor
                return true
            }
        }

        fileprivate func release(_ descriptor: Int32) {
            lock.withLock {
                self.descriptor = -1
                close(descriptor)
            }
        }
    }

    /// The end of a range over every key that starts with `prefix`: the prefix with its last byte incremented.
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last, last == 0xFF { bytes.removeLast() }
        guard !bytes.isEmpty else { return "\0" }
        bytes[bytes.count - 1] += 1
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func encoded(_ key: String) -> JSONTree { .string(Base64Bytes.encode(Array(key.utf8))) }

    /// One request and its answer's JSON. A member that cannot be reached, does not answer in time or answers
    /// 5xx is passed over for the next; a 4xx is etcd refusing the request itself, said as it is.
    ///
    /// The error thrown is `isUncertain` when some member may have carried the request out (it was sent, and no
    /// answer or a 5xx came back); one no member was reached with, or that etcd refused (4xx), is not.
    private func call(_ path: String, _ body: JSONTree) throws(SnapshotStoreError) -> JSONTree {
        var lastError = SnapshotStoreError(description: "no etcd endpoint")
        var mayHaveApplied = false
        for (index, endpoint) in rotation {
            do {
                let tree = try call(path, body, at: endpoint)
                preferredLock.withLock { preferred = index }
                return tree
            } catch {
                mayHaveApplied = mayHaveApplied || error.mayHaveApplied
                lastError = error.error
                lastError.isUncertain = mayHaveApplied
                guard error.isTransient else { throw lastError }
            }
        }
        throw lastError
    }

    /// A call's failure, and whether another member may do better (unreachable, silent, 5xx).
    struct CallError: Error {
        var error: SnapshotStoreError
        var isTransient: Bool
        /// The request was sent and its outcome is not known.
        var mayHaveApplied: Bool

        init(_ description: String, isTransient: Bool, mayHaveApplied: Bool = false) {
            error = SnapshotStoreError(description: description)
            self.isTransient = isTransient
            self.mayHaveApplied = mayHaveApplied
        }
    }

    private func call(_ path: String, _ body: JSONTree, at endpoint: Endpoint) throws(CallError) -> JSONTree {
        let descriptor: Int32
        let answer: [UInt8]
        do {
            descriptor = try connect(endpoint)
        } catch {
            throw CallError(error.description, isTransient: true)
        }
        defer { close(descriptor) }
        setReadTimeout(descriptor, seconds: timeout)
        do {
            try send(request: path, body: body.serialized(), to: endpoint, on: descriptor)
            answer = try readAll(descriptor, from: endpoint)
        } catch {
            throw CallError(error.description, isTransient: true, mayHaveApplied: true)
        }
        let parsed: (status: Int, chunked: Bool, bodyStart: Int)?
        do {
            parsed = try Self.head(of: answer)
        } catch {
            throw CallError("etcd \(endpoint) answered \(path) with \(error.description)", isTransient: true, mayHaveApplied: true)
        }
        guard let (status, chunked, bodyStart) = parsed else {
            throw CallError("etcd \(endpoint) sent no complete answer to \(path)", isTransient: true, mayHaveApplied: true)
        }
        var content = Array(answer[bodyStart...])
        if chunked {
            guard let decoded = Self.dechunk(content) else {
                throw CallError("etcd \(endpoint) sent a malformed chunked answer", isTransient: true, mayHaveApplied: true)
            }
            content = decoded
        }
        let tree = try? JSONTree.parse(content)
        guard status == 200, let tree else {
            var message = "HTTP \(status)"
            if case .object(let members)? = tree, case .string(let text) = members["message"] ?? members["error"] {
                message += ": " + text
            }
            let transient = status >= 500 || tree == nil
            throw CallError("etcd \(endpoint) refused \(path): \(message)", isTransient: transient, mayHaveApplied: transient)
        }
        return tree
    }

    private func send(request path: String, body: [UInt8], to endpoint: Endpoint, on descriptor: Int32)
        throws(SnapshotStoreError)
    {
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        var bytes = Array(("POST \(path) HTTP/1.1\r\nHost: \(host):\(endpoint.port)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n").utf8)
        bytes += body
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else {
                throw SnapshotStoreError(description: "cannot send to etcd \(endpoint): \(Self.lastError())")
            }
            offset += written
        }
    }

    /// The whole answer (the server closes after it), at most 256 MiB.
    private func readAll(_ descriptor: Int32, from endpoint: Endpoint) throws(SnapshotStoreError) -> [UInt8] {
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count < 0 {
                let reason = errno == EAGAIN ? "no answer within \(timeout) s" : Self.lastError()
                throw SnapshotStoreError(description: "etcd \(endpoint): \(reason)")
            }
            if count == 0 { return answer }
            answer += buffer[0..<count]
            guard answer.count <= 256 * 1024 * 1024 else {
                throw SnapshotStoreError(description: "etcd \(endpoint) sent an answer over 256 MiB")
            }
        }
    }

    /// A connected, blocking socket, or why not within the timeout.
    private func connect(_ endpoint: Endpoint) throws(SnapshotStoreError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list) == 0, let first = list else {
            throw SnapshotStoreError(description: "etcd \(endpoint): cannot resolve \(endpoint.host)")
        }
        defer { freeaddrinfo(list) }
        var reason = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let descriptor = socket(info.pointee.ai_family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard descriptor >= 0 else { continue }
            var connected = Glibc.connect(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0
            if !connected, errno == EINPROGRESS {
                var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                if poll(&poller, 1, Int32(timeout * 1000)) == 1 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length)
                    connected = error == 0
                    if !connected { reason = String(cString: strerror(error)) }
                } else {
                    reason = "no connection within \(timeout) s"
                }
            } else if !connected {
                reason = Self.lastError()
            }
            guard connected else {
                close(descriptor)
                continue
            }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
            var sendTimeout = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
            return descriptor
        }
        throw SnapshotStoreError(description: "cannot reach etcd \(endpoint): \(reason)")
    }

    private func setReadTimeout(_ descriptor: Int32, seconds: Int) {
        var value = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// An answer's head as the proxy's own strict parser reads it: its status, whether its body is chunked, and
    /// where the body starts; nil while the head is not all there.
    static func head(of bytes: [UInt8]) throws(SnapshotStoreError) -> (status: Int, chunked: Bool, bodyStart: Int)? {
        let parsed: Result<(status: Int, chunked: Bool, bodyStart: Int)?, HTTPParseError> = bytes.withUnsafeBytes { raw in
            var parser = HTTPHeadParser()
            switch parser.findEnd(raw, isRequest: false) {
            case .needMoreBytes:
                return .success(nil)
            case .failed(let error):
                return .failure(error)
            case .complete(let length):
                var head = HTTPHead()
                if let error = parser.parseResponse(UnsafeRawBufferPointer(rebasing: raw[..<length]), into: &head) {
                    return .failure(error)
                }
                return .success((head.status, head.isChunked, length))
            }
        }
        switch parsed {
        case .success(let head): return head
        case .failure(let error): throw SnapshotStoreError(description: "not an HTTP/1.1 answer (\(error))")
        }
    }

    /// A chunked body's content (RFC 9112 §7.1), through the proxy's own decoder; nil when it is cut or malformed.
    static func dechunk(_ body: [UInt8]) -> [UInt8]? {
        body.withUnsafeBytes { raw -> [UInt8]? in
            var decoder = ChunkedDecoder()
            var index = 0
            var content: [UInt8] = []
            do {
                while let output = try decoder.next(raw, &index) {
                    switch output {
                    case .data(let range): content += raw[range]
                    case .end: return content
                    }
                }
            } catch {
                return nil
            }
            return nil
        }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
