import ConvoyDispatchCore
import ConvoyModel

/// The cloud through a `CloudDriver` (production's `CloudProvider`): instances it creates are
/// tagged with the member that asked; its errors are read as `CallError`s.
public struct CloudCalls: CloudProvider {
    private let driver: any CloudDriver
    private let createdBy: MemberID

    public init(driver: any CloudDriver, createdBy: MemberID) {
        self.driver = driver
        self.createdBy = createdBy
    }

    public func perform(_ call: CloudCall, timeout: Double) async -> Result<CallAnswer, CallError> {
        await withCallTimeout(timeout, timedOut: .cloud(.failed("no answer within \(Int(timeout.rounded(.up))) s"))) { [driver, createdBy] in
            do {
                switch call {
                case .list:
                    return .success(.instances(try await driver.instances()))
                case .create(let type):
                    return .success(.created(try await driver.create(type, tags: [CloudTag.createdBy: createdBy.rawValue])))
                case .destroy(let id):
                    try await driver.destroy(id.rawValue)
                    return .success(.none)
                case .setIdleBehavior(let id, let behavior):
                    try await driver.setTags(id.rawValue, [CloudTag.idleBehavior: behavior.rawValue])
                    return .success(.none)
                }
            } catch let error as CloudError {
                return .failure(.cloud(error))
            } catch {
                return .failure(.failed("\(error)"))
            }
        }
    }
}
