import Foundation
import Testing
import VTPVocabulary
@testable import VTPQueue

@Suite("Ledger logic without a server")
struct PureLogicTests {
    @Test func reconnectPolicyBacksOffExponentiallyAndGivesUpAtTheDeadline() {
        var policy = ReconnectPolicy(initialDelay: 0.1, maximumDelay: 0.4, deadline: 1.0)
        #expect(policy.attemptFailed() == .retry(afterSeconds: 0.1))
        #expect(policy.attemptFailed() == .retry(afterSeconds: 0.2))
        #expect(policy.attemptFailed() == .retry(afterSeconds: 0.4))
        guard case .retry(let last) = policy.attemptFailed() else {
            Issue.record("gave up before the deadline")
            return
        }
        #expect(abs(last - 0.3) < 1e-9, "the last wait is trimmed to the deadline")
        #expect(policy.attemptFailed() == .giveUp)
        policy.connected()
        #expect(policy.attemptFailed() == .retry(afterSeconds: 0.1))
    }

    @Test func reconnectPolicyNeverWaitsPastTheDeadline() {
        var policy = ReconnectPolicy(initialDelay: 0.3, maximumDelay: 10, deadline: 1.0)
        var total = 0.0
        while case .retry(let delay) = policy.attemptFailed() { total += delay }
        #expect(abs(total - 1.0) < 1e-9)
    }

    @Test func passwordsAreRedacted() throws {
        #expect(DatabaseURL.redact("postgresql://alice:s3cr%40t@db.example:5432/vtp?sslmode=require")
                == "postgresql://alice:***@db.example:5432/vtp?sslmode=require")
        #expect(DatabaseURL.redact("postgres://bob@host/db?password=hunter2&sslmode=off")
                == "postgres://bob@host/db?password=***&sslmode=off")
        #expect(DatabaseURL.redact("host=h user=u password='a b\\' c' dbname=d") == "host=h user=u password=*** dbname=d")
        #expect(DatabaseURL.redact("postgresql:///vtp?host=/tmp/sock") == "postgresql:///vtp?host=/tmp/sock")
        let url = try DatabaseURL("postgresql://carol:topsecret@localhost/db")
        #expect(!"\(url)".contains("topsecret"))
        #expect(throws: LedgerError.self) { try DatabaseURL("  ") }
    }

    @Test func connectionErrorsNeverQuoteThePassword() async throws {
        // Nothing listens on this socket directory, so the connect fails; the message must stay clean.
        let url = try DatabaseURL("postgresql://user:topsecret@/db?host=/nonexistent-vtp-dir&connect_timeout=1")
        let ledger = Ledger(database: url, reconnect: ReconnectPolicy(initialDelay: 0.01, maximumDelay: 0.01, deadline: 0.02))
        do {
            try await ledger.verifySchema()
            Issue.record("connecting to a missing server succeeded")
        } catch let error as PostgresError {
            #expect(error.kind == .connectionFailed)
            #expect(!error.description.contains("topsecret"))
            #expect(error.description.contains("***"))
        }
    }

    @Test func copyEncoderEscapesFieldAndRowSeparators() {
        var encoder = CopyTextEncoder()
        encoder.appendField(7)
        encoder.appendField("a\tb\nc\\d\re")
        encoder.appendField(nil)
        encoder.appendField("plain ünïcode")
        encoder.endRow()
        #expect(String(decoding: encoder.bytes, as: UTF8.self) == "7\ta\\tb\\nc\\\\d\\re\t\\N\tplain ünïcode\n")
        encoder.reset()
        #expect(encoder.bytes.isEmpty)
    }

    @Test func plannerAppliesMissingMigrationsInOrder() throws {
        let known = [Migration(version: 2, name: "0002_b.sql", sql: "B"), Migration(version: 1, name: "0001_a.sql", sql: "A")]
        #expect(try MigrationPlanner.next(applied: [], known: known)?.version == 1)
        let first = AppliedMigration(version: 1, name: "0001_a.sql", checksum: known[1].checksum)
        #expect(try MigrationPlanner.next(applied: [first], known: known)?.version == 2)
        let second = AppliedMigration(version: 2, name: "0002_b.sql", checksum: known[0].checksum)
        #expect(try MigrationPlanner.next(applied: [first, second], known: known) == nil)
    }

    @Test func plannerRefusesNewerOrEditedSchemas() {
        let known = [Migration(version: 1, name: "0001_a.sql", sql: "A")]
        let future = AppliedMigration(version: 3, name: "0003_c.sql", checksum: "x")
        #expect(throws: LedgerError.schemaTooNew(databaseVersion: 3, binaryVersion: 1)) {
            try MigrationPlanner.next(applied: [future], known: known)
        }
        let edited = AppliedMigration(version: 1, name: "0001_a.sql", checksum: "not-the-checksum")
        #expect(throws: LedgerError.migrationChecksumMismatch(version: 1, name: "0001_a.sql")) {
            try MigrationPlanner.next(applied: [edited], known: known)
        }
    }

    @Test func embeddedMigrationsMatchTheSQLFiles() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { Migration.version(fromFileName: $0) != nil }.sorted()
        #expect(!files.isEmpty)
        #expect(files == EmbeddedMigrations.all.map(\.name), "run migrations/embed.sh")
        for (file, embedded) in zip(files, EmbeddedMigrations.all) {
            var text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            if text.hasSuffix("\n") { text.removeLast() }
            #expect(embedded.sql == text, "\(file) differs from EmbeddedMigrations.swift; run migrations/embed.sh")
            #expect(embedded.version == Migration.version(fromFileName: file))
        }
        #expect(Migration.latestVersion == EmbeddedMigrations.all.count)
    }

    @Test func jobSpecValidationNamesTheField() {
        var spec = testJob()
        spec.parametersJSON = "[1, 2]"
        #expect(throws: LedgerError.invalidArgument(field: "job.parametersJSON", expected: "a JSON object")) {
            try spec.validate()
        }
        spec = testJob(shardSize: 0)
        #expect(throws: LedgerError.invalidArgument(field: "job.shardSize", expected: "at least 1")) { try spec.validate() }
    }
}

private func testJob(shardSize: Int = 10) -> JobSpec {
    JobSpec(type: "encode", parametersJSON: #"{"resolution": 256}"#, model: "vtp-tiny", inputLocation: "/data/in",
            outputLocation: "/data/out", shardSize: shardSize)
}
