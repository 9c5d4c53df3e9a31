// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// A user and group a worker runs as.
public struct Identity: Sendable, Equatable {
    public var userName: String
    public var userID: UInt32
    public var groupID: UInt32

    public init(userName: String, userID: UInt32, groupID: UInt32) {
        self.userName = userName
        self.userID = userID
        self.groupID = groupID
    }
}

/// Looks up users and groups, and drops a worker's privileges.
public enum Privileges {
    /// Whether this process runs as root (and so must drop privileges in its workers).
    public static var isRoot: Bool { geteuid() == 0 }

    public static var currentUserID: UInt32 { getuid() }

    /// The identity workers take: `user` (default `jester`, then `nobody`) and `group` (default: the user's
    /// primary group). Throws with a clear message when a configured name does not exist.
    public static func workerIdentity(user: String?, group: String?) throws(SystemError) -> Identity {
        let candidates = user.map { [$0] } ?? ["jester", "nobody"]
        var found: (name: String, uid: UInt32, gid: UInt32)?
        for name in candidates {
            if let entry = lookupUser(name) {
                found = (name, entry.uid, entry.gid)
                break
            }
        }
        guard let found else {
            throw SystemError("getpwnam", "user '\(candidates.joined(separator: "' or '"))'", errno: ENOENT)
        }
        var groupID = found.gid
        if let group {
            guard let id = lookupGroup(group) else { throw SystemError("getgrnam", "group '\(group)'", errno: ENOENT) }
            groupID = id
        }
        return Identity(userName: found.name, userID: found.uid, groupID: groupID)
    }

    public static func lookupUser(_ name: String) -> (uid: UInt32, gid: UInt32)? {
        guard let entry = getpwnam(name) else { return nil }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    public static func lookupGroup(_ name: String) -> UInt32? {
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    /// The names of the members of group `gid` listed in the group database (not users whose primary group it is).
    public static func groupMembers(_ gid: UInt32) -> [String] {
        guard let entry = getgrgid(gid), var member = entry.pointee.gr_mem else { return [] }
        var names: [String] = []
        while let name = member.pointee {
            names.append(String(cString: name))
            member += 1
        }
        return names
    }

    public static func userName(_ uid: UInt32) -> String? {
        guard let entry = getpwuid(uid) else { return nil }
        return String(cString: entry.pointee.pw_name)
    }

    /// Switches this process to `identity` for good: supplementary groups, group, then user (in that order,
    /// since a process that gave up root can no longer change groups), then forbids regaining privileges through
    /// exec. Verifies that root cannot be regained.
    public static func drop(to identity: Identity) throws(SystemError) {
        var groups = [gid_t(identity.groupID)]
        guard setgroups(1, &groups) == 0 else { throw SystemError("setgroups") }
        guard setgid(identity.groupID) == 0 else { throw SystemError("setgid", "\(identity.groupID)") }
        guard setuid(identity.userID) == 0 else { throw SystemError("setuid", "\(identity.userID)") }
        if identity.userID != 0, setuid(0) == 0 { throw SystemError("setuid", "regained root", errno: EPERM) }
    }

    /// `PR_SET_NO_NEW_PRIVS`: no exec of this process or its children can gain privileges.
    public static func forbidNewPrivileges() throws(SystemError) {
        guard cjester_set_no_new_privs() == 0 else { throw SystemError("prctl(PR_SET_NO_NEW_PRIVS)") }
    }

    /// Asks the kernel to send SIGKILL when the master dies, so a worker never outlives it. Must be called after
    /// the last credential change, which clears the setting; then re-checks the parent in case it died already.
    public static func dieWithParent(expectedParent: Int32) throws(SystemError) {
        guard cjester_set_parent_death_signal(SIGKILL) == 0 else { throw SystemError("prctl(PR_SET_PDEATHSIG)") }
        if getppid() != expectedParent { exit(1) }
    }

    /// Sets the name `ps` and `top` show (at most 15 bytes).
    public static func setProcessName(_ name: String) {
        _ = cjester_set_process_name(name)
    }
}
