// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterAuth
import JesterConfig

/// `kind = "jwt"`: a bearer token (RFC 6750) checked against the configured algorithms, keys, issuers, audiences
/// and times (`JWTValidator` does the checking, with OpenSSL's signatures), then chosen claims forwarded to the
/// upstream as request fields and kept for later filters (a rate limit per `claim:sub`).
///
/// No token, or a token that fails any check: 401 with `WWW-Authenticate: Bearer error="invalid_token", ...`
/// (RFC 6750 §3). A valid token without a required claim: 403 (`insufficient_scope`): the client is known and
/// not allowed, and another token, not a retry, is what helps.
final class JWTFilter: RequestFilter {
    let name: String
    /// The `jwks_url` whose sets the master sends this filter, if its keys come from one.
    let keySetURL: String?
    /// Replaced whole when the master sends a new key set (`replaceKeySet`); a value, so a request that is being
    /// checked keeps the keys it started with.
    private var validator: JWTValidator
    /// The lowercase name of the field the token is in.
    private let header: [UInt8]
    /// Whether the field is `Authorization` (`Bearer <token>`) rather than a field that holds the token alone.
    private let isAuthorization: Bool
    private let forwardClaims: [ClaimHeader]
    private let requireClaims: [ClaimRequirement]
    /// Tokens verified recently (see `VerifiedTokenCache`); emptied with every new key set.
    private var recentlyVerified = VerifiedTokenCache()
    /// How many tokens are cached (tests).
    var cachedTokens: Int { recentlyVerified.count }

    /// (The loader has checked the key set and the secret; a filter that cannot be made here could not have been
    /// loaded.)
    init?(name: String, settings: JWTSettings) {
        var keySet = JSONWebKeySet(keys: [])
        if let jwks = settings.jwks {
            guard let parsed = try? JSONWebKeySet(json: Array(jwks)) else { return nil }
            keySet = parsed
        }
        self.name = name
        keySetURL = settings.jwksURL
        validator = JWTValidator(
            allowedAlgorithms: Set(settings.algorithms.compactMap { JesterAuth.JWTAlgorithm(rawValue: $0.rawValue) }),
            keySet: keySet, secret: settings.secret.map { Array($0) }, issuers: Set(settings.issuers),
            audiences: Set(settings.audiences), leeway: Double(settings.leeway.components.seconds),
            maximumTokenBytes: settings.maxTokenSize)
        header = Array(settings.header.lowercased().utf8)
        isAuthorization = settings.header.lowercased() == "authorization"
        forwardClaims = settings.forwardClaims
        requireClaims = settings.requireClaims
    }

    /// Verifies tokens with the JWK Set `json` (fetched by the master from `keySetURL`) from now on. A set that
    /// cannot be read leaves the current keys in place; the error says why.
    func replaceKeySet(json: [UInt8]) throws(JSONWebKeySet.LoadError) -> JSONWebKeySet {
        let keySet = try JSONWebKeySet(json: json)
        validator.keySet = keySet
        // A key withdrawn from the set stops its tokens now, cached or not.
        recentlyVerified.removeAll()
        return keySet
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        .decided(decide(request.field(header), context: context, now: Date().timeIntervalSince1970))
    }

    /// The verdict for the value of the token's field (nil: absent) at `now` (seconds since the epoch).
    func decide(_ fieldValue: String?, context: FilterContext, now: Double) -> FilterVerdict {
        guard let fieldValue else {
            return refusal(401, JWTRefusal.missingTokenChallenge(), "no token")
        }
        let token: Substring
        if isAuthorization {
            guard let bearer = JSONWebToken.bearerToken(fromAuthorization: fieldValue[...]) else {
                return refusal(401, JWTRefusal.missingTokenChallenge(), "no bearer token")
            }
            token = bearer
        } else {
            token = fieldValue[...]
        }
        let verified: VerifiedToken
        if let cached = recentlyVerified.lookUp(token, now: now, leeway: validator.leeway) {
            verified = cached
        } else {
            switch validator.validate(token: token, now: now) {
            case .failure(let refusal):
                return self.refusal(401, refusal.challenge(), refusal.reason)
            case .success(let checked):
                verified = checked
                recentlyVerified.insert(token, checked)
            }
        }
        let claims = verified.claims
        for requirement in requireClaims where !Self.satisfies(claims, requirement) {
            return refusal(
                403, "Bearer error=\"insufficient_scope\"",
                "claim \(requirement.claim) is not \(requirement.value)")
        }
        for (claim, _) in claims.members {
            if let value = claims.headerValue(claim) { context.claims[claim] = value }
        }
        if let subject = claims.subject { context.user = subject }
        for forward in forwardClaims {
            // A claim the token lacks is not forwarded, and the client's own field of that name is still dropped
            // (an empty value: see `FilterContext.upstreamFields`).
            context.setUpstreamField(forward.header, claims.headerValue(forward.claim) ?? "")
        }
        return .proceed
    }

    /// A required claim holds when it equals the value, or is a list (or a space-separated string, like OAuth's
    /// `scope`) that contains it.
    static func satisfies(_ claims: JWTClaims, _ requirement: ClaimRequirement) -> Bool {
        if let list = claims.strings(requirement.claim), list.contains(requirement.value) { return true }
        guard let text = claims.string(requirement.claim) else {
            return claims.headerValue(requirement.claim) == requirement.value
        }
        return text == requirement.value || text.split(separator: " ").contains { $0 == requirement.value }
    }

    private func refusal(_ status: Int, _ challenge: String, _ why: String) -> FilterVerdict {
        .respond(
            .error(status, fields: [LocalResponse.Field("WWW-Authenticate", challenge)]),
            reason: "jwt \(name): \(why)")
    }
}
