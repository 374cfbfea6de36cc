import ConvoyDispatch
import ConvoyHTTP
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The EC2 driver against moto_server over real HTTP with SigV4, with EC2 errors injected by the
/// harness's proxy; and the leader's reaction to them in a real `convoy dispatch`.
final class EC2DriverTests: PostgresTestCase {
    private var cloud: TestEC2Cloud!

    override func setUp() async throws {
        cloud = try await TestEC2Cloud.start()
    }

    override func tearDown() async throws {
        await cloud?.stop()
    }

    private let small = InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 1 << 30, price: 0.02)
    private let spot = InstanceType(name: "spot", providerType: "m5.large", vcpus: 2, ram: 8 << 30, price: 0.03, preemptible: true)

    private func driver(cluster: String = "zzzzz", pageSize: Int = 1000) -> EC2Driver {
        EC2Driver(EC2Driver.Settings(clusterID: cluster, region: "us-east-1", endpoint: cloud.endpoint, accessKeyID: "testing",
                                     secretAccessKey: "testing", imageID: "ami-12c6146b", pageSize: pageSize),
                  instanceTypes: [small, spot])
    }

    func testCreateListByTagAcrossPagesSetTagsAndDestroy() async throws {
        let driver = driver(pageSize: 5)
        var created: [CloudInstance] = []
        for index in 0..<7 {
            created.append(try await driver.create(index % 2 == 0 ? small : spot, tags: [CloudTag.createdBy: "test"]))
        }
        // Another cluster's instance is not ours.
        _ = try await self.driver(cluster: "yyyyy").create(small, tags: [:])
        XCTAssertEqual(Set(created.map(\.id)).count, 7)
        XCTAssertTrue(created.allSatisfy { $0.address.contains(".") && $0.sshPort == 22 && $0.hostKey == nil })

        var listed = try await driver.instances()
        XCTAssertEqual(Set(listed.map(\.id)), Set(created.map(\.id)), "all seven, over two pages of five")
        XCTAssertTrue(cloud.actions.filter { $0 == "DescribeInstances" }.count >= 2, "\(cloud.actions)")
        let first = try XCTUnwrap(listed.first { $0.id == created[0].id })
        XCTAssertEqual(first.typeName, "small")
        XCTAssertEqual(first.tags[CloudTag.cluster], "zzzzz")
        XCTAssertEqual(first.tags[CloudTag.createdBy], "test")
        XCTAssertEqual(listed.first { $0.id == created[1].id }?.typeName, "spot")

        try await driver.setTags(created[0].id, [CloudTag.idleBehavior: "drain"])
        try await driver.destroy(created[1].id)
        try await driver.destroy(created[2].id)
        listed = try await driver.instances()
        XCTAssertEqual(listed.count, 5)
        XCTAssertFalse(listed.contains { $0.id == created[1].id || $0.id == created[2].id })
        XCTAssertEqual(listed.first { $0.id == created[0].id }?.tags[CloudTag.idleBehavior], "drain")
    }

    /// One EC2 query straight to moto (SigV4, as the driver signs), answered as text.
    private func ec2(_ action: String, _ parameters: [(String, String)]) async throws -> String {
        let http = HTTPClient(configuration: HTTPClientConfiguration(
            sigV4: AWSSigV4Credentials(accessKeyID: "testing", secretAccessKey: "testing", region: "us-east-1", service: "ec2")))
        defer { http.shutdown() }
        let body = ([("Action", action), ("Version", "2016-11-15")] + parameters)
            .map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0.1)" }.joined(separator: "&")
        let response = try await http.execute(HTTPRequest(method: "POST", url: cloud.endpoint,
                                                          headers: [(name: "Content-Type", value: "application/x-www-form-urlencoded")],
                                                          body: Array(body.utf8)))
        XCTAssertEqual(response.status, 200, response.bodyText)
        return response.bodyText
    }

    /// Issue 20: Arvados' ResourceTags on every instance and its volume, InstanceInitCommand as
    /// the instance's user data, and a type's AddedScratch as an EBS volume of that size (GiB,
    /// rounded up) deleted with the instance; a type without AddedScratch gets no volume.
    func testResourceTagsUserDataAndAnAddedScratchVolumeReachTheInstance() async throws {
        var scratchy = small
        scratchy.name = "scratchy"
        scratchy.addedScratch = 50_000_000_000
        let driver = EC2Driver(EC2Driver.Settings(clusterID: "zzzzz", region: "us-east-1", endpoint: cloud.endpoint, accessKeyID: "testing",
                                                  secretAccessKey: "testing", imageID: "ami-12c6146b",
                                                  resourceTags: ["team": "genomics", "cost-center": "42"],
                                                  instanceInitCommand: "mkdir -p /var/lib/convoy && echo ready > /var/lib/convoy/init"),
                               instanceTypes: [small, scratchy])
        let withVolume = try await driver.create(scratchy, tags: [CloudTag.createdBy: "test"])
        let plain = try await driver.create(small, tags: [:])
        let listed = try await driver.instances()
        let tags = try XCTUnwrap(listed.first { $0.id == withVolume.id }?.tags)
        XCTAssertEqual(tags["team"], "genomics")
        XCTAssertEqual(tags["cost-center"], "42")
        XCTAssertEqual(tags[CloudTag.cluster], "zzzzz", "Convoy's own tags as before")
        XCTAssertEqual(tags[CloudTag.createdBy], "test")

        let userData = try await ec2("DescribeInstanceAttribute", [("InstanceId", withVolume.id), ("Attribute", "userData")])
        let encoded = try XCTUnwrap(userData.range(of: #"(?<=<value>)[A-Za-z0-9+/=]+(?=</value>)"#, options: .regularExpression).map { String(userData[$0]) },
                                    userData)
        XCTAssertEqual(String(decoding: try XCTUnwrap(Data(base64Encoded: encoded)), as: UTF8.self),
                       "#!/bin/sh\nmkdir -p /var/lib/convoy && echo ready > /var/lib/convoy/init\n")

        let described = try await ec2("DescribeInstances", [("InstanceId.1", withVolume.id)])
        let device = try XCTUnwrap(described.range(of: "/dev/xvdt"), "the added volume's device: \(described)")
        let after = described[device.upperBound...]
        let volume = try XCTUnwrap(after.range(of: #"vol-[0-9a-f]+"#, options: .regularExpression).map { String(after[$0]) }, described)
        let volumes = try await ec2("DescribeVolumes", [("VolumeId.1", volume)])
        XCTAssertTrue(volumes.contains("<size>47</size>"), "50 GB is 46.6 GiB, rounded up: \(volumes)")
        XCTAssertTrue(volumes.contains("<volumeType>gp3</volumeType>"), volumes)
        XCTAssertTrue(volumes.contains("genomics"), "the volume carries the tags too: \(volumes)")
        let plainDescribed = try await ec2("DescribeInstances", [("InstanceId.1", plain.id)])
        XCTAssertFalse(plainDescribed.contains("/dev/xvdt"), "no AddedScratch, no volume")
    }

    /// Issue 20: without keys the driver signs with the dispatcher host's instance role, read
    /// from the metadata service with IMDSv2, and reads it again once it is within five minutes
    /// of expiring (not on every call); a host without a role is told so.
    func testWithoutKeysTheInstanceRoleSignsAndIsReadAgainBeforeItExpires() async throws {
        let imds = try await TestInstanceMetadataServer.start()
        let cloudVMs = CloudVMsConfig(driver: "ec2", driverParameters: ["Region": "us-east-1", "ImageID": "ami-12c6146b", "Endpoint": cloud.endpoint])
        let settings = try EC2Driver.settings(clusterID: "zzzzz", cloud: cloudVMs, environment: ["CONVOY_EC2_METADATA_URL": imds.baseURL])
        XCTAssertEqual(settings.instanceRoleMetadataURL, imds.baseURL)
        XCTAssertThrowsError(try EC2Driver.settings(clusterID: "zzzzz", cloud: cloudVMs, environment: ["AWS_ACCESS_KEY_ID": "only-half"])) { error in
            XCTAssertTrue("\(error)".contains("needs both AccessKeyID and SecretAccessKey"), "\(error)")
        }
        let driver = EC2Driver(settings, instanceTypes: [small])
        do {
            _ = try await driver.instances()
            XCTFail("listed without credentials")
        } catch {
            XCTAssertTrue("\(error)".contains("this host has no instance role"), "\(error)")
        }
        XCTAssertTrue(cloud.signers.isEmpty, "nothing was sent unsigned")

        imds.setRole(.init(role: "convoy-dispatch", accessKeyID: "ASIAFIRST", secretAccessKey: "secret-1", token: "token-1",
                           expiration: Date().addingTimeInterval(200)))
        _ = try await driver.instances()
        XCTAssertEqual(cloud.signers.last?.accessKeyID, "ASIAFIRST")
        XCTAssertEqual(cloud.signers.last?.token, "token-1")
        imds.setRole(.init(role: "convoy-dispatch", accessKeyID: "ASIASECOND", secretAccessKey: "secret-2", token: "token-2",
                           expiration: Date().addingTimeInterval(3600)))
        _ = try await driver.create(small, tags: [:])
        XCTAssertEqual(cloud.signers.last?.accessKeyID, "ASIASECOND", "the first expired within five minutes: read again")
        XCTAssertEqual(cloud.signers.last?.token, "token-2")
        let reads = imds.credentialReads
        _ = try await driver.instances()
        XCTAssertEqual(imds.credentialReads, reads, "fresh credentials are not read again")
        XCTAssertEqual(cloud.signers.last?.accessKeyID, "ASIASECOND")
        await imds.stop()
    }

    func testQuotaCapacityAndThrottlingAreToldApartAndThrottlingSaysWhenToRetry() async throws {
        let driver = driver()
        // The account's limit (every type), one type's capacity, a quota group's vCPU limit.
        let expected: [(code: String, kind: String)] = [("InstanceLimitExceeded", "quota"), ("MaxSpotInstanceCountExceeded", "quota"),
                                                        ("InsufficientInstanceCapacity", "capacity of spot"),
                                                        ("VcpuLimitExceeded", "capacity of spot's group")]
        for (code, kind) in expected {
            cloud.inject(code, into: "RunInstances")
            do {
                _ = try await driver.create(spot, tags: [:])
                XCTFail("\(code) was not reported")
            } catch let error as CloudError {
                switch error {
                case .quota(let message):
                    XCTAssertEqual(kind, "quota", code)
                    XCTAssertTrue(message.contains(code), message)
                case .capacity(let type, let group, let message):
                    XCTAssertEqual(kind, group ? "capacity of \(type)'s group" : "capacity of \(type)", code)
                    XCTAssertTrue(message.contains(code), message)
                default:
                    XCTFail("\(code) read as \(error)")
                }
            }
        }
        // Throttled calls in a row wait longer each time (1 s, 2.5 s, 4.75 s); an answer resets it.
        var delays: [Double?] = []
        for _ in 0..<3 {
            cloud.inject("RequestLimitExceeded", status: 503, into: "DescribeInstances")
            do {
                _ = try await driver.instances()
                XCTFail("throttling was not reported")
            } catch CloudError.rateLimited(let message, let retryAfter) {
                XCTAssertTrue(message.contains("RequestLimitExceeded"), message)
                delays.append(retryAfter)
            }
        }
        XCTAssertEqual(delays, [1, 2.5, 4.75])
        _ = try await driver.instances()
        cloud.inject("Throttling", into: "DescribeInstances")
        do {
            _ = try await driver.instances()
            XCTFail("throttling was not reported")
        } catch CloudError.rateLimited(_, let retryAfter) {
            XCTAssertEqual(retryAfter, 1, "a call that went through resets the delay")
        }
        XCTAssertEqual((1...12).reduce(0.0) { delay, _ in EC2Driver.nextThrottleDelay(after: delay) }, 60, "at most a minute")
        cloud.inject("InvalidAMIID.Malformed", into: "RunInstances")
        do {
            _ = try await driver.create(small, tags: [:])
            XCTFail("a bad request was not reported")
        } catch CloudError.failed(let message) {
            XCTAssertTrue(message.contains("InvalidAMIID.Malformed"), message)
        }
        // Nothing was created by the refused calls; the next call works.
        let listed = try await driver.instances()
        XCTAssertEqual(listed.count, 0)
        _ = try await driver.create(small, tags: [:])
        let after = try await driver.instances()
        XCTAssertEqual(after.count, 1)
    }

    func testTheHostKeyIsReadFromCloudInitsConsoleOutput() {
        let console = """
            [   12.3] cloud-init[801]: ...
            -----BEGIN SSH HOST KEY KEYS-----
            ecdsa-sha2-nistp256 AAAAE2VjZHNh root@ip-10-0-0-5
            ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFx root@ip-10-0-0-5
            -----END SSH HOST KEY KEYS-----
            """
        XCTAssertEqual(EC2Driver.hostKey(inConsoleOutput: console), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFx")
        XCTAssertNil(EC2Driver.hostKey(inConsoleOutput: "booting…"))
    }

    /// The leader in a real `convoy dispatch` on the ec2 driver: a capacity refusal holds only that
    /// type; throttling stops every cloud call until the retry time the driver gave (1 s, then
    /// 2.5 s for a second throttle in a row), and calls resume after it.
    func testTheLeaderHoldsATypeWithoutCapacityAndWaitsOutEachThrottlesRetryTime() async throws {
        let api = try await TestAPIServer.start(database: try postgresServer())
        defer { Task { await api.stop() } }
        let pool = try TestDispatchPool(apiHost: "http://\(api.hostAndPort)", apiToken: api.dispatcherToken, cloudVMs: [
            "Driver": "ec2",
            "DriverParameters": "{Region: us-east-1, Endpoint: \"\(cloud.endpoint)\", AccessKeyID: testing, SecretAccessKey: testing, ImageID: ami-12c6146b}",
            "MaxConcurrentInstanceCreateOps": "1",
        ])
        let replica = try TestDispatchReplica.start(database: try postgresServer(), memberID: "e1", pool: pool)
        defer { replica.remove() }
        // The medium container has the higher priority, so its type is asked for first.
        cloud.inject("InsufficientInstanceCapacity", into: "RunInstances")
        for (vcpus, ram, priority) in [(2, Int64(2) << 30, 10), (1, Int64(512) << 20, 5)] {
            _ = try await api.services.containers.create(
                ContainerSpec(command: ["true"], runtimeConstraints: RuntimeConstraints(vcpus: vcpus, ram: ram), priority: priority),
                on: api.services.database)
        }
        let driver = driver()
        _ = try await eventually(within: .seconds(20), every: .milliseconds(200)) { try await driver.instances() } until: { !$0.isEmpty }
        // Not synchronisation: a negative check, the held type is not asked for again within 2 s.
        try await Task.sleep(for: .seconds(2))
        let types = try await driver.instances().map(\.typeName)
        // The medium type is held after its refusal; the small one was created meanwhile.
        XCTAssertEqual(types, ["small"], replica.log)
        XCTAssertEqual(cloud.actions.filter { $0 == "RunInstances" }.count, 2, "\(cloud.actions)")
        XCTAssertTrue(replica.log.contains("no capacity for medium"), replica.log)

        // Throttled twice in a row: no cloud call for 1 s after the first, 2.5 s after the second.
        let before = cloud.actions.count
        cloud.inject("RequestLimitExceeded", status: 503, into: "DescribeInstances", count: 2)
        let throttled = await eventually(within: .seconds(15)) {
            Array(cloud.timedActions[before...].enumerated().filter { $0.element.action == "DescribeInstances" }.prefix(3))
        } until: { $0.count == 3 }
        XCTAssertEqual(throttled.count, 3, "the leader listed again after both throttles: \(cloud.actions[before...])")
        let all = cloud.timedActions
        for (throttle, wait) in zip(throttled.prefix(2), [1.0, 2.5]) {
            let index = before + throttle.offset
            let next = try XCTUnwrap(all.indices.first { $0 > index }, "no call after the throttle")
            let gap = all[next].at - all[index].at
            XCTAssertGreaterThanOrEqual(gap, .seconds(wait), "\(all[next].action) \(gap) after a throttle that said \(wait) s")
        }
        XCTAssertTrue(replica.log.contains("cloud API rate limit (retry after 1 s)"), replica.log)
        XCTAssertTrue(replica.log.contains("cloud API rate limit (retry after 2.5 s)"), replica.log)
    }
}
