//! The cargo-panic runtime, seen from the host.
//!
//! The runtime proper is C (`c/panic_runtime.c`, ABI in `c/panic_abi.h`): it is
//! linked into every instrumented program, so it must not bring a second copy of
//! std along. This crate carries that C as a prebuilt static archive
//! ([`STATIC_LIB`]) for the link driver, and gives readers of the runtime's
//! segment (the attacker sampling a live program, the report reading a dump)
//! typed access to it:
//!
//! - [`abi`]: every `#define PANIC_*` of the header as a constant, generated at
//!   build time, so no layout number is ever copied by hand;
//! - [`hist`]: the log-linear dwell histograms and their quantiles;
//! - [`segment`]: parsing a segment or dump ([`Snapshot`]) and mapping a live one
//!   ([`Live`]);
//! - [`clock`]: turning ticks into nanoseconds;
//! - [`SiteKind`]: the site kinds of the ABI.
//!
//! Nothing here links the archive or runs C; parsing never panics on bad input.

pub mod clock;
pub mod faults;
pub mod hist;
pub mod segment;

/// The constants of `c/panic_abi.h`, without their `PANIC_` prefix
/// (`PANIC_KIND_ENTRY` is [`abi::KIND_ENTRY`]). Integers are `u64`, string
/// literals `&str`.
pub mod abi {
    include!(concat!(env!("OUT_DIR"), "/abi.rs"));
}

pub use clock::{Clock, ClockKind};
pub use hist::Hist;
pub use segment::{Frame, Header, Live, SegmentError, Snapshot, State, ThreadSlot};

/// What a site is (the manifest's `kind`, the pass's classification):
/// `PANIC_KIND_*` in the header. Serialized as its lowercase [`name`](Self::name).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    /// Function entry.
    Entry,
    /// Function exit.
    Exit,
    /// Loop back-edge.
    Loop,
    /// Allocation.
    Alloc,
    /// Free.
    Free,
    /// Blocking I/O call.
    Blocking,
    /// Lock acquire.
    Lock,
    /// Panic or abort path.
    Panic,
}

impl SiteKind {
    /// Every kind, in ABI order.
    pub const ALL: [SiteKind; 8] = [
        SiteKind::Entry,
        SiteKind::Exit,
        SiteKind::Loop,
        SiteKind::Alloc,
        SiteKind::Free,
        SiteKind::Blocking,
        SiteKind::Lock,
        SiteKind::Panic,
    ];

    /// The `PANIC_KIND_*` number.
    pub fn code(self) -> u64 {
        match self {
            SiteKind::Entry => abi::KIND_ENTRY,
            SiteKind::Exit => abi::KIND_EXIT,
            SiteKind::Loop => abi::KIND_LOOP,
            SiteKind::Alloc => abi::KIND_ALLOC,
            SiteKind::Free => abi::KIND_FREE,
            SiteKind::Blocking => abi::KIND_BLOCKING,
            SiteKind::Lock => abi::KIND_LOCK,
            SiteKind::Panic => abi::KIND_PANIC,
        }
    }

    /// The kind a `PANIC_KIND_*` number names.
    pub fn from_code(code: u64) -> Option<SiteKind> {
        SiteKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Lowercase name, as in the manifest and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SiteKind::Entry => "entry",
            SiteKind::Exit => "exit",
            SiteKind::Loop => "loop",
            SiteKind::Alloc => "alloc",
            SiteKind::Free => "free",
            SiteKind::Blocking => "blocking",
            SiteKind::Lock => "lock",
            SiteKind::Panic => "panic",
        }
    }

    /// The kind named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<SiteKind> {
        SiteKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for SiteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The runtime as a static archive (`libpanic_runtime.a`), built for the host
/// by this crate's build script: position independent, initial-exec TLS, no
/// stack protector, with debug line info.
pub const STATIC_LIB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libpanic_runtime.a"));

/// The file name the archive is usually given on disk (`-lpanic_runtime`).
pub const STATIC_LIB_FILE_NAME: &str = "libpanic_runtime.a";

/// FNV-1a 64 of [`STATIC_LIB`], 16 lowercase hex digits: a name under which a
/// cached copy of the archive can be kept on disk.
pub const STATIC_LIB_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/libpanic_runtime.a.fnv"));

/// The text of `c/panic_abi.h`, for whoever compiles C against the ABI (a site
/// table object, a C test driver).
pub const ABI_HEADER: &str = include_str!("../c/panic_abi.h");

/// The text of `c/panic.h`, the header a C or C++ program includes to read
/// the run's prices (`cargo_panic_price`, `PANIC_CPU` ...). It stands alone
/// (no other header of cargo-panic) and compiles without the runtime: write it
/// into a directory of its own, [`USER_HEADER_FILE_NAME`] in
/// `<dir>/<USER_HEADER_HASH>/`, and pass that directory with `-I`.
pub const USER_HEADER: &str = include_str!("../c/panic.h");

/// The file name programs include: `#include <panic.h>`.
pub const USER_HEADER_FILE_NAME: &str = "panic.h";

/// FNV-1a 64 of [`USER_HEADER`], 16 lowercase hex digits: a directory name
/// under which a copy of the header can be kept on disk.
pub const USER_HEADER_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/panic.h.fnv"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_an_ar_archive_with_the_entry_points() {
        assert!(STATIC_LIB.starts_with(b"!<arch>\n"));
        for sym in [abi::SYM_DWELL_ENTER, abi::SYM_DWELL_EXIT] {
            let found = STATIC_LIB.windows(sym.len()).any(|w| w == sym.as_bytes());
            assert!(found, "{sym} missing from the archive");
        }
    }

    #[test]
    fn hash_names_the_archive() {
        assert_eq!(STATIC_LIB_HASH.len(), 16);
        assert!(
            STATIC_LIB_HASH
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let fnv = STATIC_LIB.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(STATIC_LIB_HASH, format!("{fnv:016x}"));
    }

    #[test]
    fn the_archive_exports_the_price_and_fuse_api_and_embeds_the_user_header() {
        for sym in [abi::SYM_PRICE, abi::SYM_PRICE_SEQ] {
            let found = STATIC_LIB.windows(sym.len()).any(|w| w == sym.as_bytes());
            assert!(found, "{sym} missing from the archive");
            assert!(
                USER_HEADER.contains(&format!(" {sym}(")),
                "panic.h declares {sym}"
            );
        }
        assert!(USER_HEADER.contains("cargo_panic_price("));
        let sym = abi::SYM_FUSE;
        assert!(
            STATIC_LIB.windows(sym.len()).any(|w| w == sym.as_bytes()),
            "{sym} missing from the archive"
        );
        assert!(
            USER_HEADER.contains(&format!(" {sym}(")),
            "panic.h declares {sym}"
        );
        assert!(USER_HEADER.contains("cargo_panic_fuse("));
        assert!(
            !USER_HEADER
                .lines()
                .any(|l| l.trim_start().starts_with("#include")),
            "panic.h stands alone"
        );
        let fnv = USER_HEADER.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(USER_HEADER_HASH, format!("{fnv:016x}"));
    }

    #[test]
    fn site_kinds_match_the_abi_and_round_trip() {
        for (i, k) in SiteKind::ALL.into_iter().enumerate() {
            assert_eq!(k.code(), i as u64 + 1);
            assert_eq!(SiteKind::from_code(k.code()), Some(k));
            assert_eq!(SiteKind::parse(k.name()), Some(k));
            assert_eq!(SiteKind::parse(&k.name().to_uppercase()), Some(k));
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(
                serde_json::from_str::<SiteKind>(&json).expect("deserializes"),
                k
            );
        }
        assert_eq!(SiteKind::from_code(0), None);
        assert_eq!(SiteKind::parse("nope"), None);
    }

    #[test]
    fn abi_constants_are_generated_from_the_header() {
        assert_eq!(abi::SEGMENT_MAGIC.to_le_bytes(), *b"PANICSEG");
        assert_eq!(abi::KIND_ENTRY, 1);
        assert_eq!(abi::KIND_PANIC, 8);
        assert_eq!(abi::NO_SITE, 0xffff_ffff);
        assert_eq!(abi::SYM_DWELL_ENTER, "__panic_dwell_enter");
        assert_eq!(abi::ENV_SHM, "CARGO_PANIC_SHM");
        assert_eq!(abi::ENV_KTHREADS, "CARGO_PANIC_KTHREADS");
        assert_eq!(
            abi::SLOT_SIZE,
            abi::SLOT_STACK + abi::MAX_DEPTH * abi::FRAME_SIZE
        );
        assert_eq!(
            abi::HIST_SIZE,
            abi::HIST_BUCKETS_OFF + abi::HIST_BUCKETS * 8
        );
        assert_eq!(
            abi::HIST_BUCKETS,
            (abi::HIST_MAX_EXP - abi::HIST_SUB_BITS + 2) << abi::HIST_SUB_BITS
        );
        assert!(ABI_HEADER.contains("#define PANIC_ABI_VERSION"));
    }
}
