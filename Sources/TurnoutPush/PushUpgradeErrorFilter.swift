import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Swallows the `NIOWebSocketUpgradeError` that NIO's upgrade handler fires when
/// ``PushHub`` declines an upgrade (bad token, capacity, other path), so that
/// the host's HTTP handlers — which typically close the connection on any
/// error — still receive the request head and can answer with
/// ``PushHub/rejection(for:)``.
///
/// Add it right after `configureHTTPServerPipeline(withServerUpgrade:)`, before
/// the host's handlers, and remove it in `removeHTTPHandlers`. Runs on the
/// channel's event loop; passes everything else on untouched.
public final class PushUpgradeErrorFilter: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias InboundOut = HTTPServerRequestPart

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // NIO offers an upgrade on the first request only: once it has been
        // read, nothing can be declined any more and the filter steps out of
        // the pipeline (keep-alive traffic then skips it).
        let firstRequestDone: Bool
        if case .end = self.unwrapInboundIn(data) { firstRequestDone = true } else { firstRequestDone = false }
        context.fireChannelRead(data)
        if firstRequestDone {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOWebSocketUpgradeError { return }
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension PushUpgradeErrorFilter: Sendable {}

