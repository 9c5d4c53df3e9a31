// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and errno's text.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var subject: String
    public var errorNumber: Int32

    public init(_ call: String, _ subject: String = "", errno errorNumber: Int32 = errno) {
        self.call = call
        self.subject = subject
        self.errorNumber = errorNumber
    }

    public var description: String {
        let reason = String(cString: strerror(errorNumber))
        return subject.isEmpty ? "\(call): \(reason)" : "\(call) \(subject): \(reason)"
    }
}
