// SPDX-License-Identifier: Apache-2.0

extension ConfigDecoder {
    /// Warns about a route that can never match: an earlier route (or one of higher priority) on the same
    /// listeners, hosts and path with no other condition takes every request it could.
    ///
    /// A warning, not an error: the file still means something, and an operator may keep a route parked. But a
    /// copied route that silently never runs is what `config validate` exists to catch.
    mutating func warnAboutShadowedRoutes(_ routes: [RouteSettings], at locations: [SourceLocation]) {
        for (index, earlier) in Configuration.shadowedRoutes(routes) {
            warnings.append(ConfigDiagnostic(locations[index],
                "route '\(routes[index].name)' can never match: route '\(routes[earlier].name)' at "
                    + "\(locations[earlier]) has the same listeners, hosts and path and no other condition, "
                    + "and is tried first",
                severity: .warning))
        }
    }
}

extension Configuration {
    /// The routes that can never match, each with the route that takes every request it could (indices into
    /// `routes`), in the order they are tried. One finding for the loader's warning and `jester diag`'s flag.
    public static func shadowedRoutes(_ routes: [RouteSettings]) -> [(route: Int, by: Int)] {
        struct Key: Hashable {
            var listeners: Set<String>
            var hosts: Set<String>
            var path: String
            var exactPath: Bool
        }
        var first: [Key: Int] = [:]
        var shadowed: [(route: Int, by: Int)] = []
        // Routes that could take the same request are tried highest priority first, then in file order.
        let order = routes.indices.sorted { (-routes[$0].match.priority, $0) < (-routes[$1].match.priority, $1) }
        for index in order {
            let route = routes[index]
            var conditions = route.match
            conditions.priority = 0
            conditions.exactPath = false
            // Methods, headers, query, sources, body, SNI or a client certificate: the route takes only some
            // requests, so it neither shadows nor is shadowed.
            guard conditions.isEmpty else { continue }
            let key = Key(listeners: Set(route.listeners), hosts: Set(route.hosts.map { $0.lowercased() }),
                path: route.pathPrefix, exactPath: route.match.exactPath)
            if let earlier = first[key] {
                shadowed.append((index, earlier))
            } else {
                first[key] = index
            }
        }
        return shadowed
    }
}
