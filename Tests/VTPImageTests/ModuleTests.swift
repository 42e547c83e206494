import Testing
import VTPImage

@Test func VTPImageModuleLinks() {
    #expect(VTPImageModule.name == "VTPImage")
}
