import CoreMetrics
import Foundation
import Metrics
import Prometheus
import Synchronization

/// The dispatcher's metrics, through swift-metrics, exported by the management port's `/metrics`
/// in Prometheus' text format. Pool gauges come from the figures the leader publishes after a
/// pass (`PoolSummary`), at most once a second (zero on followers); every replica reports
/// whether it leads and the epoch it knows.
public enum DispatchMetrics {
    /// Every metric this records (histograms add `_bucket`, `_sum`, `_count`): what a dashboard
    /// may query (deploy/grafana/convoy-dashboard.json is checked against it and a live scrape).
    public static let names: Set<String> = [
        "convoy_api_overloaded_total",
        "convoy_at_quota",
        "convoy_boot_outcomes_total",
        "convoy_cloud_api_errors_total",
        "convoy_containers",
        "convoy_containers_allocated_not_started",
        "convoy_containers_longest_wait_time_seconds",
        "convoy_containers_not_allocated_over_quota",
        "convoy_containers_running",
        "convoy_containers_started_total",
        "convoy_containers_time_from_queue_to_runner_seconds",
        "convoy_dispatch_last_pass_seconds",
        "convoy_dispatch_pass_seconds",
        "convoy_driver_operations_total",
        "convoy_instances",
        "convoy_instances_disappeared_total",
        "convoy_instances_price",
        "convoy_instances_price_per_hour",
        "convoy_instances_time_from_shutdown_request_to_disappearance_seconds",
        "convoy_is_leader",
        "convoy_last_503_time",
        "convoy_leader_epoch",
        "convoy_max_concurrent_containers",
        "convoy_memory_bytes_total",
        "convoy_probe_age_seconds_max",
        "convoy_probe_age_seconds_median",
        "convoy_queue_entries",
        "convoy_vcpus_total",
        "convoy_worker_boot_seconds",
        "convoy_worker_probe_seconds",
    ]

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

    /// One full pass of the leader: its wall time, as a histogram and as the last one's.
    static func pass(seconds: Double) {
        Metrics.Timer(label: "convoy_dispatch_pass_seconds").recordSeconds(max(0, seconds))
        Gauge(label: "convoy_dispatch_last_pass_seconds").record(max(0, seconds))
    }

    static func apiOverloaded() {
        Counter(label: "convoy_api_overloaded_total").increment()
    }

    /// A cloud driver call and whether it failed (Arvados' driver_operations{operation, error}).
    static func driverOperation(_ operation: String, failed: Bool) {
        Counter(label: "convoy_driver_operations_total", dimensions: [("operation", operation), ("error", failed ? "1" : "0")]).increment()
    }

    /// From a container's creation to its runner started (Arvados' containers_time_from_queue_to_crunch_run_seconds).
    static func queueToRunner(seconds: Double) {
        Metrics.Timer(label: "convoy_containers_time_from_queue_to_runner_seconds").recordSeconds(max(0, seconds))
    }

    /// What the core counted since the last pass: boot outcomes, instances that disappeared,
    /// and how long destroyed instances took to leave the cloud's listing.
    static func record(_ observed: CoreObservations) {
        for (outcome, count) in observed.bootOutcomes {
            Counter(label: "convoy_boot_outcomes_total", dimensions: [("outcome", outcome)]).increment(by: count)
        }
        for (state, count) in observed.disappeared {
            Counter(label: "convoy_instances_disappeared_total", dimensions: [("state", state)]).increment(by: count)
        }
        for seconds in observed.shutdownToGone {
            Metrics.Timer(label: "convoy_instances_time_from_shutdown_request_to_disappearance_seconds").recordSeconds(seconds)
        }
    }

    /// The pool gauges from a leader's figures; label sets that disappeared go to 0.
    static func pool(_ summary: PoolSummary, tracker: PoolGaugeTracker) {
        var instances = summary.instances.mapValues(Double.init)
        for labels in tracker.swapInstanceLabels(Set(instances.keys)) where instances[labels] == nil { instances[labels] = 0 }
        for (labels, count) in instances {
            Gauge(label: "convoy_instances", dimensions: [("type", labels[0]), ("state", labels[1])]).record(count)
        }
        for state in ["queued", "locked", "running"] {
            Gauge(label: "convoy_containers", dimensions: [("state", state)]).record(Double(summary.containers(state)))
        }
        Gauge(label: "convoy_instances_price_per_hour").record(summary.price)
        // 0: no limit of its own (Arvados' max_concurrent_containers).
        Gauge(label: "convoy_max_concurrent_containers").record(Double(summary.maxConcurrentContainers ?? 0))
        Gauge(label: "convoy_at_quota").record(summary.atQuota ? 1 : 0)

        // Arvados' per-category totals: the category is the worker state, or hold/drain.
        for category in Set(["booting", "idle", "running", "shutdown", "unknown", "hold", "drain"]).union(summary.categories.keys) {
            let total = summary.categories[category] ?? PoolSummary.Totals()
            Gauge(label: "convoy_instances_price", dimensions: [("category", category)]).record(total.price)
            Gauge(label: "convoy_vcpus_total", dimensions: [("category", category)]).record(total.vcpus)
            Gauge(label: "convoy_memory_bytes_total", dimensions: [("category", category)]).record(total.ram)
        }
        // Probe ages, as of these figures.
        let ages = summary.probeAges.sorted()
        Gauge(label: "convoy_probe_age_seconds_max").record(ages.last ?? 0)
        Gauge(label: "convoy_probe_age_seconds_median").record(ages.isEmpty ? 0 : ages[ages.count / 2])

        // The queue: entries by state and cheapest type, the running ones, the locked ones not
        // started yet, those the full pool holds back, and the longest wait.
        var entries = summary.entries.mapValues(Double.init)
        for labels in tracker.swapQueueLabels(Set(entries.keys)) where entries[labels] == nil { entries[labels] = 0 }
        for (labels, count) in entries {
            Gauge(label: "convoy_queue_entries", dimensions: [("state", labels[0]), ("instance_type", labels[1])]).record(count)
        }
        Gauge(label: "convoy_containers_running").record(Double(summary.containers("running")))
        Gauge(label: "convoy_containers_allocated_not_started").record(Double(summary.containers("locked")))
        Gauge(label: "convoy_containers_not_allocated_over_quota").record(summary.poolFull ? Double(summary.containers("queued")) : 0)
        Gauge(label: "convoy_containers_longest_wait_time_seconds").record(summary.longestWait)
        Gauge(label: "convoy_last_503_time").record(summary.last503?.timeIntervalSince1970 ?? 0)
    }
}

/// Which instance label sets the gauges last had, so that vanished ones are set to 0.
final class PoolGaugeTracker: Sendable {
    private let labels = Mutex<Set<[String]>>([])
    private let queueLabels = Mutex<Set<[String]>>([])

    func swapInstanceLabels(_ next: Set<[String]>) -> Set<[String]> {
        labels.withLock { current in
            let previous = current
            current = next
            return previous
        }
    }

    func swapQueueLabels(_ next: Set<[String]>) -> Set<[String]> {
        queueLabels.withLock { current in
            let previous = current
            current = next
            return previous
        }
    }
}
