// SPDX-License-Identifier: Apache-2.0

/// Reads the `action` a stage returned out of guest memory and checks every part of it before the host uses
/// any: pointers and lengths inside memory, the total size bounded, strings valid UTF-8, field names tokens and
/// values free of CR, LF, NUL and other controls, statuses 200-599, and each mutation allowed at the stage.
/// Anything else is a `malformedResult` failure (fail closed). Pure: it reads a buffer, so hostile layouts are
/// tested without a module.
struct ActionDecoder {
    /// The most mutations one action may carry.
    static let maxMutations = 256
    /// The most fields one response may carry.
    static let maxFields = 256

    /// The guest's memory as the call left it.
    let memory: UnsafeRawBufferPointer
    /// The stage that returned the action (which mutations it allows).
    let stage: PolicyStage
    /// The policy's limits (body and result bytes).
    let limits: PolicyLimits
    /// Bytes the action points at so far, against `limits.resultBytes`.
    private var budget: Int

    /// A decoder over `memory`.
    init(memory: UnsafeRawBufferPointer, stage: PolicyStage, limits: PolicyLimits) {
        self.memory = memory
        self.stage = stage
        self.limits = limits
        budget = limits.resultBytes
    }

    /// The outcome of the action at guest address `pointer`.
    static func decode(
        _ pointer: UInt32,
        memory: UnsafeRawBufferPointer,
        stage: PolicyStage,
        limits: PolicyLimits
    ) -> PolicyOutcome {
        var decoder = ActionDecoder(memory: memory, stage: stage, limits: limits)
        do {
            return try decoder.action(at: pointer)
        } catch {
            return .failed(error)
        }
    }

    /// The outcome of the action at `pointer`, or the first problem found in it.
    mutating func action(at pointer: UInt32) throws(PolicyFailure) -> PolicyOutcome {
        let base = try record(pointer, byteCount: PolicyABI.Action.byteCount, what: "action")
        switch u8(base) {
        case PolicyABI.Action.proceed:
            let (array, count) = try list(at: base + 4, elementSize: PolicyABI.mutationByteCount, what: "mutations")
            guard count <= Self.maxMutations else {
                throw malformed("\(count) mutations (at most \(Self.maxMutations))")
            }
            var request = RequestMutations()
            var response = ResponseMutations()
            for index in 0..<count {
                try mutation(at: array + index * PolicyABI.mutationByteCount, request: &request, response: &response)
            }
            return stage.isRequestStage ? .proceed(request) : .proceedResponse(response)
        case PolicyABI.Action.respond:
            let status = Int(u16(base + PolicyABI.Response.status))
            guard (200...599).contains(status) else { throw malformed("respond with status \(status) (200-599)") }
            let (array, count) = try list(at: base + PolicyABI.Response.headers, elementSize: 16, what: "fields")
            guard count <= Self.maxFields else {
                throw malformed("\(count) response fields (at most \(Self.maxFields))")
            }
            var fields: [PolicyField] = []
            fields.reserveCapacity(count)
            for index in 0..<count { fields.append(try field(at: array + index * PolicyABI.headerByteCount)) }
            let body = try bytes(at: base + PolicyABI.Response.body, what: "body")
            return .respond(PolicyResponse(status: status, fields: fields, body: body))
        case PolicyABI.Action.deny:
            return .deny(reason: try string(at: base + 4, what: "deny reason", limit: 1024))
        case let other:
            throw malformed("unknown action case \(other)")
        }
    }

    /// Applies the mutation at `offset` (into memory) to the stage's mutations.
    private mutating func mutation(
        at offset: Int,
        request: inout RequestMutations,
        response: inout ResponseMutations
    ) throws(PolicyFailure) {
        let payload = offset + 4
        let kind = u8(offset)
        switch kind {
        case 0, 1:
            let field = try field(at: payload)
            let edit: FieldEdit = kind == 0 ? .set(field) : .add(field)
            if stage.isRequestStage { request.fields.append(edit) } else { response.fields.append(edit) }
        case 2:
            let name = try string(at: payload, what: "field name", limit: 256)
            guard HTTPSyntax.isToken(name) else { throw malformed("remove-header: field name is not a token") }
            let edit = FieldEdit.remove(name.lowercased())
            if stage.isRequestStage { request.fields.append(edit) } else { response.fields.append(edit) }
        case 3:
            try allowed("set-method", at: [.preRoute, .preUpstream])
            let method = try string(at: payload, what: "method", limit: 64)
            guard HTTPSyntax.isToken(method) else { throw malformed("set-method: not a token") }
            request.method = method
        case 4:
            try allowed("set-path", at: [.preRoute, .preUpstream])
            let path = try string(at: payload, what: "path", limit: 8192)
            guard HTTPSyntax.isPath(path) else { throw malformed("set-path: not an absolute path without query") }
            request.path = path
        case 5:
            try allowed("set-query", at: [.preRoute, .preUpstream])
            let query = try string(at: payload, what: "query", limit: 8192)
            guard HTTPSyntax.isQuery(query) else { throw malformed("set-query: a space, control or '#' in the query") }
            request.query = query
        case 6, 7, 8:
            let name = ["set-route", "add-route-tag", "set-upstream"][Int(kind) - 6]
            try allowed(name, at: [.preRoute, .preUpstream])
            let value = try string(at: payload, what: name, limit: 256)
            guard HTTPSyntax.isToken(value) else { throw malformed("\(name): not a name of letters, digits, -_.") }
            switch kind {
            case 6: request.routeHint.route = value
            case 7: request.routeHint.tags.append(value)
            default: request.routeHint.upstream = value
            }
        case 9:
            try allowed("set-upstream-timeout", at: [.preUpstream])
            request.upstreamTimeoutMilliseconds = u32(payload)
        case 10:
            try allowed("set-upstream-retries", at: [.preUpstream])
            request.upstreamRetries = u32(payload)
        case 11:
            try allowed("set-body", at: [.preUpstream, .postResponse])
            let body = try bytes(at: payload, what: "body")
            if stage.isRequestStage { request.body = body } else { response.body = body }
        default:
            throw malformed("unknown mutation case \(kind)")
        }
    }

    private func allowed(_ name: String, at stages: [PolicyStage]) throws(PolicyFailure) {
        guard stages.contains(stage) else { throw malformed("\(name) is not allowed at \(stage)") }
    }

    private mutating func field(at offset: Int) throws(PolicyFailure) -> PolicyField {
        let name = try string(at: offset, what: "field name", limit: 256)
        guard HTTPSyntax.isToken(name) else { throw malformed("field name is not a token") }
        let value = try string(at: offset + 8, what: "field value", limit: 16384)
        guard HTTPSyntax.isFieldValue(value) else {
            throw malformed("value of field \(name) holds CR, LF, NUL or another control character")
        }
        return PolicyField(name.lowercased(), value)
    }

    /// Checks that `byteCount` bytes at guest address `pointer` lie in memory and are 4-aligned.
    private func record(_ pointer: UInt32, byteCount: Int, what: String) throws(PolicyFailure) -> Int {
        let start = Int(pointer)
        guard start % 4 == 0 else { throw malformed("\(what) at \(pointer) is not 4-aligned") }
        guard start + byteCount <= memory.count else { throw malformed("\(what) at \(pointer) is outside memory") }
        return start
    }

    /// A (pointer, length) list of `elementSize`-byte elements, checked against memory and the budget.
    private mutating func list(
        at offset: Int,
        elementSize: Int,
        what: String
    ) throws(PolicyFailure) -> (start: Int, count: Int) {
        let pointer = u32(offset)
        let count = Int(u32(offset + 4))
        guard count > 0 else { return (0, 0) }
        let byteCount = count.multipliedReportingOverflow(by: elementSize)
        guard !byteCount.overflow, byteCount.partialValue <= budget else { throw malformed("\(what): too large") }
        budget -= byteCount.partialValue
        return (try record(pointer, byteCount: byteCount.partialValue, what: what), count)
    }

    /// The bytes of a (pointer, length) pair at `offset`, checked against memory and the budget.
    private mutating func span(at offset: Int, what: String, limit: Int) throws(PolicyFailure) -> Range<Int> {
        let start = Int(u32(offset))
        let count = Int(u32(offset + 4))
        guard count <= limit, count <= budget else { throw malformed("\(what): \(count) bytes (at most \(limit))") }
        guard start + count <= memory.count else { throw malformed("\(what) at \(start) is outside memory") }
        budget -= count
        return start..<start + count
    }

    private mutating func string(at offset: Int, what: String, limit: Int) throws(PolicyFailure) -> String {
        let range = try span(at: offset, what: what, limit: limit)
        guard let text = String(validating: UnsafeRawBufferPointer(rebasing: memory[range]), as: UTF8.self) else {
            throw malformed("\(what) is not valid UTF-8")
        }
        return text
    }

    private mutating func bytes(at offset: Int, what: String) throws(PolicyFailure) -> [UInt8] {
        Array(UnsafeRawBufferPointer(rebasing: memory[try span(at: offset, what: what, limit: limits.bodyBytes)]))
    }

    // Every offset below was checked to lie inside a record in memory before it is read.
    private func u8(_ offset: Int) -> UInt8 { memory[offset] }
    private func u16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: memory.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    private func u32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    private func malformed(_ message: String) -> PolicyFailure {
        PolicyFailure(.malformedResult, message)
    }
}

/// The HTTP syntax a policy's strings must follow before they may reach the wire (RFC 9110 §5.1, §5.5).
enum HTTPSyntax {
    /// A token: one or more tchar.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy(isTokenCharacter)
    }

    /// A tchar (RFC 9110 §5.6.2).
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A field value: no control character but HTAB (so never CR, LF or NUL), no DEL; obs-text passes.
    static func isFieldValue(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// An origin-form path: "/" and then no space, control, "?" or "#".
    static func isPath(_ text: String) -> Bool {
        text.utf8.first == UInt8(ascii: "/")
            && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") }
    }

    /// A query (without "?"): no space, control or "#".
    static func isQuery(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }
}
