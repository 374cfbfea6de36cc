import ConvoyModel
import Foundation

// The sync's arguments and answer (`WorkerHost.sync` and `syncChanges`: instances out, workers'
// reports back, each second) in hand-written JSON: the same members as their `Codable` forms.

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

    public init(wireJSON reader: inout WireJSONReader) throws {
        var id: String?, typeName: String?, address: String?, sshPort: Int?, hostKey: String?, tags: [String: String]?, createdAt: Date?
        try reader.beginObject("CloudInstance")
        while let key = try reader.nextKey() {
            switch key {
            case "id": id = try reader.string(key)
            case "typeName": typeName = try reader.string(key)
            case "address": address = try reader.string(key)
            case "sshPort": sshPort = try reader.int(key)
            case "hostKey": hostKey = try reader.optionalString(key)
            case "tags": tags = try reader.stringMap(key)
            case "createdAt": createdAt = try reader.date(key)
            default: try reader.skipValue()
            }
        }
        guard let id else { throw reader.missing("id") }
        guard let typeName else { throw reader.missing("typeName") }
        guard let address else { throw reader.missing("address") }
        guard let sshPort else { throw reader.missing("sshPort") }
        guard let tags else { throw reader.missing("tags") }
        guard let createdAt else { throw reader.missing("createdAt") }
        self.init(id: id, typeName: typeName, address: address, sshPort: sshPort, hostKey: hostKey, tags: tags, createdAt: createdAt)
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

    public init(wireJSON reader: inout WireJSONReader) throws {
        var instanceID: String?, member: String?, phase: Phase?, containers: [String]?, hostedSince: Date?, bootProbeFailing: Bool?
        var lastProbe: Date?, bootedAt: Date?, bootSeconds: Double?, probeSeconds: Double?, error: String?, lastProbeBeganAge: Double?
        var broken: String?
        try reader.beginObject("WorkerReport")
        while let key = try reader.nextKey() {
            switch key {
            case "instanceID": instanceID = try reader.string(key)
            case "member": member = try reader.string(key)
            case "phase": phase = try reader.rawValue(key, as: Phase.self)
            case "containers": containers = try reader.strings(key)
            case "lastProbe": lastProbe = try reader.optionalDate(key)
            case "bootedAt": bootedAt = try reader.optionalDate(key)
            case "bootSeconds": bootSeconds = try reader.optionalDouble(key)
            case "probeSeconds": probeSeconds = try reader.optionalDouble(key)
            case "hostedSince": hostedSince = try reader.date(key)
            case "error": error = try reader.optionalString(key)
            case "bootProbeFailing": bootProbeFailing = try reader.bool(key)
            case "lastProbeBeganAge": lastProbeBeganAge = try reader.optionalDouble(key)
            case "broken": broken = try reader.optionalString(key)
            default: try reader.skipValue()
            }
        }
        guard let instanceID else { throw reader.missing("instanceID") }
        guard let member else { throw reader.missing("member") }
        guard let phase else { throw reader.missing("phase") }
        guard let containers else { throw reader.missing("containers") }
        guard let hostedSince else { throw reader.missing("hostedSince") }
        guard let bootProbeFailing else { throw reader.missing("bootProbeFailing") }
        self.init(instanceID: instanceID, member: member, phase: phase, containers: containers, lastProbe: lastProbe, bootedAt: bootedAt,
                  bootSeconds: bootSeconds, probeSeconds: probeSeconds, hostedSince: hostedSince, error: error,
                  bootProbeFailing: bootProbeFailing, lastProbeBeganAge: lastProbeBeganAge, broken: broken)
    }
}

extension SyncRequest: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginObject()
        out.member("instances", instances)
        out.member("base", base)
        out.member("resend", resend)
        out.endObject()
    }

    public init(wireJSON reader: inout WireJSONReader) throws {
        var instances: [CloudInstance]?, base: Int?, resend: [String]?
        try reader.beginObject("SyncRequest")
        while let key = try reader.nextKey() {
            switch key {
            case "instances": instances = try reader.optional { try [CloudInstance](wireJSON: &$0) }
            case "base": base = try reader.optionalInt(key)
            case "resend": resend = try reader.optional { try $0.strings(key) }
            default: try reader.skipValue()
            }
        }
        self.init(instances: instances, base: base, resend: resend)
    }
}

extension SyncAnswer: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginObject()
        out.member("id", id)
        out.member("base", base)
        out.member("reports", reports)
        out.member("needsInstances", needsInstances)
        out.endObject()
    }

    public init(wireJSON reader: inout WireJSONReader) throws {
        var id: Int?, base: Int?, reports: [WorkerReport]?, needsInstances: Bool?
        try reader.beginObject("SyncAnswer")
        while let key = try reader.nextKey() {
            switch key {
            case "id": id = try reader.optionalInt(key)
            case "base": base = try reader.optionalInt(key)
            case "reports": reports = try reader.optional { try [WorkerReport](wireJSON: &$0) }
            case "needsInstances": needsInstances = try reader.bool(key)
            default: try reader.skipValue()
            }
        }
        guard let reports else { throw reader.missing("reports") }
        guard let needsInstances else { throw reader.missing("needsInstances") }
        self.init(id: id, base: base, reports: reports, needsInstances: needsInstances)
    }
}
