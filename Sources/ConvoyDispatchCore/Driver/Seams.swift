/// The container queue as the leader's driver calls it (Arvados' `ContainerQueue`). Production's
/// is the API over HTTP (`APIContainerQueue`); the simulation answers the same `QueueCall`s
/// against its model of the API's rules.
public protocol ContainerQueue: Sendable {
    /// Makes `call`, giving up after `timeout` seconds; every error comes back as a `CallError`.
    func perform(_ call: QueueCall, timeout: Double) async -> Result<CallAnswer, CallError>
}

/// The cluster as the leader's driver calls it: the members' shared tables in PostgreSQL and each
/// member's worker host. Production's is the replica protocol and PostgreSQL
/// (`ClusterMemberCalls`); the simulation's members answer the same `MemberCall`s.
public protocol ClusterMembers: Sendable {
    /// Makes `call`, giving up after `timeout` seconds; every error comes back as a `CallError`.
    func perform(_ call: MemberCall, timeout: Double) async -> Result<CallAnswer, CallError>
}

/// The cloud as the leader's driver calls it. Production's wraps a `CloudDriver` (`CloudCalls`);
/// the simulation's cloud answers the same `CloudCall`s.
public protocol CloudProvider: Sendable {
    /// Makes `call`, giving up after `timeout` seconds; every error comes back as a `CallError`.
    func perform(_ call: CloudCall, timeout: Double) async -> Result<CallAnswer, CallError>
}

/// The three seams one term's driver calls through.
public struct DriverSeams: Sendable {
    public var queue: any ContainerQueue
    public var members: any ClusterMembers
    public var cloud: any CloudProvider

    public init(queue: any ContainerQueue, members: any ClusterMembers, cloud: any CloudProvider) {
        self.queue = queue
        self.members = members
        self.cloud = cloud
    }

    /// Makes `call` through its seam.
    public func perform(_ call: DriverCall, timeout: Double) async -> Result<CallAnswer, CallError> {
        switch call {
        case .queue(let call): return await queue.perform(call, timeout: timeout)
        case .member(let call): return await members.perform(call, timeout: timeout)
        case .cloud(let call): return await cloud.perform(call, timeout: timeout)
        }
    }

    /// Carries out `procedure` to its end and returns the outcome for the core; `now` reads the
    /// leader's clock (each call's timeout is what is left of the command's deadline).
    public func run(_ procedure: inout CommandProcedure, now: () -> Moment) async -> CommandOutcome {
        while case .call(let call, let timeout) = procedure.step {
            let result = await perform(call, timeout: timeout)
            procedure.receive(result, now: now())
        }
        guard case .finished(let outcome) = procedure.step else { return .unknown("the procedure did not finish") }
        return outcome
    }
}
