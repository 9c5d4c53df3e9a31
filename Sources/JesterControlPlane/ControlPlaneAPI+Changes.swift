// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterHTTPAPI

/// The API's writes: each makes a candidate document, checks it as a data plane would load it, and on success
/// proposes the next version. Whatever the outcome, the decision carries an audit record.
extension ControlPlaneAPI {
    /// `PUT /api/v1/<kind>/<name>`: creates or replaces one resource.
    func put(_ request: APIRequest, _ kind: ResourceKind, _ name: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: true) { return refused }
        if let tags = request.field("if-none-match"), tags.trimmingCharacters(in: .whitespaces) == "*",
            current.document.resource(kind, name) != nil
        {
            // RFC 9110 §13.1.2: create only if absent.
            var response = APIResponse.error(412, "\(kind.singular) '\(name)' exists (If-None-Match: *)")
            response.fields.append(("ETag", current.entityTag))
            return Decision(response: response, audit: refusal(request, now, actor, response, "If-None-Match: *"))
        }
        let body: JSONTree
        switch parseBody(request, actor: actor, now: now) {
        case .success(let tree): body = tree
        case .failure(let refused): return refused.decision
        }
        var candidate = current.document
        let created = candidate.put(kind, name, body)
        let place = Place.resource(candidate.pointer(kind, name) ?? "")
        if kind == .routes, let named = body[member: "name"], named != .string(name) {
            return refuse(request, actor: actor, now: now, problems: [
                FieldProblem(pointer: (candidate.pointer(kind, name) ?? "") + "/name",
                    message: "a route's name is its address (PUT /api/v1/routes/NAME); this body names another"),
            ], place: place)
        }
        return propose(request, candidate, action: .put, actor: actor, now: now, created: created, place: place)
    }

    /// `DELETE /api/v1/<kind>/<name>`.
    func delete(_ request: APIRequest, _ kind: ResourceKind, _ name: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: false) { return refused }
        var candidate = current.document
        guard candidate.remove(kind, name) else {
            let response = APIResponse.error(404, "there is no \(kind.singular) '\(name)'")
            return Decision(response: response, audit: refusal(request, now, actor, response, nil))
        }
        return propose(request, candidate, action: .delete, actor: actor, now: now, place: .none)
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
        // The document as sent, not only what `read` kept of it: a member that is not a kind (`listeners`, a
        // misspelt `route`) is refused here rather than dropped.
        let asSent = validator.problems(request.body)
        if !problems.isEmpty || !asSent.isEmpty {
            let all = problems + asSent.filter { !problems.contains($0) }
            return refuse(request, actor: actor, now: now, problems: all, place: .document)
        }
        return propose(request, candidate, action: .replace, actor: actor, now: now, place: .document,
            checked: true)
    }

    /// `POST /api/v1/versions/<n>/rollback`: makes version n's document current again, as a new version. It is
    /// checked again: the bootstrap it is checked over may have changed since.
    func rollback(_ request: APIRequest, to text: String, actor: String, now: String) -> Decision {
        if let refused = preconditions(request, actor: actor, now: now, needsBody: false) { return refused }
        guard let target = version(text) else {
            var decision = Self.noVersion(text)
            decision.audit = refusal(request, now, actor, decision.response, "no version '\(text)'")
            return decision
        }
        return propose(request, target.document, action: .rollback, rolledBackTo: target.number, actor: actor,
            now: now, place: .none)
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
            type.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() != "application/json"
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

    /// What the body of a change was, so problems inside it can also be given relative to it.
    enum Place {
        /// The whole document (`PUT /api/v1/snapshot`).
        case document
        /// One resource, at this pointer in the document.
        case resource(String)
        /// No body (a delete, a rollback).
        case none
    }

    /// Checks `candidate` (unless `checked`) and proposes it as the next version, or answers that nothing
    /// changed, or refuses it with its problems.
    private func propose(
        _ request: APIRequest, _ candidate: SnapshotDocument, action: SnapshotVersion.Action, rolledBackTo: Int? = nil,
        actor: String, now: String, created: Bool = false, place: Place, checked: Bool = false
    ) -> Decision {
        let changes = ResourceChange.between(current.document, candidate)
        if changes.isEmpty {
            let response = changeAnswer(200, version: current, changes: [])
            return Decision(response: response, audit: AuditRecord(
                at: now, actor: actor, method: request.method, path: request.path, outcome: .unchanged, status: 200,
                version: current.number))
        }
        let problems = checked ? [] : validator.problems(candidate.tree.serialized())
        if !problems.isEmpty {
            return refuse(request, actor: actor, now: now, problems: problems, place: place)
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
        _ request: APIRequest, actor: String, now: String, problems: [FieldProblem], place: Place
    ) -> Decision {
        let listed: [JSONTree] = problems.map { problem in
            var members: [String: JSONTree] = ["message": .string(problem.message)]
            members["document_pointer"] = .string(problem.pointer)
            switch place {
            case .document:
                members["pointer"] = .string(problem.pointer)
            case .resource(let base) where problem.pointer == base || problem.pointer.hasPrefix(base + "/"):
                members["pointer"] = .string(String(problem.pointer.dropFirst(base.count)))
            case .resource, .none:
                break
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
