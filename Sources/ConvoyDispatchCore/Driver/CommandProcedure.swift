import ConvoyModel

/// How the driver carries out one core command: the calls it makes, in order, the time each may
/// take, and what their answers and errors mean to the core. Production (`DispatchLeader`, calls
/// over sockets) and the simulation (calls answered on its event queue) run this same value, so
/// that paging, the fence before cloud changes, the start's token fetch, the per-call timeouts
/// and the reading of errors are the production code in both.
///
/// Every call gets what is left of the command's deadline as its timeout (a start whose token
/// fetch was slow gives its worker only the rest): the core takes the outcome as unknown at the
/// deadline, and the driver gives up on the call then too, so an expired call cannot land later.
public struct CommandProcedure: Sendable {
    /// What the driver does next.
    public enum Step: Sendable {
        /// Make this call, giving up after `timeout` seconds (a timed-out call is `CallError`'s
        /// no-answer kind for its seam).
        case call(DriverCall, timeout: Double)
        /// The command has ended: give the core this outcome.
        case finished(CommandOutcome)
    }

    public let command: CoreCommand
    /// When the command's time is up, on the leader's clock.
    public let deadline: Moment
    /// This dispatcher's token uuid, once known (the caller keeps it for the rest of the term).
    public private(set) var identity: String?
    /// Calls made so far: an answer names the call it is for, so a late one is told apart.
    public private(set) var calls = 0
    public private(set) var step: Step
    private let epoch: Int64
    private var listing: QueueListing?

    /// Starts `command`, issued at `now` in term `epoch`; `identity` is the token uuid if a
    /// procedure of this term already learnt it.
    public init(_ command: CoreCommand, epoch: Int64, deadlines: CommandDeadlines, identity: String?, now: Moment) {
        self.command = command
        self.epoch = epoch
        self.identity = identity
        deadline = now + deadlines.seconds(for: command)
        step = .finished(.failed(.failed("not started")))
        switch command {
        case .listMembers: step = call(.member(.listMembers), now)
        case .listInstances: step = call(.cloud(.list), now)
        case .listContainers(let listing):
            self.listing = listing
            step = nextPage(now)
        case .askHosted(let member): step = call(.member(.askHosted(member)), now)
        case .sync(let member, let request, _): step = call(.member(.sync(member, request)), now)
        case .lock(let id): step = call(.queue(.lock(id)), now)
        case .start(let id, _, _): step = call(.queue(.containerToken(id)), now)
        case .unlock(let id, let state, _, let preempted): step = call(.queue(.unlock(id, ifState: state, preempted: preempted)), now)
        case .cancel(let id, let authUUID, let reason): step = call(.queue(.cancel(id, authUUID: authUUID, reason: reason)), now)
        case .kill(let id, let worker, let member, _, let signal): step = call(.member(.kill(id, on: worker, via: member, signal: signal)), now)
        case .create, .destroy, .setIdleBehavior:
            // Cloud changes go out only while this term is the cluster's: check, then act.
            step = call(.member(.clusterEpoch), now)
        }
    }

    /// Takes the answer of the call `step` asked for, and moves on.
    public mutating func receive(_ result: Result<CallAnswer, CallError>, now: Moment) {
        guard case .call(let made, _) = step else { return }
        switch result {
        case .failure(let error):
            step = failure(of: made, error, now)
        case .success(let answer):
            step = advance(after: made, answer, now) ?? .finished(.failed(.failed("unexpected answer to \(made): \(answer)")))
        }
    }

    // MARK: Steps

    private mutating func call(_ call: DriverCall, _ now: Moment) -> Step {
        let left = deadline - now
        guard left > 0 else { return .finished(expired(before: call)) }
        calls += 1
        return .call(call, timeout: left)
    }

    private mutating func nextPage(_ now: Moment) -> Step {
        guard let listing else { return .finished(.failed(.failed("no listing"))) }
        guard let page = listing.next else { return .finished(.done(.containers(listing.result))) }
        guard let identity else { return call(.queue(.whoAmI), now) }
        return call(.queue(.page(page, lockedBy: identity)), now)
    }

    /// The step after `made` answered `answer`; nil when the answer does not fit the call.
    private mutating func advance(after made: DriverCall, _ answer: CallAnswer, _ now: Moment) -> Step? {
        switch (made, answer) {
        case (.queue(.whoAmI), .identity(let uuid)):
            identity = uuid
            return nextPage(now)
        case (.queue(.page), .page(let answer)):
            listing?.receive(answer)
            return nextPage(now)
        case (.queue(.containerToken), .token(let token)):
            guard case .start(let id, let worker, let member) = command else { return nil }
            return call(.member(.start(id, on: worker, via: member, token: token)), now)
        case (.member(.clusterEpoch), .epoch(let current)):
            guard current == epoch else {
                return .finished(CommandOutcome(.fenced("epoch \(epoch) is no longer the cluster's (it is \(current) now)")))
            }
            switch command {
            case .create(let type): return call(.cloud(.create(type)), now)
            case .destroy(let id, _): return call(.cloud(.destroy(id)), now)
            case .setIdleBehavior(let id, let behavior, _): return call(.cloud(.setIdleBehavior(id, behavior)), now)
            default: return nil
            }
        case (.queue(.lock), .entry(let entry)): return .finished(.done(.locked(entry)))
        case (.member(.listMembers), .members(let members)): return .finished(.done(.members(members)))
        case (.member(.askHosted), .hosted(let hosted)): return .finished(.done(.hosted(hosted)))
        case (.member(.sync(let member, let request)), .synced(let answer)):
            // The member no longer knows the base the instances were left out for: send them.
            guard answer.needsInstances, request.instances == nil, case .sync(_, _, let instances) = command else {
                return .finished(.done(.synced(answer)))
            }
            return call(.member(.sync(member, SyncRequest(instances: instances, base: nil))), now)
        case (.member(.syncAll), .reports(let reports)): return .finished(.done(.synced(.full(reports))))
        case (.cloud(.list), .instances(let instances)): return .finished(.done(.instances(instances)))
        case (.cloud(.create), .created(let instance)): return .finished(.done(.created(instance)))
        case (.queue(.unlock), .none), (.queue(.cancel), .none), (.member(.start), .none), (.member(.kill), .none),
             (.cloud(.destroy), .none), (.cloud(.setIdleBehavior), .none):
            return .finished(.done(.none))
        default:
            return nil
        }
    }

    /// The step after `made` failed with `error`.
    private mutating func failure(of made: DriverCall, _ error: CallError, _ now: Moment) -> Step {
        // A member of the release before (a rolling upgrade): the full sync it has.
        if case .member(.sync(let member, _)) = made, case .memberLacksCall = error, case .sync(_, _, let instances) = command {
            return call(.member(.syncAll(member, instances)), now)
        }
        return .finished(outcome(of: made, error))
    }

    /// What a failed call means for the command.
    private func outcome(of made: DriverCall, _ error: CallError) -> CommandOutcome {
        switch made {
        case .queue(.containerToken):
            // Nothing was started: the container keeps its lock and its worker.
            return .startWithoutToken(error)
        case .member(.clusterEpoch):
            // The fence could not be read: nothing was sent to the cloud.
            return .failed(.failed("the cloud change was not sent: cannot read cluster_epoch: \(error)"))
        case .queue(.whoAmI), .queue(.page):
            // A listing only reads: whatever the error, nothing changed (an overloaded API is still told).
            if case .overloaded = CommandOutcome(error) { return .overloaded("the queue listing failed: \(error)") }
            return .failed(.failed("the queue listing failed: \(error)"))
        default:
            return CommandOutcome(error)
        }
    }

    /// The command's time ran out before `call` could be made: nothing of it was sent.
    private func expired(before call: DriverCall) -> CommandOutcome {
        let why = "past its deadline before \(call)"
        switch call {
        case .member(.start): return .failed(.refused("nothing started: \(why)"))
        default: return .failed(.failed(why))
        }
    }
}
