import Foundation
import Testing
import VTPVocabulary
import VTPSafeTensors
import VTPTensor
import VTPTestSupport

/// The `vtp model` commands, run as a user would run them.
@Suite struct ModelCommandTests {
    @Test func forwardWritesEveryReferenceOutput() throws {
        let dir = try TemporaryDirectory("forward")
        defer { dir.remove() }
        let out = dir.file("out.safetensors")
        let result = try VTPExecutable.run(["model", "forward", "--model", Fixtures.path("vtp-tiny"),
                                            "--inputs", Fixtures.path("vtp-tiny.expected.safetensors"),
                                            "--output", out, "--intermediate-layers", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let ours = try SafeTensorsFile(path: out)
        let expected = try Fixtures.safetensors("vtp-tiny.expected.safetensors")
        #expect(Set(ours.names) == Set(expected.names))
        for name in expected.names where expected.tensors[name]!.dtype == .f32 {
            let report = ToleranceReport(ours: try ours.tensor(name).buffer, reference: try expected.tensor(name).buffer)
            #expect(report.withinFixtureTolerance, "\(name): \(report)")
        }
    }

    @Test func inspectPrintsParameterCounts() throws {
        let result = try VTPExecutable.run(["model", "inspect", Fixtures.path("vtp-tiny")])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Vision Encoder: 0.3M"))
        #expect(result.stdout.contains("Text Encoder: 0.1M"))
        let json = try VTPExecutable.run(["model", "inspect", "--json", Fixtures.path("vtp-tiny-ae-only")])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        let params = object["parameters"] as! [String: Int]
        #expect(params["text_encoder"] == 0)
        #expect(params["vision_encoder"]! > 0)
    }

    @Test func initThenInspectAndBadArguments() throws {
        let dir = try TemporaryDirectory("cli-init")
        defer { dir.remove() }
        let made = try VTPExecutable.run(["model", "init", "--preset", "tiny", "--output", dir.path, "--seed", "3"])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try VTPExecutable.run(["model", "inspect", dir.path]).status == 0)
        let bad = try VTPExecutable.run(["model", "init", "--preset", "XXL", "--output", dir.path])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--preset must be one of"))
        let missing = try VTPExecutable.run(["model", "inspect", dir.file("nope")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("nope"))
    }
}
