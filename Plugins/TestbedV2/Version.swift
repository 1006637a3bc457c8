/// The version of this build of the `testbed` plugin: the same code as
/// Plugins/Testbed (Testbed.swift is a symlink to it), for hot-reload tests
/// that swap the library file.
let testbedVersion = "2.0.0"
