// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// A TLS failure: what Jester was doing and what OpenSSL's error queue said about it.
///
/// The queue is drained into the error where the failure is noticed, so one connection's errors can never be
/// reported against the next one (OpenSSL keeps the queue per thread, and a worker serves every connection on
/// one thread).
public struct TLSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What Jester was doing ("loading the certificate", "handshake").
    public var operation: String
    /// OpenSSL's reasons, oldest first ("error:0A000086:SSL routines::certificate verify failed").
    public var reasons: [String]
    /// Which file of a certificate entry the failure is about, when it is about one: the configuration check
    /// reports it at that file's key (`cert` or `key`), where the operator has to look.
    public var subject: Subject?

    /// The file of a certificate entry a failure is about.
    public enum Subject: Sendable, Equatable {
        /// The certificate chain (unreadable, unusable, names no host).
        case certificate
        /// The private key (unreadable, encrypted, not a key, not the certificate's).
        case privateKey
    }

    public init(_ operation: String, reasons: [String] = [], subject: Subject? = nil) {
        self.operation = operation
        self.reasons = reasons
        self.subject = subject
    }

    /// The same error, said to be about `subject`.
    func about(_ subject: Subject) -> TLSError {
        var copy = self
        copy.subject = subject
        return copy
    }

    /// The error for `operation`, with whatever the calling thread's error queue holds (which is emptied).
    static func fromQueue(_ operation: String) -> TLSError {
        TLSError(operation, reasons: drainQueue())
    }

    /// Empties the calling thread's error queue, returning its entries as text.
    static func drainQueue() -> [String] {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reasons.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons
    }

    /// The gist, for counting like failures together: the reason of OpenSSL's first entry without its code and
    /// library ("error:0A00010B:SSL routines::wrong version number" → "wrong version number"), else what Jester
    /// said ("handshake: the peer closed the connection" → "the peer closed the connection").
    public var shortReason: String {
        if let first = reasons.first {
            let reason = first.split(separator: ":", omittingEmptySubsequences: true).last.map(String.init) ?? first
            return reason.trimmingPrefix(" ").isEmpty ? first : String(reason.trimmingPrefix(" "))
        }
        if let colon = operation.firstIndex(of: ":") {
            return String(operation[operation.index(after: colon)...].trimmingPrefix(" "))
        }
        return operation
    }

    public var description: String {
        reasons.isEmpty ? operation : "\(operation): \(reasons.joined(separator: "; "))"
    }
}
