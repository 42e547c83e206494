import Testing
import VTPQueue

@Test func VTPQueueModuleLinks() {
    #expect(VTPQueueModule.name == "VTPQueue")
}
