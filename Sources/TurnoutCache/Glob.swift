/// A key pattern for `invalidate(pattern:)`: `*` matches any run of
/// characters (including none), `?` exactly one Unicode scalar; there are no
/// escapes, character classes or anchors. Two shapes skip the general matcher:
/// no wildcard at all (an exact key) and a single trailing `*` (`messages:*`,
/// the shipped plugin's shape), which is a byte-prefix test.
struct Glob: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case exact(String)
        case prefix(String)
        case general([Unicode.Scalar])
    }

    let kind: Kind

    init(_ pattern: String) {
        let scalars = Array(pattern.unicodeScalars)
        let wildcards = scalars.filter { $0 == "*" || $0 == "?" }.count
        if wildcards == 0 {
            kind = .exact(pattern)
        } else if wildcards == 1, scalars.last == "*" {
            kind = .prefix(String(String.UnicodeScalarView(scalars.dropLast())))
        } else {
            kind = .general(scalars)
        }
    }

    func matches(_ key: String) -> Bool {
        switch kind {
        case .exact(let k): return key.utf8.elementsEqual(k.utf8)
        case .prefix(let p): return key.utf8.starts(with: p.utf8)
        case .general(let p): return Self.match(p, key.unicodeScalars)
        }
    }

    /// Iterative wildcard matching with single-star backtracking: on a
    /// mismatch, let the most recent `*` swallow one more character and retry.
    /// Only the latest star needs remembering, so this is O(pattern × key)
    /// worst case with no recursion — a hostile pattern cannot blow the stack.
    static func match(_ p: [Unicode.Scalar], _ s: String.UnicodeScalarView) -> Bool {
        var pi = 0
        var si = s.startIndex
        var starP = -1
        var starS = s.startIndex
        while si != s.endIndex {
            if pi < p.count, p[pi] == "*" {
                starP = pi
                starS = si
                pi += 1
            } else if pi < p.count, p[pi] == "?" || p[pi] == s[si] {
                pi += 1
                si = s.index(after: si)
            } else if starP >= 0 {
                pi = starP + 1
                starS = s.index(after: starS)
                si = starS
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
