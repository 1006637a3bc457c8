import Testing
@testable import TurnoutConfig

@Suite("RouteSpec")
struct RouteSpecTests {
    @Test func parsing() throws {
        let exact = try #require(RouteSpec("GET /api/messages"))
        #expect(exact.method == "GET")
        #expect(exact.path == "/api/messages")
        #expect(!exact.matchesSubpaths)
        let prefix = try #require(RouteSpec("PUT   /api/messages/*"))
        #expect(prefix.method == "PUT")
        #expect(prefix.path == "/api/messages/*")
        #expect(prefix.basePath == "/api/messages")
        #expect(prefix.matchesSubpaths)
        #expect(prefix.description == "PUT /api/messages/*")
        #expect(RouteSpec("* /x")?.method == "*")

        for bad in ["GET", "/api", "GET /a /b", "get /a", "GET a", "GET /a*", "GET /*/x", "GET /a?x=1",
                    "G*T /a", "GET /a/**", ""] {
            #expect(RouteSpec(bad) == nil, "\(bad) should be rejected")
        }
    }

    @Test func exactMatching() throws {
        let r = try #require(RouteSpec("GET /api/messages"))
        #expect(r.matches(method: "GET", path: "/api/messages"))
        #expect(r.matches(method: "GET", path: "/api/messages?conversation_id=4&limit=2"))
        #expect(r.matches(method: "GET", path: "/api/messages#frag"))
        #expect(!r.matches(method: "GET", path: "/api/messagesX"))
        #expect(!r.matches(method: "GET", path: "/api/messages/"))
        #expect(!r.matches(method: "GET", path: "/api/messages/42"))
        #expect(!r.matches(method: "GET", path: "/api/message"))
        #expect(!r.matches(method: "POST", path: "/api/messages"))
        #expect(!r.matches(method: "get", path: "/api/messages"))
        #expect(!r.matches(method: "GET", path: ""))
    }

    @Test func prefixMatching() throws {
        let r = try #require(RouteSpec("GET /api/messages/*"))
        #expect(r.matches(method: "GET", path: "/api/messages/42"))
        #expect(r.matches(method: "GET", path: "/api/messages/42/attachments"))
        #expect(r.matches(method: "GET", path: "/api/messages/42?x=/y"))
        #expect(r.matches(method: "GET", path: "/api/messages//42"))
        #expect(!r.matches(method: "GET", path: "/api/messages"))
        #expect(!r.matches(method: "GET", path: "/api/messages/"))
        #expect(!r.matches(method: "GET", path: "/api/messages//"))
        #expect(!r.matches(method: "GET", path: "/api/messages/?q=1"))
        #expect(!r.matches(method: "GET", path: "/api/messagesX/1"))
        #expect(!r.matches(method: "GET", path: "/api/messages?x=/1"))
        #expect(!r.matches(method: "PUT", path: "/api/messages/42"))

        let root = try #require(RouteSpec("GET /*"))
        #expect(root.matches(method: "GET", path: "/anything"))
        #expect(!root.matches(method: "GET", path: "/"))
    }

    @Test func anyMethod() throws {
        let r = try #require(RouteSpec("* /api/conversations/*"))
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "PURGE"] {
            #expect(r.matches(method: m, path: "/api/conversations/1"))
        }
        #expect(!r.matches(method: "GET", path: "/api/conversations"))
    }
}

@Suite("Structured values")
struct StructuredValueTests {
    @Test func listenAddresses() {
        #expect(ListenAddress("127.0.0.1:8080") == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(ListenAddress("0.0.0.0:80") == ListenAddress(host: "0.0.0.0", port: 80))
        #expect(ListenAddress("[::1]:8080") == ListenAddress(host: "::1", port: 8080))
        #expect(ListenAddress("[::]:0") == ListenAddress(host: "::", port: 0))
        #expect(ListenAddress("localhost:8080") == ListenAddress(host: "localhost", port: 8080))
        #expect(ListenAddress("[::1]:8080")?.description == "[::1]:8080")
        #expect(ListenAddress("localhost:65535")?.port == 65535)
        for bad in ["", "8080", ":8080", "localhost", "localhost:", "localhost:65536", "localhost:-1",
                    "::1:8080", "[::1]", "[::1:8080", "[zz]:80", "host name:80", "a:b", "h:80/x"] {
            #expect(ListenAddress(bad) == nil, "\(bad) should be rejected")
        }
    }

    @Test func listenErrorsInConfig() {
        let e = failures("[server]\nlisten = \"::1:8080\"")
        #expect(e.first?.description == "proxy.conf:2: server.listen: IPv6 addresses must be in brackets, e.g. [::1]:8080")
        let p = failures("[server]\nlisten = \"localhost:99999\"")
        #expect(p.first?.message == #"port must be a number between 0 and 65535, got "99999""#)
    }

    @Test func upstreamURLs() throws {
        let a = try #require(UpstreamURL("http://127.0.0.1:3000"))
        #expect(a.scheme == .http && a.host == "127.0.0.1" && a.port == 3000 && a.basePath == "")
        #expect(a.hostHeader == "127.0.0.1:3000")
        let b = try #require(UpstreamURL("HTTPS://crm.example.com/base/v1//"))
        #expect(b.scheme == .https && b.host == "crm.example.com" && b.port == 443 && b.basePath == "/base/v1")
        #expect(b.hostHeader == "crm.example.com")
        #expect(b.string == "HTTPS://crm.example.com/base/v1//")
        let c = try #require(UpstreamURL("http://[::1]:8081/"))
        #expect(c.host == "::1" && c.port == 8081 && c.basePath == "")
        #expect(c.hostHeader == "[::1]:8081")
        #expect(UpstreamURL("http://legacy")?.port == 80)

        for bad in ["", "127.0.0.1:3000", "ftp://x", "http://", "http://:80", "http://x:0", "http://x:70000",
                    "http://x/?q=1", "http://x/#f", "http://user:pw@x", "http://a b", "http://::1/"] {
            #expect(UpstreamURL(bad) == nil, "\(bad) should be rejected")
        }
        let e = failures("[upstream]\nurl = \"http://x/api?v=1\"")
        #expect(e.first?.description == "proxy.conf:2: upstream.url: the URL must not contain a query string or fragment")
        let s = failures("[upstream]\nurl = \"ws://x\"")
        #expect(s.first?.message == #"the URL must start with http:// or https://, got "ws://x""#)
    }

    @Test func redisURLs() {
        #expect(RedisURL("redis://localhost") == RedisURL(host: "localhost", port: 6379, db: 0, string: "redis://localhost"))
        #expect(RedisURL("redis://10.1.2.3:7000/5")?.port == 7000)
        #expect(RedisURL("redis://10.1.2.3:7000/5")?.db == 5)
        #expect(RedisURL("redis://[::1]:6380")?.host == "::1")
        #expect(RedisURL("redis://h/")?.db == 0)
        for bad in ["localhost:6379", "redis://", "redis://h:0", "redis://h/x", "redis://:pw@h", "rediss://h",
                    "http://h", "redis://h/1?x"] {
            #expect(RedisURL(bad) == nil, "\(bad) should be rejected")
        }
        #expect(RedisURL(host: "h").string == "redis://h:6379/0")
    }

    @Test func stickyKeys() {
        #expect(StickyKey("header:X-Client-Id") == .header("X-Client-Id"))
        #expect(StickyKey("cookie:session") == .cookie("session"))
        #expect(StickyKey("query:client") == .query("client"))
        #expect(StickyKey("ip") == .ip)
        #expect(StickyKey("Header:X-A") == .header("X-A"))
        #expect(StickyKey.header("X-Client-Id").description == "header:X-Client-Id")
        for bad in ["", "header:", "cookie:", "query:", "header", "body:x", "ip:1", "header:Bad Name"] {
            #expect(StickyKey(bad) == nil, "\(bad) should be rejected")
        }
        let e = failures("[rollout]\nsticky = \"header:\"")
        #expect(e.first?.description == "proxy.conf:2: rollout.sticky: the header name after 'header:' must not be empty")
        #expect(load("[rollout]\nsticky = \"cookie:sid\"").rollout.sticky == .cookie("sid"))
    }

    @Test func pushPathMustBeAbsolute() {
        #expect(load("[push]\npath = \"/socket\"").push.path == "/socket")
        #expect(failures("[push]\npath = \"socket\"").first?.key == "push.path")
    }

    @Test func suggestions() {
        #expect(closest("timout_ms", among: ["url", "timeout_ms", "connect_timeout_ms"]) == "timeout_ms")
        #expect(closest("zzz", among: ["url", "timeout_ms"]) == nil)
        #expect(editDistance(Array("kitten".utf8), Array("sitting".utf8)) == 3)
    }
}
