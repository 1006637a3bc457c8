// push-bench: load for Turnout's WebSocket push hub (SPEC §6), run by
// Benchmarks/push.sh against a real `turnout` process on 127.0.0.1.
//
//   push-bench fanout --port P --admin-token T --secret S [--subscribers 5000] [--publishes 50] [--interval-ms 100]
//   push-bench hold   --port P --secret S [--target 10000] [--step 1000] [--hold-s 10]
//
// Common options: --path /ws; --in-flight 200 (handshakes at a time);
// --loops N (client event loops; default the core count, at least 2 — on 2
// cores, 4 loops only added context switches). fanout also takes --channel
// (default conversation:1). Results are `key=value` lines on stdout (fanout's
// each_ms lists every publish's latency); progress is on stderr.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "fanout": try await Fanout(Options(arguments.dropFirst())).run()
    case "hold": try await Hold(Options(arguments.dropFirst())).run()
    default: throw UsageError("usage: push-bench fanout|hold --port P --secret S [options] (see Sources/push-bench/main.swift)")
    }
} catch {
    progress("\(error)")
    exit(1)
}
