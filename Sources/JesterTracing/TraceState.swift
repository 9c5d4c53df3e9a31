// SPDX-License-Identifier: Apache-2.0
/// A validated W3C `tracestate` (Trace Context §3.3): vendors' list members, passed on as received.
///
/// Jester adds no member of its own, so it never reorders the list; it only refuses what the grammar refuses
/// and bounds what it forwards. The value is kept as the bytes forwarded (members joined by commas, optional
/// whitespace and empty members dropped), made once per request that has the field, so forwarding costs a copy.
public struct TraceState: Sendable, Hashable {
    /// What goes upstream: `key=value` members separated by commas; empty when there is nothing to forward.
    public private(set) var bytes: [UInt8]

    /// At most this many members (§3.3.1.1): a longer list is invalid and dropped whole.
    public static let maxMembers = 32
    /// What Jester forwards at most (§3.3.1.5: "vendors SHOULD propagate at least 512 characters").
    public static let maxLength = 512
    /// Members longer than this go first when the list must be shortened (§3.3.1.5).
    public static let longMember = 128

    /// The empty list (no `tracestate` field, or one that was invalid).
    public static let empty = TraceState(validated: [])

    private init(validated bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Whether there is nothing to forward.
    public var isEmpty: Bool { bytes.isEmpty }

    /// The list members in order, as `(key, value)` (for tests and diagnostics).
    public var members: [(key: String, value: String)] {
        bytes.split(separator: UInt8(ascii: ",")).map { member in
            let equals = member.firstIndex(of: UInt8(ascii: "="))!
            return (String(decoding: member[..<equals], as: UTF8.self),
                    String(decoding: member[(equals + 1)...], as: UTF8.self))
        }
    }

    /// The header value, as a string.
    public var value: String { String(decoding: bytes, as: UTF8.self) }

    /// Validates the values of every `tracestate` field of a request (several fields are one list, joined with
    /// commas: RFC 9110 §5.3). An invalid list is dropped whole (§3.3.1.1 lets a vendor discard it), and a list
    /// over `maxLength` loses its long members, then members from its end (§3.3.1.5).
    public init<Bytes: Collection>(fields: [Bytes]) where Bytes.Element == UInt8 {
        var members: [ArraySlice<UInt8>] = []
        var joined: [UInt8] = []
        for (index, field) in fields.enumerated() {
            if index > 0 { joined.append(UInt8(ascii: ",")) }
            joined.append(contentsOf: field)
        }
        for raw in joined.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let member = Self.trimmed(raw)
            if member.isEmpty { continue }  // §3.3.1.1: empty list members are allowed and ignored
            guard let equals = member.firstIndex(of: UInt8(ascii: "=")),
                Self.isValidKey(member[..<equals]), Self.isValidValue(member[(equals + 1)...])
            else {
                self = .empty
                return
            }
            let key = member[..<equals]
            // §3.3.1.1: a key appears at most once.
            if members.contains(where: { $0[..<$0.firstIndex(of: UInt8(ascii: "="))!].elementsEqual(key) }) {
                self = .empty
                return
            }
            members.append(member)
            if members.count > Self.maxMembers {
                self = .empty
                return
            }
        }
        self.init(validated: Self.bounded(members))
    }

    /// Parses one header value (for tests and callers that hold a string).
    public init(_ value: String) {
        self.init(fields: [Array(value.utf8)])
    }

    /// The members joined, shortened to `maxLength` as §3.3.1.5 says: members over `longMember` first, then
    /// from the end.
    private static func bounded(_ members: [ArraySlice<UInt8>]) -> [UInt8] {
        func length(_ list: [ArraySlice<UInt8>]) -> Int {
            list.reduce(0) { $0 + $1.count } + max(list.count - 1, 0)
        }
        var kept = members
        if length(kept) > maxLength {
            kept.removeAll { $0.count > longMember }
            while length(kept) > maxLength { kept.removeLast() }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length(kept))
        for (index, member) in kept.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: member)
        }
        return bytes
    }

    /// The member without the optional whitespace around it (OWS: spaces and tabs).
    private static func trimmed(_ member: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var member = member
        while let first = member.first, first == 0x20 || first == 0x09 { member = member.dropFirst() }
        while let last = member.last, last == 0x20 || last == 0x09 { member = member.dropLast() }
        return member
    }

    /// `lcalpha`, `DIGIT` and `_ - * /`: the characters after a key's first (§3.3.1.3.1).
    private static func isKeyCharacter(_ byte: UInt8) -> Bool {
        isLowercaseLetter(byte) || isDigit(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "*") || byte == UInt8(ascii: "/")
    }

    private static func isLowercaseLetter(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// `simple-key` (a lowercase letter, then up to 255 key characters) or `multi-tenant-key` (`tenant@system`:
    /// a tenant of a letter or digit and up to 240 more, a system of a letter and up to 13 more).
    static func isValidKey(_ key: ArraySlice<UInt8>) -> Bool {
        if let at = key.firstIndex(of: UInt8(ascii: "@")) {
            let tenant = key[..<at]
            let system = key[(at + 1)...]
            guard let tenantFirst = tenant.first, isLowercaseLetter(tenantFirst) || isDigit(tenantFirst),
                tenant.count <= 241, tenant.dropFirst().allSatisfy(isKeyCharacter),
                let systemFirst = system.first, isLowercaseLetter(systemFirst), system.count <= 14,
                system.dropFirst().allSatisfy(isKeyCharacter)
            else { return false }
            return true
        }
        guard let first = key.first, isLowercaseLetter(first), key.count <= 256 else { return false }
        return key.dropFirst().allSatisfy(isKeyCharacter)
    }

    /// Up to 256 printable ASCII characters but `,` and `=`, spaces allowed but not last (§3.3.1.3.2).
    static func isValidValue(_ value: ArraySlice<UInt8>) -> Bool {
        guard let last = value.last, last != 0x20, value.count <= 256 else { return false }
        return value.allSatisfy { byte in
            byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: ",") && byte != UInt8(ascii: "=")
        }
    }
}
