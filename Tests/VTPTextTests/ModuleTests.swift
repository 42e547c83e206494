import Testing
import VTPVocabulary
import VTPText

@Test func VTPTextModuleLinks() {
    #expect(VTPTextModule.name == "VTPText")
}
