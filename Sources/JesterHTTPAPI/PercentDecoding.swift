// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// Percent-decoding (RFC 3986 §2.1) of a path segment or query part of an API request, as both APIs read them.
public enum PercentDecoding {
    /// `text` with every `%XX` decoded; nil for a `%` not followed by two hex digits, or bytes that are not
    /// UTF-8 once decoded. `+` stays `+`.
    public static func decoded(_ text: some StringProtocol) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(ASCII.hexValue), let low = iterator.next().flatMap(ASCII.hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
