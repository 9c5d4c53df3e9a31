// SPDX-License-Identifier: Apache-2.0
/// Byte-level helpers for parsing HTTP in place. Everything here works on raw bytes and ranges, never on `String`.
public enum ASCII {
    public static let cr: UInt8 = 0x0D
    public static let lf: UInt8 = 0x0A
    public static let space: UInt8 = 0x20
    public static let tab: UInt8 = 0x09
    public static let colon: UInt8 = 0x3A
    public static let comma: UInt8 = 0x2C

    /// `tchar` of RFC 9110 §5.6.2 (the bytes allowed in methods, field names and tokens), as a 128-bit mask so
    /// the test is two shifts and no memory load.
    @usableFromInline static let tokenMaskLow: UInt64 = 0x03FF6CFA00000000
    @usableFromInline static let tokenMaskHigh: UInt64 = 0x57FFFFFFC7FFFFFE

    @inlinable
    public static func isToken(_ byte: UInt8) -> Bool {
        if byte < 64 { return tokenMaskLow & (1 &<< UInt64(byte)) != 0 }
        if byte < 128 { return tokenMaskHigh & (1 &<< UInt64(byte &- 64)) != 0 }
        return false
    }

    /// Bytes allowed in a field value (RFC 9110 §5.5): VCHAR, obs-text, SP and HTAB. NUL, CR, LF and the other
    /// controls are not, which is what keeps header injection out.
    @inlinable
    public static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == tab
    }

    /// Bytes allowed in a request target: visible ASCII only (RFC 9112 §3.2); no spaces, controls or raw
    /// non-ASCII, and no "#": a fragment is never part of a request target (RFC 9112 §3.2), and origins disagree
    /// on whether to cut it off.
    @inlinable
    public static func isTargetByte(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "#")
    }

    @inlinable
    public static func lowercased(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
    }

    /// Compares `bytes[range]` with an all-lowercase ASCII literal, ignoring the case of `bytes`.
    @inlinable
    public static func equalsIgnoringCase(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString
    ) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        let literal = lowercase.utf8Start
        var index = 0
        while index < range.count {
            if lowercased(bytes[range.lowerBound + index]) != literal[index] { return false }
            index += 1
        }
        return true
    }

    /// Compares two byte ranges, ignoring ASCII case.
    @inlinable
    public static func equalsIgnoringCase(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ other: UnsafeRawBufferPointer, _ otherRange: Range<Int>
    ) -> Bool {
        guard range.count == otherRange.count else { return false }
        var index = 0
        while index < range.count {
            if lowercased(bytes[range.lowerBound + index]) != lowercased(other[otherRange.lowerBound + index]) {
                return false
            }
            index += 1
        }
        return true
    }

    /// `range` with optional whitespace (SP, HTAB) removed from both ends.
    @inlinable
    public static func trimmingWhitespace(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper, bytes[lower] == space || bytes[lower] == tab { lower += 1 }
        while upper > lower, bytes[upper - 1] == space || bytes[upper - 1] == tab { upper -= 1 }
        return lower..<upper
    }

    /// Calls `body` with each element of a comma-separated list (RFC 9110 §5.6.1), trimmed, skipping empty ones.
    @inlinable
    public static func forEachListElement(
        _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Void
    ) {
        var start = range.lowerBound
        var index = range.lowerBound
        while index <= range.upperBound {
            if index == range.upperBound || bytes[index] == comma {
                let element = trimmingWhitespace(bytes, start..<index)
                if !element.isEmpty { body(element) }
                start = index + 1
            }
            index += 1
        }
    }

    /// Parses plain decimal digits (RFC 9110 §8.6: `Content-Length = 1*DIGIT`); nil on any other byte, on an
    /// empty range or on overflow past Int64.
    @inlinable
    public static func parseDecimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int64? {
        guard !range.isEmpty, range.count <= 19 else { return nil }
        var value: Int64 = 0
        for index in range {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            let (multiplied, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (added, overflow2) = multiplied.addingReportingOverflow(Int64(digit))
            if overflow1 || overflow2 { return nil }
            value = added
        }
        return value
    }

    /// The value of a hexadecimal digit, or nil.
    @inlinable
    public static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
