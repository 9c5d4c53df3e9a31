// SPDX-License-Identifier: Apache-2.0

/// ABI v1's names and layouts (SDK/wit/jester-policy.wit), in one place for the host's encoder, decoder and
/// loader: the export and import names of the core module, and the byte offsets of the canonical ABI's core
/// lowering of `context`, `action`, `mutation` and `response` (natural alignment, discriminants as u8).
public enum PolicyABI {
    /// The major version this host speaks; a module built for another major is refused.
    public static let major: UInt32 = 1
    /// The highest minor version this host speaks; a module that needs a later one is refused at load.
    public static let minor: UInt32 = 0

    /// The import module of the host functions (the canonical core name of the WIT interface).
    public static let hostModule = "jester:policy/host@1.0.0"

    /// The core exports every policy has.
    enum Export {
        /// The linear memory.
        static let memory = "memory"
        /// The canonical ABI allocator.
        static let realloc = "cabi_realloc"
        /// (major << 16) | minor.
        static let abiVersion = "abi-version"
        /// Takes the JSON configuration.
        static let initialize = "init"
    }

    /// The host functions of v1 (imports of `hostModule`).
    enum Import {
        /// log(level, message).
        static let log = "log"
        /// counter-add(name, delta).
        static let counterAdd = "counter-add"
        /// metadata-get(key) -> option<string>.
        static let metadataGet = "metadata-get"
        /// metadata-set(key, value) -> bool.
        static let metadataSet = "metadata-set"
    }

    /// `context`: offsets of its fields in the record the host writes (v1.0: 116 bytes).
    enum Context {
        static let abiMinor = 0
        static let size = 4
        static let stage = 8
        static let method = 12
        static let scheme = 20
        static let authority = 28
        static let path = 36
        static let query = 44
        static let clientAddress = 52
        static let requestHeaders = 60
        static let requestBody = 68
        static let route = 80
        static let status = 92
        static let responseHeaders = 96
        static let responseBody = 104
        /// The record's size in v1.0.
        static let byteCount = 116
    }

    /// `action`: a u8 case at 0, its payload at 4; 24 bytes, aligned to 4.
    enum Action {
        /// The record's size.
        static let byteCount = 24
        /// The cases, as the WIT orders them.
        static let proceed: UInt8 = 0
        static let respond: UInt8 = 1
        static let deny: UInt8 = 2
    }

    /// `response` inside `action` (offsets from the action's start).
    enum Response {
        static let status = 4
        static let headers = 8
        static let body = 16
    }

    /// `header`: two strings, 16 bytes.
    static let headerByteCount = 16
    /// `mutation`: a u8 case at 0, a payload of at most two strings at 4; 20 bytes.
    static let mutationByteCount = 20
    /// `result<_, string>` returned by `init`: a u8 case at 0, the error string at 4.
    static let initResultByteCount = 12
}
