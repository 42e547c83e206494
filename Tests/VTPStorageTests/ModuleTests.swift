import Testing
import VTPStorage

@Test func VTPStorageModuleLinks() {
    #expect(VTPStorageModule.name == "VTPStorage")
}
