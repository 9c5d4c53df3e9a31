// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
import WIT

@testable import JesterWasm

/// SDK/wit/jester-policy.wit is the contract policy authors read; this holds the host to it. WasmKit's WIT
/// library parses and validates the file, and the canonical ABI's layout rules, applied to its types, must give
/// the offsets and sizes the host's encoder and decoder use (PolicyABI), the case order they number, and the
/// export and import names the loader checks.
@Suite struct ABIContractTests {
    let file: SyntaxNode<SourceFileSyntax>
    /// The `types` interface's definitions, by name.
    let types: [String: TypeDefBodySyntax]

    init() throws {
        let path = WasmFixtures.repository.appendingPathComponent("SDK/wit/jester-policy.wit").path
        file = try SourceFileSyntax.parse(String(contentsOfFile: path, encoding: .utf8), fileName: path)
        var types: [String: TypeDefBodySyntax] = [:]
        for definition in try Self.interface("types", in: file).items {
            if case .typeDef(let typeDef) = definition { types[typeDef.name.text] = typeDef.body }
        }
        self.types = types
    }

    @Test func theFileIsValidWIT() throws {
        let resolver = PackageResolver()
        let package = try resolver.register(packageSources: [file])
        let diagnostics = try SemanticsContext(rootPackage: package, packageResolver: resolver).validate(
            package: package
        )
        let problems = diagnostics.values.flatMap { $0 }
        #expect(problems.isEmpty, "\(diagnostics)")
        #expect("\(package.packageName)".contains("jester") && PolicyABI.hostModule == "jester:policy/host@1.0.0")
    }

    @Test func theContextLayout() throws {
        guard case .record(let record) = types["context"] else { throw FixtureError("no record context") }
        let offsets = CanonicalABI.fieldOffsets(fields: try record.fields.map { try layout($0.type) })
        let byName = Dictionary(uniqueKeysWithValues: zip(record.fields.map(\.name.text), offsets.map(\.1)))
        let expected: [String: Int] = [
            "abi-minor": PolicyABI.Context.abiMinor, "size": PolicyABI.Context.size, "stage": PolicyABI.Context.stage,
            "method": PolicyABI.Context.method, "scheme": PolicyABI.Context.scheme,
            "authority": PolicyABI.Context.authority, "path": PolicyABI.Context.path,
            "query": PolicyABI.Context.query, "client-address": PolicyABI.Context.clientAddress,
            "request-headers": PolicyABI.Context.requestHeaders, "request-body": PolicyABI.Context.requestBody,
            "route": PolicyABI.Context.route, "status": PolicyABI.Context.status,
            "response-headers": PolicyABI.Context.responseHeaders, "response-body": PolicyABI.Context.responseBody,
        ]
        #expect(byName == expected)
        // What the encoder writes at each offset: u32, u32, a u8 enum, six strings, a list, an option of a list,
        // an option of a string, a u16, a list, an option of a list.
        let sizes = try record.fields.map { CanonicalABI.size(type: try layout($0.type)) }
        #expect(sizes == [4, 4, 1, 8, 8, 8, 8, 8, 8, 8, 12, 12, 2, 8, 12])
        let size = CanonicalABI.size(type: .tuple(try record.fields.map { try layout($0.type) }))
        #expect(size == PolicyABI.Context.byteCount)
        #expect(CanonicalABI.size(type: try layout(.name(identifier("header")))) == PolicyABI.headerByteCount)
    }

    @Test func theStageAndLevelEnumsNumberLikeTheHost() throws {
        guard case .enum(let stage) = types["stage"] else { throw FixtureError("no enum stage") }
        #expect(stage.cases.map(\.name.text) == PolicyStage.allCases.map { String($0.exportName.dropFirst(3)) })
        let host = try Self.interface("host", in: file)
        let level = host.items.compactMap { item -> [String]? in
            guard case .typeDef(let typeDef) = item, case .enum(let cases) = typeDef.body else { return nil }
            return cases.cases.map(\.name.text)
        }
        #expect(level == [["debug", "info", "warn", "error"]])
        #expect(PolicyLogLevel(rawValue: 3) == .error)
    }

    @Test func theMutationVariant() throws {
        guard case .variant(let mutation) = types["mutation"] else { throw FixtureError("no variant mutation") }
        // The decoder's case numbers, in order.
        #expect(
            mutation.cases.map(\.name.text) == [
                "set-header", "add-header", "remove-header", "set-method", "set-path", "set-query", "set-route",
                "add-route-tag", "set-upstream", "set-upstream-timeout", "set-upstream-retries", "set-body",
            ]
        )
        let (payload, size) = try variantLayout(mutation.cases.map(\.type))
        #expect(payload == 4 && size == PolicyABI.mutationByteCount)
    }

    @Test func theActionVariantAndItsResponse() throws {
        guard case .variant(let action) = types["action"] else { throw FixtureError("no variant action") }
        #expect(action.cases.map(\.name.text) == ["proceed", "respond", "deny"])
        #expect([PolicyABI.Action.proceed, PolicyABI.Action.respond, PolicyABI.Action.deny] == [0, 1, 2])
        let (payload, size) = try variantLayout(action.cases.map(\.type))
        #expect(payload == 4 && size == PolicyABI.Action.byteCount)
        guard case .record(let response) = types["response"] else { throw FixtureError("no record response") }
        let offsets = CanonicalABI.fieldOffsets(fields: try response.fields.map { try layout($0.type) }).map(\.1)
        #expect(
            offsets.map { $0 + payload } == [
                PolicyABI.Response.status, PolicyABI.Response.headers, PolicyABI.Response.body,
            ]
        )
        #expect(CanonicalABI.size(type: .result(ok: nil, error: .string)) == PolicyABI.initResultByteCount)
    }

    @Test func theExportsAndImportsTheLoaderChecks() throws {
        var exports: [String] = []
        var imports: [String] = []
        for case .world(let world) in file.items {
            for item in world.items {
                switch item {
                case .export(let export):
                    if case .function(let name, _) = export.kind { exports.append(name.text) }
                case .import(let `import`):
                    if case .path(let path) = `import`.kind, case .id(let name) = path { imports.append(name.text) }
                default: break
                }
            }
        }
        #expect(
            exports == [PolicyABI.Export.abiVersion, PolicyABI.Export.initialize]
                + PolicyStage.allCases.map(\.exportName)
        )
        #expect(imports == ["host"])
        let functions = try Self.interface("host", in: file).items.compactMap { item -> String? in
            guard case .function(let function) = item else { return nil }
            return function.name.text
        }
        #expect(functions == ["log", "counter-add", "metadata-get", "metadata-set"])
        #expect(functions.allSatisfy { PolicyHost.provides($0) })
    }

    // MARK: Layout helpers

    private static func interface(_ name: String, in file: SyntaxNode<SourceFileSyntax>) throws -> InterfaceSyntax {
        for case .interface(let interface) in file.items where interface.name.text == name {
            return interface.syntax
        }
        throw FixtureError("no interface \(name)")
    }

    private func identifier(_ name: String) throws -> Identifier {
        for case .interface(let interface) in file.items {
            for case .typeDef(let typeDef) in interface.items where typeDef.name.text == name {
                return typeDef.name
            }
        }
        throw FixtureError("no type \(name)")
    }

    /// A type with the same canonical ABI layout as `repr`: a record as the tuple of its fields, an enum of up
    /// to 256 cases as u8, a list as a list of bytes (its elements live elsewhere).
    private func layout(_ repr: TypeReprSyntax) throws -> WITType {
        switch repr {
        case .bool: return .bool
        case .u8: return .u8
        case .u16: return .u16
        case .u32: return .u32
        case .u64: return .u64
        case .s64: return .s64
        case .string: return .string
        case .list: return .list(.u8)
        case .option(let wrapped): return .option(try layout(wrapped))
        case .tuple(let elements): return .tuple(try elements.map { try layout($0) })
        case .name(let name):
            switch types[name.text] {
            case .record(let record): return .tuple(try record.fields.map { try layout($0.type) })
            case .enum(let cases) where cases.cases.count <= 256: return .u8
            default: throw FixtureError("no layout for \(name.text)")
            }
        default:
            throw FixtureError("no layout for \(repr)")
        }
    }

    /// The payload offset and size of a variant with these cases (u8 discriminant; fewer than 256 cases).
    private func variantLayout(_ cases: [TypeReprSyntax?]) throws -> (payload: Int, size: Int) {
        let payloads = try cases.compactMap { try $0.map(layout) }
        let alignment = payloads.map { CanonicalABI.alignment(type: $0) }.max() ?? 1
        let payload = alignUp(1, to: alignment)
        let largest = payloads.map { CanonicalABI.size(type: $0) }.max() ?? 0
        return (payload, alignUp(payload + largest, to: alignment))
    }

    private func alignUp(_ offset: Int, to alignment: Int) -> Int {
        (offset + alignment - 1) / alignment * alignment
    }
}
