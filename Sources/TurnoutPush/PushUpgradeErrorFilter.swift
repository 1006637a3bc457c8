import NIOCore
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
    public typealias InboundIn = NIOAny

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOWebSocketUpgradeError { return }
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension PushUpgradeErrorFilter: Sendable {}
