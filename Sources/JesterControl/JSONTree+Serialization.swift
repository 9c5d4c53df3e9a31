// SPDX-License-Identifier: Apache-2.0

extension JSONTree {
    /// The document as compact JSON, members by sorted name, numbers as they were written.
    ///
    /// One spelling for one value: the control plane stores, compares and sends documents in this form, so two
    /// equal documents are equal bytes, and a version's file reads back as the tree it was written from.
    public func serialized() -> [UInt8] {
        var output: [UInt8] = []
        append(to: &output)
        return output
    }

    /// Appends the compact form to `output`.
    public func append(to output: inout [UInt8]) {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let flag): output.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let text): output.append(contentsOf: text.utf8)
        case .string(let text): JSONText.appendString(text, to: &output)
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                element.append(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            output.append(UInt8(ascii: "{"))
            for (index, name) in members.keys.sorted().enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                JSONText.appendString(name, to: &output)
                output.append(UInt8(ascii: ":"))
                members[name]!.append(to: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// The member `name` of an object (nil for a missing member or a value that is not an object).
    public subscript(member name: String) -> JSONTree? {
        guard case .object(let members) = self else { return nil }
        return members[name]
    }

    /// The text of a string (nil for any other value).
    public var stringValue: String? {
        guard case .string(let text) = self else { return nil }
        return text
    }

    /// A number that is an integer (nil for any other value, or one out of `Int`'s range).
    public var integerValue: Int? {
        guard case .number(let text) = self else { return nil }
        return Int(text)
    }

    /// A JSON integer.
    public static func integer(_ value: Int) -> JSONTree { .number(String(value)) }
}
