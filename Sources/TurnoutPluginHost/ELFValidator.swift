// ELF checks done in Swift before a file reaches dlopen: a file cut short
// (a build still being written, a bad copy) makes dlopen die with SIGBUS when
// the cut removes mapped segments, and nothing can catch that. Every offset
// the loader will map or read is checked against the file's size here.

/// Validates that bytes are a complete 64-bit little-endian ELF shared
/// library for this machine.
enum ELFValidator {
    static let elfHeaderSize = 64
    static let programHeaderSize = 56
    static let sectionHeaderSize = 64

    #if arch(x86_64)
    static let hostMachine: UInt16 = 62
    static let hostMachineName = "x86_64"
    #elseif arch(arm64)
    static let hostMachine: UInt16 = 183
    static let hostMachineName = "aarch64"
    #else
    static let hostMachine: UInt16 = 0
    static let hostMachineName = "unknown"
    #endif

    static func machineName(_ machine: UInt16) -> String {
        switch machine {
        case 3: return "i386"
        case 8: return "mips"
        case 20: return "powerpc"
        case 21: return "powerpc64"
        case 40: return "arm"
        case 62: return "x86_64"
        case 183: return "aarch64"
        case 243: return "riscv"
        default: return "machine \(machine)"
        }
    }

    /// Throws a ``PluginLoadError`` naming `path` unless `bytes` pass every check.
    static func validate(_ bytes: UnsafeRawBufferPointer, path: String) throws(PluginLoadError) {
        let size = bytes.count
        func fail(_ kind: PluginLoadError.Kind, _ why: String) -> PluginLoadError {
            PluginLoadError(kind: kind, path: path, message: "plugin file \(path): \(why)")
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        /// `offset + count * entry ≤ size` without overflow.
        func fits(_ offset: UInt64, _ count: UInt64, _ entry: UInt64) -> Bool {
            let (total, o1) = count.multipliedReportingOverflow(by: entry)
            let (end, o2) = offset.addingReportingOverflow(total)
            return !o1 && !o2 && end <= UInt64(size)
        }
        let rebuild = "rebuild the plugin, or wait until its build has finished"

        if size == 0 {
            throw fail(.notELF, "the file is empty, not a shared library; point `path` at the built .so")
        }
        if size < 4 || bytes[0] != 0x7f || bytes[1] != 0x45 || bytes[2] != 0x4c || bytes[3] != 0x46 {
            throw fail(.notELF, "not an ELF shared library (no ELF magic number); point `path` at the built .so")
        }
        if size < elfHeaderSize {
            throw fail(.truncated, "the file ends inside its ELF header (\(size) bytes): it was cut short; \(rebuild)")
        }
        if bytes[4] != 2 {
            throw fail(.notSharedLibrary, "a 32-bit ELF file; Turnout loads 64-bit shared libraries built for \(hostMachineName)")
        }
        if bytes[5] != 1 {
            throw fail(.notSharedLibrary, "a big-endian ELF file; Turnout loads little-endian shared libraries built for \(hostMachineName)")
        }
        if bytes[6] != 1 {
            throw fail(.notELF, "unknown ELF version \(bytes[6]); not a usable shared library")
        }
        let type = u16(16)
        if type != 3 {
            let what = type == 1 ? "an object file (.o)" : type == 2 ? "an executable" : type == 4 ? "a core dump" : "ELF type \(type)"
            throw fail(.notSharedLibrary, "\(what), not a shared library; build the plugin as a dynamic library (.so)")
        }
        let machine = u16(18)
        if machine != hostMachine {
            throw fail(
                .wrongArchitecture,
                "built for \(machineName(machine)), but this machine is \(hostMachineName); build the plugin on (or for) this machine"
            )
        }
        let phoff = u64(32)
        let shoff = u64(40)
        let ehsize = u16(52)
        let phentsize = u16(54)
        let phnum = u16(56)
        let shentsize = u16(58)
        var shnum = UInt64(u16(60))
        if ehsize < elfHeaderSize {
            throw fail(.notELF, "its ELF header declares a size of \(ehsize) bytes; the file is damaged; \(rebuild)")
        }
        if phnum == 0 || phentsize != programHeaderSize {
            throw fail(.notSharedLibrary, "it has no usable program headers; it is not a loadable shared library")
        }
        if !fits(phoff, UInt64(phnum), UInt64(programHeaderSize)) {
            throw fail(.truncated, "its program header table lies past the end of the file (\(size) bytes): it was cut short; \(rebuild)")
        }
        var loadSegments = 0
        var dynamicSegments = 0
        for index in 0..<Int(phnum) {
            let at = Int(phoff) + index * programHeaderSize
            let pType = u32(at)
            let pOffset = u64(at + 8)
            let pFilesz = u64(at + 32)
            if pType == 1 { loadSegments += 1 }
            if pType == 2 { dynamicSegments += 1 }
            if pFilesz > 0 && !fits(pOffset, 1, pFilesz) {
                let (end, _) = pOffset.addingReportingOverflow(pFilesz)
                throw fail(
                    .truncated,
                    "segment \(index) (type \(pType)) ends at byte \(end) but the file has only \(size) bytes: it was cut short; \(rebuild)"
                )
            }
        }
        if loadSegments == 0 || dynamicSegments == 0 {
            throw fail(.notSharedLibrary, "it has no loadable or dynamic segment; it is not a shared library")
        }
        if shoff != 0 {
            if shentsize != sectionHeaderSize {
                throw fail(.notELF, "its section headers have an unexpected size (\(shentsize)); the file is damaged; \(rebuild)")
            }
            if !fits(shoff, max(shnum, 1), UInt64(sectionHeaderSize)) {
                throw fail(.truncated, "its section header table lies past the end of the file (\(size) bytes): it was cut short; \(rebuild)")
            }
            if shnum == 0 {
                // Extended numbering: the real count is section 0's sh_size.
                shnum = u64(Int(shoff) + 32)
                if !fits(shoff, shnum, UInt64(sectionHeaderSize)) {
                    throw fail(.truncated, "its section header table lies past the end of the file (\(size) bytes): it was cut short; \(rebuild)")
                }
            }
            for index in 0..<Int(shnum) {
                let at = Int(shoff) + index * sectionHeaderSize
                let shType = u32(at + 4)
                let shOffset = u64(at + 24)
                let shSize = u64(at + 32)
                // SHT_NULL (0) and SHT_NOBITS (8, .bss) occupy no file space.
                if shType != 0 && shType != 8 && shSize > 0 && !fits(shOffset, 1, shSize) {
                    throw fail(
                        .truncated,
                        "section \(index) lies past the end of the file (\(size) bytes): it was cut short; \(rebuild)"
                    )
                }
            }
        }
    }
}
