// SPDX-License-Identifier: Apache-2.0

/// Strict base64 (RFC 4648): the URL-safe alphabet without padding for JWS segments (RFC 7515 §2), the standard
/// alphabet with padding for `Authorization: Basic` (RFC 7617).
///
/// Why strict: a token is compared, cached and logged by its text, so one value must have exactly one spelling.
/// Lenient decoders accept padding, whitespace, the other alphabet or non-zero trailing bits, and each of those
/// gives an attacker a second spelling of the same bytes. Here any of them is a failure.
enum Base64 {
    /// Which of RFC 4648's two encodings.
    enum Variant {
        /// §5: `-` and `_`, no `=` padding (JWS).
        case urlUnpadded
        /// §4: `+` and `/`, with `=` padding to a multiple of four characters (HTTP Basic).
        case standardPadded
    }

    /// The decoded bytes, or nil if `text` is not the one canonical spelling of them in `variant`.
    static func decode(_ text: Substring.UTF8View, _ variant: Variant) -> [UInt8]? {
        var characters = text[...]
        if variant == .standardPadded {
            guard characters.count % 4 == 0 else { return nil }
            // At most two '=' and only at the end.
            var padding = 0
            while padding < 2, characters.last == UInt8(ascii: "=") {
                characters = characters.dropLast()
                padding += 1
            }
        }
        // A lone character carries 6 bits, less than a byte: no encoder produces it.
        guard characters.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(characters.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for character in characters {
            guard let value = sextet(character, variant) else { return nil }
            accumulator = (accumulator << 6) | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // The leftover bits (2 or 4) must be zero (RFC 4648 §3.5), or two texts would decode the same.
        guard accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return output
    }

    /// `bytes` in the URL-safe alphabet without padding (tests and tools that make tokens).
    static func encodeURL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value: UInt32 = 0
            for byte in chunk { value = (value << 8) | UInt32(byte) }
            value <<= UInt32(8 * (3 - chunk.count))
            for position in 0...chunk.count {
                output.append(alphabet[Int((value >> UInt32(18 - 6 * position)) & 0x3F)])
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The 6-bit value of one character, or nil if the variant's alphabet does not have it.
    private static func sextet(_ character: UInt8, _ variant: Variant) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-") where variant == .urlUnpadded: 62
        case UInt8(ascii: "_") where variant == .urlUnpadded: 63
        case UInt8(ascii: "+") where variant == .standardPadded: 62
        case UInt8(ascii: "/") where variant == .standardPadded: 63
        default: nil
        }
    }
}
