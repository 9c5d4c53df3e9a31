// SPDX-License-Identifier: Apache-2.0

/// Lays a `PolicyContext` out in guest memory as ABI v1's `context` (canonical ABI, core lowering), in one block:
/// the 116-byte record, then the header arrays, then every string and body it points at. Pure: it writes into a
/// buffer the instance hands it, at the guest address the module's `cabi_realloc` gave, so it is tested without
/// a module. Two passes (size, then write), so the block is allocated once and nothing is copied twice.
struct ContextEncoder {
    /// The bytes the block needs for `context`.
    static func byteCount(of context: PolicyContext) -> Int {
        var count = PolicyABI.Context.byteCount
        count += PolicyABI.headerByteCount * (context.requestHeaders.count + context.responseHeaders.count)
        for text in [context.method, context.scheme, context.authority, context.path, context.query] {
            count += text.utf8.count
        }
        count += context.clientAddress.utf8.count + (context.route?.utf8.count ?? 0)
        for field in context.requestHeaders { count += field.name.utf8.count + field.value.utf8.count }
        for field in context.responseHeaders { count += field.name.utf8.count + field.value.utf8.count }
        count += (context.requestBody?.count ?? 0) + (context.responseBody?.count ?? 0)
        return count
    }

    /// Writes `context` for `stage` into `block`, which lies at guest address `base` and holds `byteCount(of:)`
    /// bytes.
    static func encode(
        _ context: PolicyContext,
        stage: PolicyStage,
        into block: UnsafeMutableRawBufferPointer,
        base: UInt32
    ) {
        var writer = Writer(block: block, base: base)
        let record = 0
        writer.cursor = PolicyABI.Context.byteCount
        // The header arrays first: 4-aligned like the record, before the strings' unaligned bytes.
        let requestFields = writer.reserve(PolicyABI.headerByteCount * context.requestHeaders.count)
        let responseFields = writer.reserve(PolicyABI.headerByteCount * context.responseHeaders.count)
        writer.put32(PolicyABI.minor, at: record + PolicyABI.Context.abiMinor)
        writer.put32(UInt32(PolicyABI.Context.byteCount), at: record + PolicyABI.Context.size)
        writer.put8(stage.rawValue, at: record + PolicyABI.Context.stage)
        writer.string(context.method, at: record + PolicyABI.Context.method)
        writer.string(context.scheme, at: record + PolicyABI.Context.scheme)
        writer.string(context.authority, at: record + PolicyABI.Context.authority)
        writer.string(context.path, at: record + PolicyABI.Context.path)
        writer.string(context.query, at: record + PolicyABI.Context.query)
        writer.string(context.clientAddress, at: record + PolicyABI.Context.clientAddress)
        writer.fields(context.requestHeaders, array: requestFields, at: record + PolicyABI.Context.requestHeaders)
        writer.optionalBytes(context.requestBody, at: record + PolicyABI.Context.requestBody)
        if let route = context.route {
            writer.put8(1, at: record + PolicyABI.Context.route)
            writer.string(route, at: record + PolicyABI.Context.route + 4)
        } else {
            writer.put8(0, at: record + PolicyABI.Context.route)
        }
        writer.put16(UInt16(clamping: context.status), at: record + PolicyABI.Context.status)
        writer.fields(context.responseHeaders, array: responseFields, at: record + PolicyABI.Context.responseHeaders)
        writer.optionalBytes(context.responseBody, at: record + PolicyABI.Context.responseBody)
    }

    /// Little-endian stores into the block, with guest addresses computed from `base`.
    private struct Writer {
        /// The block in guest memory.
        let block: UnsafeMutableRawBufferPointer
        /// The block's guest address.
        let base: UInt32
        /// Where the next variable-length part goes (an offset into the block).
        var cursor = 0

        /// Takes `count` bytes at the cursor; their offset.
        mutating func reserve(_ count: Int) -> Int {
            defer { cursor += count }
            return cursor
        }

        /// Stores a byte.
        func put8(_ value: UInt8, at offset: Int) {
            block[offset] = value
        }

        /// Stores a little-endian u16.
        func put16(_ value: UInt16, at offset: Int) {
            block.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
        }

        /// Stores a little-endian u32.
        func put32(_ value: UInt32, at offset: Int) {
            block.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
        }

        /// Copies `text` to the cursor and writes its (pointer, length) at `offset`.
        mutating func string(_ text: String, at offset: Int) {
            var text = text
            let copied: Bool? = text.withUTF8 { utf8 in
                guard !utf8.isEmpty else { return nil }
                UnsafeMutableRawBufferPointer(rebasing: block[cursor..<cursor + utf8.count])
                    .copyMemory(from: UnsafeRawBufferPointer(utf8))
                return true
            }
            let count = text.utf8.count
            put32(copied == nil ? base : base &+ UInt32(cursor), at: offset)
            put32(UInt32(count), at: offset + 4)
            cursor += count
        }

        /// Writes `option<list<u8>>` at `offset`, its bytes at the cursor.
        mutating func optionalBytes(_ body: [UInt8]?, at offset: Int) {
            guard let body else {
                put8(0, at: offset)
                return
            }
            put8(1, at: offset)
            let start = cursor
            body.withUnsafeBytes { raw in
                if !raw.isEmpty {
                    UnsafeMutableRawBufferPointer(rebasing: block[start..<start + raw.count]).copyMemory(from: raw)
                }
            }
            cursor += body.count
            put32(base &+ UInt32(start), at: offset + 4)
            put32(UInt32(body.count), at: offset + 8)
        }

        /// Writes `list<header>` at `offset`: the elements at `array`, their strings at the cursor.
        mutating func fields(_ fields: [PolicyField], array: Int, at offset: Int) {
            put32(base &+ UInt32(array), at: offset)
            put32(UInt32(fields.count), at: offset + 4)
            for (index, field) in fields.enumerated() {
                let element = array + index * PolicyABI.headerByteCount
                string(field.name, at: element)
                string(field.value, at: element + 8)
            }
        }
    }
}
