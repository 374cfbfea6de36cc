import ConvoyModel
import Foundation

/// Where each of a container's mounts goes on the worker, and how the runtime shows it. Pure:
/// decided from the container and its workspace before anything is fetched.
///
/// A mount at or under output_path is copied into the output directory (so its files become
/// part of the output, as Arvados does; `exclude_from_output` takes them out again); `/tmp` as a
/// `tmp` mount is the workspace's tmp; every other mount gets a place of its own under the
/// workspace's `mounts` directory, bound at its path (read-only unless it is a `tmp`).
public struct MountPlan: Sendable, Equatable {
    /// One mount's place on the worker.
    public struct Placement: Sendable, Equatable {
        /// The path inside the container.
        public var path: String
        public var mount: ContainerMount
        /// Where its content goes on the worker (a directory, or a file for json/text and a
        /// collection's single file).
        public var hostPath: URL
        /// Bound at `path` by the runtime; false: it lies inside the output or tmp directory.
        public var bound: Bool
        /// Bound read-only (everything but tmp).
        public var readOnly: Bool
        public var isSecret: Bool
    }

    public var placements: [Placement]
    /// Paths relative to the output directory to remove before the output is saved.
    public var excludedFromOutput: [String]

    /// The placements the runtime binds, parents first.
    public var binds: [Placement] { placements.filter(\.bound) }

    /// The plan for `container` in `workspace`. `placeAnywhere`: the runtime can bind a mount
    /// at any path (podman, bwrap); the process runtime cannot: it shows the command only its
    /// output and tmp directories, so a mount elsewhere is refused.
    public static func make(_ container: Container, secretMounts: [String: JSONValue] = [:], workspace: Workspace,
                            placeAnywhere: Bool) throws -> MountPlan {
        let mounts: [String: ContainerMount], secrets: [String: ContainerMount]
        do {
            mounts = try ContainerMounts.parse(container.mounts, outputPath: container.outputPath)
            secrets = try ContainerMounts.parse(secretMounts, outputPath: container.outputPath, secret: true)
        } catch {
            throw RuntimeSetupError(error.description)
        }
        if let both = secrets.keys.sorted().first(where: { mounts[$0] != nil }) {
            throw RuntimeSetupError("secret mount \(both) is also a mount")
        }
        var plan = MountPlan(placements: [], excludedFromOutput: [])
        let all = mounts.map { ($0.key, $0.value, false) } + secrets.map { ($0.key, $0.value, true) }
        for (index, (path, mount, secret)) in all.sorted(by: { $0.0 < $1.0 }).enumerated() {
            let output = container.outputPath
            if path == output {
                // The output directory is always the workspace's: a tmp there is that; a
                // collection there fills it first.
                if case .collection = mount {
                    plan.placements.append(Placement(path: path, mount: mount, hostPath: workspace.output, bound: false, readOnly: false, isSecret: secret))
                }
                continue
            }
            if ContainerMounts.isUnder(path, output) {
                let relative = String(path.dropFirst(output.hasSuffix("/") ? output.count : output.count + 1))
                plan.placements.append(Placement(path: path, mount: mount, hostPath: workspace.output.appendingPathComponent(relative),
                                                 bound: false, readOnly: false, isSecret: secret))
                if mount.excludedFromOutput { plan.excludedFromOutput.append(relative) }
                continue
            }
            if path == "/tmp", case .tmp = mount { continue }
            if !placeAnywhere {
                guard ContainerMounts.isUnder(path, "/tmp") else {
                    throw RuntimeSetupError("mount \(path): the process runtime shows a command only output_path and /tmp; use bwrap or podman for mounts elsewhere")
                }
                plan.placements.append(Placement(path: path, mount: mount, hostPath: workspace.tmp.appendingPathComponent(String(path.dropFirst(5))),
                                                 bound: false, readOnly: false, isSecret: secret))
                continue
            }
            let name = "\(index)-" + (path.split(separator: "/").last.map(String.init) ?? "mount")
            let isTmp: Bool
            if case .tmp = mount { isTmp = true } else { isTmp = false }
            plan.placements.append(Placement(path: path, mount: mount, hostPath: workspace.mounts.appendingPathComponent(name),
                                             bound: true, readOnly: !isTmp, isSecret: secret))
        }
        return plan
    }
}
