import ConvoyDevStack
import Foundation

/// A local stack (`convoy dev`) that shares nothing with any other: free ports, a private
/// loopback address range, its own directory, the `process` engine. For the HA proofs, in
/// `make test` and in `make chaos`.
public enum TestDevStack {
    public static func make(in directory: URL, convoy: String, maxInstances: Int, maxConcurrentCreates: Int = 10,
                            probeSeconds: Int = 2, probeTimeoutSeconds: Int = 60, driver: String = "loopback", replicas: Int = 3,
                            maxCloudOpsPerSecond: Int = 10,
                            report: @escaping @Sendable (String) -> Void = { _ in }) throws -> DevStack {
        // PostgreSQL runs as the postgres user when this runs as root: it must get through.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        var settings = DevStackSettings()
        settings.replicas = replicas
        settings.maxCloudOpsPerSecond = maxCloudOpsPerSecond
        settings.postgresPort = try FreePort.find()
        settings.apiPort = try FreePort.find()
        // Replica ports and the stub cloud's in one free block below the ephemeral range (a random
        // base in it once collided with an outgoing connection's port).
        let base = try FreePort.block(count: 2 * settings.replicas + 1)
        settings.dispatchPortBase = base
        settings.stubPort = base + 2 * settings.replicas
        settings.addressPrefix = "127.\(Int.random(in: 100...250)).\(Int.random(in: 0...255))"
        settings.sshPort = Int.random(in: 20_000...29_999)
        settings.runtimeEngine = "process"
        settings.maxInstances = maxInstances
        settings.maxConcurrentCreates = maxConcurrentCreates
        settings.probeSeconds = probeSeconds
        settings.probeTimeoutSeconds = probeTimeoutSeconds
        settings.idleSeconds = 30
        settings.driver = driver
        try settings.validate()
        return DevStack(layout: DevStackLayout(directory: directory.appendingPathComponent("stack")), settings: settings, convoy: convoy, report: report)
    }
}
