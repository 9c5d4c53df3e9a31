// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterProxy
import JesterTLS
import JesterWasm

/// The loader's check of a Wasm policy: the module must load under the policy's limits (ABI v1, its exports and
/// imports) and its `init` must accept the policy's JSON configuration, or the configuration is refused with the
/// policy's `module` line, and the old one keeps serving.
///
/// The master (root) runs this check, and so runs the module's start function and `init`: inside WasmKit's
/// interpreter, with software bounds checks, the policy's fuel and memory limits, and no host function but
/// logging and the metadata bag; the module is a file the operator installed, like the configuration. What the
/// master cannot catch this way (a policy that fails only on some requests) fails closed in the workers.
enum PolicyCheck {
    @Sendable static func check(_ settings: PolicySettings) -> PolicyCheckResult {
        let bytes = Array(settings.moduleBytes)
        do {
            let module = try PolicyModule.load(bytes: bytes, name: settings.module, limits: PolicyLimits(settings))
            _ = try PolicyInstance(module: module, policyID: settings.name, config: settings.config)
            let stages = Set(module.stages.map { stage -> PolicyStageName in
                switch stage {
                case .preRoute: .preRoute
                case .preUpstream: .preUpstream
                case .postResponse: .postResponse
                }
            })
            let digest = MessageDigest.sha256.hash(bytes).map { byte in
                String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
            }.joined()
            return .valid(stages: stages, digest: digest)
        } catch {
            return .invalid(error.message)
        }
    }
}
