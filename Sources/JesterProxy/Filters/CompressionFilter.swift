// SPDX-License-Identifier: Apache-2.0
import JesterCompression
import JesterCore
import NIOCore

/// A route's `compression = { ... }` as a response filter: the rules (`CompressionDecision`: RFC 9110's
/// negotiation, what is never coded, `Vary`, the weakened `ETag`) decide once per response, and a coded
/// response's body goes through a streaming encoder (`EncodingTransform`), in bounded memory, whatever protocol
/// the client speaks.
final class CompressionFilter: ResponseFilter {
    let name = "compression"
    private let policy: CompressionPolicy

    init(policy: CompressionPolicy) {
        self.policy = policy
    }

    func responseHead(
        _ response: HTTPHead, _ bytes: UnsafeRawBufferPointer, request: HTTPHead, _ requestBytes: UnsafeRawBufferPointer,
        edit: inout ResponseEdit
    ) {
        let decision = CompressionDecision(
            policy: policy, isHEAD: RequestMethod.isHead(requestBytes, request.method),
            accept: AcceptEncoding(head: request, bytes: requestBytes),
            response: CompressionDecision.Response(head: response, bytes: bytes))
        if decision.vary == nil, decision.contentEncoding == nil, decision.etag == .keep { return }
        for index in response.fields.indices where decision.drops(response.fields[index], in: bytes) {
            edit.droppedFields.append(index)
        }
        for field in decision.addedFields { edit.addedFields.append(LocalResponse.Field(field.name, field.value)) }
        if decision.removesLengthAndRanges { edit.removesLength = true }
        if case .encode(let coding, let level) = decision.outcome,
            let encoder = try? coding.makeEncoder(level: level)
        {
            edit.body = EncodingTransform(encoder)
        }
    }
}

/// One response's body through an encoder: each piece coded as it comes (the library may hold it back to fill a
/// block), `flush` when the upstream pauses so a streamed response (server-sent events, a slow page) reaches
/// the client as it comes, and the coding's end at `finish`.
///
/// An encoder error cannot come from the data (any bytes can be coded); it would be the library failing
/// (memory). The transform then stops producing, and the client gets a response that does not decode, which it
/// reports, rather than a worker that crashes.
final class EncodingTransform: ResponseBodyTransform {
    private let encoder: any ContentEncoder
    private var failed = false
    /// The coding's end was written: nothing more is taken.
    private var ended = false
    /// Whether bytes went in since the last flush (a flush with nothing new would add bytes for nothing).
    private var pending = false

    init(_ encoder: any ContentEncoder) {
        self.encoder = encoder
    }

    func transform(_ piece: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard !failed, !ended else { return nil }
        var out = allocator.buffer(capacity: 0)
        do {
            try encoder.encode(piece, into: &out)
        } catch {
            failed = true
            return nil
        }
        pending = true
        return out.readableBytes > 0 ? out : nil
    }

    func flush(allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard !failed, !ended, pending else { return nil }
        pending = false
        var out = allocator.buffer(capacity: 0)
        do {
            try encoder.flush(into: &out)
        } catch {
            failed = true
            return nil
        }
        return out.readableBytes > 0 ? out : nil
    }

    func finish(allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard !failed, !ended else { return nil }
        ended = true
        var out = allocator.buffer(capacity: 0)
        do {
            try encoder.finish(into: &out)
        } catch {
            failed = true
            return nil
        }
        return out.readableBytes > 0 ? out : nil
    }
}
