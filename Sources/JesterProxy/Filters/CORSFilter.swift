// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import NIOCore

/// `kind = "cors"`: cross-origin resource sharing for the routes it is attached to. Preflights are answered here
/// (204, or 403 when refused) and never reach an upstream; every other request goes on, and its response, whoever
/// answers it, gets the `Access-Control-*` and `Vary` fields the rules give (`FilterContext.responseFields`).
///
/// The decisions are JesterCore's `CORSPolicy` (pure, tested by table); this class only reads the four request
/// fields they depend on and carries the decision out. A preflight carries no credentials (Fetch §3.2.2), so a
/// cors filter belongs before any authentication in the chain (the loader warns otherwise).
final class CORSFilter: RequestFilter {
    let name: String
    /// The rules, compiled once per configuration and worker.
    let policy: CORSPolicy
    /// The fields of a request without `Origin` (the same for all of them), computed once.
    private let withoutOrigin: [LocalResponse.Field]

    /// (The loader checked every entry; one that does not parse here could not have been loaded, and is left
    /// out, which can only allow less.)
    init(name: String, settings: CORSSettings) {
        self.name = name
        let policy = CORSPolicy(settings)
        self.policy = policy
        if case .proceed(let fields) = policy.decide(CORSPolicy.Request(method: "GET")) {
            withoutOrigin = fields.map { LocalResponse.Field($0.name, $0.value) }
        } else {
            withoutOrigin = []
        }
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        let fields = request.corsFields()
        guard fields.origin != nil else {
            context.responseFields += withoutOrigin
            return .decided(.proceed)
        }
        let method = request.bytes.withUnsafeReadableBytes {
            String(decoding: UnsafeRawBufferPointer(rebasing: $0[request.head.method]), as: UTF8.self)
        }
        return .decided(verdict(for: CORSPolicy.Request(
            method: method, origin: fields.origin, requestMethod: fields.requestMethod,
            requestHeaders: fields.requestHeaders, requestsPrivateNetwork: fields.requestPrivateNetwork == "true"),
            context: context))
    }

    /// Carries out the policy's decision for `request`.
    func verdict(for request: CORSPolicy.Request, context: FilterContext) -> FilterVerdict {
        switch policy.decide(request) {
        case .proceed(let fields):
            context.responseFields += fields.map { LocalResponse.Field($0.name, $0.value) }
            return .proceed
        case .answerPreflight(let fields):
            // (Not in responseFields: the answer carries them, and every response gets responseFields too.)
            let response = LocalResponse(status: 204, fields: fields.map { LocalResponse.Field($0.name, $0.value) })
            return .respond(response, reason: "")
        case .refusePreflight(let reason, let fields):
            let response = LocalResponse.error(403, fields: fields.map { LocalResponse.Field($0.name, $0.value) })
            return .respond(response, reason: "cors \(name): preflight refused: \(reason)")
        }
    }
}

extension CORSPolicy {
    /// The policy of a cors filter's settings (checked by the loader; an entry that does not parse is left out).
    init(_ settings: CORSSettings) {
        func names(_ list: CORSList) -> Names {
            switch list {
            case .any: return .any
            case .listed(let names): return .listed(names)
            }
        }
        let origins: Origins
        switch settings.allowOrigins {
        case .any: origins = .any
        case .listed(let entries): origins = .listed(entries.compactMap { try? CORSOriginPattern(parsing: $0) })
        }
        self.init(
            origins: origins, methods: names(settings.allowMethods), headers: names(settings.allowHeaders),
            exposedHeaders: names(settings.exposeHeaders), allowsCredentials: settings.allowCredentials,
            maxAgeSeconds: settings.maxAge.map { Int($0.components.seconds) },
            allowsPrivateNetwork: settings.allowPrivateNetwork)
    }
}

/// The request fields a CORS decision reads; several fields of one name joined with ", " (RFC 9110 §5.3).
struct CORSRequestFields: Equatable {
    var origin: String?
    var requestMethod: String?
    var requestHeaders: String?
    var requestPrivateNetwork: String?
}

extension FilterInput {
    /// `Origin` and the `Access-Control-Request-*` fields, in one pass over the head.
    func corsFields() -> CORSRequestFields {
        var found = CORSRequestFields()
        bytes.withUnsafeReadableBytes { raw in
            for field in head.fields {
                let slot: WritableKeyPath<CORSRequestFields, String?>
                if ASCII.equalsIgnoringCase(raw, field.name, "origin") {
                    slot = \.origin
                } else if ASCII.equalsIgnoringCase(raw, field.name, "access-control-request-method") {
                    slot = \.requestMethod
                } else if ASCII.equalsIgnoringCase(raw, field.name, "access-control-request-headers") {
                    slot = \.requestHeaders
                } else if ASCII.equalsIgnoringCase(raw, field.name, "access-control-request-private-network") {
                    slot = \.requestPrivateNetwork
                } else {
                    continue
                }
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self)
                found[keyPath: slot] = found[keyPath: slot].map { $0 + ", " + value } ?? value
            }
        }
        return found
    }
}
