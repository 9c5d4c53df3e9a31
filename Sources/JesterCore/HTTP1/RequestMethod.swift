// SPDX-License-Identifier: Apache-2.0
/// What the proxy needs to know about a request method, read straight from the head bytes.
///
/// Methods are case-sensitive (RFC 9110 §9.1): `get` is an extension method, not GET.
public enum RequestMethod {
    /// HEAD: the response has no body whatever its framing says.
    @inlinable
    public static func isHead(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        bytes.elementsEqual("HEAD".utf8, range: range)
    }

    /// Safe methods (RFC 9110 §9.2.1): read-only by definition, so a copy of the request replayed by someone
    /// else changes nothing at the origin. The methods a client may send in TLS early data (RFC 8470 §4).
    public static func isSafe(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        switch range.count {
        case 3: return bytes.elementsEqual("GET".utf8, range: range)
        case 4: return bytes.elementsEqual("HEAD".utf8, range: range)
        case 5: return bytes.elementsEqual("TRACE".utf8, range: range)
        case 7: return bytes.elementsEqual("OPTIONS".utf8, range: range)
        default: return false
        }
    }

    /// Idempotent methods (RFC 9110 §9.2.2): a request that failed before any response byte arrived may be sent
    /// again without changing what the origin does.
    public static func isIdempotent(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        switch range.count {
        case 3: return bytes.elementsEqual("GET".utf8, range: range) || bytes.elementsEqual("PUT".utf8, range: range)
        case 4: return bytes.elementsEqual("HEAD".utf8, range: range)
        case 5: return bytes.elementsEqual("TRACE".utf8, range: range)
        case 6: return bytes.elementsEqual("DELETE".utf8, range: range)
        case 7: return bytes.elementsEqual("OPTIONS".utf8, range: range)
        default: return false
        }
    }
}
