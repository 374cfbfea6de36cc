import ConvoyModel
import Foundation

// The sync's arguments and answer (`WorkerHost.sync`: every instance out, every worker's report
// back, each second) in hand-written JSON: the same members as their `Codable` forms.

extension CloudInstance: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginObject()
        out.member("id", id)
        out.member("typeName", typeName)
        out.member("address", address)
        out.member("sshPort", sshPort)
        out.member("hostKey", hostKey)
        out.member("tags", tags)
        out.member("createdAt", createdAt)
        out.endObject()
    }

    public init(wireJSON value: JSONValue) throws {
        let object = try WireJSONObject(value, as: "CloudInstance")
        self.init(id: try object.string("id"), typeName: try object.string("typeName"), address: try object.string("address"),
                  sshPort: try object.int("sshPort"), hostKey: try object.optionalString("hostKey"), tags: try object.stringMap("tags"),
                  createdAt: try object.date("createdAt"))
    }
}

extension WorkerReport: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginObject()
        out.member("instanceID", instanceID)
        out.member("member", member)
        out.member("phase", phase.rawValue)
        out.member("containers", containers)
        out.member("lastProbe", lastProbe)
        out.member("bootedAt", bootedAt)
        out.member("bootSeconds", bootSeconds)
        out.member("probeSeconds", probeSeconds)
        out.member("hostedSince", hostedSince)
        out.member("error", error)
        out.member("bootProbeFailing", bootProbeFailing)
        out.member("lastProbeBeganAge", lastProbeBeganAge)
        out.member("broken", broken)
        out.endObject()
    }

    public init(wireJSON value: JSONValue) throws {
        let object = try WireJSONObject(value, as: "WorkerReport")
        self.init(instanceID: try object.string("instanceID"), member: try object.string("member"),
                  phase: try object.rawValue("phase", as: Phase.self), containers: try object.strings("containers"),
                  lastProbe: try object.optionalDate("lastProbe"), bootedAt: try object.optionalDate("bootedAt"),
                  bootSeconds: try object.optionalDouble("bootSeconds"), probeSeconds: try object.optionalDouble("probeSeconds"),
                  hostedSince: try object.date("hostedSince"), error: try object.optionalString("error"),
                  bootProbeFailing: try object.bool("bootProbeFailing"), lastProbeBeganAge: try object.optionalDouble("lastProbeBeganAge"),
                  broken: try object.optionalString("broken"))
    }
}
