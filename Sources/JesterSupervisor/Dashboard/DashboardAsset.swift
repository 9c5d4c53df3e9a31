// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI

/// The web dashboard's three files, compiled into the binary: nothing is looked up on disk at run time, so the
/// dashboard always matches the master serving it and works in a chroot or from a read-only image.
///
/// The page holds no data and needs no token: its script asks the operator for one, keeps it in
/// `sessionStorage` and sends it as `Authorization: Bearer` with each API call. Every file is served with a
/// Content-Security-Policy that allows only this origin's script and style (no inline script, so markup that
/// got into a table cell cannot run) and forbids framing (no click-jacking of the Drain button).
enum DashboardAsset: String, Equatable, Sendable, CaseIterable {
    /// `GET /` and `GET /dashboard/`.
    case page
    /// `GET /dashboard/dashboard.js`.
    case script
    /// `GET /dashboard/dashboard.css`.
    case style

    /// The asset a path's segments name (`AdminRoutes.decodedSegments`); nil: no such file.
    init?(segments: [String]) {
        switch segments {
        case [""], ["dashboard"]: self = .page
        case ["dashboard", "dashboard.js"]: self = .script
        case ["dashboard", "dashboard.css"]: self = .style
        default: return nil
        }
    }

    /// The path the page links it by.
    var path: String {
        switch self {
        case .page: return "/dashboard/"
        case .script: return "/dashboard/dashboard.js"
        case .style: return "/dashboard/dashboard.css"
        }
    }

    var contentType: String {
        switch self {
        case .page: return "text/html; charset=utf-8"
        case .script: return "text/javascript; charset=utf-8"
        case .style: return "text/css; charset=utf-8"
        }
    }

    /// The file's bytes, made once.
    var body: [UInt8] {
        switch self {
        case .page: return Self.pageBytes
        case .script: return Self.scriptBytes
        case .style: return Self.styleBytes
        }
    }

    private static let pageBytes = Array(DashboardPage.html.utf8)
    private static let scriptBytes = Array(DashboardScript.source.utf8)
    private static let styleBytes = Array(DashboardStyle.css.utf8)

    /// The fields every dashboard file is sent with (the API's `Cache-Control: no-store` comes on top).
    static let securityFields: [(name: String, value: String)] = [
        // Only this origin's files; no inline script or style; no plugins; not in anyone's frame; the token
        // box cannot be submitted anywhere.
        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        // A script is run only when served as one (the API's JSON is never taken for script).
        ("X-Content-Type-Options", "nosniff"),
        // The admin address stays out of any link's Referer.
        ("Referrer-Policy", "no-referrer"),
        // Older browsers without frame-ancestors.
        ("X-Frame-Options", "DENY"),
    ]

    /// The answer serving this file.
    var response: APIResponse {
        APIResponse(status: 200, fields: [("Content-Type", contentType)] + Self.securityFields, body: body)
    }
}
