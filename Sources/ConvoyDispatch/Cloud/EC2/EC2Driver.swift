import ConvoyHTTP
import ConvoyModel
import Foundation

/// Amazon EC2 through its query API (`Action=…&Version=2016-11-15`, form-encoded POSTs signed with
/// SigV4 by libcurl): RunInstances with tags, DescribeInstances filtered by the cluster tag (all
/// pages), CreateTags, TerminateInstances, and GetConsoleOutput for the SSH host key cloud-init
/// prints. The account's limits become `CloudError.quota`, a type's (or its quota group's) missing
/// capacity `CloudError.capacity`, throttling `CloudError.rateLimited` with the earliest retry (a
/// delay growing by half plus a second with each throttled call in a row, 1 s to 1 min, as
/// Arvados' EC2 driver, or the answer's Retry-After).
public actor EC2Driver: CloudDriver {
    public struct Settings: Sendable {
        public var clusterID: String
        public var region: String
        /// `https://ec2.<region>.amazonaws.com` unless given (moto in the tests).
        public var endpoint: String
        public var accessKeyID: String
        public var secretAccessKey: String
        public var sessionToken: String?
        public var imageID: String
        public var subnetID: String?
        public var securityGroupIDs: [String]
        public var keyPairName: String?
        /// Reach workers on their public address instead of the private one.
        public var usePublicIP: Bool
        public var sshPort: Int
        /// DescribeInstances page size.
        public var pageSize: Int
        /// Added to every instance's and volume's tags (Containers.CloudVMs.ResourceTags).
        public var resourceTags: [String: String]
        /// Run once at boot as the instance's user data (Containers.CloudVMs.InstanceInitCommand).
        public var instanceInitCommand: String?
        /// Sign with the dispatcher host's instance role, read from this metadata service, instead
        /// of the keys above (which are then empty).
        public var instanceRoleMetadataURL: String?

        public init(clusterID: String, region: String, endpoint: String? = nil, accessKeyID: String, secretAccessKey: String,
                    sessionToken: String? = nil, imageID: String, subnetID: String? = nil, securityGroupIDs: [String] = [],
                    keyPairName: String? = nil, usePublicIP: Bool = false, sshPort: Int = 22, pageSize: Int = 1000,
                    resourceTags: [String: String] = [:], instanceInitCommand: String? = nil, instanceRoleMetadataURL: String? = nil) {
            self.instanceRoleMetadataURL = instanceRoleMetadataURL
            self.resourceTags = resourceTags
            self.instanceInitCommand = instanceInitCommand
            self.clusterID = clusterID
            self.region = region
            self.endpoint = endpoint ?? "https://ec2.\(region).amazonaws.com"
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
            self.imageID = imageID
            self.subnetID = subnetID
            self.securityGroupIDs = securityGroupIDs
            self.keyPairName = keyPairName
            self.usePublicIP = usePublicIP
            self.sshPort = sshPort
            self.pageSize = pageSize
        }
    }

    static let knownParameters: Set<String> = [
        "Region", "Endpoint", "AccessKeyID", "SecretAccessKey", "SessionToken", "ImageID", "SubnetID", "SecurityGroupIDs",
        "KeyPairName", "UsePublicIP", "PageSize",
    ]

    /// The settings from `Containers.CloudVMs.DriverParameters`; credentials fall back to
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, then to the host's instance
    /// role (IMDSv2 at CONVOY_EC2_METADATA_URL, else EC2's own address).
    public static func settings(clusterID: String, cloud: CloudVMsConfig,
                                environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Settings {
        let parameters = cloud.driverParameters
        if let unknown = parameters.keys.sorted().first(where: { !knownParameters.contains($0) }) {
            throw CloudError.failed("unknown ec2 DriverParameters key '\(unknown)'; known: \(knownParameters.sorted().joined(separator: ", "))")
        }
        guard let region = parameters["Region"], !region.isEmpty else { throw CloudError.failed("ec2 DriverParameters.Region is required") }
        guard let image = parameters["ImageID"], !image.isEmpty else { throw CloudError.failed("ec2 DriverParameters.ImageID is required") }
        let key = parameters["AccessKeyID"] ?? environment["AWS_ACCESS_KEY_ID"]
        let secret = parameters["SecretAccessKey"] ?? environment["AWS_SECRET_ACCESS_KEY"]
        guard (key == nil) == (secret == nil) else {
            throw CloudError.failed("ec2 needs both AccessKeyID and SecretAccessKey (DriverParameters, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or neither for the instance role")
        }
        let role = key == nil ? (environment["CONVOY_EC2_METADATA_URL"] ?? EC2CredentialSource.ec2MetadataURL) : nil
        let pageSize = try parameters["PageSize"].map { text -> Int in
            guard let value = Int(text), (5...1000).contains(value) else { throw CloudError.failed("ec2 DriverParameters.PageSize must be 5 to 1000") }
            return value
        } ?? 1000
        return Settings(clusterID: clusterID, region: region, endpoint: parameters["Endpoint"], accessKeyID: key ?? "", secretAccessKey: secret ?? "",
                        sessionToken: parameters["SessionToken"] ?? environment["AWS_SESSION_TOKEN"], imageID: image,
                        subnetID: parameters["SubnetID"],
                        securityGroupIDs: (parameters["SecurityGroupIDs"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) },
                        keyPairName: parameters["KeyPairName"], usePublicIP: ["true", "yes", "1"].contains(parameters["UsePublicIP"]?.lowercased() ?? ""),
                        sshPort: cloud.sshPort, pageSize: pageSize, resourceTags: cloud.resourceTags,
                        instanceInitCommand: cloud.instanceInitCommand, instanceRoleMetadataURL: role)
    }

    public nonisolated let settings: Settings
    private let http: HTTPClient
    private let credentials: EC2Credentials
    /// Host keys read from console output, by instance (they never change for an instance).
    private var hostKeys: [String: String] = [:]
    /// When the console was last read for an instance whose key was not there yet.
    private var hostKeyLookups: [String: Date] = [:]
    /// Instance types by name, to map an instance's type tag back (and to know preemptibility).
    private let types: [String: InstanceType]
    /// The retry delay of the last throttled call, by action (reset by any other answer).
    private var throttleDelays: [String: Double] = [:]

    public init(_ settings: Settings, instanceTypes: [InstanceType]) {
        self.settings = settings
        types = Dictionary(instanceTypes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(10), defaultTimeout: .seconds(60), retry: .none))
        credentials = EC2Credentials(settings.instanceRoleMetadataURL.map { .instanceRole(metadataURL: $0) }
            ?? .keys(accessKeyID: settings.accessKeyID, secretAccessKey: settings.secretAccessKey, sessionToken: settings.sessionToken),
                                     region: settings.region)
    }

    /// The block device mapping of a type's AddedScratch: an EBS gp3 volume of that size in
    /// whole GiB (rounded up), deleted with the instance, as Arvados' EC2 driver adds it.
    static func scratchVolume(_ bytes: Int64) -> [(String, String)] {
        guard bytes > 0 else { return [] }
        let gib = (bytes + (1 << 30) - 1) >> 30
        return [("BlockDeviceMapping.1.DeviceName", "/dev/xvdt"), ("BlockDeviceMapping.1.Ebs.VolumeSize", String(gib)),
                ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3"), ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true")]
    }

    /// InstanceInitCommand as EC2 user data: a shell script cloud-init runs once at first boot, base64.
    static func userData(_ command: String) -> String {
        Data("#!/bin/sh\n\(command)\n".utf8).base64EncodedString()
    }

    // MARK: CloudDriver

    public func create(_ type: InstanceType, tags: [String: String]) async throws -> CloudInstance {
        var allTags = settings.resourceTags.merging(tags) { _, ours in ours }
        allTags[CloudTag.cluster] = settings.clusterID
        allTags[CloudTag.instanceType] = type.name
        allTags["Name"] = allTags["Name"] ?? "convoy-\(settings.clusterID)-\(type.name)"
        var parameters: [(String, String)] = [
            ("ImageId", settings.imageID), ("InstanceType", type.providerType), ("MinCount", "1"), ("MaxCount", "1"),
            // Idempotent if the request is sent twice.
            ("ClientToken", UUID().uuidString),
        ]
        // The instance and, when one is added, its scratch volume carry the same tags.
        let resources = type.addedScratch > 0 ? ["instance", "volume"] : ["instance"]
        for (specification, resource) in resources.enumerated() {
            parameters.append(("TagSpecification.\(specification + 1).ResourceType", resource))
            for (index, key) in allTags.keys.sorted().enumerated() {
                parameters.append(("TagSpecification.\(specification + 1).Tag.\(index + 1).Key", key))
                parameters.append(("TagSpecification.\(specification + 1).Tag.\(index + 1).Value", allTags[key]!))
            }
        }
        parameters += Self.scratchVolume(type.addedScratch)
        if let command = settings.instanceInitCommand {
            parameters.append(("UserData", Self.userData(command)))
        }
        if let subnet = settings.subnetID { parameters.append(("SubnetId", subnet)) }
        for (index, group) in settings.securityGroupIDs.enumerated() { parameters.append(("SecurityGroupId.\(index + 1)", group)) }
        if let keyPair = settings.keyPairName { parameters.append(("KeyName", keyPair)) }
        if type.preemptible { parameters.append(("InstanceMarketOptions.MarketType", "spot")) }
        let response = try await call("RunInstances", parameters, type: type.name)
        guard let item = response.descendants("instancesSet").first?.children("item").first, let instance = instance(from: item) else {
            throw CloudError.failed("ec2 RunInstances: no instance in the answer")
        }
        return instance
    }

    public func instances() async throws -> [CloudInstance] {
        var found: [CloudInstance] = []
        var pending: Set<String> = []
        var nextToken: String?
        repeat {
            var parameters: [(String, String)] = [
                ("Filter.1.Name", "tag:\(CloudTag.cluster)"), ("Filter.1.Value.1", settings.clusterID),
                ("Filter.2.Name", "instance-state-name"),
                ("Filter.2.Value.1", "pending"), ("Filter.2.Value.2", "running"), ("Filter.2.Value.3", "stopping"), ("Filter.2.Value.4", "stopped"),
                ("MaxResults", String(settings.pageSize)),
            ]
            if let nextToken { parameters.append(("NextToken", nextToken)) }
            let response = try await call("DescribeInstances", parameters)
            for reservation in response.child("reservationSet")?.children("item") ?? [] {
                for item in reservation.child("instancesSet")?.children("item") ?? [] {
                    guard let instance = instance(from: item) else { continue }
                    found.append(instance)
                    if item.text("instanceState", "name") == "pending" { pending.insert(instance.id) }
                }
            }
            nextToken = response.text("nextToken").flatMap { $0.isEmpty ? nil : $0 }
        } while nextToken != nil
        // Host keys appear on the console once cloud-init has run; a few lookups per listing.
        var lookups = 0
        for index in found.indices {
            if let known = hostKeys[found[index].id] {
                found[index].hostKey = known
            } else if lookups < 10, !pending.contains(found[index].id),
                      hostKeyLookups[found[index].id].map({ Date().timeIntervalSince($0) > 15 }) ?? true {
                lookups += 1
                hostKeyLookups[found[index].id] = Date()
                if let key = try? await hostKey(of: found[index].id) {
                    hostKeys[found[index].id] = key
                    found[index].hostKey = key
                }
            }
        }
        return found
    }

    public func setTags(_ id: String, _ tags: [String: String]) async throws {
        var parameters: [(String, String)] = [("ResourceId.1", id)]
        for (index, key) in tags.keys.sorted().enumerated() {
            parameters.append(("Tag.\(index + 1).Key", key))
            parameters.append(("Tag.\(index + 1).Value", tags[key]!))
        }
        _ = try await call("CreateTags", parameters)
    }

    public func destroy(_ id: String) async throws {
        _ = try await call("TerminateInstances", [("InstanceId.1", id)])
    }

    /// The instance's SSH ed25519 host key as cloud-init prints it on the console, once it has.
    public func hostKey(of id: String) async throws -> String? {
        let response = try await call("GetConsoleOutput", [("InstanceId", id)])
        guard let encoded = response.text("output"), let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else { return nil }
        return Self.hostKey(inConsoleOutput: String(decoding: data, as: UTF8.self))
    }

    /// The `ssh-ed25519 AAAA…` line between cloud-init's host key markers.
    public static func hostKey(inConsoleOutput text: String) -> String? {
        guard let begin = text.range(of: "-----BEGIN SSH HOST KEY KEYS-----"),
              let end = text.range(of: "-----END SSH HOST KEY KEYS-----", range: begin.upperBound..<text.endIndex)
        else { return nil }
        for line in text[begin.upperBound..<end.lowerBound].split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, fields[0] == "ssh-ed25519" { return "\(fields[0]) \(fields[1])" }
        }
        return nil
    }

    // MARK: The query API

    private nonisolated func instance(from item: XMLElementNode) -> CloudInstance? {
        guard let id = item.text("instanceId") else { return nil }
        var tags: [String: String] = [:]
        for tag in item.child("tagSet")?.children("item") ?? [] {
            if let key = tag.text("key") { tags[key] = tag.text("value") ?? "" }
        }
        let address = (settings.usePublicIP ? item.text("ipAddress") : item.text("privateIpAddress")) ?? ""
        let launched = item.text("launchTime").flatMap(Self.date)
        return CloudInstance(id: id, typeName: tags[CloudTag.instanceType] ?? item.text("instanceType") ?? "", address: address,
                             sshPort: settings.sshPort, hostKey: nil, tags: tags, createdAt: launched ?? Date())
    }

    /// One query API call; the answer's root element, or the error mapped to `CloudError`.
    private func call(_ action: String, _ parameters: [(String, String)], type: String? = nil) async throws -> XMLElementNode {
        let body = ([("Action", action), ("Version", "2016-11-15")] + parameters)
            .map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }.joined(separator: "&")
        let response: HTTPResponse
        do {
            var request = HTTPRequest(method: "POST", url: settings.endpoint,
                                      headers: [(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")],
                                      body: Array(body.utf8))
            request.sigV4 = try await credentials.current()
            response = try await http.execute(request)
        } catch let error as CloudError {
            throw error
        } catch {
            throw CloudError.failed("ec2 \(action): \(error)")
        }
        let root = XMLElementNode.parse(response.body)
        guard (200..<300).contains(response.status) else {
            let error = root?.descendants("Error").first
            let code = error?.text("Code") ?? "HTTP \(response.status)"
            let message = "ec2 \(action): \(code): \(error?.text("Message") ?? response.bodyText.prefix(300).description)"
            var refusal = Self.classify(code: code, status: response.status, message: message, type: type)
            if case .rateLimited(let message, _) = refusal {
                let delay = Self.nextThrottleDelay(after: throttleDelays[action] ?? 0)
                throttleDelays[action] = delay
                let given = response.header("Retry-After").flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
                refusal = .rateLimited(message: message, retryAfter: given ?? delay)
            } else {
                throttleDelays[action] = nil
            }
            throw refusal
        }
        throttleDelays[action] = nil
        guard let root else { throw CloudError.failed("ec2 \(action): the answer is not XML") }
        return root
    }

    /// EC2's `2026-11-23T18:32:12.000Z` (or without the fraction).
    static func date(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    /// What an error code means to the leader (Arvados' EC2 driver's reading): the account's
    /// limits hold every create; a type's missing capacity only that type, a vCPU limit its
    /// quota group; throttling every call.
    static func classify(code: String, status: Int, message: String, type: String?) -> CloudError {
        let quota: Set<String> = ["InstanceLimitExceeded", "InsufficientAddressCapacity", "InsufficientFreeAddressesInSubnet",
                                  "InsufficientVolumeCapacity", "MaxSpotInstanceCountExceeded"]
        let typeCapacity: Set<String> = ["InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                                         "InsufficientReservedInstanceCapacity"]
        let throttled: Set<String> = ["RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException"]
        if throttled.contains(code) || status == 429 { return .rateLimited(message: message, retryAfter: nil) }
        guard let type else { return .failed(message) }
        if quota.contains(code) { return .quota(message: message) }
        if code == "VcpuLimitExceeded" { return .capacity(type: type, group: true, message: message) }
        if typeCapacity.contains(code) || (code == "Unsupported" && message.contains("requested instance type")) {
            return .capacity(type: type, group: false, message: message)
        }
        return .failed(message)
    }

    /// Arvados' throttle back-off: half again plus a second, from 1 s up to 1 min.
    public static func nextThrottleDelay(after delay: Double) -> Double {
        min(60, max(1, delay * 1.5 + 1))
    }

    /// application/x-www-form-urlencoded as AWS signs it: everything but unreserved characters escaped.
    static func formEncode(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

