// SPDX-License-Identifier: Apache-2.0

/// A default value for `DefaultIfMissing`, named by a type so the wrapper stays `Codable`.
public protocol CodableDefault {
    associatedtype Value: Sendable & Codable & Equatable
    /// What a settings document without the key means.
    static var defaultValue: Value { get }
}

/// A non-optional setting that decodes to its default when the key is missing, so the settings of an older
/// binary (handed over in a binary upgrade, before the key existed) still decode, without making every reader
/// of the field deal with an optional.
@propertyWrapper
public struct DefaultIfMissing<Default: CodableDefault>: Sendable, Codable, Equatable {
    public var wrappedValue: Default.Value

    public init(wrappedValue: Default.Value = Default.defaultValue) {
        self.wrappedValue = wrappedValue
    }

    public init(from decoder: any Decoder) throws {
        wrappedValue = try decoder.singleValueContainer().decode(Default.Value.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }
}

extension KeyedDecodingContainer {
    /// A missing key is the default (see `DefaultIfMissing`).
    func decode<Default>(_ type: DefaultIfMissing<Default>.Type, forKey key: Key) throws -> DefaultIfMissing<Default> {
        try decodeIfPresent(type, forKey: key) ?? DefaultIfMissing()
    }
}

/// The default of `http.request_id_header`.
public enum RequestIDHeaderDefault: CodableDefault {
    public static let defaultValue = "X-Request-Id"
}
