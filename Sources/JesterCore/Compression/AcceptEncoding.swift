// SPDX-License-Identifier: Apache-2.0
/// A request's `Accept-Encoding` (RFC 9110 §12.5.3): how much the client wants each coding Jester implements, and
/// whether it takes the body as it is (identity).
///
/// Only what a choice needs is kept (a weight for each of the four codings, identity and `*`), so parsing allocates
/// nothing and codings Jester does not implement cost nothing. Weights are thousandths (`q=0.5` is 500), the
/// precision the qvalue grammar has (RFC 9110 §12.4.2). Malformed members (`gzip;q=2`, `br;level=3`, `;q=1`) are
/// skipped and the rest still count: a client that garbles one member meant the others.
public struct AcceptEncoding: Sendable, Equatable {
    /// Whether the request had the field at all. Without it the client states no preference (§12.5.3), and
    /// Jester then sends the body as it is, as nginx and most servers do: some old clients send no field and
    /// cannot decode anything.
    public private(set) var isPresent: Bool
    /// Explicit weights of the four codings, in `ContentCoding.allCases` order; nil where not listed.
    private var weights: [Int?]
    /// The weight of `identity`, when listed by name.
    private var listedIdentityWeight: Int?
    /// The weight of `*`, when listed: every coding not listed by name.
    private var wildcardWeight: Int?

    /// The highest weight, `q=1`.
    public static let fullWeight = 1000

    /// A request without the field.
    public static let absent = AcceptEncoding()

    private init() {
        isPresent = false
        weights = Array(repeating: nil, count: ContentCoding.allCases.count)
    }

    /// The field's value (several field lines joined with ", ", or one at a time through `add`).
    public init(_ value: some StringProtocol) {
        self.init()
        add(value)
    }

    /// Reads one more field line: a request may split the list over several (RFC 9110 §5.3).
    public mutating func add(_ value: some StringProtocol) {
        isPresent = true
        for member in value.utf8.split(separator: ASCII.comma, omittingEmptySubsequences: true) {
            parse(member: member)
        }
    }

    /// One list member: a coding token and an optional weight, with optional whitespace around each part.
    private mutating func parse(member: some Collection<UInt8>) {
        var parts = member.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false).makeIterator()
        guard let name = parts.next().map({ Self.trimmed($0) }), !name.isEmpty, name.allSatisfy(ASCII.isToken) else {
            return
        }
        var weight = Self.fullWeight
        if let parameter = parts.next().map({ Self.trimmed($0) }) {
            // Only `q` is defined for this field (weight = OWS ";" OWS "q=" qvalue); anything else is malformed.
            guard parts.next() == nil, parameter.count > 2, ASCII.lowercased(parameter[0]) == UInt8(ascii: "q"),
                parameter[1] == UInt8(ascii: "="), let parsed = Self.qvalue(parameter[2...])
            else { return }
            weight = parsed
        }
        let token = String(decoding: name, as: UTF8.self)
        // A coding listed twice keeps its first weight: later duplicates cannot turn a refusal into consent.
        if let coding = ContentCoding(token: token) {
            let index = ContentCoding.allCases.firstIndex(of: coding)!
            if weights[index] == nil { weights[index] = weight }
        } else if token.lowercased() == "identity" {
            if listedIdentityWeight == nil { listedIdentityWeight = weight }
        } else if token == "*" {
            if wildcardWeight == nil { wildcardWeight = weight }
        }
    }

    /// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths; nil when it is not one.
    static func qvalue(_ text: ArraySlice<UInt8>) -> Int? {
        guard let first = text.first, first == UInt8(ascii: "0") || first == UInt8(ascii: "1") else { return nil }
        var value = Int(first - UInt8(ascii: "0")) * 1000
        let rest = text.dropFirst()
        guard !rest.isEmpty else { return value }
        guard rest.first == UInt8(ascii: "."), rest.count <= 4 else { return nil }
        var scale = 100
        for digit in rest.dropFirst() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            value += Int(digit - UInt8(ascii: "0")) * scale
            scale /= 10
        }
        return value <= Self.fullWeight ? value : nil
    }

    private static func trimmed(_ part: some Collection<UInt8>) -> [UInt8] {
        let bytes = Array(part)
        let isSpace = { (byte: UInt8) in byte == ASCII.space || byte == ASCII.tab }
        guard let start = bytes.firstIndex(where: { !isSpace($0) }) else { return [] }
        let end = bytes.lastIndex(where: { !isSpace($0) })!
        return Array(bytes[start...end])
    }

    /// How much the client wants `coding`, 0 (refused) to 1000: its own weight, else `*`'s, else 0, since a
    /// coding the field does not list is not acceptable (§12.5.3). Without the field: 0 (see `isPresent`).
    public func weight(of coding: ContentCoding) -> Int {
        weights[ContentCoding.allCases.firstIndex(of: coding)!] ?? wildcardWeight ?? 0
    }

    /// Whether the client takes the body as it is: always, unless `identity;q=0`, or `*;q=0` with no weight of
    /// identity's own, refuses it (§12.5.3).
    public var acceptsIdentity: Bool { (listedIdentityWeight ?? wildcardWeight ?? Self.fullWeight) > 0 }

    /// The coding to send, or nil for the body as it is.
    ///
    /// Among `enabled` (the route's codings, in the server's order of preference), the one the client weighs
    /// highest; on equal weights the server's order decides (browsers weigh everything 1, and the server knows
    /// which coding is densest). The body goes as it is when the client refuses every enabled coding, or names
    /// identity with a weight above theirs (`identity, gzip;q=0.5`). Identity's implicit acceptability does not
    /// compete: `gzip;q=0.8` alone asks for gzip. (When the client refuses identity too, the body still goes as it
    /// is rather than a 406: an uncompressed answer serves it better than none, as RFC 9110 §12.5.3 allows.)
    public func preferredCoding(among enabled: [ContentCoding]) -> ContentCoding? {
        guard isPresent else { return nil }
        var best: (coding: ContentCoding, weight: Int)?
        for coding in enabled {
            let weight = weight(of: coding)
            if weight > 0, weight > (best?.weight ?? 0) { best = (coding, weight) }
        }
        guard let best, best.weight >= (listedIdentityWeight ?? 0) else { return nil }
        return best.coding
    }
}
