import Testing
import VTPText

@Test func VTPTextModuleLinks() {
    #expect(VTPTextModule.name == "VTPText")
}
