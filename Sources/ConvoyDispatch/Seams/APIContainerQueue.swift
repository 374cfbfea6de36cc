import ConvoyAPIClient
import ConvoyDispatchCore
import ConvoyModel
import Foundation

/// The container queue over the API (production's `ContainerQueue`): every change carries the
/// term's epoch (the API client's configuration), and the API's errors are read as `CallError`s.
public struct APIContainerQueue: ContainerQueue {
    private let api: APIClient

    public init(api: APIClient) {
        self.api = api
    }

    public func perform(_ call: QueueCall, timeout: Double) async -> Result<CallAnswer, CallError> {
        await withCallTimeout(timeout, timedOut: .apiTimedOut("no answer within \(Int(timeout.rounded(.up))) s")) { [api] in
            do {
                return .success(try await Self.make(call, api))
            } catch {
                return .failure(Self.callError(error))
            }
        }
    }

    private static func make(_ call: QueueCall, _ api: APIClient) async throws -> CallAnswer {
        switch call {
        case .whoAmI:
            guard let uuid = try await api.currentToken()["uuid"]?.stringValue else {
                throw APIClientError.malformedResponse("the current token has no uuid")
            }
            return .identity(uuid)
        case .page(let page, let lockedBy):
            let answer = try await api.containers(filters: filters(page, lockedBy: lockedBy), order: order(page),
                                                  limit: page.limit, offset: page.offset, horizon: page.isFirst)
            return .page(pageAnswer(page, answer, lockedBy: lockedBy))
        case .lock(let id):
            return .entry(entry(try await api.lock(try uuid(id))))
        case .unlock(let id, let state, let preempted):
            _ = try await api.unlock(try uuid(id), ifState: state, preempted: preempted)
            return .none
        case .cancel(let id, let authUUID, let reason):
            _ = try await api.update(try uuid(id), ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string(reason)],
                                                                    knownAuthUUID: authUUID.flatMap(ArvadosUUID.init)))
            return .none
        case .containerToken(let id):
            return .token(try await api.containerToken(try uuid(id)))
        }
    }

    /// The API filters of one page of the queue listing.
    static func filters(_ page: QueueListing.Page, lockedBy mine: String) -> [[JSONValue]] {
        switch page {
        case .ours(let after, _, _):
            var filters: [[JSONValue]] = [[.string("locked_by_uuid"), .string("="), .string(mine)],
                                          [.string("state"), .string("in"), .array([.string("Locked"), .string("Running")])]]
            if let after { filters.append([.string("uuid"), .string(">"), .string(after.rawValue)]) }
            return filters
        case .queued:
            return [[.string("state"), .string("="), .string("Queued")], [.string("priority"), .string(">"), .number(0)]]
        case .changed(let since, let after, _):
            var filters: [[JSONValue]] = [[.string("modified_at"), .string(">="), .string(QueueChanges.format(since))]]
            if let after { filters.append([.string("uuid"), .string(">"), .string(after.rawValue)]) }
            return filters
        }
    }

    static func order(_ page: QueueListing.Page) -> [String] {
        switch page {
        case .ours, .changed: return ["uuid"]
        case .queued: return ["priority desc", "priority_since asc", "created_at asc"]
        }
    }

    /// A page as the listing takes it: a page of changes splits into what the leader lists and
    /// what it no longer does.
    static func pageAnswer(_ page: QueueListing.Page, _ answer: APIPage<Container>, lockedBy mine: String) -> QueueListing.PageAnswer {
        let last = answer.items.last.map { ContainerID($0.uuid.rawValue) }
        guard case .changed = page else { return QueueListing.PageAnswer(entries: answer.items.map(entry), horizon: answer.horizon, last: last) }
        var entries: [QueueEntry] = [], gone: [ContainerID] = []
        for container in answer.items {
            if QueueListing.isListed(state: container.state, priority: container.priority, lockedByUs: container.lockedByUUID?.rawValue == mine) {
                entries.append(entry(container))
            } else {
                gone.append(ContainerID(container.uuid.rawValue))
            }
        }
        return QueueListing.PageAnswer(entries: entries, gone: gone, horizon: answer.horizon, last: last)
    }

    static func entry(_ container: Container) -> QueueEntry {
        // The state's age as the API's database measured it in the listing's own query: one clock.
        QueueEntry(id: ContainerID(container.uuid.rawValue), state: container.state, priority: container.priority,
                   // Arvados' order among equal priorities: the request's age (a step's, its workflow's).
                   createdAt: container.prioritySince ?? container.createdAt,
                   constraints: container.runtimeConstraints.addingScratch(of: container.mounts),
                   preemptible: container.schedulingParameters.preemptible, supervisor: container.schedulingParameters.supervisor,
                   authUUID: container.authUUID?.rawValue,
                   stateAge: container.state == .locked || container.state == .running ? container.stateAge : nil)
    }

    private static func uuid(_ id: ContainerID) throws -> ArvadosUUID {
        guard let uuid = ArvadosUUID(id.rawValue) else { throw CallError.notSent("'\(id.rawValue)' is not a container UUID") }
        return uuid
    }

    /// How the API's errors read: 4xx refused (nothing changed), 5xx or no answer unknown (it may
    /// have been applied; 503 and a timeout also say the API is overloaded), a malformed answer failed.
    static func callError(_ error: any Error) -> CallError {
        switch error {
        case let error as CallError: return error
        case let error as APIClientError:
            switch error {
            case .refused(let status, let messages): return .apiStatus(status, messages.joined(separator: "; "))
            case .unreachable(let reason): return .apiUnreachable(reason)
            case .timedOut(let reason): return .apiTimedOut(reason)
            case .malformedResponse: return .failed("\(error)")
            }
        case is CancellationError: return .apiUnreachable("the call was cancelled")
        default: return .failed("\(error)")
        }
    }
}
