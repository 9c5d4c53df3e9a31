// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterControl

/// A failed system call on the control socket: the call and errno.
struct SocketError: Error, CustomStringConvertible {
    var call: String
    var errorNumber: Int32

    init(_ call: String, errno errorNumber: Int32 = errno) {
        self.call = call
        self.errorNumber = errorNumber
    }

    var description: String { "\(call): \(String(cString: strerror(errorNumber)))" }
}

/// A blocking Unix stream socket to the master: connect, write, read with a deadline. jesterctl's own (rather
/// than JesterSystem's) so that it links nothing of the worker's or master's modules.
final class ControlConnection {
    private let fd: Int32

    /// Connects to the socket at `path`.
    init(path: String) throws(SocketError) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw SocketError("connect \(path)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path.utf8)
            buffer[path.utf8.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let error = SocketError("connect \(path)")
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) throws(SocketError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw SocketError("send")
            }
            offset += written
        }
    }

    /// Reads what is available, waiting up to `timeoutMilliseconds`. Empty means the peer closed.
    func read(timeoutMilliseconds: Int32) throws(SocketError) -> [UInt8] {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, timeoutMilliseconds)
            if ready < 0, errno == EINTR { continue }
            if ready < 0 { throw SocketError("poll") }
            if ready == 0 { throw SocketError("read control socket", errno: ETIMEDOUT) }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard count >= 0 else { throw SocketError("recv") }
        return Array(buffer[0..<count])
    }
}

/// One request/response conversation with the master.
final class ControlClient {
    private let connection: ControlConnection
    private var codec = ControlFrameCodec()
    /// The correlation id of the last request; answers carry it (a master from before ids sends none).
    private var requestID: UInt64 = 0

    init(path: String) throws(SocketError) {
        connection = try ControlConnection(path: path)
    }

    func send(_ message: ControlMessage) {
        do {
            requestID += 1
            try connection.write(ControlFrameCodec.encode(message, id: requestID))
        } catch {
            // The master may have refused us and closed already: its reason is more useful than EPIPE.
            _ = receive(timeoutSeconds: 1)
            fail("jesterctl: \(error)")
        }
    }

    /// The next message, or nil when the master closed the connection. A failure the master reports ends
    /// jesterctl with the status its reason maps to.
    func receive(timeoutSeconds: Double = 60) -> ControlMessage? {
        while true {
            do {
                if let envelope = try codec.nextEnvelope() {
                    if case .failure(let text, let reason) = envelope.message {
                        fail("jesterctl: \(text)", status: ControlExitStatus(failure: reason))
                    }
                    if let id = envelope.id, id != requestID {
                        fail("jesterctl: the master answered request \(id), not \(requestID)")
                    }
                    return envelope.message
                }
                let bytes = try connection.read(timeoutMilliseconds: Int32(timeoutSeconds * 1000))
                if bytes.isEmpty { return nil }
                codec.append(bytes)
            } catch let error as SocketError where error.errorNumber == ECONNRESET {
                return nil
            } catch {
                fail("jesterctl: \(error)")
            }
        }
    }
}

/// The socket to talk to, or exit 64 saying why none can be chosen.
func chooseSocket(_ invocation: ControlInvocation) -> ControlSocketChoice {
    do {
        let environment = getenv("JESTER_CONTROL_SOCKET").map { String(cString: $0) }
        return try ControlSocketChoice.choose(
            socket: invocation.socket, config: invocation.config, environment: environment,
            configuredSocket: configuredSocket)
    } catch {
        fail("jesterctl: \(error)", status: .usage)
    }
}

/// The `control_socket` of the configuration at `path` and what it includes.
func configuredSocket(_ path: String) throws -> String {
    let lookup = ControlSocketLookup(read: readFile, glob: globFiles, environment: processEnvironment())
    do throws(ControlSocketLookup.Problem) {
        return try lookup.controlSocket(file: path)
    } catch {
        throw ControlSocketLookup.Problem(message: "cannot read the control socket from \(path):\n\(error)")
    }
}

/// Connects, or exits 2 with a message that says what to check.
func connect(_ invocation: ControlInvocation) -> ControlClient {
    let choice = chooseSocket(invocation)
    let socket = choice.path
    do {
        return try ControlClient(path: socket)
    } catch {
        let from = choice.source == .builtIn ? "the default socket" : "\(socket) (from \(choice.source.rawValue))"
        switch error.errorNumber {
        case ENOENT, ECONNREFUSED:
            fail("jesterctl: no Jester master is listening on \(from) (is it running? see --socket and --config)")
        case EACCES, EPERM:
            fail("jesterctl: permission denied on \(socket): run as root, as the master's user, or as a member of "
                + "its control_group")
        default:
            fail("jesterctl: cannot connect to \(socket): \(error)")
        }
    }
}

/// A whole file as UTF-8 text; throws errno's text ("No such file or directory").
func readFile(_ path: String) throws -> String {
    func failure() -> ControlSocketLookup.Problem {
        ControlSocketLookup.Problem(message: String(cString: strerror(errno)))
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure() }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else { throw failure() }
        if count == 0 { break }
        bytes += chunk[0..<count]
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw ControlSocketLookup.Problem(message: "not valid UTF-8 (configuration files must be UTF-8)")
    }
    return text
}

/// The files a glob pattern matches, sorted (as the configuration loader includes them).
func globFiles(_ pattern: String) -> [String] {
    var result = glob_t()
    defer { globfree(&result) }
    guard glob(pattern, 0, nil, &result) == 0 else { return [] }
    var paths: [String] = []
    for index in 0..<Int(result.gl_pathc) {
        if let path = result.gl_pathv[index] { paths.append(String(cString: path)) }
    }
    return paths.sorted()
}

/// The process's environment, for `${VAR}` in the configuration.
func processEnvironment() -> [String: String] {
    var variables: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            variables[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        entry += 1
    }
    return variables
}
