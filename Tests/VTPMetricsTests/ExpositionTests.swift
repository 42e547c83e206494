import Testing
import VTPVocabulary
@testable import VTPMetrics

@Suite("Prometheus text exposition")
struct ExpositionTests {
    @Test func counterAndGaugeRenderHelpTypeAndValue() throws {
        let registry = MetricsRegistry()
        let counter = try registry.counter("jobs_done_total", help: "Jobs finished.")
        let gauge = try registry.gauge("queue_depth", help: "Waiting shards.")
        counter.increment()
        counter.increment(by: 2)
        counter.increment(by: -5)  // ignored: counters never decrease
        gauge.set(7)
        gauge.decrement(by: 2.5)
        #expect(registry.render() == """
            # HELP jobs_done_total Jobs finished.
            # TYPE jobs_done_total counter
            jobs_done_total 3
            # HELP queue_depth Waiting shards.
            # TYPE queue_depth gauge
            queue_depth 4.5

            """)
    }

    @Test func labelValuesAndHelpAreEscaped() throws {
        let registry = MetricsRegistry()
        let family = try registry.counterFamily("errors_total", help: "Errors by path.\nSecond \\ line.",
                                                labelNames: ["path", "kind"])
        try family.labels("C:\\data\\\"x\".jpg", "line1\nline2").increment()
        try family.labels(["plain", "ok"]).increment(by: 4)
        let text = registry.render()
        #expect(text == """
            # HELP errors_total Errors by path.\\nSecond \\\\ line.
            # TYPE errors_total counter
            errors_total{path="C:\\\\data\\\\\\"x\\".jpg",kind="line1\\nline2"} 1
            errors_total{path="plain",kind="ok"} 4

            """)
    }

    @Test func histogramHasCumulativeBucketsInfSumAndCount() throws {
        let registry = MetricsRegistry()
        let family = try registry.histogramFamily("stage_seconds", help: "Stage time.", labelNames: ["stage"],
                                                  buckets: [0.25, 0.5, 1])
        let read = try family.labels("read")
        for value in [0.0625, 0.25, 0.375, 0.75, 2, 10] { read.observe(value) }
        read.observe(.nan)  // ignored
        let text = registry.render()
        #expect(text == """
            # HELP stage_seconds Stage time.
            # TYPE stage_seconds histogram
            stage_seconds_bucket{stage="read",le="0.25"} 2
            stage_seconds_bucket{stage="read",le="0.5"} 3
            stage_seconds_bucket{stage="read",le="1"} 4
            stage_seconds_bucket{stage="read",le="+Inf"} 6
            stage_seconds_sum{stage="read"} 13.4375
            stage_seconds_count{stage="read"} 6

            """)
        #expect(read.snapshot.count == 6)
    }

    @Test func durationsAreObservedInSeconds() throws {
        let histogram = try MetricsRegistry().histogram("t", help: "t", buckets: [0.01, 1])
        histogram.observe(Duration.milliseconds(250))
        histogram.observe(Duration.microseconds(5))
        let snapshot = histogram.snapshot
        #expect(snapshot.cumulativeCounts == [1, 2])
        #expect(abs(snapshot.sum - 0.250005) < 1e-12)
    }

    @Test func numbersUseExpositionSpelling() {
        #expect(Exposition.format(3) == "3")
        #expect(Exposition.format(-0.0) == "0")
        #expect(Exposition.format(0.25) == "0.25")
        #expect(Exposition.format(1e-5) == "1e-05")
        #expect(Exposition.format(.infinity) == "+Inf")
        #expect(Exposition.format(-.infinity) == "-Inf")
        #expect(Exposition.format(.nan) == "NaN")
        #expect(Exposition.format(1e20) == "1e+20")
    }

    @Test func invalidNamesAndBucketsAreRejected() throws {
        let registry = MetricsRegistry()
        #expect(throws: MetricsError.invalidMetricName("9lives")) { try registry.counter("9lives", help: "") }
        #expect(throws: MetricsError.invalidMetricName("a-b")) { try registry.gauge("a-b", help: "") }
        #expect(throws: MetricsError.invalidLabelName(metric: "m", label: "__x")) {
            try registry.counterFamily("m", help: "", labelNames: ["__x"])
        }
        #expect(throws: MetricsError.reservedOrDuplicateLabel(metric: "m", label: "a")) {
            try registry.counterFamily("m", help: "", labelNames: ["a", "a"])
        }
        #expect(throws: MetricsError.reservedOrDuplicateLabel(metric: "h", label: "le")) {
            try registry.histogramFamily("h", help: "", labelNames: ["le"])
        }
        #expect(throws: MetricsError.self) { try registry.histogram("h", help: "", buckets: [1, 1]) }
        #expect(throws: MetricsError.self) { try registry.histogram("h", help: "", buckets: [1, .infinity]) }
        #expect(throws: MetricsError.self) { try registry.histogram("h", help: "", buckets: []) }
        _ = try registry.counter("ok:total", help: "")
        #expect(throws: MetricsError.duplicateMetric("ok:total")) { try registry.gauge("ok:total", help: "") }
        let family = try registry.counterFamily("two", help: "", labelNames: ["a", "b"])
        #expect(throws: MetricsError.labelCountMismatch(metric: "two", expected: 2, got: 1)) { try family.labels("x") }
    }

    @Test func concurrentUpdatesAreNotLost() async throws {
        let registry = MetricsRegistry()
        let counter = try registry.counter("c_total", help: "c")
        let histogram = try registry.histogram("h", help: "h", buckets: [1])
        let family = try registry.gaugeFamily("g", help: "g", labelNames: ["worker"])
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for i in 0..<5000 {
                        counter.increment()
                        histogram.observe(Double(i % 2))
                        try? family.labels("w\(task)").increment()
                    }
                }
            }
        }
        #expect(counter.value == 40_000)
        #expect(histogram.snapshot.count == 40_000)
        #expect(histogram.snapshot.cumulativeCounts == [40_000])
        #expect(try family.labels("w3").value == 5000)
    }

    @Test func coordinatorMetricsExposeEveryDocumentedSeries() throws {
        let metrics = try CoordinatorMetrics(stageBuckets: [0.5, 1])
        metrics.itemsProcessed.increment(by: 12)
        metrics.itemsFailed.increment(by: 1)
        metrics.queueDepth.set(5)
        metrics.shardsInFlight.set(2)
        metrics.workers.set(3)
        metrics.itemsPerSecond.set(41.5)
        metrics.leaseExpiries.increment()
        metrics.lateCompletionsRejected.increment(by: 2)
        metrics.shardsCompleted.increment()
        metrics.stageDuration(.infer).observe(0.75)
        let text = metrics.registry.render()
        for line in ["vtp_items_processed_total 12", "vtp_items_failed_total 1", "vtp_queue_pending_shards 5",
                     "vtp_shards_in_flight 2", "vtp_workers 3", "vtp_items_per_second 41.5",
                     "vtp_lease_expiries_total 1", "vtp_late_completions_rejected_total 2",
                     "vtp_shards_completed_total 1",
                     "vtp_stage_duration_seconds_bucket{stage=\"infer\",le=\"0.5\"} 0",
                     "vtp_stage_duration_seconds_bucket{stage=\"infer\",le=\"1\"} 1",
                     "vtp_stage_duration_seconds_count{stage=\"read\"} 0",
                     "# TYPE vtp_stage_duration_seconds histogram"] {
            #expect(text.contains(line + "\n"), "missing \(line)")
        }
        for stage in CoordinatorMetrics.Stage.allCases {
            #expect(text.contains("vtp_stage_duration_seconds_sum{stage=\"\(stage.rawValue)\"}"))
        }
        #expect(throws: MetricsError.duplicateMetric(CoordinatorMetrics.Name.queueDepth)) {
            try CoordinatorMetrics(registry: metrics.registry)
        }
    }

    @Test func rateWindowAveragesOverTheWindow() {
        var window = RateWindow(windowSeconds: 10)
        #expect(window.rate(at: 100) == 0)
        window.record(50, at: 100.2)
        #expect(window.rate(at: 100.9) == 50)  // one second of history so far
        window.record(50, at: 104.5)
        #expect(window.rate(at: 104.9) == 20)  // 100 items over 5 seconds
        #expect(window.rate(at: 109.0) == 10)  // 100 items over the full 10 s
        #expect(window.rate(at: 110.5) == 5)   // the first 50 slid out
        #expect(window.rate(at: 200) == 0)
        window.record(30, at: 200)             // reuses a slot last written 100 s ago
        #expect(window.rate(at: 200) == 3)
    }
}
