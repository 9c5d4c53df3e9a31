// SPDX-License-Identifier: Apache-2.0
import JesterAuth
import JesterConfig
import NIOCore
import NIOPosix

/// `kind = "basic_auth"`: users from an htpasswd file (bcrypt, SHA-256-crypt or SHA-512-crypt, which the master
/// read and reloads with the configuration). No credentials or wrong ones: 401 with a `WWW-Authenticate: Basic`
/// challenge, and the request never reaches an upstream.
///
/// A password hash is slow on purpose (bcrypt: tens to hundreds of milliseconds), far too slow for the event loop,
/// where it would stall every other connection of the worker: a check that is not in `Htpasswd`'s cache of
/// recent successes runs on a thread pool, and the request waits for it like it waits for a Redis answer. A
/// keep-alive client sending the same credentials again is answered from the cache, on the loop.
final class BasicAuthFilter: RequestFilter {
    let name: String
    private let realm: String
    private let users: Htpasswd
    private let eventLoop: any EventLoop
    /// The `WWW-Authenticate` value, made once.
    private let challenge: String

    /// (The loader has parsed the file already; one that fails here could not have been loaded.)
    init?(name: String, settings: BasicAuthSettings, eventLoop: any EventLoop) {
        guard let users = try? Htpasswd(parsing: settings.htpasswd) else { return nil }
        self.name = name
        realm = settings.realm
        self.users = users
        self.eventLoop = eventLoop
        challenge = BasicCredentials.challenge(realm: settings.realm)
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        guard let header = request.field(Array("authorization".utf8)) else {
            return .decided(refusal("no credentials"))
        }
        guard let credentials = BasicCredentials.parse(headerValue: header[...]) else {
            return .decided(refusal("malformed Basic credentials"))
        }
        if users.isCached(user: credentials.user, password: credentials.password) {
            context.user = credentials.user
            return .decided(.proceed)
        }
        let users = self.users
        let checked = NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) { users.verify(credentials) }
        // (Completed on this loop: `runIfActive` hands the result back to it.)
        checked.assumeIsolated().whenComplete { [self] result in
            if case .success(true) = result {
                context.user = credentials.user
                context.resume(.proceed)
            } else {
                context.resume(refusal("wrong user or password for \(credentials.user.prefix(64))"))
            }
        }
        return .suspended
    }

    private func refusal(_ why: String) -> FilterVerdict {
        .respond(
            .error(401, fields: [LocalResponse.Field("WWW-Authenticate", challenge)]),
            reason: "basic_auth \(name): \(why)")
    }
}
