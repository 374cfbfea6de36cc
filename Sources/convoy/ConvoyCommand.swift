import ArgumentParser

/// The `convoy` binary: every Convoy process and tool is a subcommand of it.
@main
struct ConvoyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convoy",
        abstract: "A highly-available container dispatcher.",
        discussion: """
            Convoy queues containers, boots cloud VMs, runs each container on a worker over SSH, and \
            keeps going through crashes and rolling restarts.
            """,
        subcommands: [VersionCommand.self, DoctorCommand.self, APICommand.self, DispatchCommand.self, ClusterCommand.self, InstancesCommand.self,
                      ContainersCommand.self, RunCommand.self, ImagesCommand.self, DevCommand.self, CheckCommand.self, StubCloudCommand.self]
    )
}

/// A command that only groups others (`convoy cluster`, `convoy instances`, …). Run without one
/// of them it is a usage error (exit 64, the choices on stderr), not help with exit 0, so that a
/// script missing a word fails instead of silently doing nothing.
protocol CommandGroup: AsyncParsableCommand {}

extension CommandGroup {
    func run() async throws {
        let names = Self.configuration.subcommands.map { $0._commandName }.joined(separator: ", ")
        throw ValidationError("\(Self._commandName) needs a subcommand: \(names)")
    }
}
