// SPDX-License-Identifier: Apache-2.0
import Foundation
import NIOCore
import NIOPosix

/// How one active health check ended: passed, or the reason it failed. Health-change log lines give it, so an
/// operator reads "status 503" or "connection refused" instead of guessing why a target went unhealthy.
public enum ProbeOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The connection opened and, for http checks, the status was one of `expect_status` (nil for tcp checks).
    case passed(status: Int?)
    /// An answer whose status is not one of `expect_status`.
    case unexpectedStatus(Int)
    /// Bytes that do not start with an HTTP status line.
    case notHTTP
    /// No answer (or no connection) within the check's `timeout`.
    case timedOut
    /// Nothing listens at the target's address (ECONNREFUSED).
    case refused
    /// The target reset the connection (ECONNRESET).
    case reset
    /// The target closed the connection before a status line.
    case closedEarly
    /// The target's host name has no address yet.
    case unresolved
    /// Any other failure to connect: the system's words for it.
    case failed(String)

    public var passed: Bool {
        if case .passed = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .passed(let status?): return "status \(status)"
        case .passed(nil): return "connected"
        case .unexpectedStatus(let status): return "status \(status)"
        case .notHTTP: return "not an HTTP response"
        case .timedOut: return "timeout"
        case .refused: return "connection refused"
        case .reset: return "connection reset"
        case .closedEarly: return "connection closed before a response"
        case .unresolved: return "host name not resolved"
        case .failed(let reason): return reason
        }
    }

    /// Judges the start of an answer to an http check: nil while no full status line has arrived (unless 256
    /// bytes came without one), else the outcome for a status in `expected`.
    static func judge(_ received: [UInt8], expected: ClosedRange<Int>) -> ProbeOutcome? {
        guard let end = received.firstIndex(of: UInt8(ascii: "\r")) ?? (received.count > 256 ? received.count : nil)
        else { return nil }
        // "HTTP/1.1 200 OK"
        let line = String(decoding: received[..<end], as: UTF8.self).split(separator: " ")
        guard line.count >= 2, line[0].hasPrefix("HTTP/"), let status = Int(line[1]) else { return .notHTTP }
        return expected.contains(status) ? .passed(status: status) : .unexpectedStatus(status)
    }

    /// The outcome of a connect or read error.
    static func classify(_ error: any Error) -> ProbeOutcome {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return classify(first.error) }
            return error.dnsAAAAError.map(classify) ?? error.dnsAError.map(classify) ?? .unresolved
        }
        if let error = error as? IOError { return outcome(errno: error.errnoCode) }
        if case ChannelError.connectTimeout = error { return .timedOut }
        if case ChannelError.eof = error { return .closedEarly }
        return .failed("\(error)")
    }

    /// The outcome of a failed system call.
    static func outcome(errno code: Int32) -> ProbeOutcome {
        switch code {
        case ECONNREFUSED: return .refused
        case ECONNRESET, EPIPE: return .reset
        case ETIMEDOUT: return .timedOut
        default: return .failed(String(cString: strerror(code)).lowercased())
        }
    }
}
