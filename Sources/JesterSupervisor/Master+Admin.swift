// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// The admin API (`[admin]`, jester-admin(7)): its socket across start, reload, binary upgrade and stop, and the
/// answers to its requests, which come from the control socket's dispatcher wherever one exists.
extension Master {
    // MARK: The socket's life

    /// Serves `[admin]` if the configuration has it: bound here, or the descriptor a binary upgrade handed over
    /// (`adopted`, bound to `adoptedEndpoint`; closed if this configuration has no admin API).
    func startAdminServer(adopting adopted: Int32? = nil, endpoint adoptedEndpoint: AdminSettings.Endpoint? = nil)
        throws
    {
        adminServer.authorization = AdminAuthorization(tokens: adminTokens(for: configuration))
        // GET /metrics: the same exposition `jesterctl metrics` prints, negotiated from the scrape's Accept.
        adminServer.metricsExposition = { [unowned self] accept in self.metricsExposition(accept: accept) }
        guard let settings = configuration.admin else {
            if let adopted { close(adopted) }
            return
        }
        if let adopted, adoptedEndpoint == settings.endpoint || adoptedEndpoint == nil {
            adminServer.endpoint = settings.endpoint
            serveAdmin(adopted)
            return
        }
        if let adopted { close(adopted) }
        adminServer.endpoint = settings.endpoint
        serveAdmin(try bindAdmin(settings.endpoint))
        logger.info("admin API listening", metadata: [
            "address": "\(settings.endpoint)", "tokens": "\(settings.tokensFile ?? "none")",
        ])
    }

    /// A listening socket for `endpoint`, close-on-exec like the control socket's (an upgrade clears that).
    func bindAdmin(_ endpoint: AdminSettings.Endpoint) throws -> Int32 {
        switch endpoint {
        case .tcp(let address):
            // No SO_REUSEPORT: a second program on the admin port would get half the operators' requests.
            return try ListeningSocket.bind(host: address.host, port: address.port, backlog: 64, reusePort: false)
        case .unix(let path):
            try PidFile.makeDirectory(forFile: path)
            let fd = try ListeningSocket.bindUnix(path: path, group: access.controlGroupID)
            chmod(path, 0o660)
            return fd
        }
    }

    /// Accepts API connections on `fd` on the master's loop.
    func serveAdmin(_ fd: Int32) {
        adminServer.fd = fd
        ServerBootstrap(group: eventLoop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: AdminServer.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(AdminConnection(master: self))
                }
            }
            .withBoundSocket(fd)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    // A reload or stop that replaced this socket meanwhile has the last word.
                    if self.adminServer.fd == fd, !self.stopping {
                        self.adminServer.channel = channel
                    } else {
                        channel.close(promise: nil)
                    }
                case .failure(let error):
                    self.logger.error("cannot serve the admin API", metadata: ["error": "\(error)"])
                }
            }
    }

    /// Stops accepting API connections (open ones finish their exchange); with `unlinking`, a Unix socket's
    /// file goes too (not across an upgrade, where the new program keeps serving it).
    func closeAdminServer(unlinking: Bool) {
        if let channel = adminServer.channel {
            channel.close(promise: nil)
        } else if adminServer.fd >= 0 {
            close(adminServer.fd)
        }
        if unlinking, case .unix(let path) = adminServer.endpoint { unlink(path) }
        adminServer.channel = nil
        adminServer.fd = -1
        adminServer.endpoint = nil
    }

    /// The tokens of `configuration`'s admin API: nil when it has no tokens file (every client may act), none at
    /// all (every request refused) when the file cannot be read now although the loader read it.
    func adminTokens(for configuration: Configuration) -> AdminTokens? {
        guard let path = configuration.admin?.tokensFile else { return nil }
        let loaded = AdminTokens.load(path: path)
        if !loaded.problems.isEmpty {
            logger.error("cannot use the admin tokens file; refusing every admin API request until a reload",
                metadata: ["file": "\(path)", "errors": .array(loaded.problems.map { .string($0.description) })])
            return AdminTokens()
        }
        return loaded.tokens
    }

    /// For a reload: binds the new configuration's endpoint if it differs from the one served, so an address
    /// in use fails the reload and the old API keeps serving.
    func prepareAdmin(for newConfiguration: Configuration) throws {
        let endpoint = newConfiguration.admin?.endpoint
        guard endpoint != adminServer.endpoint else {
            adminServer.pending = nil
            return
        }
        adminServer.pending = AdminServer.PendingEndpoint(endpoint: endpoint, fd: try endpoint.map(bindAdmin) ?? -1)
    }

    /// The reload committed: new tokens, and the new endpoint if it changed.
    func commitAdmin() {
        adminServer.authorization = AdminAuthorization(tokens: adminTokens(for: configuration))
        guard let pending = adminServer.pending else { return }
        adminServer.pending = nil
        closeAdminServer(unlinking: true)
        guard let endpoint = pending.endpoint else {
            logger.info("admin API off")
            return
        }
        adminServer.endpoint = endpoint
        serveAdmin(pending.fd)
        logger.info("admin API listening", metadata: ["address": "\(endpoint)"])
    }

    /// The reload failed: what it bound for the API closes; the served endpoint stays.
    func rollBackAdmin() {
        guard let pending = adminServer.pending else { return }
        adminServer.pending = nil
        if pending.fd >= 0 { close(pending.fd) }
        if case .unix(let path) = pending.endpoint { unlink(path) }
    }
}

/// Answering admin API requests: route, authorize, then ask the dispatcher (or read the configuration, for what
/// the control protocol has no message for) and turn its answer into HTTP.
extension Master {
    /// Answers `request`; `respond` is called once, on the loop, possibly before this returns.
    func adminRequest(_ request: APIRequest, on channel: any Channel, respond: @escaping (APIResponse) -> Void) {
        let endpoint: AdminEndpoint
        switch AdminRoutes.resolve(method: request.method, path: request.path) {
        case .notFound:
            respond(.error(404, "no resource \(request.path) (jester-admin(7) lists them)"))
            return
        case .methodNotAllowed(let allowed):
            var response = APIResponse.error(405, "\(request.path) takes \(allowed) only")
            response.fields.append(("Allow", allowed))
            respond(response)
            return
        case .endpoint(let resolved):
            endpoint = resolved
        }
        if let refusal = adminRefusal(of: request, for: endpoint) {
            respond(refusal)
            return
        }
        let id = adminServer.nextRequestID
        adminServer.nextRequestID += 1
        if endpoint.requiredRole == .write {
            logger.notice("admin API action", metadata: [
                "method": "\(request.method)", "path": "\(request.path)", "request": .stringConvertible(id),
            ])
        }
        // Each request gets its own reply target, numbered: several API connections can have requests in the
        // dispatcher at once, each answer finding its way back by it.
        let ask = { (message: ControlMessage, settle: @escaping (ControlMessage) -> APIResponse) in
            self.controlRequest(message, from: AdminReplyCollector(id: id, channel: channel) { respond(settle($0)) })
        }
        switch endpoint {
        case .status:
            ask(.status) { answer in
                guard case .statusReport(let report) = answer else { return Self.unexpected(answer) }
                return .json(200, report)
            }
        case .config:
            respond(configAnswer(ifNoneMatch: request.field("if-none-match")))
        case .routes:
            respond(.json(200, raw: Array(ConfigGraph(configuration).json().utf8)))
        case .upstreams:
            let names = configuration.upstreams.map(\.name)
            ask(.upstreams) { answer in
                guard case .upstreamsReport(let reports) = answer else { return Self.unexpected(answer) }
                return .json(200, AdminBodies.Upstreams(reports, poolNames: names))
            }
        case .reload:
            // A reload the machine refuses (another in progress, or stopping) is a conflict; one that fails is the
            // file's or the new workers' fault.
            let busy = machine.transaction != nil || stopping
            ask(.reload) { answer in
                guard case .reloadResult(let result) = answer else { return Self.unexpected(answer) }
                return .json(result.success ? 200 : (busy ? 409 : 422), result)
            }
        case .setTargetAdmin(let pool, let target, let action):
            let pools = pool.map { [$0] } ?? configuration.upstreams
                .filter { $0.targets.contains { $0.description == target } }.map(\.name).sorted()
            ask(.setTargetAdmin(upstream: pool, target: target, state: action.state)) { answer in
                switch answer {
                case .done(true, let message):
                    return .json(200, AdminBodies.TargetAction(target: target, admin: action.state, pools: pools,
                        message: message))
                case .failure(let message, .notFound):
                    return .error(404, message)
                case .failure(let message, _):
                    return .error(400, message)
                default:
                    return Self.unexpected(answer)
                }
            }
        case .drain:
            // Answered first: the drain closes this socket, and the instance is gone once its workers are.
            var response = APIResponse.json(202, AdminBodies.Drain(stopping: true,
                message: "draining: no new connections; the instance stops once in-flight requests finish"))
            response.closesConnection = true
            respond(response)
            controlRequest(.drain(timeoutSeconds: nil), from: AdminReplyCollector(id: id, channel: channel) { _ in })
        case .metrics:
            guard let exposition = adminServer.metricsExposition else {
                respond(.error(404, "metrics are not served by this build"))
                return
            }
            guard let answer = exposition(request.field("accept")) else {
                respond(.error(404, Self.metricsOffReason))
                return
            }
            respond(APIResponse(status: 200, fields: [("Content-Type", answer.contentType)], body: answer.body))
        case .reloads:
            respond(.json(200, adminServer.reloads))
        case .recentAccess:
            respond(recentAccessAnswer())
        case .dashboard(let asset):
            respond(asset.response)
        case .cacheStatus:
            ask(.cacheStatus) { answer in
                guard case .cacheReport(let report) = answer else { return Self.cacheFailure(answer) }
                return .json(200, report)
            }
        case .cachePurge:
            // The body is read only now, after authorization: a client without a write token learns nothing
            // from how its body would have been judged.
            let target: CachePurgeTarget
            do {
                target = try AdminCachePurgeRequest.target(from: request.body)
            } catch {
                respond(.error(400, error.message))
                return
            }
            ask(.cachePurge(target)) { answer in
                guard case .cachePurged(let result) = answer else { return Self.cacheFailure(answer) }
                return .json(200, result)
            }
        }
    }

    /// The dispatcher's refusal of a cache request: no route caches (`notFound`, with jesterctl's message) is a
    /// 404, since the resource exists only while the configuration has a cache.
    static func cacheFailure(_ answer: ControlMessage) -> APIResponse {
        if case .failure(let message, .notFound) = answer { return .error(404, message) }
        return unexpected(answer)
    }

    /// Why `request` may not reach `endpoint` (nil: it may): a cross-site action, then missing or weak credentials.
    func adminRefusal(of request: APIRequest, for endpoint: AdminEndpoint) -> APIResponse? {
        // The dashboard's files hold no data: anyone who reaches the socket may load them.
        guard let role = endpoint.requiredRole else { return nil }
        if role == .write, case .refuse(let reason) = CrossSiteCheck.decide(
            origin: request.field("origin"), fetchSite: request.field("sec-fetch-site"), host: request.field("host"))
        {
            return .error(403, reason)
        }
        switch adminServer.authorization.decide(authorization: request.field("authorization"), required: role) {
        case .allowed:
            return nil
        case .unauthorized(let reason):
            var response = APIResponse.error(401, reason)
            response.fields.append(("WWW-Authenticate", "Bearer realm=\"jester-admin\""))
            return response
        case .forbidden(let reason):
            // RFC 6750 §3.1: a token without the scope asked for.
            var response = APIResponse.error(403, reason)
            response.fields.append(("WWW-Authenticate", "Bearer realm=\"jester-admin\", error=\"insufficient_scope\""))
            return response
        }
    }

    /// `GET /api/v1/config`, or 304 when the client's copy (`If-None-Match`) is the serving one (RFC 9110 §13.1.2).
    func configAnswer(ifNoneMatch: String?) -> APIResponse {
        let tag = "\"\(configuration.hash)\""
        let presented = ifNoneMatch?.split(separator: ",").map {
            // A weak tag matches too: If-None-Match compares weakly.
            $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "W/", with: "")
        }
        var response: APIResponse
        if let presented, presented.contains(tag) || presented.contains("*") {
            response = APIResponse(status: 304)
        } else {
            response = .json(200, AdminBodies.Config(configuration))
        }
        response.fields.append(("ETag", tag))
        return response
    }

    /// A dispatcher answer of the wrong kind: a bug, said as one.
    static func unexpected(_ answer: ControlMessage) -> APIResponse {
        if case .failure(let message, _) = answer { return .error(500, message) }
        return .error(500, "unexpected answer from the dispatcher: \(answer)")
    }
}
