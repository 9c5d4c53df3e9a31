// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import JesterTLS
import NIOCore
import NIOPosix

/// `kind = "hmac_signature"`: a webhook's signature over the whole request body (GitHub's
/// `X-Hub-Signature-256: sha256=<hex>`, Shopify's `X-Shopify-Hmac-Sha256: <base64>`), checked against the HMAC
/// of the body under the shared secret the master read. Anything short of an exact match is 403, and neither the
/// request nor its body reaches an upstream.
///
/// The one filter that reads the body: it declares `bodyLimit` (`max_body`), so the exchange holds the body back
/// and hands it over whole; what is signed is exactly what goes upstream. Tags are compared with
/// `ConstantTime.equals`: `==` would stop at the first wrong byte, and that timing finds a valid signature one
/// byte at a time. Refusal reasons (the access log's `error`) say what was wrong, never the expected digest.
///
/// A small body is signed on the event loop (microseconds); a large one (up to 16 MiB, tens of milliseconds)
/// on the thread pool, like a password hash, so the worker's other connections do not wait for it.
final class HMACSignatureFilter: RequestFilter {
    let name: String
    /// `max_body`: the exchange holds back at most this much body for the filter, and answers 413 beyond it.
    let bodyLimit: Int?
    /// The lowercase name of the signature field.
    private let header: [UInt8]
    /// The field name as configured, for refusal reasons.
    private let headerName: String
    private let digest: MessageDigest
    private let encoding: SignatureEncoding
    private let prefix: String
    private let secret: [UInt8]
    private let eventLoop: any EventLoop
    /// Where large bodies are signed (the process's shared pool; a test passes one that is not running).
    private let threadPool: NIOThreadPool

    /// Bodies at least this long are signed on the thread pool: SHA-256 runs at roughly 0.5-2 GB/s, so below it
    /// the loop is held for well under a tenth of a millisecond, less than the hop to a thread would cost.
    static let offLoopThreshold = 64 * 1024

    init(
        name: String, settings: HMACSignatureSettings, eventLoop: any EventLoop,
        threadPool: NIOThreadPool = .singleton
    ) {
        self.name = name
        bodyLimit = settings.maxBody
        header = Array(settings.header.lowercased().utf8)
        headerName = settings.header
        switch settings.algorithm {
        case .sha256: digest = .sha256
        case .sha384: digest = .sha384
        case .sha512: digest = .sha512
        }
        encoding = settings.encoding
        prefix = settings.prefix
        secret = Array(settings.secret)
        self.eventLoop = eventLoop
        self.threadPool = threadPool
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        let claimed: [UInt8]
        switch signature(in: request.fieldValues(header)) {
        case .refused(let refusal): return .decided(refusal)
        case .signature(let bytes): claimed = bytes
        }
        let body = request.body ?? []
        if body.count < Self.offLoopThreshold {
            return .decided(verdict(claimed: claimed, body: body))
        }
        let (digest, secret) = (self.digest, self.secret)
        let computed = threadPool.runIfActive(eventLoop: eventLoop) {
            digest.authenticationCode(key: secret, message: body)
        }
        // (Completed on this loop: `runIfActive` hands the result back to it.)
        computed.assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let expected): context.resume(compare(claimed: claimed, expected: expected))
            // The pool is not running (the worker is shutting down): fail closed, never let it through unchecked.
            case .failure: context.resume(.fail(status: 503, reason: "hmac_signature \(name): not checked"))
            }
        }
        return .suspended
    }

    /// The verdict for the signature bytes the client sent and the body it sent, computed now.
    func verdict(claimed: [UInt8], body: [UInt8]) -> FilterVerdict {
        compare(claimed: claimed, expected: digest.authenticationCode(key: secret, message: body))
    }

    /// The signature in the values of the signature fields (all of them, in order): exactly one field, the
    /// prefix, then the digest in the configured encoding; else the refusal saying which of those was wrong.
    func signature(in values: [String]) -> SignatureField {
        guard let value = values.first else { return .refused(refusal("no \(headerName) field")) }
        // Two signatures: which one the sender meant (and which one a proxy behind Jester would read) is unknown.
        guard values.count == 1 else { return .refused(refusal("\(values.count) \(headerName) fields")) }
        guard value.hasPrefix(prefix) else {
            return .refused(refusal("\(headerName) does not start with \"\(prefix)\""))
        }
        let encoded = Array(value.utf8.dropFirst(prefix.utf8.count))
        let decoded: [UInt8]?
        switch encoding {
        case .hex: decoded = Self.hexDecoded(encoded)
        case .base64: decoded = Data(base64Encoded: Data(encoded)).map(Array.init)
        }
        guard let decoded, !decoded.isEmpty else {
            return .refused(refusal("\(headerName) is not \(encoding.rawValue)"))
        }
        return .signature(decoded)
    }

    /// `.proceed` when the tags are equal, compared in constant time.
    private func compare(claimed: [UInt8], expected: [UInt8]) -> FilterVerdict {
        if ConstantTime.equals(claimed, expected) { return .proceed }
        // Lengths are not secret (the algorithm is in the configuration); saying so tells a sender's bug (the
        // wrong hash) from a wrong secret or a changed body.
        if claimed.count != expected.count {
            return refusal("\(headerName) has \(claimed.count) bytes, \(digest) makes \(expected.count)")
        }
        return refusal("signature mismatch")
    }

    /// A 403 that names this filter and why.
    private func refusal(_ why: String) -> FilterVerdict {
        .fail(status: 403, reason: "hmac_signature \(name): \(why)")
    }

    /// An even number of hex digits, either case, as bytes; nil for anything else.
    static func hexDecoded(_ digits: [UInt8]) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = ASCII.hexValue(digits[index]), let low = ASCII.hexValue(digits[index + 1]) else {
                return nil
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    /// What the signature fields of a request hold: the signature's bytes, or why the request is refused.
    enum SignatureField {
        /// The digest the client sent, decoded.
        case signature([UInt8])
        /// The field is missing, repeated or malformed: this 403.
        case refused(FilterVerdict)
    }
}

extension FilterInput {
    /// The values of every field called `name` (lowercase), in order, without surrounding blanks: a filter that
    /// must refuse an ambiguous request (two signatures) needs all of them, not the first.
    fileprivate func fieldValues(_ name: [UInt8]) -> [String] {
        bytes.withUnsafeReadableBytes { raw in
            name.withUnsafeBytes { name in
                head.fields.filter { ASCII.equalsIgnoringCase(raw, $0.name, name, 0..<name.count) }.map {
                    String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.value]), as: UTF8.self)
                }
            }
        }
    }
}
