import ConvoyModel
import Foundation

/// A container as the API answers it (every attribute, null when unset, and `kind`), written by
/// hand: a page of 100 containers through `Encodable` cost milliseconds of CPU, most of it in
/// dynamic dispatch per value. `ContainerJSONTests` checks that it writes exactly what encoding
/// `Container` through `Encodable` writes, so that a new attribute cannot be left out.
extension Container {
    func writeAPIJSON(to out: inout JSONOutput) throws {
        // Members in the order of their keys' bytes, as every body of the API.
        out.raw("{")
        out.key("auth_uuid", first: true); optional(authUUID, &out) { $1.string($0.rawValue) }
        out.key("command"); out.array(command) { $0.string($1) }
        out.key("container_image"); out.string(containerImage)
        out.key("created_at"); out.date(createdAt)
        out.key("cwd"); out.string(cwd)
        out.key("environment"); out.object(environment) { $0.string($1) }
        out.key("exit_code"); optional(exitCode, &out) { $1.integer($0) }
        out.key("finished_at"); optional(finishedAt, &out) { $1.date($0) }
        out.key("kind"); out.string(Self.kind)
        out.key("lock_count"); out.integer(lockCount)
        out.key("locked_by_uuid"); optional(lockedByUUID, &out) { $1.string($0.rawValue) }
        out.key("log"); optional(log, &out) { $1.string($0) }
        out.key("modified_at"); out.date(modifiedAt)
        out.key("mounts"); try out.object(mounts) { try $0.value($1) }
        out.key("output"); optional(output, &out) { $1.string($0) }
        out.key("output_path"); out.string(outputPath)
        out.key("priority"); out.integer(priority)
        out.key("priority_since"); optional(prioritySince, &out) { $1.date($0) }
        out.key("progress")
        if let progress { try out.double(progress) } else { out.null() }
        out.key("runtime_constraints"); try runtimeConstraints.writeAPIJSON(to: &out)
        out.key("runtime_status"); try out.object(runtimeStatus) { try $0.value($1) }
        out.key("scheduling_parameters"); schedulingParameters.writeAPIJSON(to: &out)
        out.key("started_at"); optional(startedAt, &out) { $1.date($0) }
        out.key("state"); out.string(state.rawValue)
        out.key("state_age")
        if let stateAge { try out.double(stateAge) } else { out.null() }
        out.key("uuid"); out.string(uuid.rawValue)
        out.raw("}")
    }

    private func optional<Value>(_ value: Value?, _ out: inout JSONOutput, _ write: (Value, inout JSONOutput) -> Void) {
        if let value { write(value, &out) } else { out.null() }
    }
}

extension RuntimeConstraints {
    /// As its `Encodable` conformance writes it: `API`, `gpu` only when it asks for something, `ram`, `scratch`, `vcpus`.
    func writeAPIJSON(to out: inout JSONOutput) throws {
        out.raw("{")
        out.key("API", first: true); out.bool(api)
        if gpu != .none { out.key("gpu"); try out.encoded(gpu) }
        out.key("ram"); out.integer(ram)
        out.key("scratch"); out.integer(scratch)
        out.key("vcpus"); out.integer(vcpus)
        out.raw("}")
    }
}

extension SchedulingParameters {
    /// As its `Encodable` conformance writes it: `supervisor` only when set.
    func writeAPIJSON(to out: inout JSONOutput) {
        out.raw("{")
        out.key("max_run_time", first: true); out.integer(maxRunTime)
        out.key("preemptible"); out.bool(preemptible)
        if supervisor { out.key("supervisor"); out.bool(true) }
        out.raw("}")
    }
}
