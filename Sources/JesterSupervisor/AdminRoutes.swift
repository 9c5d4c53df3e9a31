// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterHTTPAPI

/// What an admin API request asks for, once its method and path are understood.
enum AdminEndpoint: Equatable, Sendable {
    /// `GET /api/v1/status`: generations, workers, listeners, the last failed reload.
    case status
    /// `GET /api/v1/config`: the effective configuration, secrets redacted, with its hash as ETag.
    case config
    /// `GET /api/v1/routes`: the graph `jester diag --format json` prints.
    case routes
    /// `GET /api/v1/upstreams`: pools and targets with health and admin state.
    case upstreams
    /// `POST /api/v1/reload`: answered with the outcome.
    case reload
    /// `POST /api/v1/upstreams/{pool}/targets/{target}/{action}`, or without a pool
    /// (`POST /api/v1/targets/{target}/{action}`): in every pool with the target.
    case setTargetAdmin(pool: String?, target: String, action: TargetAction)
    /// `POST /api/v1/drain`: drain and stop the instance.
    case drain
    /// `GET /metrics`: the metrics exposition (`AdminServer.metricsExposition`).
    case metrics
    /// `GET /api/v1/reloads`: the recent reloads and upgrades with their outcomes (`ReloadHistory`).
    case reloads
    /// `GET /api/v1/access/recent`: the last access records, tapped while a dashboard polls (`RecentAccessTap`).
    case recentAccess
    /// `GET /`, `GET /dashboard/`, and the dashboard's script and style: the web dashboard's static files.
    case dashboard(DashboardAsset)
    /// `GET /api/v1/cache`: the shared HTTP cache's size and counters, as `jesterctl cache status --json`.
    case cacheStatus
    /// `POST /api/v1/cache/purge`: removes one key or every key under a prefix (`AdminCachePurgeRequest` reads
    /// which from the body), as `jesterctl cache purge`.
    case cachePurge

    /// The role a client needs: reading needs `read`, acting needs `write`; nil for the dashboard's files, which
    /// hold no data (the page asks for a token and sends it with every API call it makes).
    var requiredRole: AdminRole? {
        switch self {
        case .status, .config, .routes, .upstreams, .metrics, .reloads, .recentAccess, .cacheStatus: return .read
        case .reload, .setTargetAdmin, .drain, .cachePurge: return .write
        case .dashboard: return nil
        }
    }
}

/// The three admin states an operator sets on a target, named as the URL says them.
enum TargetAction: String, Sendable, CaseIterable {
    case drain
    case disable
    case enable

    /// The state the control protocol's `setTargetAdmin` takes.
    var state: String {
        switch self {
        case .drain: return "drain"
        case .disable: return "disabled"
        case .enable: return "enabled"
        }
    }
}

/// The admin API's route table: method and path → endpoint. Pure, so every path and method is tested without a
/// socket; the transport (`AdminConnection`) only carries out what this decides.
enum AdminRoutes {
    /// What a method and path resolve to.
    enum Resolution: Equatable {
        case endpoint(AdminEndpoint)
        /// No such resource: 404.
        case notFound
        /// The resource exists, not with this method: 405 with `Allow`.
        case methodNotAllowed(allowed: String)
    }

    /// The API's path prefix; the version is in the path so a later incompatible API can sit beside this one.
    static let prefix = "/api/v1"

    static func resolve(method: String, path: String) -> Resolution {
        guard let segments = decodedSegments(path) else { return .notFound }
        let get: (AdminEndpoint) -> Resolution = { method == "GET" ? .endpoint($0) : .methodNotAllowed(allowed: "GET") }
        let post: (AdminEndpoint) -> Resolution = {
            method == "POST" ? .endpoint($0) : .methodNotAllowed(allowed: "POST")
        }
        if segments == ["metrics"] { return get(.metrics) }
        if segments == [""] || segments.first == "dashboard" {
            guard let asset = DashboardAsset(segments: segments) else { return .notFound }
            return get(.dashboard(asset))
        }
        guard segments.count >= 3, segments[0] == "api", segments[1] == "v1" else { return .notFound }
        let rest = Array(segments.dropFirst(2))
        switch rest.count {
        case 1:
            switch rest[0] {
            case "status": return get(.status)
            case "config": return get(.config)
            case "routes": return get(.routes)
            case "upstreams": return get(.upstreams)
            case "reload": return post(.reload)
            case "drain": return post(.drain)
            case "reloads": return get(.reloads)
            case "cache": return get(.cacheStatus)
            default: return .notFound
            }
        case 2 where rest == ["access", "recent"]:
            return get(.recentAccess)
        case 2 where rest == ["cache", "purge"]:
            return post(.cachePurge)
        case 3 where rest[0] == "targets":
            guard let action = TargetAction(rawValue: rest[2]), !rest[1].isEmpty else { return .notFound }
            return post(.setTargetAdmin(pool: nil, target: rest[1], action: action))
        case 5 where rest[0] == "upstreams" && rest[2] == "targets":
            guard let action = TargetAction(rawValue: rest[4]), !rest[1].isEmpty, !rest[3].isEmpty else {
                return .notFound
            }
            return post(.setTargetAdmin(pool: rest[1], target: rest[3], action: action))
        default:
            return .notFound
        }
    }

    /// The path's segments, percent-decoded (a target is `host:port`, which a client may send as `host%3Aport`);
    /// nil for a path that is not `/`-rooted or decodes to something that is not UTF-8.
    static func decodedSegments(_ path: String) -> [String]? {
        guard path.hasPrefix("/") else { return nil }
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        // A trailing slash names the same resource.
        if segments.count > 1, segments.last == "" { segments.removeLast() }
        var decoded: [String] = []
        for segment in segments {
            guard let text = PercentDecoding.decoded(segment) else { return nil }
            decoded.append(text)
        }
        return decoded
    }
}

/// Whether a request may reach its endpoint: pure over the tokens and the `Authorization` field.
struct AdminAuthorization: Equatable {
    /// The decision.
    enum Decision: Equatable {
        case allowed
        /// No usable credentials: 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).
        case unauthorized(String)
        /// Valid credentials whose role is too weak: 403.
        case forbidden(String)
    }

    /// nil: no tokens file, every client has the `write` role (loopback and Unix sockets only; the loader
    /// refuses other addresses without tokens).
    var tokens: AdminTokens?

    func decide(authorization: String?, required: AdminRole) -> Decision {
        switch BearerAuthorization(tokens: tokens).decide(authorization: authorization, required: required) {
        case .allowed: return .allowed
        case .unauthorized(let reason): return .unauthorized(reason)
        case .forbidden(_, let reason): return .forbidden(reason)
        }
    }
}
