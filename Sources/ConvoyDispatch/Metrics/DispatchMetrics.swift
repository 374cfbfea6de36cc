import CoreMetrics
import Foundation
import Metrics
import Prometheus
import Synchronization

/// The dispatcher's metrics, through swift-metrics, exported by the management port's `/metrics`
/// in Prometheus' text format. Pool gauges come from the leader's view after each pass (zero on
/// followers); every replica reports whether it leads and the epoch it knows.
public enum DispatchMetrics {
    /// Installs the Prometheus factory (once per process) and returns its registry for `/metrics`.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds: [Duration] = [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900)]
        factory.defaultDurationHistogramBuckets = seconds
        MetricsSystem.bootstrap(factory)
        return registry
    }

    static func leadership(isLeader: Bool, epoch: Int64) {
        Gauge(label: "convoy_is_leader").record(isLeader ? 1 : 0)
        Gauge(label: "convoy_leader_epoch").record(Double(epoch))
    }

    static func cloudError(code: String) {
        Counter(label: "convoy_cloud_api_errors_total", dimensions: [("code", code)]).increment()
    }

    static func workerBooted(seconds: Double) {
        Metrics.Timer(label: "convoy_worker_boot_seconds").recordSeconds(seconds)
    }

    static func workerProbed(seconds: Double) {
        Metrics.Timer(label: "convoy_worker_probe_seconds").recordSeconds(seconds)
    }

    static func containerStarted() {
        Counter(label: "convoy_containers_started_total").increment()
    }

    static func apiOverloaded() {
        Counter(label: "convoy_api_overloaded_total").increment()
    }

    /// The pool gauges from a leader's view; label sets that disappeared go to 0.
    static func pool(_ view: PoolView, tracker: PoolGaugeTracker) {
        var instances: [[String]: Double] = [:]
        var price = 0.0
        for instance in view.instances {
            instances[[instance.instanceType, instance.workerState], default: 0] += 1
            price += instance.price
        }
        var containers: [String: Double] = ["Queued": 0, "Locked": 0, "Running": 0]
        for container in view.containers { containers[container.state, default: 0] += 1 }
        for labels in tracker.swapInstanceLabels(Set(instances.keys)) where instances[labels] == nil { instances[labels] = 0 }
        for (labels, count) in instances {
            Gauge(label: "convoy_instances", dimensions: [("type", labels[0]), ("state", labels[1])]).record(count)
        }
        for (state, count) in containers {
            Gauge(label: "convoy_containers", dimensions: [("state", state.lowercased())]).record(count)
        }
        Gauge(label: "convoy_instances_price_per_hour").record(price)
        // 0: no limit of its own (Arvados' max_concurrent_containers).
        Gauge(label: "convoy_max_concurrent_containers").record(Double(view.maxConcurrentContainers ?? 0))
        Gauge(label: "convoy_at_quota").record(view.atQuota == true ? 1 : 0)
    }
}

/// Which instance label sets the gauges last had, so that vanished ones are set to 0.
final class PoolGaugeTracker: Sendable {
    private let labels = Mutex<Set<[String]>>([])

    func swapInstanceLabels(_ next: Set<[String]>) -> Set<[String]> {
        labels.withLock { current in
            let previous = current
            current = next
            return previous
        }
    }
}
