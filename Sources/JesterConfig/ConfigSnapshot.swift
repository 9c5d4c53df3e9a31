// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The part of the configuration a control plane owns (issue 25): routes, upstreams, filters and policies, as one
/// JSON document with a version, laid over the bootstrap file.
///
/// The document's keys and values are the configuration file's, in JSON (`{"routes": [{"name": "api",
/// "path_prefix": "/api/", "upstream": "api"}], "upstreams": {"api": {"targets": ["10.0.0.5:8080"]}}}`), and the
/// same decoder checks them, so a snapshot is accepted or refused exactly as the same tables in a file would be;
/// its errors point at the field with a JSON pointer (`snapshot 42#/routes/0/upstream`).
///
/// Precedence: each key the snapshot sets replaces the bootstrap file's whole value for that key (its routes
/// replace the file's routes; upstreams the snapshot leaves out stay as the file has them). Everything else
/// (listeners and their TLS files, the master's own settings, logging, limits, the admin API) is the bootstrap
/// file's alone: a snapshot that sets it is refused, with the reason, and the configuration in use stays.
/// `${VAR}` is not expanded in a snapshot: the host's environment is not a control plane's to read.
public struct ConfigSnapshot: Sendable, Equatable {
    /// The top-level keys a snapshot may set.
    public static let dynamicKeys: Set<String> = ["routes", "upstreams", "filters", "policies"]

    /// The control plane's name for this version; diagnostics name the snapshot by it.
    public var version: String
    /// The JSON document (UTF-8).
    public var document: [UInt8]

    public init(version: String, document: [UInt8]) {
        self.version = version
        self.document = document
    }

    /// What diagnostics call the document: `snapshot <version>`.
    var name: String { "snapshot \(version)" }
}

extension ConfigNode {
    /// Lays `snapshot` over this (the bootstrap file's, already interpolated) tree: each dynamic key it sets
    /// replaces the file's. Problems with the document itself (not JSON, not an object, a key it may not set) are
    /// added to `diagnostics`; the values are checked later, by the decoder, as the file's are.
    mutating func overlay(_ snapshot: ConfigSnapshot, diagnostics: inout [ConfigDiagnostic]) {
        let documentLocation = SourceLocation(file: snapshot.name, line: 0, column: 0, pointer: "")
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(snapshot.document)
        } catch {
            diagnostics.append(ConfigDiagnostic(documentLocation, "invalid JSON: \(error)"))
            return
        }
        var ordinal = 0
        let node = ConfigNode(json: tree, pointer: "", file: snapshot.name, ordinal: &ordinal)
        guard case .table(let members) = node.value else {
            diagnostics.append(ConfigDiagnostic(documentLocation,
                "a snapshot is a JSON object of routes, upstreams, filters and policies, not \(node.typeName)"))
            return
        }
        guard case .table(var mine) = value else { return }
        for key in members.keys.sorted() {
            let member = members[key]!
            if Self.isDynamic(key) {
                mine[key] = member
            } else if ConfigSchema.root.fields.contains(where: { $0.name == key }) {
                diagnostics.append(ConfigDiagnostic(member.location,
                    "'\(key)' is the bootstrap file's to set, not a snapshot's (a snapshot sets "
                        + "\(ConfigSnapshot.dynamicKeys.sorted().joined(separator: ", ")))"))
            } else {
                var message = "unknown key '\(key)'"
                if let close = Suggestion.closest(to: key, among: Array(ConfigSnapshot.dynamicKeys)) {
                    message += " (did you mean '\(close)'?)"
                }
                diagnostics.append(ConfigDiagnostic(member.location, message))
            }
        }
        value = .table(mine)
    }

    private static func isDynamic(_ key: String) -> Bool { ConfigSnapshot.dynamicKeys.contains(key) }

    /// A JSON value as a located node: its location is its JSON pointer, and `ordinal` (its place in the
    /// document) stands in for the line, so diagnostics sort in document order.
    init(json: JSONTree, pointer: String, file: String, ordinal: inout Int) {
        ordinal += 1
        let location = SourceLocation(file: file, line: ordinal, column: 0, pointer: pointer)
        switch json {
        case .null:
            // No configuration key takes null: the decoder says what the key expects, "got null".
            self.init(value: .other("null"), location: location)
        case .bool(let flag):
            self.init(value: .boolean(flag), location: location)
        case .number(let text):
            if let integer = Int(text) {
                self.init(value: .integer(integer), location: location)
            } else if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let number = Double(text) {
                self.init(value: .float(number), location: location)
            } else {
                self.init(value: .other("a number out of range"), location: location)
            }
        case .string(let text):
            self.init(value: .string(text), location: location)
        case .array(let elements):
            var nodes: [ConfigNode] = []
            nodes.reserveCapacity(elements.count)
            for (index, element) in elements.enumerated() {
                nodes.append(ConfigNode(json: element, pointer: pointer + "/\(index)", file: file, ordinal: &ordinal))
            }
            self.init(value: .array(nodes), location: location)
        case .object(let members):
            var children: [String: ConfigNode] = [:]
            // Sorted, so the ordinals (and the order diagnostics come in) do not depend on hashing.
            for key in members.keys.sorted() {
                children[key] = ConfigNode(
                    json: members[key]!, pointer: pointer + "/" + Self.escapedPointerToken(key), file: file,
                    ordinal: &ordinal)
            }
            self.init(value: .table(children), location: location)
        }
    }

    /// RFC 6901 §3: `~` is written `~0` and `/` is written `~1` inside a reference token.
    static func escapedPointerToken(_ key: String) -> String {
        var token = ""
        for character in key {
            switch character {
            case "~": token += "~0"
            case "/": token += "~1"
            default: token.append(character)
            }
        }
        return token
    }
}
