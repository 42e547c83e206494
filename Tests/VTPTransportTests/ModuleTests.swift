import Testing
import VTPTransport

@Test func VTPTransportModuleLinks() {
    #expect(VTPTransportModule.name == "VTPTransport")
}
