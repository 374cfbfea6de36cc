import ConvoyCluster
import ConvoyDispatchCore
import ConvoyModel
import Distributed
import Foundation

/// The cluster over PostgreSQL and the replica protocol (production's `ClusterMembers`): calls to
/// a member's worker host are stamped with the term's epoch and time out with the call's budget;
/// the cluster's errors are read as `CallError`s.
public struct ClusterMemberCalls: ClusterMembers {
    private let member: ClusterMember
    private let epoch: Int64
    /// What a runner is started with, besides its container token.
    private let launch: RunnerLaunchSettings

    public init(member: ClusterMember, epoch: Int64, launch: RunnerLaunchSettings) {
        self.member = member
        self.epoch = epoch
        self.launch = launch
    }

    public func perform(_ call: MemberCall, timeout: Double) async -> Result<CallAnswer, CallError> {
        let epoch = epoch
        return await withCallTimeout(timeout, timedOut: .memberNoAnswer("no answer within \(Int(timeout.rounded(.up))) s")) { [self] in
            do {
                // The call's own timeout is the budget too, so the member link gives up with it.
                return .success(try await ClusterSystem.$callEpoch.withValue(epoch) {
                    try await ClusterSystem.$callTimeout.withValue(timeout.duration) { try await make(call) }
                })
            } catch {
                return .failure(Self.callError(error))
            }
        }
    }

    private func make(_ call: MemberCall) async throws -> CallAnswer {
        switch call {
        case .listMembers:
            let status = try await member.status()
            return .members(status.members.map { MemberHeartbeat(MemberID($0.memberID), age: $0.heartbeatAge) })
        case .clusterEpoch:
            return .epoch(try await member.currentEpoch())
        case .askHosted(let target):
            return .hosted(try await workerHost(on: target).hostedInstances().map { InstanceID($0.id) })
        case .sync(let target, let request):
            do {
                return .synced(try await workerHost(on: target).syncChanges(request))
            } catch let error as ClusterError where error.isUnknownCall {
                throw CallError.memberLacksCall("\(target) has no syncChanges (the release before): \(error)")
            }
        case .syncAll(let target, let instances):
            return .reports(try await workerHost(on: target).sync(instances))
        case .start(let id, let worker, let target, let token):
            var settings = launch
            settings.apiToken = token
            let outcome = try await workerHost(on: target).startContainer(id.rawValue, on: worker.rawValue, settings: settings)
            switch outcome {
            case .started: return .none
            case .outcomeUnknown(let reason): throw CallError.memberNoAnswer(reason)
            }
        case .kill(let id, let worker, let target, .term):
            try await workerHost(on: target).killContainer(id.rawValue, on: worker.rawValue)
            return .none
        case .kill(let id, let worker, let target, let signal):
            try await workerHost(on: target).killContainer(id.rawValue, on: worker.rawValue, signal: signal.rawValue)
            return .none
        }
    }

    private func workerHost(on memberID: MemberID) throws -> WorkerHost {
        try WorkerHost.resolve(id: member.system.id(of: WorkerHost.name, on: memberID.rawValue), using: member.system)
    }

    /// How the cluster's errors read: never reached the member (unreachable), reached it and no
    /// answer came (unknown), refused (a stale epoch).
    static func callError(_ error: any Error) -> CallError {
        switch error {
        case let error as CallError: return error
        case let error as ClusterError:
            switch error {
            // A garbled reply or a shut-down system may come after the member acted: unknown.
            case .timeout, .connectionLost, .protocolViolation, .shutdown: return .memberNoAnswer("\(error)")
            case .unreachable, .handshakeFailed: return .memberUnreachable("\(error)")
            case .staleEpoch, .epochUnconfirmed: return .memberRefused("\(error)")
            default: return .failed("\(error)")
            }
        case is CancellationError: return .memberNoAnswer("the call was cancelled")
        default: return .failed("\(error)")
        }
    }
}
