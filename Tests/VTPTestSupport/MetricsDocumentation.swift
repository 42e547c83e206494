import Foundation

/// The metrics contract of docs/monitoring.md, for tests that scrape `/metrics` and compare.
public enum MetricsDocumentation {
    /// The coordinator's table (the heading of its section in docs/monitoring.md).
    public static let coordinatorSection = "## Prometheus metrics"
    /// The worker's table.
    public static let workerSection = "### Worker metrics"

    /// A metrics table of docs/monitoring.md, the one directly under the heading `section`
    /// (the coordinator's by default): name → (type, label names).
    public static func documented(section: String = coordinatorSection) throws -> [String: (type: String, labels: [String])] {
        let text = try String(contentsOfFile: Fixtures.repositoryRoot + "/docs/monitoring.md", encoding: .utf8)
        var metrics: [String: (type: String, labels: [String])] = [:]
        var heading = "", inCodeBlock = false
        for line in text.split(separator: "\n") {
            if line.hasPrefix("```") { inCodeBlock.toggle() }
            if line.hasPrefix("#") && !inCodeBlock { heading = String(line) }
            guard heading == section, line.hasPrefix("| `vtp_") else { continue }
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2 else { continue }
            var name = cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            var labels: [String] = []
            if let brace = name.firstIndex(of: "{") {
                labels = name[name.index(after: brace)..<name.index(before: name.endIndex)].split(separator: ",").map(String.init)
                name = String(name[..<brace])
            }
            metrics[name] = (cells[1], labels)
        }
        return metrics
    }

    /// Families in an exposition: name → (type, label names other than `le`).
    public static func exposed(_ exposition: String) -> [String: (type: String, labels: [String])] {
        var types: [String: String] = [:]
        var labels: [String: Set<String>] = [:]
        for line in exposition.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                types[String(parts[2])] = String(parts[3])
            } else if !line.hasPrefix("#"), let brace = line.firstIndex(of: "{") {
                var family = String(line[..<brace])
                for suffix in ["_bucket", "_sum", "_count"] where types[family] == nil && family.hasSuffix(suffix) {
                    family = String(family.dropLast(suffix.count))
                }
                let pairs = line[line.index(after: brace)..<line.firstIndex(of: "}")!].split(separator: ",")
                for pair in pairs { labels[family, default: []].insert(String(pair.split(separator: "=")[0])) }
            }
        }
        var families: [String: (type: String, labels: [String])] = [:]
        for (name, type) in types { families[name] = (type, (labels[name] ?? []).subtracting(["le"]).sorted()) }
        return families
    }
}
