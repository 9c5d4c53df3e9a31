/// What the proxy needs to know about a request method, read straight from the head bytes.
///
/// Methods are case-sensitive (RFC 9110 §9.1): `get` is an extension method, not GET.
public enum RequestMethod {
    /// HEAD: the response has no body whatever its framing says.
    @inlinable
    public static func isHead(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        equals(bytes, range, "HEAD")
    }

    /// Idempotent methods (RFC 9110 §9.2.2): a request that failed before any response byte arrived may be sent
    /// again without changing what the origin does.
    public static func isIdempotent(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        equals(bytes, range, "GET") || equals(bytes, range, "HEAD") || equals(bytes, range, "OPTIONS")
            || equals(bytes, range, "TRACE") || equals(bytes, range, "PUT") || equals(bytes, range, "DELETE")
    }

    @inlinable
    static func equals(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        for index in 0..<range.count where bytes[range.lowerBound + index] != start[index] {
            return false
        }
        return true
    }
}
