import Testing
import VTPVocabulary
import VTPTransport

@Test func VTPTransportModuleLinks() {
    #expect(VTPTransportModule.name == "VTPTransport")
    #expect(ZMQContext.version.major == 4)
}
