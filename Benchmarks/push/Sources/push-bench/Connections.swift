import NIOCore

/// Connections opened by ``openSubscribers``, and why the others failed.
struct OpenResult {
    var channels: [any Channel] = []
    var failures: [String: Int] = [:]  // SubscribeFailure.tag → count
    var failed: Int { self.failures.values.reduce(0, +) }
}

/// Opens `count` subscribers with at most `inFlight` handshakes at a time,
/// round-robin over the loops of `group`. `channelName(i)` is the channel the
/// i-th connection (counting from `firstIndex`) subscribes to.
func openSubscribers(
    _ count: Int, firstIndex: Int = 0, inFlight: Int, group: any EventLoopGroup, client: SubscriberClient,
    channelName: @escaping @Sendable (Int) -> String
) async -> OpenResult {
    await withTaskGroup(of: Result<any Channel, SubscribeFailure>.self) { tasks in
        var result = OpenResult()
        var next = 0
        func startOne() {
            let index = firstIndex + next
            let loop = group.next()
            tasks.addTask {
                do throws(SubscribeFailure) {
                    return .success(try await client.open(on: loop, subscribingTo: channelName(index)))
                } catch {
                    return .failure(error)
                }
            }
            next += 1
        }
        while next < min(inFlight, count) { startOne() }
        for await outcome in tasks {
            switch outcome {
            case .success(let channel): result.channels.append(channel)
            case .failure(let failure): result.failures[failure.tag, default: 0] += 1
            }
            if next < count { startOne() }
        }
        return result
    }
}

func failureSummary(_ failures: [String: Int]) -> String {
    failures.isEmpty ? "none" : failures.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
}
