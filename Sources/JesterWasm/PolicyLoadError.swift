// SPDX-License-Identifier: Apache-2.0

/// Why a policy module could not be loaded or instantiated: said with the module's name and what is wrong, so
/// the master can report it at the configuration's file:line:column and keep the old configuration serving.
public struct PolicyLoadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem, for tests and counting.
    public enum Kind: String, Sendable, Equatable {
        /// Not a valid Wasm module (or not readable).
        case malformedModule = "malformed_module"
        /// An import ABI v1 does not provide (a capability the host does not grant).
        case unknownImport = "unknown_import"
        /// An export ABI v1 requires is missing.
        case missingExport = "missing_export"
        /// An export has the wrong kind or function type.
        case wrongSignature = "wrong_signature"
        /// The module's `abi-version` is not one this host speaks.
        case abiVersion = "abi_version"
        /// Instantiation failed (a limit, a trapping start function, an import of the wrong type).
        case instantiation
        /// `init` refused the configuration, or trapped.
        case initFailed = "init_failed"
    }

    /// The module, as the configuration names it (its path).
    public var module: String
    /// What kind of problem.
    public var kind: Kind
    /// What is wrong, for the operator.
    public var message: String

    /// An error about `module`.
    public init(module: String, kind: Kind, message: String) {
        self.module = module
        self.kind = kind
        self.message = message
    }

    /// "policy module NAME: what is wrong".
    public var description: String { "policy module \(module): \(message)" }
}
