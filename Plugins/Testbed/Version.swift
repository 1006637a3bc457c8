/// The version of this build of the `testbed` plugin. Testbed.swift is shared
/// with Plugins/TestbedV2 (a symlink), which has its own Version.swift.
let testbedVersion = "1.0.0"
