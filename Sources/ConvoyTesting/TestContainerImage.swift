import Foundation

/// A tiny real container image for runner tests: a root file system of busybox-static (the
/// binary and its applet links), `podman import`ed and `podman save`d to a tarball, as a user
/// would make one for `convoy images upload`. Podman runs with a private containers.conf (runc,
/// explicit ulimits, no network by default): its default runtime crun fails on these machines.
public enum TestContainerImage {
    /// The image's name in the local podman store.
    public static let name = "localhost/convoy-test/busybox:1"

    private static let lock = NSLock()
    /// Built once per test process. `nonisolated(unsafe)`: only touched under `lock`.
    private nonisolated(unsafe) static var built: Result<(tarball: String, conf: String), Error>?

    /// The private containers.conf to point `CONTAINERS_CONF` at.
    public static func containersConf() throws -> String {
        try build().conf
    }

    /// The image tarball (`podman save` output).
    public static func tarball() throws -> String {
        try build().tarball
    }

    /// The environment the runner (and podman) should run with.
    public static func environment() throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["CONTAINERS_CONF"] = try containersConf()
        return environment
    }

    private static func build() throws -> (tarball: String, conf: String) {
        try lock.withLock {
            if let built { return try built.get() }
            let result = Result { try make() }
            built = result
            return try result.get()
        }
    }

    private static func make() throws -> (tarball: String, conf: String) {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-image")
        let conf = directory.appendingPathComponent("containers.conf").path
        try """
            [containers]
            default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
            netns = "none"

            [engine]
            runtime = "runc"

            """.write(toFile: conf, atomically: true, encoding: .utf8)
        guard let busybox = ["/bin/busybox", "/usr/bin/busybox"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestProcess.Failure("busybox is not installed: run `make deps` (busybox-static)")
        }
        let root = directory.appendingPathComponent("rootfs")
        for name in ["bin", "tmp", "proc", "dev", "sys", "etc", "out"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: busybox, toPath: root.appendingPathComponent("bin/busybox").path)
        let applets = try TestProcess.run(busybox, ["--list"]).stdout.split(separator: "\n")
        for applet in applets where applet != "busybox" {
            try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("bin/\(applet)").path, withDestinationPath: "busybox")
        }
        let rootfs = directory.appendingPathComponent("rootfs.tar").path
        try TestProcess.run("/bin/tar", ["-C", root.path, "-cf", rootfs, "."])
        var environment = ProcessInfo.processInfo.environment
        environment["CONTAINERS_CONF"] = conf
        let podman = "/usr/bin/podman"
        guard FileManager.default.isExecutableFile(atPath: podman) else {
            throw TestProcess.Failure("podman is not installed: run `make deps`")
        }
        try TestProcess.run(podman, ["import", "--quiet", "--change", "ENV=PATH=/bin", rootfs, name], environment: environment)
        let tarball = directory.appendingPathComponent("busybox-image.tar").path
        try TestProcess.run(podman, ["save", "--quiet", "--output", tarball, name], environment: environment)
        // Runs must load it from its collection, not find it already there.
        try TestProcess.run(podman, ["rmi", "--force", name], environment: environment)
        return (tarball, conf)
    }

    /// Removes images the runner loaded (tagged by content hash), so the next test loads again.
    public static func removeLoadedImages() {
        guard let conf = try? containersConf() else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["CONTAINERS_CONF"] = conf
        guard let listing = try? TestProcess.run("/usr/bin/podman", ["images", "--format", "{{.Repository}}:{{.Tag}}"],
                                                 environment: environment, check: false) else { return }
        for image in listing.stdout.split(separator: "\n") where image.hasPrefix("localhost/convoy-image:") || image == name {
            _ = try? TestProcess.run("/usr/bin/podman", ["rmi", "--force", String(image)], environment: environment, check: false)
        }
    }
}
