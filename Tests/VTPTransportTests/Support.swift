import Testing

/// CPU-heavy suites (codec fuzzing) run one at a time so they do not hog the small cooperative
/// pool the other unit suites share. (The socket suites live in VTPIntegrationTests.)
@Suite(.serialized) enum SerialTransportTests {}
