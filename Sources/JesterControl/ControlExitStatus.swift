// SPDX-License-Identifier: Apache-2.0

/// jesterctl's exit statuses, exactly as jesterctl(8) documents them under EXIT STATUS, so a script can tell
/// "the operation failed" from "no master to ask" from "you named something that does not exist".
public enum ControlExitStatus: Int32, Sendable, Equatable, CaseIterable {
    /// The operation was done.
    case success = 0
    /// The master did it and it failed: a reload or upgrade refused, a drain that cut requests, a reopen some
    /// worker did not do, a master that exited uncleanly.
    case operationFailed = 1
    /// No master could be asked: nothing listens on the socket, the peer was refused, or the conversation broke
    /// (protocol mismatch, the master went away mid-request).
    case unreachable = 2
    /// The request named an upstream pool or target the running configuration does not have.
    case notFound = 3
    /// The command line was wrong: unknown command or option, a bad value, an empty `JESTER_CONTROL_SOCKET`, or
    /// a `--config` file that cannot be read (EX_USAGE; `ControlCommandLine` says which).
    case usage = 64

    /// The status for a failure the master reported. A master that gave no reason (one from before reasons)
    /// reported a failed operation.
    public init(failure reason: FailureReason?) {
        switch reason {
        case .notFound: self = .notFound
        case .permissionDenied, .invalidRequest: self = .unreachable
        case nil: self = .operationFailed
        }
    }
}

/// Where jesterctl finds the master's control socket: `--socket`, else the `control_socket` of the file given
/// with `--config` (the key the master binds), else `JESTER_CONTROL_SOCKET`, else the packaged default.
public struct ControlSocketChoice: Sendable, Equatable {
    /// The packaged master's socket (`[server] control_socket`'s default).
    public static let defaultPath = "/run/jester/control.sock"

    /// Why no socket path could be chosen (a usage error).
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case bothSocketAndConfig
        case emptyEnvironment
        case emptyOption

        public var description: String {
            switch self {
            case .bothSocketAndConfig:
                return "give --socket or --config, not both (the configuration names the socket itself)"
            case .emptyEnvironment:
                return "JESTER_CONTROL_SOCKET is set but empty: set it to the control socket's path, or unset it "
                    + "to use \(ControlSocketChoice.defaultPath)"
            case .emptyOption:
                return "--socket needs a path"
            }
        }
    }

    /// Where the path came from, for error messages ("is it running? see --socket").
    public enum Source: String, Sendable, Equatable {
        case option = "--socket"
        case configuration = "--config"
        case environment = "JESTER_CONTROL_SOCKET"
        case builtIn = "the default"
    }

    public var path: String
    public var source: Source

    public init(path: String, source: Source) {
        self.path = path
        self.source = source
    }

    /// Chooses among what was given. `configuredSocket` is called only when `config` is given, and returns the
    /// file's `control_socket` (or throws why it cannot be read).
    public static func choose(
        socket: String?, config: String?, environment: String?, configuredSocket: (String) throws -> String
    ) throws -> ControlSocketChoice {
        if socket != nil, config != nil { throw Problem.bothSocketAndConfig }
        if let socket {
            guard !socket.isEmpty else { throw Problem.emptyOption }
            return ControlSocketChoice(path: socket, source: .option)
        }
        if let config { return ControlSocketChoice(path: try configuredSocket(config), source: .configuration) }
        if let environment {
            guard !environment.isEmpty else { throw Problem.emptyEnvironment }
            return ControlSocketChoice(path: environment, source: .environment)
        }
        return ControlSocketChoice(path: defaultPath, source: .builtIn)
    }
}
