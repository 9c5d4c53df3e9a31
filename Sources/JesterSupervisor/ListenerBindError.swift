// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterSystem
import Logging

/// A listener whose socket cannot be bound (the port is taken, a port below 1024 without the right, an address
/// no interface has): said with the listener's name and the file:line of its table, like a configuration error,
/// so the operator knows which listener to fix instead of reading a bare system call.
///
/// At start it stops Jester (exit status 1); on reload it fails the reload, and the old generation keeps serving.
public struct ListenerBindError: Error, Sendable, CustomStringConvertible {
    /// The listener's `name`.
    public var listener: String
    /// The address as configured ("127.0.0.1:8080").
    public var address: String
    /// Where its `[[listeners]]` table is, when the file still has it.
    public var location: SourceLocation?
    /// What the system said.
    public var cause: SystemError

    public init(listener: String, address: String, location: SourceLocation?, cause: SystemError) {
        self.listener = listener
        self.address = address
        self.location = location
        self.cause = cause
    }

    /// What the system's reason means for a listener, and what to do about it.
    public var reason: String {
        let text = String(cString: strerror(cause.errorNumber)).lowercased()
        switch cause.errorNumber {
        case EADDRINUSE: return "\(text): another program listens there (`ss -ltnp` shows which)"
        case EACCES, EPERM:
            return "\(text): ports below 1024 need root or CAP_NET_BIND_SERVICE"
        case EADDRNOTAVAIL: return "\(text): no network interface of this host has that address"
        default: return cause.call == "bind" ? text : "\(cause)"
        }
    }

    /// `file:line:column: error: listener 'web' cannot listen on 127.0.0.1:80: …`, the form of configuration
    /// errors, so a failed reload lists it with them and editors jump to it.
    public var description: String {
        let message = "listener '\(listener)' cannot listen on \(address): \(reason)"
        guard let location else { return "error: " + message }
        return ConfigDiagnostic(location, message).description
    }

    /// The fields of its log line.
    public var metadata: Logger.Metadata {
        var fields: Logger.Metadata = [
            "listener": .string(listener), "address": .string(address), "error": .string(description),
            "errno": .stringConvertible(Int(cause.errorNumber)),
        ]
        if let location { fields["location"] = .string("\(location.file):\(location.line)") }
        return fields
    }
}
