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
                      ContainersCommand.self, RunCommand.self, ImagesCommand.self, DevCommand.self, CheckCommand.self]
    )
}
