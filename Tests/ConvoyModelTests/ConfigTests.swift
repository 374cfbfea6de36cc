import ConvoyModel
import XCTest

/// The configuration file's dispatcher sections: Arvados' keys and units, clear errors.
final class ConfigTests: XCTestCase {
    private let base = """
        ClusterID: zzzzz
        SystemRootToken: \(String(repeating: "a", count: 40))
        PostgreSQL:
          Connection:
            host: 127.0.0.1
        """

    private func parse(_ extra: String) throws -> ConvoyConfig {
        try ConvoyConfig.parse(yaml: base + "\n" + extra)
    }

    private func error(_ extra: String) -> String {
        do {
            _ = try parse(extra)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testInstanceTypesAndCloudVMsParseWithArvadosUnits() throws {
        let config = try parse("""
            InstanceTypes:
              small: {ProviderType: t3.small, VCPUs: 2, RAM: 2GiB, Scratch: 20GB, Price: 0.02}
              spot: {VCPUs: 4, RAM: 8589934592, Price: 0.03, Preemptible: true}
            Containers:
              ReserveExtraRAM: 512MiB
              MinRetryPeriod: 30s
              CloudVMs:
                Driver: ec2
                DriverParameters: {Region: us-east-1, ImageID: ami-1}
                TimeoutIdle: 2m
                ProbeInterval: 500ms
                MaxInstances: 10
            Dispatch:
              ClusterSecret: 0123456789abcdef0123456789abcdef
              ManagementToken: fedcba9876543210
              LeaseTime: 5s
            """)
        XCTAssertEqual(config.instanceTypes, [
            InstanceType(name: "small", providerType: "t3.small", vcpus: 2, ram: 2 << 30, scratch: 20_000_000_000, price: 0.02),
            InstanceType(name: "spot", vcpus: 4, ram: 8 << 30, price: 0.03, preemptible: true),
        ])
        XCTAssertEqual(config.containers.reserveExtraRAM, 512 << 20)
        XCTAssertEqual(config.containers.minRetryPeriod, .seconds(30))
        XCTAssertEqual(config.containers.cloudVMs.driver, "ec2")
        XCTAssertEqual(config.containers.cloudVMs.driverParameters["Region"], "us-east-1")
        XCTAssertEqual(config.containers.cloudVMs.timeoutIdle, .seconds(120))
        XCTAssertEqual(config.containers.cloudVMs.probeInterval, .milliseconds(500))
        XCTAssertEqual(config.containers.cloudVMs.maxInstances, 10)
        XCTAssertEqual(config.dispatch.leaseTime, .seconds(5))
        XCTAssertNoThrow(try config.dispatch.validateForDispatch())
    }

    func testTheAPIsStatementTimeoutHasADefaultTakesArvadosUnitsAndRefusesZero() throws {
        XCTAssertEqual(try parse("").api.statementTimeout, .seconds(30))
        XCTAssertEqual(try parse("API:\n  StatementTimeout: 2m").api.statementTimeout, .seconds(120))
        XCTAssertTrue(error("API:\n  StatementTimeout: 0s").contains("API.StatementTimeout must be at least 1ms"), error("API:\n  StatementTimeout: 0s"))
        XCTAssertTrue(error("API:\n  StatementTimeout: soon").contains("StatementTimeout"), error("API:\n  StatementTimeout: soon"))
    }

    func testMaximumPriceFactorDefaultsToArvadosOneAndAHalfAndRefusesLessThanOne() throws {
        XCTAssertEqual(try parse("").containers.maximumPriceFactor, 1.5)
        XCTAssertEqual(try parse("Containers:\n  MaximumPriceFactor: 2").containers.maximumPriceFactor, 2)
        for bad in ["0.5", "-1", "1e300", ".nan", "lots"] {
            let message = error("Containers:\n  MaximumPriceFactor: \(bad)")
            XCTAssertTrue(message.contains("MaximumPriceFactor"), "\(bad): \(message)")
        }
        XCTAssertTrue(error("Containers:\n  MaximumPriceFactor: 0.5").contains("must be a number from 1 to 100"))
    }

    func testInstanceTypeQuotaGroupsAreAMapInDriverParametersAndTimeoutShutdownHasArvadosDefault() throws {
        let config = try parse("""
            Containers:
              CloudVMs:
                Driver: ec2
                DriverParameters:
                  Region: us-east-1
                  PageSize: 100
                  InstanceTypeQuotaGroups: {trn: trainium, p: gpu}
                TimeoutShutdown: 30s
            """)
        XCTAssertEqual(config.containers.cloudVMs.instanceTypeQuotaGroups, ["trn": "trainium", "p": "gpu"])
        XCTAssertEqual(config.containers.cloudVMs.driverParameters, ["Region": "us-east-1", "PageSize": "100"],
                       "the drivers see only their own scalar keys")
        XCTAssertEqual(config.containers.cloudVMs.timeoutShutdown, .seconds(30))
        XCTAssertEqual(try parse("").containers.cloudVMs.timeoutShutdown, .seconds(10))
        let scalar = error("Containers:\n  CloudVMs:\n    DriverParameters: {InstanceTypeQuotaGroups: gpu}")
        XCTAssertTrue(scalar.contains("InstanceTypeQuotaGroups must map provider type prefixes to group names"), scalar)
        let map = error("Containers:\n  CloudVMs:\n    DriverParameters: {Region: {a: b}}")
        XCTAssertTrue(map.contains("DriverParameters.Region must be a single value"), map)
        let zero = error("Containers:\n  CloudVMs:\n    TimeoutShutdown: 0s")
        XCTAssertTrue(zero.contains("TimeoutShutdown must be more than 0"), zero)
    }

    func testAlwaysUsePreemptibleInstancesIsOffUnlessSetAndMustBeABoolean() throws {
        XCTAssertFalse(try parse("").containers.alwaysUsePreemptibleInstances)
        XCTAssertTrue(try parse("Containers:\n  AlwaysUsePreemptibleInstances: true").containers.alwaysUsePreemptibleInstances)
        let garbage = error("Containers:\n  AlwaysUsePreemptibleInstances: sometimes")
        XCTAssertTrue(garbage.contains("AlwaysUsePreemptibleInstances"), garbage)
    }

    /// Issue 20: Arvados' IncludedScratch and AddedScratch (their sum is the scratch; the added
    /// part is what the cloud adds at boot), ResourceTags and InstanceInitCommand; mistakes named.
    func testScratchPartsResourceTagsAndTheInitCommandParseAndMistakesAreNamed() throws {
        let config = try parse("""
            InstanceTypes:
              big: {VCPUs: 8, RAM: 32GiB, IncludedScratch: 10GB, AddedScratch: 100GB, Price: 0.4}
            Containers:
              CloudVMs:
                ResourceTags: {team: genomics, cost-center: "42"}
                InstanceInitCommand: "mkfs.ext4 /dev/xvdt && mount /dev/xvdt /var/lib/convoy/work"
            """)
        let big = try XCTUnwrap(config.instanceTypes.first)
        XCTAssertEqual(big.scratch, 110_000_000_000)
        XCTAssertEqual(big.addedScratch, 100_000_000_000)
        XCTAssertEqual(config.containers.cloudVMs.resourceTags, ["team": "genomics", "cost-center": "42"])
        XCTAssertEqual(config.containers.cloudVMs.instanceInitCommand, "mkfs.ext4 /dev/xvdt && mount /dev/xvdt /var/lib/convoy/work")
        for (yaml, message) in [
            ("InstanceTypes:\n  t: {VCPUs: 1, RAM: 1GiB, Scratch: 1GB, AddedScratch: 1GB}", "give Scratch, or IncludedScratch and AddedScratch, not both"),
            ("InstanceTypes:\n  t: {VCPUs: 1, RAM: 1GiB, AddedScratch: lots}", "AddedScratch must be a size"),
            ("Containers:\n  CloudVMs:\n    ResourceTags: [a, b]", "ResourceTags must be a map"),
            ("Containers:\n  CloudVMs:\n    ResourceTags: {convoy-cluster: x}", "'convoy-cluster' is Convoy's own tag"),
        ] {
            let refused = error(yaml)
            XCTAssertTrue(refused.contains(message), "\(yaml): \(refused)")
        }
    }

    /// Issue 20: docker is not a runtime here (podman runs the same images); saying it is an
    /// error naming the way out, not a cluster that silently runs podman.
    func testRuntimeEngineIsPodmanBwrapOrProcessAndDockerIsRefusedWithTheWayOut() throws {
        XCTAssertEqual(try parse("").containers.runtimeEngine, "podman")
        for engine in ["bwrap", "process"] {
            XCTAssertEqual(try parse("Containers:\n  RuntimeEngine: \(engine)").containers.runtimeEngine, engine)
        }
        let docker = error("Containers:\n  RuntimeEngine: docker")
        XCTAssertTrue(docker.contains("Containers.RuntimeEngine docker is not supported: use podman"), docker)
        let other = error("Containers:\n  RuntimeEngine: lxc")
        XCTAssertTrue(other.contains("must be podman, bwrap or process, not 'lxc'"), other)
    }

    /// Issue 20: Containers.Logging, Arvados' keys and defaults (30m, 32MiB passed to runners;
    /// MaxAge 720h for the logs table).
    func testContainersLoggingTakesArvadosDefaultsAndRefusesNonsense() throws {
        XCTAssertEqual(try parse("").containers.logging,
                       ContainersLoggingConfig(logUpdatePeriod: .seconds(1800), logUpdateSize: 32 << 20, maxAge: .seconds(720 * 3600)))
        let set = try parse("Containers:\n  Logging:\n    LogUpdatePeriod: 5m\n    LogUpdateSize: 1MiB\n    MaxAge: 1h").containers.logging
        XCTAssertEqual(set, ContainersLoggingConfig(logUpdatePeriod: .seconds(300), logUpdateSize: 1 << 20, maxAge: .seconds(3600)))
        for (yaml, message) in [("LogUpdatePeriod: 0s", "LogUpdatePeriod must be at least 1s"), ("LogUpdatePeriod: often", "LogUpdatePeriod must be a duration"),
                                ("LogUpdateSize: lots", "LogUpdateSize must be a size"), ("LogUpdateSize: 0", "LogUpdateSize must be more than 0"),
                                ("MaxAge: soon", "MaxAge must be a duration"), ("LogThrottleBytes: 1", "LogThrottleBytes")] {
            let refused = error("Containers:\n  Logging:\n    \(yaml)")
            XCTAssertTrue(refused.contains(message), "\(yaml): \(refused)")
        }
    }

    func testSyncIntervalTakesArvadosDefaultAndRefusesZeroAndGarbage() throws {
        XCTAssertEqual(try parse("").containers.cloudVMs.syncInterval, .seconds(60), "Arvados' 1m")
        XCTAssertEqual(try parse("Containers:\n  CloudVMs:\n    SyncInterval: 15s").containers.cloudVMs.syncInterval, .seconds(15))
        let zero = error("Containers:\n  CloudVMs:\n    SyncInterval: 0s")
        XCTAssertTrue(zero.contains("SyncInterval must be more than 0"), zero)
        let garbage = error("Containers:\n  CloudVMs:\n    SyncInterval: often")
        XCTAssertTrue(garbage.contains("SyncInterval must be a duration"), garbage)
    }

    func testInitialQuotaEstimateAndSupervisorFractionTakeArvadosDefaultsAndRefuseNonsense() throws {
        let defaults = try parse("").containers.cloudVMs
        XCTAssertEqual(defaults.maxRunningContainersPerInstance, 0, "as many as fit, as Arvados")
        XCTAssertEqual(try parse("Containers:\n  CloudVMs:\n    MaxRunningContainersPerInstance: 1").containers.cloudVMs.maxRunningContainersPerInstance, 1)
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    MaxRunningContainersPerInstance: -2").contains("MaxRunningContainersPerInstance must be 0"))
        XCTAssertEqual(defaults.initialQuotaEstimate, 0)
        XCTAssertEqual(defaults.supervisorFraction, 0.5)
        let set = try parse("Containers:\n  CloudVMs:\n    InitialQuotaEstimate: 40\n    SupervisorFraction: 0.25").containers.cloudVMs
        XCTAssertEqual(set.initialQuotaEstimate, 40)
        XCTAssertEqual(set.supervisorFraction, 0.25)
        let negative = error("Containers:\n  CloudVMs:\n    InitialQuotaEstimate: -1")
        XCTAssertTrue(negative.contains("InitialQuotaEstimate must be 0"), negative)
        for bad in ["1.5", "-0.1", ".nan"] {
            let message = error("Containers:\n  CloudVMs:\n    SupervisorFraction: \(bad)")
            XCTAssertTrue(message.contains("SupervisorFraction must be a number from 0"), "\(bad): \(message)")
        }
    }

    func testTimeoutSignalAndTimeoutTERMTakeArvadosDefaultsAndMustBeOrdered() throws {
        let defaults = try parse("").containers.cloudVMs
        XCTAssertEqual(defaults.timeoutSignal, .seconds(5))
        XCTAssertEqual(defaults.timeoutTERM, .seconds(120))
        let set = try parse("Containers:\n  CloudVMs:\n    TimeoutSignal: 2s\n    TimeoutTERM: 1m").containers.cloudVMs
        XCTAssertEqual(set.timeoutSignal, .seconds(2))
        XCTAssertEqual(set.timeoutTERM, .seconds(60))
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    TimeoutSignal: 10s\n    TimeoutTERM: 5s").contains("TimeoutTERM at least as long"))
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    TimeoutSignal: 0s").contains("TimeoutSignal must be more than 0"))
    }

    func testMaxProbesPerSecondTakesArvadosDefaultAndZeroMeansNoLimit() throws {
        XCTAssertEqual(try parse("").containers.cloudVMs.maxProbesPerSecond, 10)
        XCTAssertEqual(try parse("Containers:\n  CloudVMs:\n    MaxProbesPerSecond: 0").containers.cloudVMs.maxProbesPerSecond, 0)
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    MaxProbesPerSecond: -1").contains("MaxProbesPerSecond must be 0 (no limit) or more"))
    }

    func testPreemptiblePriceFactorAddsASpotTwinOfEachOnDemandTypeAsArvadosDoes() throws {
        let types = """
            InstanceTypes:
              small: {ProviderType: t3.small, VCPUs: 2, RAM: 2GiB, Price: 0.02}
              large: {ProviderType: m5.4xlarge, VCPUs: 16, RAM: 64GiB, Price: 0.8}
              large.preemptible: {ProviderType: m5.4xlarge, VCPUs: 16, RAM: 64GiB, Price: 0.3, Preemptible: true}
            """
        XCTAssertEqual(try parse(types).instanceTypes.map(\.name), ["large", "large.preemptible", "small"], "default 0: none added")
        let spot = try parse(types + "\nContainers:\n  PreemptiblePriceFactor: 0.4").instanceTypes
        XCTAssertEqual(spot.map(\.name), ["large", "large.preemptible", "small", "small.preemptible"])
        let twin = try XCTUnwrap(spot.first { $0.name == "small.preemptible" })
        XCTAssertTrue(twin.preemptible)
        XCTAssertEqual(twin.providerType, "t3.small", "the same provider type, on the spot market")
        XCTAssertEqual(twin.price, 0.02 * 0.4, accuracy: 1e-12)
        XCTAssertEqual(spot.first { $0.name == "large.preemptible" }?.price, 0.3, "a configured type of that name wins")
        for bad in ["-0.5", ".nan", "101"] {
            let message = error("Containers:\n  PreemptiblePriceFactor: \(bad)")
            XCTAssertTrue(message.contains("PreemptiblePriceFactor must be a number from 0"), "\(bad): \(message)")
        }
    }

    func testMistakesInTheDispatcherSectionsAreNamed() {
        XCTAssertTrue(error("InstanceTypes:\n  small: {VCPUs: 2, RAM: lots}").contains("InstanceTypes.small.RAM must be a size"))
        XCTAssertTrue(error("InstanceTypes:\n  small: {VCPUs: 2, RAM: 1GiB, Cores: 4}").contains("unknown key 'InstanceTypes.small.Cores'"))
        XCTAssertTrue(error("InstanceTypes:\n  small: {RAM: 1GiB}").contains("VCPUs is required"))
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    Driver: azure").contains("Driver must be loopback, ec2 or stub"))
        XCTAssertTrue(error("Containers:\n  CloudVMs:\n    TimeoutIdle: soon").contains("TimeoutIdle must be a duration"))
        XCTAssertTrue(error("Dispatch:\n  RetryPeriod: 1 fortnight").contains("Dispatch.RetryPeriod must be a duration"))
        XCTAssertTrue(error("Dispatch:\n  Secret: x").contains("unknown key 'Dispatch.Secret'"))
        let noSecret = (try? parse("Dispatch:\n  ManagementToken: fedcba9876543210"))?.dispatch
        XCTAssertThrowsError(try noSecret?.validateForDispatch()) { error in
            XCTAssertTrue("\(error)".contains("ClusterSecret"))
        }
    }

    /// The cluster secret keys the handshake's proofs: one a stranger could guess is refused at start-up.
    func testAClusterSecretOfLessThan128BitsIsRefusedAtStartUp() throws {
        for weak in ["0123456789abcdef", "password-password", String(repeating: "a", count: 27)] {
            let dispatch = try parse("Dispatch:\n  ClusterSecret: \(weak)\n  ManagementToken: fedcba9876543210").dispatch
            XCTAssertThrowsError(try dispatch.validateForDispatch(), weak) { error in
                XCTAssertTrue("\(error)".contains("at least 128 are required"), "\(error)")
            }
        }
        for strong in ["0123456789abcdef0123456789abcdef", "a-cluster-secret-for-tests", "Zq8-v1sP_x3LmT9rKd2WbQ"] {
            let dispatch = try parse("Dispatch:\n  ClusterSecret: \(strong)\n  ManagementToken: fedcba9876543210").dispatch
            XCTAssertNoThrow(try dispatch.validateForDispatch(), strong)
        }
        XCTAssertEqual(DispatchConfig.estimatedBits("0123456789abcdef0123456789abcdef"), 165)
    }

    /// deploy/config.example.yml stays a valid configuration (its secret files swapped for values).
    func testTheDeployExampleConfigurationParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var text = try String(contentsOf: root.appendingPathComponent("deploy/config.example.yml"), encoding: .utf8)
        let secrets = ["SystemRootTokenFile": "SystemRootToken", "ClusterSecretFile": "ClusterSecret",
                       "ManagementTokenFile": "ManagementToken", "APITokenFile": "APIToken"]
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            var replaced = line
            for (fileKey, key) in secrets where line.trimmingCharacters(in: .whitespaces).hasPrefix(fileKey + ":") {
                let indent = line.prefix { $0 == " " }
                replaced = "\(indent)\(key): \(String(repeating: "s", count: 40))"
            }
            lines.append(replaced)
        }
        text = lines.joined(separator: "\n")
        let config = try ConvoyConfig.parse(yaml: text)
        XCTAssertEqual(config.containers.cloudVMs.driver, "ec2")
        XCTAssertEqual(config.instanceTypes.count, 4)
        XCTAssertEqual(config.dispatch.apiHost, "api.internal:8443")
        XCTAssertEqual(config.containers.runtimeEngine, "podman")
        XCTAssertEqual(config.instanceTypes.first { $0.name == "m5xlarge" }?.addedScratch, 50_000_000_000)
        XCTAssertEqual(config.containers.cloudVMs.resourceTags["team"], "research")
    }

    func testClientConfigFillsOnlyWhatTheEnvironmentLeavesUnset() throws {
        let config = try ClientConfig.parse(yaml: """
            APIHost: "127.0.0.1:8443"
            APIToken: file-token
            APIHostInsecure: true
            ManagementURL: http://127.0.0.1:9103
            ManagementToken: file-management
            """)
        let filled = config.filling(["ARVADOS_API_TOKEN": "env-token", "CONVOY_MANAGEMENT_TOKEN": "env-management", "HOME": "/root"])
        XCTAssertEqual(filled["CONVOY_API_HOST"], "127.0.0.1:8443")
        XCTAssertNil(filled["CONVOY_API_TOKEN"], "ARVADOS_API_TOKEN in the environment wins over the file")
        XCTAssertEqual(filled["CONVOY_API_HOST_INSECURE"], "1")
        XCTAssertEqual(filled["CONVOY_MGMT_URL"], "http://127.0.0.1:9103")
        XCTAssertNil(filled["CONVOY_MGMT_TOKEN"])
        XCTAssertEqual(filled["HOME"], "/root")
        XCTAssertEqual(try ClientConfig.parse(yaml: config.yaml(comment: "written by a test")), config, "what yaml(comment:) writes reads back")
        XCTAssertEqual(try ClientConfig.parse(yaml: ""), ClientConfig())
        XCTAssertThrowsError(try ClientConfig.parse(yaml: "APIHost: x\nAPITokn: y\n")) { error in
            XCTAssertTrue("\(error)".contains("APITokn"), "\(error)")
        }
        XCTAssertEqual(ClientConfig.defaultPath(environment: ["HOME": "/home/u"]), "/home/u/.config/convoy/config.yaml")
        XCTAssertEqual(ClientConfig.defaultPath(environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "/x"]), "/x/convoy/config.yaml")
    }
}
