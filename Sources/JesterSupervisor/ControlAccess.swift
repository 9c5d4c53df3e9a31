// SPDX-License-Identifier: Apache-2.0
import JesterSystem

/// Who may use the control socket: root, the master's own user, and members of the configured control group.
/// Pure over the peer's kernel-reported credentials.
public struct ControlAccess: Sendable {
    public var masterUserID: UInt32
    public var controlGroupID: UInt32?

    public init(masterUserID: UInt32, controlGroupID: UInt32?) {
        self.masterUserID = masterUserID
        self.controlGroupID = controlGroupID
    }

    public func permits(uid: UInt32, gid: UInt32, supplementaryGroups: [UInt32]) -> Bool {
        if uid == 0 || uid == masterUserID { return true }
        guard let group = controlGroupID else { return false }
        return gid == group || supplementaryGroups.contains(group)
    }
}
