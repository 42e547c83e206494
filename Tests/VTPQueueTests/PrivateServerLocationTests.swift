import Foundation
import Testing
import VTPQueue
import VTPTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Where a state directory's private PostgreSQL lives, on real directories. The server user is
/// this process's own, so the tests run as any user (as root, `postgres` itself is exercised by
/// the end-to-end tests).
struct PrivateServerLocationTests {
    let me = (uid: getuid(), gid: getgid(), name: "me")

    func makeState(_ dir: TemporaryDirectory, _ name: String = "out") throws -> URL {
        let state = URL(fileURLWithPath: dir.file(name + "/.vtp-state"))
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        return state
    }

    func initialise(_ server: URL) throws {
        try FileManager.default.createDirectory(at: server.appendingPathComponent("data"), withIntermediateDirectories: true)
        try "16\n".write(to: server.appendingPathComponent("data/PG_VERSION"), atomically: true, encoding: .utf8)
    }

    @Test func withoutAServerUserTheServerStaysInTheStateDirectory() throws {
        let dir = try TemporaryDirectory("loc-plain")
        defer { dir.remove() }
        let state = try makeState(dir)
        let server = try PrivateServerLocation.resolve(stateDirectory: state, runAs: nil, environment: [:])
        #expect(server.path == state.path + "/postgres")
        #expect(!FileManager.default.fileExists(atPath: state.path + "/" + PrivateServerLocation.pointerFileName))
        #expect(try PrivateServerLocation.existing(stateDirectory: state) == nil)
        try initialise(server)
        #expect(try PrivateServerLocation.existing(stateDirectory: state)?.path == server.path)
    }

    @Test func withAServerUserTheServerLivesUnderTheRootAndThePointerFindsIt() throws {
        let dir = try TemporaryDirectory("loc-root")
        defer { dir.remove() }
        let state = try makeState(dir, "My Output!")
        let root = dir.file("srv/vtp/postgres")
        let environment = [PrivateServerLocation.rootEnvironmentKey: root]
        let server = try PrivateServerLocation.resolve(stateDirectory: state, runAs: me, environment: environment)
        #expect(server.deletingLastPathComponent().path == root)
        #expect(server.lastPathComponent.hasPrefix("My_Output_-"), "\(server.lastPathComponent)")
        var info = stat()
        for path in [dir.file("srv"), dir.file("srv/vtp"), root] {
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o755, "\(path) should be world-searchable")
        }
        #expect(stat(server.path, &info) == 0 && info.st_mode & 0o777 == 0o700 && info.st_uid == me.uid)
        let pointer = try String(contentsOfFile: state.path + "/" + PrivateServerLocation.pointerFileName, encoding: .utf8)
        #expect(pointer.split(separator: "\n").contains { $0 == server.path })

        // Found again, by the pointer, whatever the root says now.
        #expect(try PrivateServerLocation.resolve(stateDirectory: state, runAs: me, environment: [:]).path == server.path)
        #expect(try PrivateServerLocation.existing(stateDirectory: state) == nil, "no database yet")
        try initialise(server)
        #expect(try PrivateServerLocation.existing(stateDirectory: state)?.path == server.path)
    }

    @Test func anEarlierVersionsLayoutIsKeptEvenForTheServerUser() throws {
        let dir = try TemporaryDirectory("loc-legacy")
        defer { dir.remove() }
        let state = try makeState(dir)
        try initialise(state.appendingPathComponent("postgres"))
        let server = try PrivateServerLocation.resolve(stateDirectory: state, runAs: me,
                                                       environment: [PrivateServerLocation.rootEnvironmentKey: dir.file("srv")])
        #expect(server.path == state.path + "/postgres")
        #expect(!FileManager.default.fileExists(atPath: dir.file("srv")))
        #expect(!FileManager.default.fileExists(atPath: state.path + "/" + PrivateServerLocation.pointerFileName))
    }

    @Test func aCopiedOutputIsRefusedAndAMovedOneAdopted() throws {
        let dir = try TemporaryDirectory("loc-copy")
        defer { dir.remove() }
        let state = try makeState(dir, "a")
        let environment = [PrivateServerLocation.rootEnvironmentKey: dir.file("srv")]
        let server = try PrivateServerLocation.resolve(stateDirectory: state, runAs: me, environment: environment)
        try initialise(server)

        try FileManager.default.copyItem(atPath: dir.file("a"), toPath: dir.file("b"))
        let copy = URL(fileURLWithPath: dir.file("b/.vtp-state"))
        #expect(throws: EmbeddedPostgresError.self) {
            try PrivateServerLocation.resolve(stateDirectory: copy, runAs: me, environment: environment)
        }
        do {
            _ = try PrivateServerLocation.existing(stateDirectory: copy)
            Issue.record("a copy's pointer was followed")
        } catch {
            #expect(String(describing: error).contains("looks copied from there"), "\(error)")
        }
        // Without the pointer the copy gets a ledger of its own.
        try FileManager.default.removeItem(atPath: copy.path + "/" + PrivateServerLocation.pointerFileName)
        let own = try PrivateServerLocation.resolve(stateDirectory: copy, runAs: me, environment: environment)
        #expect(own.path != server.path)

        // Moved (the original is gone): the server follows the output.
        try FileManager.default.moveItem(atPath: dir.file("a"), toPath: dir.file("c"))
        let moved = URL(fileURLWithPath: dir.file("c/.vtp-state"))
        #expect(try PrivateServerLocation.resolve(stateDirectory: moved, runAs: me, environment: environment).path == server.path)
        let owner = try String(contentsOf: server.appendingPathComponent(PrivateServerLocation.ownerFileName), encoding: .utf8)
        #expect(owner.trimmingCharacters(in: .whitespacesAndNewlines) == moved.resolvingSymlinksInPath().path)
    }

    @Test func aPointerToAVanishedServerIsRecreatedInItsPlace() throws {
        let dir = try TemporaryDirectory("loc-vanished")
        defer { dir.remove() }
        let state = try makeState(dir)
        let environment = [PrivateServerLocation.rootEnvironmentKey: dir.file("srv/pg")]
        let server = try PrivateServerLocation.resolve(stateDirectory: state, runAs: me, environment: environment)
        try FileManager.default.removeItem(atPath: dir.file("srv"))
        #expect(try PrivateServerLocation.resolve(stateDirectory: state, runAs: me, environment: [:]).path == server.path)
        var info = stat()
        #expect(stat(server.path, &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(stat(dir.file("srv/pg"), &info) == 0 && info.st_mode & 0o777 == 0o755)
    }

    @Test func anOutputDeletedToStartOverGetsAFreshLedgerInThePlaceOfTheOldOne() throws {
        let dir = try TemporaryDirectory("loc-restart")
        defer { dir.remove() }
        let environment = [PrivateServerLocation.rootEnvironmentKey: dir.file("srv")]
        let server = try PrivateServerLocation.resolve(stateDirectory: try makeState(dir), runAs: me, environment: environment)
        try initialise(server)
        // The user deletes the output (pointer and all) and runs the same command again.
        try FileManager.default.removeItem(atPath: dir.file("out"))
        let again = try PrivateServerLocation.resolve(stateDirectory: try makeState(dir), runAs: me, environment: environment)
        #expect(again.path == server.path)
        #expect(!PrivateServerLocation.hasDataDirectory(again), "the old ledger of the deleted output was adopted")
        let pointer = try String(contentsOfFile: dir.file("out/.vtp-state/" + PrivateServerLocation.pointerFileName), encoding: .utf8)
        #expect(pointer.contains(server.path))
    }

    @Test func aPointerWithoutAPathIsAnErrorNamingTheFile() throws {
        let dir = try TemporaryDirectory("loc-bad")
        defer { dir.remove() }
        let state = try makeState(dir)
        let pointer = state.path + "/" + PrivateServerLocation.pointerFileName
        try "# nothing here\nrelative/path\n".write(toFile: pointer, atomically: true, encoding: .utf8)
        do {
            _ = try PrivateServerLocation.existing(stateDirectory: state)
            Issue.record("a pointer without an absolute path was accepted")
        } catch {
            #expect(String(describing: error).hasPrefix(pointer + ": expected the absolute path"), "\(error)")
        }
    }
}
