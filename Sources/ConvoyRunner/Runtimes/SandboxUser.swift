#if canImport(Glibc)
import Glibc
#endif

/// The unprivileged user a bwrap sandbox runs as when the runner itself is root: the command's
/// processes are that user on the host, not root, even if a namespace let them out.
public struct SandboxUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// `nobody` (65534 when the system has no such user).
    public static var nobody: SandboxUser {
        guard let entry = getpwnam("nobody") else { return SandboxUser(uid: 65534, gid: 65534) }
        return SandboxUser(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// `nobody` for a runner running as root; nil (the runner's own user, already unprivileged)
    /// otherwise.
    public static var forThisRunner: SandboxUser? {
        geteuid() == 0 ? nobody : nil
    }

    /// Throws unless this user may search every directory from `/` down to `path`, so that bwrap
    /// running as it can bind the work directory (a home directory of mode 0700 on the way would
    /// otherwise end each container with bwrap's "Can't find source path").
    public func checkCanSearch(_ path: String) throws {
        var prefix = ""
        for component in [""] + path.split(separator: "/").map(String.init) {
            prefix = component.isEmpty ? "/" : (prefix == "/" ? "/" : prefix + "/") + component
            var status = stat()
            guard stat(prefix, &status) == 0 else {
                throw RuntimeSetupError("cannot look at \(prefix): \(String(cString: strerror(errno)))")
            }
            let bit: mode_t = status.st_uid == uid ? 0o100 : (status.st_gid == gid ? 0o010 : 0o001)
            guard status.st_mode & bit != 0 else {
                throw RuntimeSetupError("the sandbox user (uid \(uid)) cannot reach the work directory \(path): \(prefix) is not searchable by it (give it o+x, or move the work directory with CONVOY_RUNNER_WORK_DIR)")
            }
        }
    }
}
