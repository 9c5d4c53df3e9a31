// SPDX-License-Identifier: Apache-2.0
import JesterCompression
import JesterCore
import JesterHTTP2
import NIOCore

/// A request body decoded on its way upstream (`compression = { decompress_requests = true }`): the upstream sees a
/// plain body without `Content-Encoding`, sent chunked since its length is only known at its end. Decoded bytes
/// are bounded by `max_decompressed_size` as they come out of the decoder (a few KiB of gzip can expand to
/// gigabytes: a zip bomb gets 413, never an out-of-memory worker); a body that is not valid for its coding gets
/// 400. Both reach the adapter as an upstream failure before the request is complete, so every client protocol
/// answers them the same way.
///
/// A wrapper around the pool's upstream, made where the attempt asks its pool (`UpstreamAttempt.acquire`), like
/// the cache's. Loop-confined.
final class DecodingUpstream: WrappingUpstream, @unchecked Sendable {
    let inner: any ExchangeUpstream
    private let decoder: any ContentDecoder
    private let limit: Int64
    private let allocator: ByteBufferAllocator
    private weak var delegate: (any UpstreamConnectionDelegate)?
    private var refused = false

    init(
        wrapping inner: any ExchangeUpstream, decoder: any ContentDecoder, limit: Int64, allocator: ByteBufferAllocator
    ) {
        self.inner = inner
        self.decoder = decoder
        self.limit = limit
        self.allocator = allocator
    }

    var responseFramingIsSynthesized: Bool { inner.responseFramingIsSynthesized }
    var isCacheAnswer: Bool { false }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        self.delegate = delegate
        inner.startExchange(
            delegate: delegate, requestHead: requestHead, chunkedBody: chunkedBody, isHeadRequest: isHeadRequest,
            expectsUpgrade: expectsUpgrade)
    }

    func sendBody(_ bytes: ByteBuffer) {
        guard !refused else { return }
        var decoded = allocator.buffer(capacity: bytes.readableBytes * 2)
        do {
            try decoder.decode(bytes, into: &decoded)
        } catch {
            return refuse(error)
        }
        if decoded.readableBytes > 0 { inner.sendBody(decoded) }
    }

    func endRequest(trailers: [HTTP2Field]) {
        guard !refused else { return }
        do {
            try decoder.finish()
        } catch {
            return refuse(error)
        }
        inner.endRequest(trailers: trailers)
    }

    /// The body cannot go on: the upstream exchange is abandoned and the adapter answers the client.
    private func refuse(_ error: CompressionError) {
        refused = true
        let failure: UpstreamFailure
        if error.code == .limitExceeded {
            failure = .requestBodyRefused(
                status: 413, reason: "decoded request body larger than max_decompressed_size (\(limit) bytes)")
        } else {
            failure = .requestBodyRefused(status: 400, reason: "request body is not valid \(error.coding.token)")
        }
        inner.close()
        delegate?.upstreamFailed(failure, responseStarted: false)
    }

    func writeTunnel(_ bytes: ByteBuffer) { inner.writeTunnel(bytes) }
    func flush() { if !refused { inner.flush() } }
    func read() { if !refused { inner.read() } }
    func startTunnel() { inner.startTunnel() }
    func close() { if !refused { inner.close() } }
    func release(reusable: Bool) { if !refused { inner.release(reusable: reusable) } }
    func finished(failed: Bool) { if !refused { inner.finished(failed: failed) } }
}

/// Wraps the pool's upstream for an attempt whose body is decoded.
final class DecodingWaiter: UpstreamWaiter, @unchecked Sendable {
    private weak var waiter: (any UpstreamWaiter)?
    private let coding: ContentCoding
    private let limit: Int64
    private let allocator: ByteBufferAllocator

    init(waiter: any UpstreamWaiter, coding: ContentCoding, limit: Int64, allocator: ByteBufferAllocator) {
        self.waiter = waiter
        self.coding = coding
        self.limit = limit
        self.allocator = allocator
    }

    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool) {
        guard let waiter else {
            if case .success(let upstream) = result { upstream.release(reusable: true) }
            return
        }
        guard case .success(let upstream) = result else { return waiter.upstreamAcquired(result, from: pool) }
        do {
            let decoder = try coding.makeDecoder(limit: limit)
            waiter.upstreamAcquired(
                .success(DecodingUpstream(wrapping: upstream, decoder: decoder, limit: limit, allocator: allocator)),
                from: pool)
        } catch {
            upstream.release(reusable: true)
            waiter.upstreamAcquired(.failure(.requestBodyRefused(status: 500, reason: "\(error)")), from: pool)
        }
    }
}

extension RequestExchange {
    /// Decides, once the pool is chosen, whether the route decodes this request's body
    /// (`RequestDecompression`): from the route's compression policy and the request's `Content-Encoding`.
    mutating func decideRequestDecoding() {
        requestDecoding = .forward
        guard let policy = route?.compression, policy.decompressRequests, hasBody, let headBytes else { return }
        // A policy's replacement is what goes upstream: there is nothing of the client's to decode.
        if policyState?.replacementBody != nil { return }
        let encoding: String? = headBytes.withUnsafeReadableBytes { bytes in
            let name = Array("content-encoding".utf8)
            let values = head.fields.filter { field in
                name.withUnsafeBytes { ASCII.equalsIgnoringCase(bytes, field.name, $0, 0..<$0.count) }
            }.map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0.value]), as: UTF8.self) }
            return values.isEmpty ? nil : values.joined(separator: ", ")
        }
        requestDecoding = RequestDecompression(policy: policy, contentEncoding: encoding)
    }

    /// The body that goes upstream is not the client's bytes as framed (decoded, or a pre-upstream policy's
    /// replacement): its length is known only at its end, so it goes chunked.
    var transformsRequestBody: Bool {
        decodesRequestBody || policyState?.replacementBody != nil
    }

    /// The body goes upstream decoded (and so chunked, without `Content-Encoding`).
    var decodesRequestBody: Bool {
        if case .decode = requestDecoding { return true }
        return false
    }
}
