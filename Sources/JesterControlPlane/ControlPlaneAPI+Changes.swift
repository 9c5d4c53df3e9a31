// SPDX-License-Identifier: Apache-2.0
import JesterControl
import JesterHTTPAPI

/// The API's writes: each makes a candidate document, checks it as a data plane would load it, and on success
/// proposes the next version. Whatever the outcome, the decision carries an audit record.
extension ControlPlaneAPI {
    /// `PUT /api/v1/<kind>/<name>`: creates or replaces one resource.
    func put(_ request: APIRequest, _ kind: ResourceKind, _ name: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: true) { return refused }
        let body: JSONTree
        switch parseBody(request, actor: actor, now: now) {
        case .success(let tree): body = tree
        case .failure(let refused): return refused.decision
        }
        if kind == .routes, let named = body[member: "name"], named != .string(name) {
            return refuse(request, actor: actor, now: now, problems: [
                FieldProblem(pointer: "/name",
                    message: "a route's name is its address (PUT /api/v1/routes/NAME); this body names another"),
            ], relativeTo: nil)
        }
        var candidate = current.document
        let created = candidate.put(kind, name, body)
        return propose(request, candidate, action: .put, actor: actor, now: now, created: created,
            relativeTo: candidate.pointer(kind, name))
    }

    /// `DELETE /api/v1/<kind>/<name>`.
    func delete(_ request: APIRequest, _ kind: ResourceKind, _ name: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: false) { return refused }
        var candidate = current.document
        guard candidate.remove(kind, name) else {
            let response = APIResponse.error(404, "there is no \(kind.singular) '\(name)'")
            return Decision(response: response, audit: refusal(request, now, actor, response, nil))
        }
        return propose(request, candidate, action: .delete, actor: actor, now: now, relativeTo: nil)
    }

    /// `PUT /api/v1/snapshot`: replaces the whole document (a bulk import, or a fleet's configuration kept in git).
    func replace(_ request: APIRequest, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: true) { return refused }
        let body: JSONTree
        switch parseBody(request, actor: actor, now: now) {
        case .success(let tree): body = tree
        case .failure(let refused): return refused.decision
        }
        let (candidate, problems) = SnapshotDocument.read(body)
        if !problems.isEmpty {
            // The values' problems too, so one answer lists everything to fix.
            let all = problems + validator.problems(request.body).filter { !problems.contains($0) }
            return refuse(request, actor: actor, now: now, problems: all, relativeTo: nil)
        }
        return propose(request, candidate, action: .replace, actor: actor, now: now, relativeTo: nil)
    }

    /// `POST /api/v1/versions/<n>/rollback`: makes version n's document current again, as a new version. It is
    /// checked again: the bootstrap it is checked over may have changed since.
    func rollback(_ request: APIRequest, to text: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: false) { return refused }
        guard let target = version(text) else { return Self.noVersion(text) }
        return propose(request, target.document, action: .rollback, rolledBackTo: target.number, actor: actor,
            now: now, relativeTo: nil)
    }

    // MARK: - Shared steps

    /// A body that is present when needed, JSON, and an `If-Match` that names the current version.
    private func preconditions(_ request: APIRequest, actor: String, now: String, needsBody: Bool) -> Decision? {
        if let tags = request.field("if-match"), !Self.matches(tags, current.entityTag) {
            var response = APIResponse.error(412,
                "the configuration changed: it is at version \(current.number) (ETag \(current.entityTag)), "
                    + "not the version this change was based on; read it again and retry")
            response.fields.append(("ETag", current.entityTag))
            return Decision(response: response, audit: refusal(request, now, actor, response, "stale If-Match"))
        }
        if needsBody, let type = request.field("content-type"),
            !type.lowercased().hasPrefix("application/json")
        {
            let response = APIResponse.error(415, "send the body as application/json")
            return Decision(response: response, audit: refusal(request, now, actor, response, nil))
        }
        return nil
    }

    /// A refused request, carried as an error so `switch` can return it.
    struct Refused: Error {
        var decision: Decision
    }

    private func parseBody(_ request: APIRequest, actor: String, now: String) -> Result<JSONTree, Refused> {
        do {
            return .success(try JSONTree.parse(request.body))
        } catch {
            let response = APIResponse.error(400, "the body is not JSON: \(error)")
            return .failure(Refused(decision: Decision(
                response: response, audit: refusal(request, now, actor, response, nil))))
        }
    }

    /// Checks `candidate` and proposes it as the next version, or answers that nothing changed, or refuses it
    /// with its problems. `relativeTo`: the pointer of the resource the body was, so problems inside it are
    /// also given relative to the body.
    private func propose(
        _ request: APIRequest, _ candidate: SnapshotDocument, action: SnapshotVersion.Action, rolledBackTo: Int? = nil,
        actor: String, now: String, created: Bool = false, relativeTo: String?
    ) -> Decision {
        let changes = ResourceChange.between(current.document, candidate)
        if changes.isEmpty {
            let response = changeAnswer(200, version: current, changes: [])
            return Decision(response: response, audit: AuditRecord(
                at: now, actor: actor, method: request.method, path: request.path, outcome: .unchanged, status: 200,
                version: current.number))
        }
        let problems = validator.problems(candidate.tree.serialized())
        if !problems.isEmpty {
            return refuse(request, actor: actor, now: now, problems: problems, relativeTo: relativeTo)
        }
        let version = SnapshotVersion(
            number: current.number + 1, createdAt: now, actor: actor, action: action, rolledBackTo: rolledBackTo,
            changes: changes, document: candidate)
        var response = changeAnswer(created ? 201 : 200, version: version, changes: changes)
        if created { response.fields.append(("Location", request.path)) }
        return Decision(response: response, version: version, audit: AuditRecord(
            at: now, actor: actor, method: request.method, path: request.path, outcome: .accepted,
            status: response.status, version: version.number, changes: changes))
    }

    /// `{"version": 8, "changes": [...]}` with the version's entity tag.
    private func changeAnswer(_ status: Int, version: SnapshotVersion, changes: [ResourceChange]) -> APIResponse {
        var response = APIResponse.json(status, raw: JSONTree.object([
            "version": .integer(version.number), "changes": .array(changes.map(\.tree)),
        ]).serialized())
        response.fields.append(("ETag", version.entityTag))
        return response
    }

    /// 422 with every problem: `pointer` relative to the body sent when the problem is inside it, and
    /// `document_pointer` in the whole document.
    private func refuse(
        _ request: APIRequest, actor: String, now: String, problems: [FieldProblem], relativeTo: String?
    ) -> Decision {
        let listed: [JSONTree] = problems.map { problem in
            var members: [String: JSONTree] = ["message": .string(problem.message)]
            members["document_pointer"] = .string(problem.pointer)
            if let base = relativeTo, problem.pointer == base || problem.pointer.hasPrefix(base + "/") {
                members["pointer"] = .string(String(problem.pointer.dropFirst(base.count)))
            } else if relativeTo == nil {
                members["pointer"] = .string(problem.pointer)
            }
            return .object(members)
        }
        let count = problems.count
        let message = "the change was refused (\(count) problem\(count == 1 ? "" : "s")); nothing changed"
        let body = JSONTree.object([
            "status": .integer(422), "error": .string(APIResponse.reasonPhrase(422)), "message": .string(message),
            "problems": .array(listed),
        ])
        let response = APIResponse.json(422, raw: body.serialized())
        let first = problems.first.map { "\($0.pointer.isEmpty ? "" : $0.pointer + ": ")\($0.message)" }
        return Decision(response: response, audit: refusal(request, now, actor, response, first))
    }

    /// The audit record of a refused write.
    func refusal(_ request: APIRequest, _ now: String, _ actor: String, _ response: APIResponse, _ reason: String?)
        -> AuditRecord
    {
        AuditRecord(
            at: now, actor: actor, method: request.method, path: request.path, outcome: .refused,
            status: response.status, version: current.number, reason: reason ?? APIResponse.reasonPhrase(response.status))
    }
}
