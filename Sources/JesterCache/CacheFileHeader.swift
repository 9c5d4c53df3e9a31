// SPDX-License-Identifier: Apache-2.0
/// The head of a body file (`<cache_dir>/<2 hex>/<32 hex>-<generation>`): everything of a `StoredResponse` the
/// index slot does not hold, written before the body so one read at a hit gives the key, the status, the fields
/// and the freshness (Docs/cache-design.md, "Bodies").
///
/// Binary and length-prefixed, not text: a field value may hold any byte an origin sent except CR, LF and NUL,
/// and the reader must never mistake one for structure. Little-endian numbers; strings as a 32-bit length and
/// their UTF-8 bytes. The format's version is its magic: a file of another version is not read (the master
/// deletes it while rebuilding, and a hit on it is a miss), so a binary upgrade may change it.
///
///     "JCF1"  u32 header length (magic included)  key  u32 status  fields  i64 request time
///     i64 response time  freshness  vary values
public enum CacheFileHeader {
    /// The first four bytes of every body file of this format.
    public static let magic: [UInt8] = Array("JCF1".utf8)
    /// The longest header read back: a file claiming more is damaged (fields are capped far below this).
    public static let maxLength = 1 << 20

    /// Why a file's header could not be read.
    public enum ReadError: Error, Equatable {
        /// Fewer bytes than the header says it has (a file cut short, or the first read was too small).
        case truncated(needed: Int)
        /// Not this format (another version's file, or not a body file).
        case wrongMagic
        /// The bytes are not a header this version wrote.
        case malformed
    }

    /// The header of `stored`: `bytes.count` is where the body starts.
    public static func encode(_ stored: StoredResponse) -> [UInt8] {
        var out = Writer()
        out.bytes.append(contentsOf: magic)
        out.u32(0)  // the length, patched below
        let key = stored.key
        out.string(key.method)
        out.string(key.scheme)
        out.string(key.authority)
        out.string(key.path)
        out.optional(key.query)
        out.varyValues(key.fields)
        out.u32(UInt32(truncatingIfNeeded: stored.status))
        out.u32(UInt32(stored.fields.fields.count))
        for field in stored.fields.fields {
            out.string(field.name)
            out.string(field.value)
        }
        out.i64(stored.requestTime)
        out.i64(stored.responseTime)
        let freshness = stored.freshness
        out.i64(freshness.lifetime)
        out.bytes.append(sourceCode(freshness.source))
        out.i64(freshness.correctedInitialAge)
        out.i64(freshness.responseTime)
        out.i64(freshness.staleWhileRevalidate)
        out.i64(freshness.staleIfError)
        out.bytes.append(
            (freshness.requiresValidation ? 1 : 0) | (freshness.forbidsStale ? 2 : 0) | (freshness.immutable ? 4 : 0))
        out.varyValues(stored.varyValues)
        let length = UInt32(out.bytes.count)
        withUnsafeBytes(of: length.littleEndian) { out.bytes.replaceSubrange(4..<8, with: $0) }
        return out.bytes
    }

    /// The header's length as its first eight bytes say (nil: fewer than eight, or not this format): how much to
    /// read before `decode`.
    public static func length(prefix: some Collection<UInt8>) -> Int? {
        let bytes = Array(prefix.prefix(8))
        guard bytes.count == 8, Array(bytes[0..<4]) == magic else { return nil }
        let length = Int(bytes[4]) | Int(bytes[5]) << 8 | Int(bytes[6]) << 16 | Int(bytes[7]) << 24
        return length >= 8 && length <= maxLength ? length : nil
    }

    /// The stored response whose header starts `bytes`, and the header's length (where the body starts).
    public static func decode(_ bytes: [UInt8]) throws(ReadError) -> (stored: StoredResponse, length: Int) {
        guard bytes.count >= 8 else { throw .truncated(needed: 8) }
        guard Array(bytes[0..<4]) == magic else { throw .wrongMagic }
        guard let length = length(prefix: bytes) else { throw .malformed }
        guard bytes.count >= length else { throw .truncated(needed: length) }
        var reader = Reader(bytes: bytes[8..<length])
        guard let method = reader.string(), let scheme = reader.string(), let authority = reader.string(),
            let path = reader.string(), let query = reader.optional(), let keyFields = reader.varyValues(),
            let status = reader.u32(), let fieldCount = reader.u32(), Int(fieldCount) <= length / 8
        else { throw .malformed }
        var fields = CacheFields()
        for _ in 0..<fieldCount {
            guard let name = reader.string(), let value = reader.string() else { throw .malformed }
            fields.append(name, value)
        }
        guard let requestTime = reader.i64(), let responseTime = reader.i64(), let lifetime = reader.i64(),
            let sourceByte = reader.byte(), let source = source(sourceByte), let initialAge = reader.i64(),
            let freshResponseTime = reader.i64(), let staleWhileRevalidate = reader.i64(),
            let staleIfError = reader.i64(), let flags = reader.byte(), let varyValues = reader.varyValues(),
            reader.isAtEnd
        else { throw .malformed }
        let freshness = Freshness(
            lifetime: lifetime, source: source, correctedInitialAge: initialAge, responseTime: freshResponseTime,
            staleWhileRevalidate: staleWhileRevalidate, staleIfError: staleIfError,
            requiresValidation: flags & 1 != 0, forbidsStale: flags & 2 != 0, immutable: flags & 4 != 0)
        let key = CacheKey(
            method: method, scheme: scheme, authority: authority, path: path, query: query, fields: keyFields)
        let stored = StoredResponse(
            key: key, status: Int(status), fields: fields, requestTime: requestTime, responseTime: responseTime,
            freshness: freshness, varyValues: varyValues)
        return (stored, length)
    }

    private static func sourceCode(_ source: Freshness.Source) -> UInt8 {
        switch source {
        case .sharedMaxAge: 0
        case .maxAge: 1
        case .expires: 2
        case .heuristic: 3
        case .none: 4
        case .invalid: 5
        }
    }

    private static func source(_ code: UInt8) -> Freshness.Source? {
        switch code {
        case 0: .sharedMaxAge
        case 1: .maxAge
        case 2: .expires
        case 3: .heuristic
        case 4: Freshness.Source.none
        case 5: .invalid
        default: nil
        }
    }

    private struct Writer {
        var bytes: [UInt8] = []

        mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func i64(_ value: Int64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }

        mutating func string(_ text: String) {
            u32(UInt32(text.utf8.count))
            bytes.append(contentsOf: text.utf8)
        }

        mutating func optional(_ text: String?) {
            bytes.append(text == nil ? 0 : 1)
            if let text { string(text) }
        }

        mutating func varyValues(_ values: [VaryValue]) {
            u32(UInt32(values.count))
            for value in values {
                string(value.name)
                optional(value.value)
            }
        }
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>

        var isAtEnd: Bool { bytes.isEmpty }

        mutating func byte() -> UInt8? { bytes.popFirst() }

        mutating func u32() -> UInt32? {
            guard bytes.count >= 4 else { return nil }
            let start = bytes.startIndex
            let value = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[start + $1]) << (8 * UInt32($1)) }
            bytes = bytes.dropFirst(4)
            return value
        }

        mutating func i64() -> Int64? {
            guard bytes.count >= 8 else { return nil }
            let start = bytes.startIndex
            let value = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << (8 * UInt64($1)) }
            bytes = bytes.dropFirst(8)
            return Int64(bitPattern: value)
        }

        mutating func string() -> String? {
            guard let count = u32(), bytes.count >= Int(count) else { return nil }
            let text = bytes.prefix(Int(count))
            bytes = bytes.dropFirst(Int(count))
            return String(validating: text, as: UTF8.self)
        }

        /// nil: malformed; `.some(nil)`: absent.
        mutating func optional() -> String?? {
            guard let present = byte(), present <= 1 else { return nil }
            if present == 0 { return .some(nil) }
            guard let text = string() else { return nil }
            return .some(text)
        }

        mutating func varyValues() -> [VaryValue]? {
            guard let count = u32(), Int(count) <= bytes.count / 5 else { return nil }
            var values: [VaryValue] = []
            for _ in 0..<count {
                guard let name = string(), let value = optional() else { return nil }
                values.append(VaryValue(name: name, value: value))
            }
            return values
        }
    }
}

extension Freshness {
    /// Freshness as a body file's header stored it (`CacheFileHeader`).
    public init(
        lifetime: Int64, source: Source, correctedInitialAge: Int64, responseTime: Int64, staleWhileRevalidate: Int64,
        staleIfError: Int64, requiresValidation: Bool, forbidsStale: Bool, immutable: Bool
    ) {
        self.lifetime = lifetime
        self.source = source
        self.correctedInitialAge = correctedInitialAge
        self.responseTime = responseTime
        self.staleWhileRevalidate = staleWhileRevalidate
        self.staleIfError = staleIfError
        self.requiresValidation = requiresValidation
        self.forbidsStale = forbidsStale
        self.immutable = immutable
    }
}
