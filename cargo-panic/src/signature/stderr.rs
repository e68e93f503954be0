//! What a failing program's stderr says.
//!
//! [`StderrEvidence::parse`] reads the text a program printed on stderr (the caller
//! passes `String::from_utf8_lossy` output) and extracts the reports a crash
//! signature keys on:
//!
//! - Rust panics: the current format (`thread 'main' panicked at src/main.rs:5:7:`
//!   followed by the message lines, Rust >= 1.73; since Rust 1.9x the thread id is
//!   printed too, `thread 'main' (4711) panicked at ...`) and the old one
//!   (`thread 'main' panicked at '<message>', src/main.rs:5:7`), with the
//!   `stack backtrace:` that `RUST_BACKTRACE=1` or `=full` adds;
//! - Rust stack overflows and `memory allocation of N bytes failed` aborts;
//! - sanitizer reports: AddressSanitizer, LeakSanitizer, ThreadSanitizer,
//!   MemorySanitizer and UndefinedBehaviorSanitizer (its `runtime error:` lines as
//!   well as its deadly-signal reports);
//! - glibc malloc aborts (`free(): double free detected in tcache 2`, ...);
//! - C `assert` failures (glibc and musl wording);
//! - short lines naming an exhaustion `strerror` text (`Too many open files`, ...).
//!
//! Everything else is ignored: ordinary program output, shadow-byte and register
//! dumps, the stacks of thread creation or of a previous conflicting access, ...
//! The first report of each kind wins; a later one of the same kind (a second
//! panic, a second sanitizer report) is ignored. `\r\n` line ends and ANSI colour
//! sequences are accepted.
//!
//! The parser is pure (no I/O, no global state), takes time linear in the input,
//! bounds what it keeps (frames per stack, message size) and never panics,
//! whatever the input.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Most frames kept per stack (a stack overflow report prints hundreds).
const MAX_FRAMES: usize = 64;
/// Most lines of a panic message read (the old format's closing quote is looked
/// for that far, too).
const MAX_MESSAGE_LINES: usize = 64;
/// Most bytes of a panic message kept.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Most exhaustion lines kept, and their longest length in characters.
const MAX_ERRNO_MESSAGES: usize = 8;
const MAX_ERRNO_CHARS: usize = 200;

/// One stack frame, of a Rust backtrace or a sanitizer stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The function as printed, without Rust symbol hashes (`::h0123456789abcdef`)
    /// and crate disambiguators (`std[0123456789abcdef]::...` becomes `std::...`).
    /// Empty when the frame has no symbol (a bare `(module+0x1234)` frame, or a
    /// UBSan `runtime error` location).
    pub function: String,
    /// The source file, as printed; `None` when the frame names only a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The column in `file`, when printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

/// What kind of failure a Rust panic reports, read from its message (and, for
/// [`PanicKind::Expect`], from its backtrace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanicKind {
    /// ``called `Option::unwrap()` on a `None` value``, or a message starting with
    /// ``called `Result::unwrap()` on an `Err` value`` or
    /// ``called `Result::unwrap_err()` on an `Ok` value``.
    Unwrap,
    /// `Option::expect`/`Result::expect`/`Result::expect_err`. Their message is the
    /// caller's text (plus `: <error>` for `Result`), which no message test can tell
    /// from `panic!`; only a backtrace proves it: the first `core::option::` or
    /// `core::result::` frame is `core::option::expect_failed` or an `expect` method,
    /// or is `core::result::unwrap_failed` called from an `expect` method. Without a
    /// backtrace these panics are [`PanicKind::Explicit`].
    Expect,
    /// `index out of bounds: the len is N but the index is M`, and the slice and
    /// `str` range failures (`range end index N out of range for slice of length M`,
    /// `range start index ...`, `slice index starts at N but ends at M`,
    /// `byte index N is out of bounds of ...`/`is not a char boundary ...`,
    /// `begin <= end (N <= M) when slicing ...`).
    Index,
    /// An arithmetic overflow check: `attempt to add with overflow`, `... subtract
    /// ...`, `multiply`, `negate`, `shift left`, `shift right`, `divide` (`MIN / -1`)
    /// and `calculate the remainder` (`MIN % -1`).
    Overflow,
    /// `attempt to divide by zero`, `attempt to calculate the remainder with a
    /// divisor of zero`.
    DivideByZero,
    /// Anything else: `panic!`, `assert!`, `unreachable!`, `todo!`, an unproven
    /// `expect`, ...
    Explicit,
}

/// The first Rust panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RustPanic {
    /// The thread's name: `main`, a `Builder::name`, or `<unnamed>`.
    pub thread: String,
    /// The message: every line up to the ``note: run with `RUST_BACKTRACE=1` ...`` line,
    /// `stack backtrace:`, the next panic or the end (at most 64 lines and 8 KiB);
    /// trailing blank lines removed, indentation kept.
    pub message: String,
    /// The panic location's file, as printed (relative to the build directory).
    pub file: String,
    /// The panic location's line.
    pub line: u32,
    /// The panic location's column (0 when not printed, very old Rust).
    pub column: u32,
    /// What the message says failed.
    pub kind: PanicKind,
    /// The frames after `stack backtrace:`, outermost last (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backtrace: Vec<Frame>,
}

/// A Rust stack overflow: `thread 'main' has overflowed its stack` (and then
/// `fatal runtime error: stack overflow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackOverflow {
    /// The overflowing thread; empty when only the `fatal runtime error` line is
    /// there.
    pub thread: String,
}

/// Which sanitizer wrote a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanitizerTool {
    /// AddressSanitizer (and HWAddressSanitizer, which reports alike).
    Address,
    /// UndefinedBehaviorSanitizer: `runtime error:` lines and its SEGV/FPE reports.
    Undefined,
    /// ThreadSanitizer.
    Thread,
    /// LeakSanitizer, standalone or in ASan's exit-time leak check.
    Leak,
    /// MemorySanitizer.
    Memory,
}

/// The faulting memory access of a sanitizer report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// A write (`WRITE of size`, TSan `Write of size`), not a read.
    pub write: bool,
    /// The access size in bytes.
    pub size: u64,
    /// The accessed address.
    pub address: u64,
}

/// The first sanitizer report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerReport {
    /// The tool that wrote the report.
    pub tool: SanitizerTool,
    /// The bug class, lowercase kebab-case. From the report header
    /// (`ERROR: AddressSanitizer: <class> on address ...`,
    /// `WARNING: ThreadSanitizer: <class> (pid=...)`): `heap-use-after-free`,
    /// `heap-buffer-overflow`, `stack-buffer-overflow`, `stack-overflow`,
    /// `use-of-uninitialized-value`, `data-race`, `thread-leak`,
    /// `lock-order-inversion`, ... as printed; signals lowercased (`SEGV` -> `segv`,
    /// `FPE` -> `fpe`, `BUS` -> `bus`); and these phrases renamed:
    /// `attempting double-free` -> `double-free`, `attempting free on address which
    /// was not malloc()-ed` -> `bad-free`, `detected memory leaks` -> `leak`,
    /// `requested allocation size ... exceeds` -> `allocation-size-too-big`,
    /// `out of memory` / `allocator is out of memory` -> `out-of-memory`,
    /// `calloc parameters overflow` -> `calloc-overflow`, `data race on vptr` ->
    /// `data-race-vptr`. For UBSan `runtime error:` lines, the check that fired:
    /// `signed-integer-overflow`, `unsigned-integer-overflow`, `divide-by-zero`,
    /// `shift-exponent`, `shift-base`, `array-bounds`, `null-pointer-use`,
    /// `misaligned-pointer-use`, `pointer-overflow`, `invalid-bool-load`,
    /// `invalid-enum-load`, `missing-return`, `unreachable`, `vla-bound`,
    /// `float-cast-overflow`, `function-type-mismatch`, `nonnull-attribute`,
    /// `returns-nonnull-attribute`, `implicit-conversion`, `dynamic-type-mismatch`,
    /// `invalid-builtin-use`, `alignment-assumption`, else `undefined-behavior`.
    pub kind: String,
    /// The `SUMMARY: ...` line without its `SUMMARY: ` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The faulting access (`READ of size 4 at 0x... thread T0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// The bad address of the header (`... on address 0x...`, `on unknown address`,
    /// `attempting double-free on 0x...`, `... not malloc()-ed: 0x...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<u64>,
    /// The report's first stack: where the access, signal or bad call happened.
    /// For a leak report, the first leak's allocation stack (as in `allocated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<Frame>,
    /// Where the memory was allocated: ASan `previously allocated by thread T0
    /// here:`/`allocated by thread T0 here:`, LSan `Direct leak of ... allocated
    /// from:`, TSan `Location is heap block ... allocated by ...:`, MSan
    /// `Uninitialized value was created by a heap allocation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocated: Vec<Frame>,
    /// Where the memory was freed: ASan `freed by thread T0 here:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freed: Vec<Frame>,
    /// UBSan's `file.c:12:5: runtime error: ...` location (`function` empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Frame>,
}

/// What a glibc malloc abort says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeapErrorKind {
    /// The message says `double free`: `free(): double free detected in tcache 2`,
    /// `double free or corruption (fasttop|!prev|out|top)` (glibc cannot tell which
    /// of the two it saw; a double free is the usual cause).
    DoubleFree,
    /// Any other heap consistency failure: `malloc(): corrupted top size`,
    /// `malloc(): unaligned tcache chunk detected`, `corrupted size vs. prev_size`,
    /// `free(): invalid next size (fast)`, `corrupted double-linked list`, ...
    Corruption,
    /// A pointer that malloc never returned: `free(): invalid pointer`,
    /// `munmap_chunk(): invalid pointer`, `realloc(): invalid pointer`,
    /// `free(): invalid size`, `realloc(): invalid old size`.
    InvalidPointer,
}

/// The first glibc malloc abort message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapError {
    /// What the message says.
    pub kind: HeapErrorKind,
    /// The message as printed (old glibc's ``*** Error in `prog': ...: 0x... ***``
    /// wrapper removed).
    pub message: String,
}

/// The first failed C `assert`: glibc's
/// ``prog: main.c:12: main: Assertion `x > 0' failed.`` or musl's
/// `Assertion failed: x > 0 (main.c: main: 12)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    /// The asserted expression, as printed (`x > 0`).
    pub message: String,
    /// The source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The function, as printed (C++ prints its whole signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// Everything [`StderrEvidence::parse`] found; each field holds the first report of
/// its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StderrEvidence {
    /// The first Rust panic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_panic: Option<RustPanic>,
    /// A Rust stack overflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_overflow: Option<StackOverflow>,
    /// The first sanitizer report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitizer: Option<SanitizerReport>,
    /// The first glibc malloc abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_error: Option<HeapError>,
    /// The size of Rust's `memory allocation of N bytes failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_failure: Option<u64>,
    /// The first failed C `assert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<Assertion>,
    /// Up to 8 distinct lines (trimmed, cut at 200 characters) naming a
    /// resource-exhaustion `strerror` text: `Too many open files` (EMFILE, ENFILE),
    /// `No space left on device`, `Cannot allocate memory`, `Disk quota exceeded`,
    /// and `Resource temporarily unavailable` when the line also speaks of a
    /// thread, fork, spawn or clone (EAGAIN from task creation; a non-blocking
    /// read's EAGAIN is no exhaustion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errno_messages: Vec<String>,
}

impl StderrEvidence {
    /// Parses a program's stderr. Pure, linear in `text`, never panics.
    pub fn parse(text: &str) -> StderrEvidence {
        let mut evidence = StderrEvidence::default();
        let mut lines = Lines { rest: text };
        while let Some(line) = lines.next() {
            evidence.scan(line.trim(), &lines);
        }
        evidence
    }

    /// Whether nothing at all was found.
    pub fn is_empty(&self) -> bool {
        self.rust_panic.is_none()
            && self.stack_overflow.is_none()
            && self.sanitizer.is_none()
            && self.heap_error.is_none()
            && self.alloc_failure.is_none()
            && self.assertion.is_none()
            && self.errno_messages.is_empty()
    }

    /// Looks at one trimmed line; `after` reads the lines that follow it. Each
    /// multi-line parse runs at most once successfully (first report wins), so the
    /// whole parse stays linear.
    fn scan(&mut self, t: &str, after: &Lines<'_>) {
        if t.is_empty() {
            return;
        }
        if self.rust_panic.is_none() {
            self.rust_panic = rust_panic(t, after.clone());
        }
        if self.stack_overflow.is_none() {
            self.stack_overflow = stack_overflow(t);
        }
        if self.sanitizer.is_none() {
            self.sanitizer = sanitizer_report(t, after.clone());
        }
        if self.heap_error.is_none() {
            self.heap_error = heap_error(t);
        }
        if self.alloc_failure.is_none() {
            self.alloc_failure = alloc_failure(t);
        }
        if self.assertion.is_none() {
            self.assertion = assertion(t);
        }
        if self.errno_messages.len() < MAX_ERRNO_MESSAGES
            && let Some(line) = exhaustion_line(t)
            && !self.errno_messages.iter().any(|m| m == line)
        {
            self.errno_messages.push(line.to_owned());
        }
    }
}

// ---------------------------------------------------------------------------
// Lines

/// The lines of a text, without `\n`/`\r\n` and with ANSI escape sequences
/// removed. Cloning it is how a parser looks ahead.
#[derive(Clone)]
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        let line = line.strip_suffix('\r').unwrap_or(line);
        Some(if line.contains('\x1b') {
            Cow::Owned(strip_ansi(line))
        } else {
            Cow::Borrowed(line)
        })
    }
}

/// Removes `ESC [ ... <final>` sequences (and other two-character escapes).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
        } else if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Shared pieces

/// A `path:line[:column]` location.
struct Location<'a> {
    file: &'a str,
    line: u32,
    column: Option<u32>,
}

impl Location<'_> {
    /// File, line and column (0 when absent), owned.
    fn owned(&self) -> (String, u32, u32) {
        (self.file.to_owned(), self.line, self.column.unwrap_or(0))
    }

    fn frame(&self, function: String) -> Frame {
        Frame {
            function,
            file: Some(self.file.to_owned()),
            line: Some(self.line),
            column: self.column,
        }
    }
}

/// Parses `path:line:column` or `path:line` (the path may hold `:` itself, as
/// `C:\src\main.rs:5:7` does).
fn parse_location(s: &str) -> Option<Location<'_>> {
    let (head, last) = s.rsplit_once(':')?;
    let last = parse_u32(last)?;
    if let Some((file, line)) = head.rsplit_once(':')
        && !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
    {
        let line = parse_u32(line)?;
        return (!file.is_empty()).then_some(Location {
            file,
            line,
            column: Some(last),
        });
    }
    (!head.is_empty()).then_some(Location {
        file: head,
        line: last,
        column: None,
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `0x` followed by 1 to 16 hex digits (anything after them is ignored).
fn parse_hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x")?;
    let n = digits.bytes().take_while(u8::is_ascii_hexdigit).count();
    if n == 0 || n > 16 {
        return None;
    }
    u64::from_str_radix(&digits[..n], 16).ok()
}

/// The first `max` bytes of `s`, cut back to a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Removes what varies between builds from a Rust symbol: the legacy hash suffix
/// `::h` + 16 hex digits, and v0 crate disambiguators `crate[` + hex + `]`.
fn normalize_function(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    if !name.contains('[') {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        let follows_ident = rest[..open]
            .bytes()
            .next_back()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if follows_ident && (8..=16).contains(&hex) && after[hex..].starts_with(']') {
            out.push_str(&rest[..open]);
            rest = &after[hex + 1..];
        } else {
            out.push_str(&rest[..=open]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The thread name of `main'`, `main' (4711)` or `<unnamed>'`.
fn thread_name(s: &str) -> Option<String> {
    let s = match s.rsplit_once(" (") {
        Some((name, id))
            if id
                .strip_suffix(')')
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) =>
        {
            name
        }
        _ => s,
    };
    s.strip_suffix('\'').map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Rust

/// A Rust panic starting at header line `t`.
fn rust_panic(t: &str, after: Lines<'_>) -> Option<RustPanic> {
    let rest = t.strip_prefix("thread '")?;
    let (name, at) = rest.split_once(" panicked at ")?;
    let thread = thread_name(name)?;
    let (message, (file, line, column), mut after) = match at.strip_prefix('\'') {
        Some(quoted) => old_panic_message(quoted, after)?,
        None => {
            let location = parse_location(at.strip_suffix(':')?)?.owned();
            let (message, after) = panic_message(after);
            (message, location, after)
        }
    };
    let backtrace = match after.next() {
        Some(line) if line.trim() == "stack backtrace:" => rust_backtrace(after),
        _ => Vec::new(),
    };
    let kind = panic_kind(&message, &backtrace);
    Some(RustPanic {
        thread,
        message,
        file,
        line,
        column,
        kind,
        backtrace,
    })
}

/// Whether a line ends a (current-format) panic message.
fn ends_panic_message(t: &str) -> bool {
    t == "stack backtrace:"
        || t.starts_with("note: run with `RUST_BACKTRACE=")
        || t.starts_with("note: Some details are omitted")
        || t.starts_with("fatal runtime error:")
        || t == "thread caused non-unwinding panic. aborting."
        || (t.starts_with("thread '")
            && (t.contains(" panicked at ") || t.ends_with(" has overflowed its stack")))
}

/// Appends a message line, within [`MAX_MESSAGE_BYTES`].
fn push_message_line(message: &mut String, line: &str, first: bool) {
    if !first {
        message.push('\n');
    }
    let room = MAX_MESSAGE_BYTES.saturating_sub(message.len());
    message.push_str(truncate_bytes(line, room));
}

/// The message lines after a current-format header, and the lines from the one
/// that ended it (so that a `stack backtrace:` there is seen).
fn panic_message(mut lines: Lines<'_>) -> (String, Lines<'_>) {
    let mut message = String::new();
    for n in 0..MAX_MESSAGE_LINES {
        let before = lines.clone();
        let Some(line) = lines.next() else { break };
        if ends_panic_message(line.trim()) {
            lines = before;
            break;
        }
        push_message_line(&mut message, &line, n == 0);
    }
    message.truncate(message.trim_end().len());
    (message, lines)
}

/// The old format, `'<message>', file:line:col`, the message possibly spanning
/// lines: `first` is the header's text after the opening quote.
fn old_panic_message<'a>(
    first: &str,
    mut lines: Lines<'a>,
) -> Option<(String, (String, u32, u32), Lines<'a>)> {
    let closing = |s: &str| {
        let (message, location) = s.rsplit_once("', ")?;
        Some((message.len(), parse_location(location)?.owned()))
    };
    if let Some((end, location)) = closing(first) {
        return Some((first[..end].to_owned(), location, lines));
    }
    let mut message = String::new();
    push_message_line(&mut message, first, true);
    for _ in 1..MAX_MESSAGE_LINES {
        let line = lines.next()?;
        let line = line.trim_end();
        if let Some((end, location)) = closing(line) {
            push_message_line(&mut message, &line[..end], false);
            return Some((message, location, lines));
        }
        push_message_line(&mut message, line, false);
    }
    None
}

/// The frames of a `stack backtrace:`, short (`  3: name` / `at file:l:c`) or full
/// (`  3:     0x55d0c909cdba - name`).
fn rust_backtrace(lines: Lines<'_>) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in lines {
        let t = line.trim();
        if let Some(function) = rust_frame(t) {
            if frames.len() == MAX_FRAMES {
                break;
            }
            frames.push(Frame {
                function,
                file: None,
                line: None,
                column: None,
            });
        } else if let Some(location) = t.strip_prefix("at ").and_then(parse_location) {
            if let Some(last) = frames.last_mut()
                && last.file.is_none()
            {
                *last = location.frame(std::mem::take(&mut last.function));
            }
        } else {
            break;
        }
    }
    frames
}

/// The function of a backtrace frame line `N: [0x... - ]name`.
fn rust_frame(t: &str) -> Option<String> {
    let (index, rest) = t.split_once(':')?;
    parse_u32(index)?;
    let rest = rest.trim();
    let name = match rest.split_once(" - ") {
        Some((address, name)) if address.starts_with("0x") => name.trim(),
        _ => rest,
    };
    (!name.is_empty()).then(|| normalize_function(name))
}

/// Classifies a panic; see [`PanicKind`] for each mapping.
fn panic_kind(message: &str, backtrace: &[Frame]) -> PanicKind {
    if expect_in_backtrace(backtrace) {
        return PanicKind::Expect;
    }
    const OVERFLOW: &[&str] = &[
        "attempt to add with overflow",
        "attempt to subtract with overflow",
        "attempt to multiply with overflow",
        "attempt to divide with overflow",
        "attempt to calculate the remainder with overflow",
        "attempt to negate with overflow",
        "attempt to shift left with overflow",
        "attempt to shift right with overflow",
    ];
    const DIVIDE_BY_ZERO: &[&str] = &[
        "attempt to divide by zero",
        "attempt to calculate the remainder with a divisor of zero",
    ];
    let m = message.trim_end();
    if m == "called `Option::unwrap()` on a `None` value"
        || m.starts_with("called `Result::unwrap()` on an `Err` value")
        || m.starts_with("called `Result::unwrap_err()` on an `Ok` value")
    {
        PanicKind::Unwrap
    } else if is_index_message(m) {
        PanicKind::Index
    } else if OVERFLOW.contains(&m) {
        PanicKind::Overflow
    } else if DIVIDE_BY_ZERO.contains(&m) {
        PanicKind::DivideByZero
    } else {
        PanicKind::Explicit
    }
}

fn is_index_message(m: &str) -> bool {
    m.starts_with("index out of bounds: the len is ")
        || ((m.starts_with("range end index ") || m.starts_with("range start index "))
            && m.contains(" out of range for slice of length "))
        || (m.starts_with("slice index starts at ") && m.contains(" but ends at "))
        || (m.starts_with("byte index ")
            && (m.contains(" is out of bounds of `") || m.contains(" is not a char boundary")))
        || (m.starts_with("begin <= end (") && m.contains(" when slicing `"))
}

/// Whether the first `core::option::`/`core::result::` frame shows an `expect`.
fn expect_in_backtrace(frames: &[Frame]) -> bool {
    fn is_expect_method(f: &str) -> bool {
        (f.starts_with("core::option::Option<") || f.starts_with("core::result::Result<"))
            && (f.ends_with(">::expect") || f.ends_with(">::expect_err"))
    }
    let Some(i) = frames.iter().position(|f| {
        f.function.starts_with("core::option::") || f.function.starts_with("core::result::")
    }) else {
        return false;
    };
    match frames[i].function.as_str() {
        "core::option::expect_failed" => true,
        "core::result::unwrap_failed" => frames
            .get(i + 1)
            .is_some_and(|f| is_expect_method(&f.function)),
        f => is_expect_method(f),
    }
}

fn stack_overflow(t: &str) -> Option<StackOverflow> {
    if let Some(rest) = t.strip_prefix("thread '")
        && let Some(name) = rest.strip_suffix(" has overflowed its stack")
    {
        return thread_name(name).map(|thread| StackOverflow { thread });
    }
    t.starts_with("fatal runtime error: stack overflow")
        .then(|| StackOverflow {
            thread: String::new(),
        })
}

fn alloc_failure(t: &str) -> Option<u64> {
    let size = t
        .strip_prefix("memory allocation of ")?
        .strip_suffix(" bytes failed")?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    size.parse().ok()
}

// ---------------------------------------------------------------------------
// Sanitizers

/// Which block of frames the next `#N` lines belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Stack,
    Allocated,
    Freed,
    Ignore,
}

const TOOLS: &[(&str, SanitizerTool)] = &[
    ("AddressSanitizer: ", SanitizerTool::Address),
    ("HWAddressSanitizer: ", SanitizerTool::Address),
    ("LeakSanitizer: ", SanitizerTool::Leak),
    ("ThreadSanitizer: ", SanitizerTool::Thread),
    ("MemorySanitizer: ", SanitizerTool::Memory),
    ("UndefinedBehaviorSanitizer: ", SanitizerTool::Undefined),
];

/// A `[==pid==]ERROR: XSanitizer: <description>` (or `WARNING:`) header.
fn sanitizer_header(t: &str) -> Option<(SanitizerTool, &str)> {
    let t = match t.strip_prefix("==") {
        Some(rest) => match rest.split_once("==") {
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => t,
        },
        None => t,
    };
    let t = t
        .strip_prefix("ERROR: ")
        .or_else(|| t.strip_prefix("WARNING: "))?;
    TOOLS.iter().find_map(|(name, tool)| {
        let description = t.strip_prefix(name)?.trim();
        (!description.is_empty()).then_some((*tool, description))
    })
}

/// A UBSan `file:line:col: runtime error: <message>` line. The location must
/// parse (or be `<unknown>`), which keeps out e.g. Go's `panic: runtime error:`.
fn ubsan_runtime_error(t: &str) -> Option<(Option<Frame>, &str)> {
    let (prefix, message) = t.split_once(": runtime error: ")?;
    if prefix == "<unknown>" {
        return Some((None, message));
    }
    let location = parse_location(prefix)?;
    Some((Some(location.frame(String::new())), message))
}

fn is_report_start(t: &str) -> bool {
    sanitizer_header(t).is_some() || ubsan_runtime_error(t).is_some()
}

/// A sanitizer report starting at header line `t`.
fn sanitizer_report(t: &str, after: Lines<'_>) -> Option<SanitizerReport> {
    let mut report = if let Some((tool, description)) = sanitizer_header(t) {
        SanitizerReport {
            tool,
            kind: report_kind(description),
            summary: None,
            access: None,
            address: header_address(description),
            stack: Vec::new(),
            allocated: Vec::new(),
            freed: Vec::new(),
            location: None,
        }
    } else {
        let (location, message) = ubsan_runtime_error(t)?;
        SanitizerReport {
            tool: SanitizerTool::Undefined,
            kind: ubsan_kind(message).to_owned(),
            summary: None,
            access: None,
            address: None,
            stack: Vec::new(),
            allocated: Vec::new(),
            freed: Vec::new(),
            location,
        }
    };
    read_report_body(&mut report, after);
    if report.kind == "leak" && report.stack.is_empty() {
        report.stack = report.allocated.clone();
    }
    Some(report)
}

/// Reads the lines after a header up to `SUMMARY:` (kept), `==pid==ABORTING`,
/// the next report or a Rust panic.
fn read_report_body(report: &mut SanitizerReport, lines: Lines<'_>) {
    let mut section = Section::Stack;
    let mut in_block = false;
    for line in lines {
        let t = line.trim();
        if let Some(frame) = sanitizer_frame(t) {
            in_block = true;
            let frames = match section {
                Section::Stack => &mut report.stack,
                Section::Allocated => &mut report.allocated,
                Section::Freed => &mut report.freed,
                Section::Ignore => continue,
            };
            if frames.len() < MAX_FRAMES {
                frames.push(frame);
            }
            continue;
        }
        if in_block {
            in_block = false;
            section = Section::Ignore;
        }
        if let Some(summary) = t.strip_prefix("SUMMARY: ") {
            report.summary = Some(summary.trim().to_owned());
            break;
        }
        if t.ends_with("==ABORTING")
            || is_report_start(t)
            || (t.starts_with("thread '") && t.contains(" panicked at "))
        {
            break;
        }
        if section == Section::Stack
            && report.access.is_none()
            && let Some(access) = access(t)
        {
            report.access = Some(access);
            continue;
        }
        section = match section_header(t) {
            Some(Section::Allocated) if report.allocated.is_empty() => Section::Allocated,
            Some(Section::Freed) if report.freed.is_empty() => Section::Freed,
            Some(_) => Section::Ignore,
            None => section,
        };
    }
}

/// The section a non-frame line opens, if any.
fn section_header(t: &str) -> Option<Section> {
    if t.starts_with("freed by thread ") && t.ends_with(':') {
        Some(Section::Freed)
    } else if (t.contains("allocated by ") && t.ends_with(':'))
        || t.ends_with(" allocated from:")
        || t == "Uninitialized value was created by a heap allocation"
    {
        Some(Section::Allocated)
    } else {
        None
    }
}

/// `READ of size 4 at 0x... thread T0` (ASan), `Write of size 4 at 0x... by thread
/// T2:` / `Atomic read of size ...` (TSan).
fn access(t: &str) -> Option<Access> {
    let t = t
        .strip_prefix("Atomic ")
        .or_else(|| t.strip_prefix("atomic "))
        .unwrap_or(t);
    let (op, rest) = t.split_once(" of size ")?;
    let write = match op {
        "READ" | "Read" | "read" => false,
        "WRITE" | "Write" | "write" => true,
        _ => return None,
    };
    let (size, rest) = rest.split_once(" at ")?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Access {
        write,
        size: size.parse().ok()?,
        address: parse_hex(rest.split_whitespace().next()?)?,
    })
}

/// The bad address of a header: the first `0x...` right after `address`, `on` or
/// `malloc()-ed:`.
fn header_address(description: &str) -> Option<u64> {
    let mut previous = "";
    for word in description.split_whitespace() {
        if matches!(previous, "address" | "on" | "malloc()-ed:")
            && let Some(address) = parse_hex(word)
        {
            return Some(address);
        }
        previous = word;
    }
    None
}

/// The bug class of a sanitizer header's description; see
/// [`SanitizerReport::kind`].
fn report_kind(description: &str) -> String {
    const PHRASES: &[(&str, &str)] = &[
        ("attempting double-free", "double-free"),
        (
            "attempting free on address which was not malloc()-ed",
            "bad-free",
        ),
        ("detected memory leaks", "leak"),
        ("requested allocation size", "allocation-size-too-big"),
        ("allocator is out of memory", "out-of-memory"),
        ("out of memory", "out-of-memory"),
        ("calloc parameters overflow", "calloc-overflow"),
        ("reallocarray parameters overflow", "reallocarray-overflow"),
        ("pvalloc parameters overflow", "pvalloc-overflow"),
        ("data race on vptr", "data-race-vptr"),
    ];
    if let Some((_, kind)) = PHRASES.iter().find(|(p, _)| description.starts_with(p)) {
        return (*kind).to_owned();
    }
    let end = [" on ", " (", ": "]
        .iter()
        .filter_map(|s| description.find(s))
        .min()
        .unwrap_or(description.len());
    kebab(&description[..end])
}

/// Lowercase kebab-case: ASCII letters, digits and `_` kept, other runs become
/// one `-`; at most 64 bytes.
fn kebab(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 64 {
            break;
        }
    }
    let kept = out.trim_end_matches('-').len();
    out.truncate(kept);
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// The check behind a UBSan `runtime error:` message; see
/// [`SanitizerReport::kind`].
fn ubsan_kind(m: &str) -> &'static str {
    let starts = |p: &str| m.starts_with(p);
    let has = |p: &str| m.contains(p);
    if starts("signed integer overflow") {
        "signed-integer-overflow"
    } else if starts("unsigned integer overflow") {
        "unsigned-integer-overflow"
    } else if starts("negation of ") {
        if has("type 'unsigned") {
            "unsigned-integer-overflow"
        } else {
            "signed-integer-overflow"
        }
    } else if starts("division of ") && has(" cannot be represented") {
        "signed-integer-overflow"
    } else if starts("division by zero") {
        "divide-by-zero"
    } else if starts("shift exponent ") {
        "shift-exponent"
    } else if starts("left shift of ") {
        "shift-base"
    } else if starts("index ") && has(" out of bounds for type ") {
        "array-bounds"
    } else if has("misaligned address") {
        "misaligned-pointer-use"
    } else if starts("applying non-zero offset")
        || starts("applying zero offset to null pointer")
        || starts("pointer index expression with base")
        || starts("addition of unsigned offset")
        || starts("subtraction of unsigned offset")
    {
        "pointer-overflow"
    } else if starts("null pointer passed as argument") {
        "nonnull-attribute"
    } else if starts("null pointer returned from function") {
        "returns-nonnull-attribute"
    } else if has("null pointer") {
        "null-pointer-use"
    } else if starts("load of value ") && has("not a valid value for type") {
        if has("for type 'bool'") {
            "invalid-bool-load"
        } else {
            "invalid-enum-load"
        }
    } else if starts("execution reached the end of a value-returning function") {
        "missing-return"
    } else if starts("execution reached an unreachable program point") {
        "unreachable"
    } else if starts("variable length array bound") {
        "vla-bound"
    } else if has("is outside the range of representable values of type") {
        "float-cast-overflow"
    } else if starts("call to function ") && has("through pointer to incorrect function type") {
        "function-type-mismatch"
    } else if starts("implicit conversion from type") {
        "implicit-conversion"
    } else if has("which does not point to an object of type") {
        "dynamic-type-mismatch"
    } else if starts("passing zero to ") {
        "invalid-builtin-use"
    } else if starts("assumption of ") && has("byte alignment") {
        "alignment-assumption"
    } else {
        "undefined-behavior"
    }
}

/// A sanitizer stack frame: `#0 0x55d5c4a1b2c3 in func /src/x.c:21:12` (ASan,
/// MSan, UBSan, LSan), `#0 func /src/x.c:4:81 (prog+0xe4654) (BuildId: ...)`
/// (TSan), `#4 0x55... in _start (/tmp/prog+0x1234) (BuildId: ...)` (no file).
/// The file is the last word when it reads `path:line[:col]`; what precedes it is
/// the function, spaces and all (C++).
fn sanitizer_frame(t: &str) -> Option<Frame> {
    let rest = t.strip_prefix('#')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &rest[digits..];
    if digits == 0 || !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut rest = rest.trim_start();
    if rest.starts_with("0x") {
        rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start();
    }
    rest = rest.strip_prefix("in ").unwrap_or(rest);
    // Trailing `(BuildId: ...)` and `(module+0xoffset)` groups.
    loop {
        let r = rest.trim_end();
        let Some(inner) = r.strip_suffix(')') else {
            break;
        };
        let Some(open) = inner.rfind('(') else { break };
        let group = &inner[open + 1..];
        let module = group.rsplit_once("+0x").is_some_and(|(m, off)| {
            !m.is_empty() && !off.is_empty() && off.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !(group.starts_with("BuildId:") || module) {
            break;
        }
        rest = &r[..open];
    }
    let rest = rest.trim();
    let (function, last) = match rest.rsplit_once(' ') {
        Some((function, last)) => (function.trim_end(), last),
        None => ("", rest),
    };
    let frame = if last == "<null>" {
        Frame {
            function: normalize_function(function),
            file: None,
            line: None,
            column: None,
        }
    } else if let Some(location) = parse_location(last) {
        location.frame(normalize_function(function))
    } else {
        Frame {
            function: normalize_function(rest),
            file: None,
            line: None,
            column: None,
        }
    };
    Some(frame)
}

// ---------------------------------------------------------------------------
// glibc, assert, errno

/// A glibc malloc abort message line (`malloc_printerr`), or old glibc's
/// ``*** Error in `prog': <message>: 0x... ***``.
fn heap_error(t: &str) -> Option<HeapError> {
    const FUNCTIONS: &[&str] = &[
        "free(): ",
        "malloc(): ",
        "realloc(): ",
        "calloc(): ",
        "munmap_chunk(): ",
        "mremap_chunk(): ",
        "malloc_consolidate(): ",
        "tcache_thread_shutdown(): ",
        "_int_malloc(): ",
        "_int_free(): ",
        "_int_realloc(): ",
        "_int_memalign(): ",
    ];
    const DEFECTS: &[&str] = &[
        "invalid",
        "corrupt",
        "double free",
        "unaligned",
        "mismatch",
        "double linked list",
    ];
    let message = match t.strip_prefix("*** Error in `") {
        Some(rest) => {
            let (_, message) = rest.split_once("': ")?;
            let message = message.strip_suffix(" ***").unwrap_or(message);
            match message.rsplit_once(": 0x") {
                Some((m, address)) if address.bytes().all(|b| b.is_ascii_hexdigit()) => m,
                _ => message,
            }
        }
        None => t,
    };
    if message.len() > 100 {
        return None;
    }
    let known = (FUNCTIONS.iter().any(|f| message.starts_with(f))
        && DEFECTS.iter().any(|d| message.contains(d)))
        || message.starts_with("double free or corruption (")
        || message.starts_with("corrupted size vs. prev_size")
        || message.starts_with("corrupted double-linked list");
    if !known {
        return None;
    }
    let kind = if message.contains("double free") {
        HeapErrorKind::DoubleFree
    } else if message.ends_with("invalid pointer")
        || message.ends_with("invalid size")
        || message.ends_with("invalid old size")
    {
        HeapErrorKind::InvalidPointer
    } else {
        HeapErrorKind::Corruption
    };
    Some(HeapError {
        kind,
        message: message.to_owned(),
    })
}

/// A failed C `assert` line, glibc or musl wording.
fn assertion(t: &str) -> Option<Assertion> {
    if let Some(rest) = t.strip_prefix("Assertion failed: ") {
        // musl: `Assertion failed: x > 0 (main.c: main: 12)`
        let (expression, origin) = rest.strip_suffix(')')?.rsplit_once(" (")?;
        let (file, rest) = origin.split_once(": ")?;
        let (function, line) = rest.rsplit_once(": ")?;
        return Some(Assertion {
            message: expression.to_owned(),
            file: Some(file.to_owned()),
            line: parse_u32(line),
            function: Some(function.to_owned()),
        });
    }
    // glibc: ``prog: main.c:12: main: Assertion `x > 0' failed.``
    let (origin, expression) = t
        .split_once(": Assertion `")
        .or_else(|| t.split_once(": Assertion '"))?;
    let expression = expression.strip_suffix("' failed.")?;
    let (file, line, function) = assertion_origin(origin);
    Some(Assertion {
        message: expression.to_owned(),
        file,
        line,
        function,
    })
}

/// Splits glibc's `prog: file:line: function` at the first `:<digits>: `.
fn assertion_origin(origin: &str) -> (Option<String>, Option<u32>, Option<String>) {
    for (i, _) in origin.match_indices(':') {
        let after = &origin[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            continue;
        }
        let tail = &after[digits..];
        let function = match tail.strip_prefix(": ") {
            Some(function) => Some(function.to_owned()),
            None if tail.is_empty() => None,
            None => continue,
        };
        let before = &origin[..i];
        let file = before.rfind(": ").map_or(before, |j| &before[j + 2..]);
        let file = (!file.is_empty()).then(|| file.to_owned());
        return (file, parse_u32(&after[..digits]), function);
    }
    (None, None, None)
}

/// The line (cut at [`MAX_ERRNO_CHARS`] characters) if it names an exhaustion
/// `strerror` text; see [`StderrEvidence::errno_messages`].
fn exhaustion_line(t: &str) -> Option<&str> {
    const EXHAUSTION: &[&str] = &[
        "Too many open files",
        "No space left on device",
        "Cannot allocate memory",
        "Disk quota exceeded",
    ];
    const TASK_CREATION: &[&str] = &["thread", "fork", "spawn", "clone"];
    let hit = EXHAUSTION.iter().any(|e| t.contains(e))
        || (t.contains("Resource temporarily unavailable") && {
            let lower = t.to_ascii_lowercase();
            TASK_CREATION.iter().any(|w| lower.contains(w))
        });
    if !hit {
        return None;
    }
    Some(match t.char_indices().nth(MAX_ERRNO_CHARS) {
        Some((end, _)) => t[..end].trim_end(),
        None => t,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/stderr/", $name, ".txt"))
        };
    }

    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            &[$(($name, fixture!($name))),*]
        };
    }

    /// Every fixture, for the whole-corpus properties.
    const FIXTURES: &[(&str, &str)] = fixtures![
        "asan_bad_free",
        "asan_double_free",
        "asan_hbo",
        "asan_leak",
        "asan_segv",
        "asan_stack_overflow",
        "asan_uaf",
        "asan_uaf_color",
        "asan_vector",
        "c_assert",
        "emfile",
        "glibc_bad_free",
        "glibc_corrupt_top",
        "glibc_double_free",
        "glibc_double_free_fast",
        "glibc_munmap",
        "msan_uninit",
        "rust_add_overflow",
        "rust_alloc_fail",
        "rust_div_zero",
        "rust_enospc",
        "rust_err_unwrap",
        "rust_err_unwrap_bt",
        "rust_expect_none",
        "rust_expect_none_bt",
        "rust_explicit_multiline",
        "rust_index_oob",
        "rust_interleaved",
        "rust_none_unwrap",
        "rust_none_unwrap_bt",
        "rust_none_unwrap_btfull",
        "rust_recursion",
        "rust_result_expect",
        "rust_result_expect_bt",
        "rust_thread_named",
        "rust_thread_named_bt",
        "rust_thread_unnamed",
        "rust_two_panics",
        "tsan_race",
        "ubsan_div",
        "ubsan_null",
        "ubsan_overflow",
        "ubsan_overflow_stack",
    ];

    fn panic_of(text: &str) -> RustPanic {
        let evidence = StderrEvidence::parse(text);
        assert!(evidence.sanitizer.is_none() && evidence.heap_error.is_none());
        evidence.rust_panic.expect("a Rust panic")
    }

    fn sanitizer_of(text: &str) -> SanitizerReport {
        let evidence = StderrEvidence::parse(text);
        assert!(evidence.rust_panic.is_none() && evidence.heap_error.is_none());
        evidence.sanitizer.expect("a sanitizer report")
    }

    /// `(function, file, line, column)` of a frame, for compact assertions.
    fn at(frame: &Frame) -> (&str, Option<&str>, Option<u32>, Option<u32>) {
        (
            frame.function.as_str(),
            frame.file.as_deref(),
            frame.line,
            frame.column,
        )
    }

    fn functions(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.function.as_str()).collect()
    }

    // --- Rust -------------------------------------------------------------

    #[test]
    fn none_unwrap() {
        let evidence = StderrEvidence::parse(fixture!("rust_none_unwrap"));
        let p = evidence.rust_panic.clone().unwrap();
        assert_eq!(p.thread, "main");
        assert_eq!(p.message, "called `Option::unwrap()` on a `None` value");
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("none_unwrap.rs", 4, 26)
        );
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert!(p.backtrace.is_empty());
        assert_eq!(
            evidence,
            StderrEvidence {
                rust_panic: Some(p),
                ..StderrEvidence::default()
            }
        );
    }

    #[test]
    fn none_unwrap_backtrace() {
        let p = panic_of(fixture!("rust_none_unwrap_bt"));
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert_eq!(p.message, "called `Option::unwrap()` on a `None` value");
        assert_eq!(
            functions(&p.backtrace),
            [
                "__rustc::rust_begin_unwind",
                "core::panicking::panic_fmt",
                "core::panicking::panic",
                "core::option::unwrap_failed",
                "core::option::Option<T>::unwrap",
                "none_unwrap::main",
                "core::ops::function::FnOnce::call_once",
            ]
        );
        assert_eq!(
            at(&p.backtrace[5]),
            (
                "none_unwrap::main",
                Some("./none_unwrap.rs"),
                Some(4),
                Some(26)
            )
        );
        assert_eq!(
            p.backtrace[0].file.as_deref(),
            Some("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/panicking.rs")
        );
    }

    #[test]
    fn none_unwrap_full_backtrace() {
        let p = panic_of(fixture!("rust_none_unwrap_btfull"));
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert_eq!(p.backtrace.len(), 38);
        // Crate disambiguators and legacy hashes are gone.
        assert_eq!(
            p.backtrace[0].function,
            "std::backtrace_rs::backtrace::libunwind::trace"
        );
        assert_eq!(p.backtrace[17].function, "core::option::unwrap_failed");
        assert_eq!(
            at(&p.backtrace[19]),
            (
                "none_unwrap::main",
                Some("/tmp/sigfx/none_unwrap.rs"),
                Some(4),
                Some(26)
            )
        );
        // Frames without an `at` line.
        assert_eq!(at(&p.backtrace[5]), ("core::fmt::write", None, None, None));
        assert_eq!(at(&p.backtrace[33]), ("main", None, None, None));
        assert_eq!(at(&p.backtrace[37]), ("<unknown>", None, None, None));
        assert!(
            p.backtrace
                .iter()
                .all(|f| !f.function.contains("[e28293b1aa0f68bd]"))
        );
    }

    #[test]
    fn err_unwrap() {
        for text in [fixture!("rust_err_unwrap"), fixture!("rust_err_unwrap_bt")] {
            let p = panic_of(text);
            assert_eq!(
                p.message,
                "called `Result::unwrap()` on an `Err` value: \"x\""
            );
            assert_eq!((p.file.as_str(), p.line, p.column), ("err_unwrap.rs", 3, 7));
            assert_eq!(p.kind, PanicKind::Unwrap);
        }
        let p = panic_of(fixture!("rust_err_unwrap_bt"));
        assert_eq!(
            functions(&p.backtrace[2..5]),
            [
                "core::result::unwrap_failed",
                "core::result::Result<T,E>::unwrap",
                "err_unwrap::main"
            ]
        );
    }

    #[test]
    fn option_expect_needs_a_backtrace_to_be_proven() {
        let p = panic_of(fixture!("rust_expect_none"));
        assert_eq!(p.message, "cfg missing");
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("expect_none.rs", 3, 22)
        );
        assert_eq!(p.kind, PanicKind::Explicit);

        let p = panic_of(fixture!("rust_expect_none_bt"));
        assert_eq!(p.message, "cfg missing");
        assert_eq!(p.kind, PanicKind::Expect);
        assert_eq!(p.backtrace[3].function, "core::option::expect_failed");
        assert_eq!(
            at(&p.backtrace[5]),
            (
                "expect_none::main",
                Some("./expect_none.rs"),
                Some(3),
                Some(22)
            )
        );
    }

    #[test]
    fn result_expect_needs_a_backtrace_to_be_proven() {
        let p = panic_of(fixture!("rust_result_expect"));
        assert_eq!(
            p.message,
            "invalid port: ParseIntError { kind: InvalidDigit }"
        );
        assert_eq!(p.kind, PanicKind::Explicit);

        let p = panic_of(fixture!("rust_result_expect_bt"));
        assert_eq!(p.kind, PanicKind::Expect);
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("result_expect.rs", 3, 29)
        );
        assert_eq!(
            functions(&p.backtrace[2..5]),
            [
                "core::result::unwrap_failed",
                "core::result::Result<T,E>::expect",
                "result_expect::main"
            ]
        );
    }

    #[test]
    fn index_overflow_divide_by_zero() {
        let p = panic_of(fixture!("rust_index_oob"));
        assert_eq!(
            p.message,
            "index out of bounds: the len is 3 but the index is 10"
        );
        assert_eq!((p.file.as_str(), p.line, p.column), ("index_oob.rs", 4, 21));
        assert_eq!(p.kind, PanicKind::Index);

        let p = panic_of(fixture!("rust_add_overflow"));
        assert_eq!(p.message, "attempt to add with overflow");
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("add_overflow.rs", 4, 13)
        );
        assert_eq!(p.kind, PanicKind::Overflow);

        let p = panic_of(fixture!("rust_div_zero"));
        assert_eq!(p.message, "attempt to divide by zero");
        assert_eq!((p.file.as_str(), p.line, p.column), ("div_zero.rs", 4, 20));
        assert_eq!(p.kind, PanicKind::DivideByZero);
    }

    #[test]
    fn explicit_multiline_message() {
        let p = panic_of(fixture!("rust_explicit_multiline"));
        assert_eq!(
            p.message,
            "boom 1\nsecond line of the message\n  third, indented"
        );
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("explicit_multiline.rs", 3, 5)
        );
        assert_eq!(p.kind, PanicKind::Explicit);
    }

    #[test]
    fn named_and_unnamed_threads() {
        let evidence = StderrEvidence::parse(fixture!("rust_thread_named"));
        let p = evidence.rust_panic.unwrap();
        assert_eq!(p.thread, "worker-1");
        assert_eq!(p.message, "called `Option::unwrap()` on a `None` value");
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("thread_named.rs", 4, 27)
        );
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert!(evidence.errno_messages.is_empty());

        let p = panic_of(fixture!("rust_thread_named_bt"));
        assert_eq!(p.thread, "worker-1");
        assert_eq!(
            at(p.backtrace.last().unwrap()),
            (
                "thread_named::main::{{closure}}",
                Some("./thread_named.rs"),
                Some(4),
                Some(27)
            )
        );

        let p = panic_of(fixture!("rust_thread_unnamed"));
        assert_eq!(p.thread, "<unnamed>");
        assert_eq!(p.message, "unnamed thread failure");
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("thread_unnamed.rs", 3, 9)
        );
        assert_eq!(p.kind, PanicKind::Explicit);
    }

    #[test]
    fn first_panic_wins() {
        let p = panic_of(fixture!("rust_two_panics"));
        assert_eq!(p.thread, "first");
        assert_eq!(p.message, "first panic");
        assert_eq!((p.file.as_str(), p.line, p.column), ("two_panics.rs", 3, 9));
    }

    #[test]
    fn panic_among_program_output() {
        let evidence = StderrEvidence::parse(fixture!("rust_interleaved"));
        let p = evidence.rust_panic.clone().unwrap();
        assert_eq!(p.thread, "conn-7");
        assert_eq!(
            p.message,
            "index out of bounds: the len is 4 but the index is 7"
        );
        assert_eq!(
            (p.file.as_str(), p.line, p.column),
            ("interleaved.rs", 9, 40)
        );
        assert_eq!(p.kind, PanicKind::Index);
        assert_eq!(
            evidence,
            StderrEvidence {
                rust_panic: Some(p),
                ..StderrEvidence::default()
            }
        );
    }

    #[test]
    fn stack_overflow_and_alloc_failure() {
        let evidence = StderrEvidence::parse(fixture!("rust_recursion"));
        assert_eq!(
            evidence,
            StderrEvidence {
                stack_overflow: Some(StackOverflow {
                    thread: "main".into()
                }),
                ..StderrEvidence::default()
            }
        );
        let evidence = StderrEvidence::parse("fatal runtime error: stack overflow, aborting\n");
        assert_eq!(evidence.stack_overflow.unwrap().thread, "");

        let evidence = StderrEvidence::parse(fixture!("rust_alloc_fail"));
        assert_eq!(
            evidence,
            StderrEvidence {
                alloc_failure: Some(70_368_744_177_665),
                ..StderrEvidence::default()
            }
        );
    }

    #[test]
    fn storage_full_unwrap_is_also_an_errno_message() {
        let evidence = StderrEvidence::parse(fixture!("rust_enospc"));
        let p = evidence.rust_panic.unwrap();
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert_eq!((p.file.as_str(), p.line, p.column), ("enospc.rs", 3, 44));
        assert_eq!(evidence.errno_messages, [p.message]);
    }

    /// The pre-1.73 format (not producible with this machine's toolchain).
    #[test]
    fn old_panic_format() {
        let p = panic_of(
            "thread 'main' panicked at 'called `Option::unwrap()` on a `None` value', \
             src/main.rs:4:26\nnote: run with `RUST_BACKTRACE=1` environment variable to \
             display a backtrace\n",
        );
        assert_eq!(p.thread, "main");
        assert_eq!(p.message, "called `Option::unwrap()` on a `None` value");
        assert_eq!((p.file.as_str(), p.line, p.column), ("src/main.rs", 4, 26));
        assert_eq!(p.kind, PanicKind::Unwrap);

        let p = panic_of(
            "thread '<unnamed>' panicked at 'boom\nit's over', src/lib.rs:10:5\n\
             stack backtrace:\n   0: std::panicking::begin_panic\n             at \
             /rustc/abc/library/std/src/panicking.rs:616:12\n   1: demo::run\n             \
             at ./src/lib.rs:10:5\nnote: Some details are omitted, run with \
             `RUST_BACKTRACE=full` for a verbose backtrace.\n",
        );
        assert_eq!(p.thread, "<unnamed>");
        assert_eq!(p.message, "boom\nit's over");
        assert_eq!((p.file.as_str(), p.line, p.column), ("src/lib.rs", 10, 5));
        assert_eq!(
            functions(&p.backtrace),
            ["std::panicking::begin_panic", "demo::run"]
        );

        // Very old: no column.
        let p = panic_of("thread 'main' panicked at 'attempt to divide by zero', src/main.rs:3\n");
        assert_eq!((p.line, p.column, p.kind), (3, 0, PanicKind::DivideByZero));

        // Never closed: no location, no panic.
        let evidence = StderrEvidence::parse("thread 'main' panicked at 'boom\nmore\n");
        assert!(evidence.is_empty());
    }

    #[test]
    fn panic_kinds_from_messages() {
        let kind = |m: &str| panic_kind(m, &[]);
        assert_eq!(
            kind("called `Result::unwrap_err()` on an `Ok` value: 3"),
            PanicKind::Unwrap
        );
        assert_eq!(
            kind("range end index 9 out of range for slice of length 3"),
            PanicKind::Index
        );
        assert_eq!(
            kind("slice index starts at 4 but ends at 2"),
            PanicKind::Index
        );
        assert_eq!(
            kind("byte index 1 is not a char boundary; it is inside 'é' (bytes 0..2) of `é`"),
            PanicKind::Index
        );
        assert_eq!(
            kind("attempt to shift left with overflow"),
            PanicKind::Overflow
        );
        assert_eq!(kind("attempt to divide with overflow"), PanicKind::Overflow);
        assert_eq!(
            kind("attempt to calculate the remainder with a divisor of zero"),
            PanicKind::DivideByZero
        );
        assert_eq!(
            kind("assertion `left == right` failed"),
            PanicKind::Explicit
        );
        assert_eq!(
            kind("attempt to add with overflow, said the user"),
            PanicKind::Explicit
        );
    }

    #[test]
    fn truncated_panic_header_only() {
        let p = panic_of("thread 'main' (7) panicked at src/main.rs:5:7:");
        assert_eq!(p.thread, "main");
        assert_eq!(p.message, "");
        assert_eq!((p.file.as_str(), p.line, p.column), ("src/main.rs", 5, 7));
        assert_eq!(p.kind, PanicKind::Explicit);

        // Cut inside the backtrace.
        let text = fixture!("rust_none_unwrap_bt");
        let cut = text.find("   3:").unwrap();
        let p = panic_of(&text[..cut]);
        assert_eq!(p.kind, PanicKind::Unwrap);
        assert_eq!(p.backtrace.len(), 3);
    }

    // --- Sanitizers -------------------------------------------------------

    #[test]
    fn asan_heap_use_after_free() {
        let r = sanitizer_of(fixture!("asan_uaf"));
        assert_eq!(r.tool, SanitizerTool::Address);
        assert_eq!(r.kind, "heap-use-after-free");
        assert_eq!(
            r.summary.as_deref(),
            Some("AddressSanitizer: heap-use-after-free /tmp/sigfx/asan_uaf.c:5:41 in use_buffer")
        );
        assert_eq!(
            r.access,
            Some(Access {
                write: false,
                size: 1,
                address: 0x502000000013
            })
        );
        assert_eq!(r.address, Some(0x502000000013));
        assert_eq!(
            functions(&r.stack),
            [
                "use_buffer",
                "main",
                "__libc_start_call_main",
                "__libc_start_main",
                "_start"
            ]
        );
        assert_eq!(
            at(&r.stack[0]),
            (
                "use_buffer",
                Some("/tmp/sigfx/asan_uaf.c"),
                Some(5),
                Some(41)
            )
        );
        assert_eq!(
            at(&r.stack[2]),
            (
                "__libc_start_call_main",
                Some("csu/../sysdeps/nptl/libc_start_call_main.h"),
                Some(58),
                Some(16)
            )
        );
        assert_eq!(at(&r.stack[4]), ("_start", None, None, None));
        assert_eq!(at(&r.freed[0]), ("free", None, None, None));
        assert_eq!(
            at(&r.freed[1]),
            ("main", Some("/tmp/sigfx/asan_uaf.c"), Some(8), Some(5))
        );
        assert_eq!(r.allocated.len(), 4);
        assert_eq!(
            at(&r.allocated[1]),
            (
                "make_buffer",
                Some("/tmp/sigfx/asan_uaf.c"),
                Some(4),
                Some(48)
            )
        );
        assert_eq!(r.location, None);
    }

    #[test]
    fn ansi_colours_are_ignored() {
        let plain = StderrEvidence::parse(fixture!("asan_uaf"));
        let coloured = StderrEvidence::parse(fixture!("asan_uaf_color"));
        assert!(fixture!("asan_uaf_color").contains("\x1b[1m"));
        assert_eq!(coloured, plain);
    }

    #[test]
    fn asan_heap_buffer_overflow() {
        let r = sanitizer_of(fixture!("asan_hbo"));
        assert_eq!(r.kind, "heap-buffer-overflow");
        assert_eq!(
            r.access,
            Some(Access {
                write: true,
                size: 4,
                address: 0x504000000078
            })
        );
        assert_eq!(r.address, Some(0x504000000078));
        assert_eq!(
            at(&r.stack[0]),
            ("fill", Some("/tmp/sigfx/asan_hbo.c"), Some(3), Some(69))
        );
        assert_eq!(
            functions(&r.allocated),
            ["malloc", "main", "__libc_start_call_main"]
        );
        assert_eq!(
            at(&r.allocated[1]),
            ("main", Some("/tmp/sigfx/asan_hbo.c"), Some(5), Some(14))
        );
        assert!(r.freed.is_empty());
    }

    #[test]
    fn asan_double_free() {
        let r = sanitizer_of(fixture!("asan_double_free"));
        assert_eq!(r.kind, "double-free");
        assert_eq!(r.address, Some(0x503000000040));
        assert_eq!(r.access, None);
        assert_eq!(functions(&r.stack[..3]), ["free", "release", "main"]);
        assert_eq!(
            at(&r.stack[2]),
            (
                "main",
                Some("/tmp/sigfx/asan_double_free.c"),
                Some(6),
                Some(5)
            )
        );
        assert_eq!(
            at(&r.freed[2]),
            (
                "main",
                Some("/tmp/sigfx/asan_double_free.c"),
                Some(5),
                Some(5)
            )
        );
        assert_eq!(
            at(&r.allocated[1]),
            (
                "main",
                Some("/tmp/sigfx/asan_double_free.c"),
                Some(4),
                Some(15)
            )
        );
        assert!(
            r.summary
                .unwrap()
                .starts_with("AddressSanitizer: double-free ")
        );
    }

    #[test]
    fn asan_bad_free_skips_the_stack_variable_frame() {
        let r = sanitizer_of(fixture!("asan_bad_free"));
        assert_eq!(r.kind, "bad-free");
        assert_eq!(r.address, Some(0x7f20f0900020));
        assert_eq!(r.stack.len(), 5);
        assert_eq!(
            at(&r.stack[1]),
            (
                "main",
                Some("/tmp/sigfx/asan_bad_free.c"),
                Some(2),
                Some(42)
            )
        );
        assert!(r.allocated.is_empty() && r.freed.is_empty());
    }

    #[test]
    fn asan_stack_overflow_keeps_64_frames() {
        let r = sanitizer_of(fixture!("asan_stack_overflow"));
        assert_eq!(r.kind, "stack-overflow");
        assert_eq!(r.address, Some(0x7ffd18d18f50));
        assert_eq!(r.stack.len(), MAX_FRAMES);
        assert_eq!(
            at(&r.stack[0]),
            (
                "recurse",
                Some("/tmp/sigfx/asan_stack_overflow.c"),
                Some(2),
                Some(60)
            )
        );
        assert_eq!(
            r.summary.as_deref(),
            Some(
                "AddressSanitizer: stack-overflow /tmp/sigfx/asan_stack_overflow.c:2:60 in recurse"
            )
        );
    }

    #[test]
    fn asan_segv_on_null() {
        let r = sanitizer_of(fixture!("asan_segv"));
        assert_eq!(r.kind, "segv");
        assert_eq!(r.address, Some(0));
        assert_eq!(r.access, None);
        assert_eq!(
            at(&r.stack[0]),
            (
                "second_value",
                Some("/tmp/sigfx/asan_segv.c"),
                Some(4),
                Some(59)
            )
        );
        assert_eq!(r.stack.len(), 5);
        assert_eq!(
            r.summary.as_deref(),
            Some("AddressSanitizer: SEGV /tmp/sigfx/asan_segv.c:4:59 in second_value")
        );
    }

    #[test]
    fn leak_sanitizer() {
        let r = sanitizer_of(fixture!("asan_leak"));
        assert_eq!(r.tool, SanitizerTool::Leak);
        assert_eq!(r.kind, "leak");
        assert_eq!(r.address, None);
        assert_eq!(
            r.summary.as_deref(),
            Some("AddressSanitizer: 25 byte(s) leaked in 4 allocation(s).")
        );
        // The first leak only.
        assert_eq!(
            functions(&r.allocated),
            ["malloc", "dup_name", "main", "__libc_start_call_main"]
        );
        assert_eq!(
            at(&r.allocated[1]),
            (
                "dup_name",
                Some("/tmp/sigfx/asan_leak.c"),
                Some(4),
                Some(50)
            )
        );
        assert_eq!(r.stack, r.allocated);
    }

    #[test]
    fn cpp_frames_with_spaces() {
        let r = sanitizer_of(fixture!("asan_vector"));
        assert_eq!(r.kind, "heap-use-after-free");
        assert_eq!(
            r.access,
            Some(Access {
                write: false,
                size: 4,
                address: 0x502000000010
            })
        );
        assert_eq!(
            at(&r.stack[0]),
            (
                "Holder::peek(int const*) const",
                Some("/tmp/sigfx/asan_vector.cpp"),
                Some(5),
                Some(47)
            )
        );
        assert_eq!(
            at(&r.freed[0]),
            ("operator delete(void*, unsigned long)", None, None, None)
        );
        assert_eq!(
            at(&r.freed[5]),
            (
                "std::vector<int, std::allocator<int>>::push_back(int const&)",
                Some(
                    "/usr/lib/gcc/x86_64-linux-gnu/12/../../../../include/c++/12/bits/stl_vector.h"
                ),
                Some(1287),
                Some(4)
            )
        );
        assert_eq!(
            at(&r.freed[6]),
            (
                "main",
                Some("/tmp/sigfx/asan_vector.cpp"),
                Some(11),
                Some(43)
            )
        );
        assert_eq!(
            r.allocated[4].function,
            "void std::vector<int, std::allocator<int>>::_M_realloc_insert<int>(__gnu_cxx::\
             __normal_iterator<int*, std::vector<int, std::allocator<int>>>, int&&)"
        );
        assert_eq!(
            at(&r.allocated[7]),
            (
                "main",
                Some("/tmp/sigfx/asan_vector.cpp"),
                Some(9),
                Some(13)
            )
        );
    }

    #[test]
    fn thread_sanitizer_data_race() {
        let r = sanitizer_of(fixture!("tsan_race"));
        assert_eq!(r.tool, SanitizerTool::Thread);
        assert_eq!(r.kind, "data-race");
        assert_eq!(r.address, None);
        assert_eq!(
            r.access,
            Some(Access {
                write: true,
                size: 4,
                address: 0x5652152f8698
            })
        );
        // The current access only: not the previous one, not thread creation.
        assert_eq!(r.stack.len(), 1);
        assert_eq!(
            at(&r.stack[0]),
            ("bump", Some("/tmp/sigfx/tsan_race.c"), Some(4), Some(81))
        );
        assert!(r.allocated.is_empty() && r.freed.is_empty());
        assert_eq!(
            r.summary.as_deref(),
            Some("ThreadSanitizer: data race /tmp/sigfx/tsan_race.c:4:81 in bump")
        );
    }

    #[test]
    fn memory_sanitizer() {
        let r = sanitizer_of(fixture!("msan_uninit"));
        assert_eq!(r.tool, SanitizerTool::Memory);
        assert_eq!(r.kind, "use-of-uninitialized-value");
        assert_eq!(
            at(&r.stack[0]),
            ("pick", Some("/tmp/sigfx/msan_uninit.c"), Some(3), Some(34))
        );
        assert_eq!(
            at(&r.allocated[1]),
            ("main", Some("/tmp/sigfx/msan_uninit.c"), Some(6), Some(14))
        );
    }

    #[test]
    fn ubsan_runtime_errors() {
        let r = sanitizer_of(fixture!("ubsan_overflow"));
        assert_eq!(r.tool, SanitizerTool::Undefined);
        assert_eq!(r.kind, "signed-integer-overflow");
        assert_eq!(
            r.location.as_ref().map(at),
            Some(("", Some("ubsan_overflow.c"), Some(6), Some(15)))
        );
        assert_eq!(
            r.summary.as_deref(),
            Some("UndefinedBehaviorSanitizer: undefined-behavior ubsan_overflow.c:6:15")
        );
        assert!(r.stack.is_empty() && r.access.is_none() && r.address.is_none());

        // print_stacktrace=1 (and the program's own stdout line before it).
        let r = sanitizer_of(fixture!("ubsan_overflow_stack"));
        assert_eq!(r.kind, "signed-integer-overflow");
        assert_eq!(r.stack.len(), 4);
        assert_eq!(
            at(&r.stack[0]),
            (
                "main",
                Some("/tmp/sigfx/ubsan_overflow.c"),
                Some(6),
                Some(15)
            )
        );
    }

    #[test]
    fn ubsan_first_report_wins_over_its_deadly_signal() {
        let r = sanitizer_of(fixture!("ubsan_null"));
        assert_eq!(r.kind, "null-pointer-use");
        assert_eq!(
            r.location.as_ref().map(at),
            Some(("", Some("ubsan_null.c"), Some(3), Some(43)))
        );
        // The SEGV report that follows is another report: none of its stack.
        assert!(r.stack.is_empty() && r.address.is_none());

        let r = sanitizer_of(fixture!("ubsan_div"));
        assert_eq!(r.kind, "shift-exponent");
        assert_eq!(r.location.unwrap().line, Some(2));
        assert!(r.summary.unwrap().ends_with("ubsan_div.c:2:43"));

        // Without the runtime errors, the deadly-signal report itself.
        let text = fixture!("ubsan_div");
        let r = sanitizer_of(
            &text[text
                .find("UndefinedBehaviorSanitizer:DEADLYSIGNAL")
                .unwrap()..],
        );
        assert_eq!((r.tool, r.kind.as_str()), (SanitizerTool::Undefined, "fpe"));
        assert_eq!(r.address, Some(0x55c58d565e66));
        assert_eq!(
            at(&r.stack[0]),
            ("main", Some("/tmp/sigfx/ubsan_div.c"), Some(7), Some(23))
        );
    }

    #[test]
    fn ubsan_kinds() {
        for (message, kind) in [
            ("division by zero", "divide-by-zero"),
            ("left shift of negative value -1", "shift-base"),
            ("index 10 out of bounds for type 'int[4]'", "array-bounds"),
            ("load of null pointer of type 'int'", "null-pointer-use"),
            (
                "load of misaligned address 0x000001 for type 'int', which requires 4 byte alignment",
                "misaligned-pointer-use",
            ),
            (
                "negation of -2147483648 cannot be represented in type 'int'; cast to an \
                 unsigned type to negate this value to itself",
                "signed-integer-overflow",
            ),
            (
                "load of value 7, which is not a valid value for type 'bool'",
                "invalid-bool-load",
            ),
            (
                "applying non-zero offset 8 to null pointer",
                "pointer-overflow",
            ),
            (
                "execution reached an unreachable program point",
                "unreachable",
            ),
            (
                "null pointer passed as argument 1, which is declared to never be null",
                "nonnull-attribute",
            ),
            ("something new", "undefined-behavior"),
        ] {
            assert_eq!(ubsan_kind(message), kind, "{message}");
        }
    }

    #[test]
    fn sanitizer_report_kinds() {
        for (description, kind) in [
            ("heap-use-after-free (pid=12)", "heap-use-after-free"),
            (
                "lock-order-inversion (potential deadlock) (pid=1)",
                "lock-order-inversion",
            ),
            ("thread leak (pid=1)", "thread-leak"),
            (
                "alloc-dealloc-mismatch (malloc vs operator delete) on 0x602000000010",
                "alloc-dealloc-mismatch",
            ),
            (
                "memcpy-param-overlap: memory ranges [0x1,0x4) and [0x2, 0x5) overlap",
                "memcpy-param-overlap",
            ),
            (
                "requested allocation size 0x10000000001 (0x10000001008 after adjustments for alignment, red zones etc.) exceeds maximum supported size of 0x10000000000 (thread T0)",
                "allocation-size-too-big",
            ),
            ("BUS on unknown address 0x7f0000000000", "bus"),
            ("", "unknown"),
        ] {
            assert_eq!(report_kind(description), kind, "{description}");
        }
    }

    #[test]
    fn sanitizer_frame_forms() {
        let frame = |t: &str| sanitizer_frame(t).map(|f| at(&f).0.to_owned());
        assert_eq!(
            sanitizer_frame("#2 0x7f2b (/lib/x86_64-linux-gnu/libc.so.6+0x2724a) (BuildId: ab12)"),
            Some(Frame {
                function: String::new(),
                file: None,
                line: None,
                column: None
            })
        );
        assert_eq!(
            frame("#0 pthread_create <null> (tsan_race+0x61e91) (BuildId: 8c8c)").as_deref(),
            Some("pthread_create")
        );
        assert_eq!(
            sanitizer_frame("#0 0x55795ea93a5f in main /tmp/sigfx/asan_bad_free.c:2")
                .map(|f| (f.line, f.column)),
            Some((Some(2), None))
        );
        assert_eq!(
            frame("#1 0x55 in demo::run::h0123456789abcdef /src/lib.rs:3:4").as_deref(),
            Some("demo::run")
        );
        assert_eq!(frame("#x 0x1 in f"), None);
        assert_eq!(frame("#1"), None);
        assert_eq!(
            frame("#12345678901234567890 0x1 in f a.c:1:2").as_deref(),
            Some("f")
        );
    }

    #[test]
    fn truncated_sanitizer_header_only() {
        let r = sanitizer_of(
            "==9==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000010 at pc 0x1 bp 0x2 sp 0x3",
        );
        assert_eq!(r.kind, "heap-buffer-overflow");
        assert_eq!(r.address, Some(0x602000000010));
        assert!(r.summary.is_none() && r.stack.is_empty() && r.access.is_none());

        let r = sanitizer_of("WARNING: ThreadSanitizer: data race (pid=3)\n  Write of size 8");
        assert_eq!((r.kind.as_str(), r.access), ("data-race", None));
    }

    #[test]
    fn first_sanitizer_report_wins() {
        let text = [fixture!("asan_hbo"), fixture!("asan_uaf")].concat();
        let r = sanitizer_of(&text);
        assert_eq!(r, sanitizer_of(fixture!("asan_hbo")));
    }

    #[test]
    fn not_sanitizer_reports() {
        for text in [
            "panic: runtime error: index out of range [5] with length 3",
            "AddressSanitizer:DEADLYSIGNAL",
            "ThreadSanitizer: reported 1 warnings",
            "==1==WARNING: AddressSanitizer failed to allocate 0x10 bytes",
            "SUMMARY: AddressSanitizer: heap-use-after-free x.c:1:2 in f",
            "#0 0x55 in main /tmp/x.c:3:4",
        ] {
            assert!(StderrEvidence::parse(text).is_empty(), "{text}");
        }
    }

    // --- glibc, assert, errno --------------------------------------------

    #[test]
    fn glibc_heap_errors() {
        for (name, text, kind, message) in [
            (
                "glibc_double_free",
                fixture!("glibc_double_free"),
                HeapErrorKind::DoubleFree,
                "free(): double free detected in tcache 2",
            ),
            (
                "glibc_double_free_fast",
                fixture!("glibc_double_free_fast"),
                HeapErrorKind::DoubleFree,
                "double free or corruption (fasttop)",
            ),
            (
                "glibc_bad_free",
                fixture!("glibc_bad_free"),
                HeapErrorKind::InvalidPointer,
                "free(): invalid pointer",
            ),
            (
                "glibc_munmap",
                fixture!("glibc_munmap"),
                HeapErrorKind::InvalidPointer,
                "munmap_chunk(): invalid pointer",
            ),
            (
                "glibc_corrupt_top",
                fixture!("glibc_corrupt_top"),
                HeapErrorKind::Corruption,
                "malloc(): corrupted top size",
            ),
        ] {
            let evidence = StderrEvidence::parse(text);
            assert_eq!(
                evidence,
                StderrEvidence {
                    heap_error: Some(HeapError {
                        kind,
                        message: message.into()
                    }),
                    ..StderrEvidence::default()
                },
                "{name}"
            );
        }
    }

    #[test]
    fn glibc_heap_error_wordings() {
        let kind = |t: &str| heap_error(t).map(|e| (e.kind, e.message));
        assert_eq!(
            kind(
                "*** Error in `./a.out': double free or corruption (fasttop): 0x0000000001b2c010 ***"
            ),
            Some((
                HeapErrorKind::DoubleFree,
                "double free or corruption (fasttop)".into()
            ))
        );
        assert_eq!(
            kind("free(): invalid next size (fast)").map(|k| k.0),
            Some(HeapErrorKind::Corruption)
        );
        assert_eq!(
            kind("corrupted size vs. prev_size").map(|k| k.0),
            Some(HeapErrorKind::Corruption)
        );
        assert_eq!(
            kind("malloc(): unaligned tcache chunk detected").map(|k| k.0),
            Some(HeapErrorKind::Corruption)
        );
        assert_eq!(
            kind("free(): invalid size").map(|k| k.0),
            Some(HeapErrorKind::InvalidPointer)
        );
        assert_eq!(kind("free(): all buffers released"), None);
        assert_eq!(kind("log: free(): invalid pointer"), None);
    }

    #[test]
    fn c_assertions() {
        let evidence = StderrEvidence::parse(fixture!("c_assert"));
        assert_eq!(
            evidence.assertion,
            Some(Assertion {
                message: "x > 0 && \"value must be positive\"".into(),
                file: Some("c_assert.c".into()),
                line: Some(3),
                function: Some("int check_positive(int)".into()),
            })
        );
        assert_eq!(
            assertion("prog: main.c:12: main: Assertion `x > 0' failed."),
            Some(Assertion {
                message: "x > 0".into(),
                file: Some("main.c".into()),
                line: Some(12),
                function: Some("main".into()),
            })
        );
        assert_eq!(
            assertion("/usr/bin/p: src/a.c:7: Assertion `ok' failed."),
            Some(Assertion {
                message: "ok".into(),
                file: Some("src/a.c".into()),
                line: Some(7),
                function: None,
            })
        );
        assert_eq!(
            assertion("Assertion failed: n < 4 (t.c: check: 9)"),
            Some(Assertion {
                message: "n < 4".into(),
                file: Some("t.c".into()),
                line: Some(9),
                function: Some("check".into()),
            })
        );
        assert_eq!(assertion("prog: main.c:12: main: Assertion `x > 0"), None);
    }

    #[test]
    fn exhaustion_lines() {
        let evidence = StderrEvidence::parse(fixture!("emfile"));
        assert_eq!(
            evidence,
            StderrEvidence {
                errno_messages: vec!["open: Too many open files".into()],
                ..StderrEvidence::default()
            }
        );

        let text = "read: Resource temporarily unavailable\n\
                    failed to spawn thread: Os { code: 11, kind: WouldBlock, message: \"Resource temporarily unavailable\" }\n\
                    fork: Cannot allocate memory\n\
                    fork: Cannot allocate memory\n";
        assert_eq!(
            StderrEvidence::parse(text).errno_messages,
            [
                "failed to spawn thread: Os { code: 11, kind: WouldBlock, message: \"Resource temporarily unavailable\" }",
                "fork: Cannot allocate memory",
            ]
        );

        let many: String = (0..20)
            .map(|i| format!("  write {i}: No space left on device  \n"))
            .collect();
        let messages = StderrEvidence::parse(&many).errno_messages;
        assert_eq!(messages.len(), MAX_ERRNO_MESSAGES);
        assert_eq!(messages[0], "write 0: No space left on device");

        let long = format!("{}Disk quota exceeded", "é".repeat(300));
        let messages = StderrEvidence::parse(&long).errno_messages;
        assert_eq!(messages[0].chars().count(), MAX_ERRNO_CHARS);
    }

    // --- Whole input ------------------------------------------------------

    #[test]
    fn empty_and_junk() {
        assert!(StderrEvidence::parse("").is_empty());
        assert!(StderrEvidence::parse("\n\n  \r\n\t").is_empty());
        assert_eq!(StderrEvidence::parse(""), StderrEvidence::default());
        let junk = "\u{fffd}\u{fffd}x\0\u{1b}[\u{1b}thread '\nthread 'a' panicked at\n\
                    #\n#0\n==\n====ERROR: \nSUMMARY:\n: runtime error: \nmemory allocation of \
                    x bytes failed\nAssertion failed: \n: Assertion `\n*** Error in `\n";
        assert!(StderrEvidence::parse(junk).is_empty());
    }

    #[test]
    fn several_kinds_at_once() {
        let text = [
            fixture!("emfile"),
            fixture!("glibc_double_free"),
            fixture!("c_assert"),
            fixture!("rust_recursion"),
            fixture!("rust_alloc_fail"),
            fixture!("tsan_race"),
            fixture!("rust_index_oob"),
        ]
        .concat();
        let evidence = StderrEvidence::parse(&text);
        assert_eq!(evidence.errno_messages.len(), 1);
        assert_eq!(evidence.heap_error.unwrap().kind, HeapErrorKind::DoubleFree);
        assert_eq!(evidence.assertion.unwrap().line, Some(3));
        assert_eq!(evidence.stack_overflow.unwrap().thread, "main");
        assert_eq!(evidence.alloc_failure, Some(70_368_744_177_665));
        assert_eq!(evidence.sanitizer.unwrap().kind, "data-race");
        assert_eq!(evidence.rust_panic.unwrap().kind, PanicKind::Index);
    }

    #[test]
    fn program_output_around_a_report() {
        let text = format!(
            "starting\nREAD of size 9 at 0x1 thread T0\n#0 0x1 in noise x.c:1:1\n{}bye\n",
            fixture!("asan_uaf")
        );
        assert_eq!(
            StderrEvidence::parse(&text),
            StderrEvidence::parse(fixture!("asan_uaf"))
        );
    }

    #[test]
    fn windows_line_endings() {
        for (name, text) in FIXTURES {
            let crlf = text.replace('\n', "\r\n");
            assert_eq!(
                StderrEvidence::parse(&crlf),
                StderrEvidence::parse(text),
                "{name}"
            );
        }
    }

    #[test]
    fn every_fixture_finds_something() {
        for (name, text) in FIXTURES {
            assert!(!StderrEvidence::parse(text).is_empty(), "{name}");
        }
    }

    /// Cut at every line boundary: never a panic, and whatever is found agrees
    /// with the whole text's evidence.
    #[test]
    fn truncated_fixtures_agree_with_the_whole() {
        for (name, text) in FIXTURES {
            let whole = StderrEvidence::parse(text);
            for (cut, _) in text.match_indices('\n') {
                let part = StderrEvidence::parse(&text[..cut]);
                if let Some(p) = &part.rust_panic {
                    let w = whole.rust_panic.as_ref().unwrap();
                    assert_eq!(
                        (&p.thread, &p.file, p.line),
                        (&w.thread, &w.file, w.line),
                        "{name}@{cut}"
                    );
                    assert!(w.message.starts_with(&p.message), "{name}@{cut}");
                }
                if let Some(s) = &part.sanitizer {
                    let w = whole.sanitizer.as_ref().unwrap();
                    assert_eq!(
                        (s.tool, &s.kind, s.address),
                        (w.tool, &w.kind, w.address),
                        "{name}@{cut}"
                    );
                    assert!(w.stack.starts_with(&s.stack), "{name}@{cut}");
                }
                for (p, w) in [
                    (part.heap_error.is_some(), whole.heap_error.is_some()),
                    (part.assertion.is_some(), whole.assertion.is_some()),
                    (part.alloc_failure.is_some(), whole.alloc_failure.is_some()),
                    (
                        part.stack_overflow.is_some(),
                        whole.stack_overflow.is_some(),
                    ),
                ] {
                    assert!(!p || w, "{name}@{cut}");
                }
                assert!(
                    whole.errno_messages.starts_with(&part.errno_messages),
                    "{name}@{cut}"
                );
            }
        }
    }

    #[test]
    fn serde_round_trip() {
        assert_eq!(
            serde_json::to_string(&StderrEvidence::default()).unwrap(),
            "{}"
        );
        for (name, text) in FIXTURES {
            let evidence = StderrEvidence::parse(text);
            let json = serde_json::to_string(&evidence).unwrap();
            let back: StderrEvidence = serde_json::from_str(&json).unwrap();
            assert_eq!(back, evidence, "{name}");
        }
        let json = serde_json::to_value(StderrEvidence::parse(fixture!("rust_div_zero"))).unwrap();
        assert_eq!(json["rust_panic"]["kind"], "divide_by_zero");
        assert!(json["rust_panic"].get("backtrace").is_none());
        let json = serde_json::to_value(StderrEvidence::parse(fixture!("asan_uaf"))).unwrap();
        assert_eq!(json["sanitizer"]["tool"], "address");
        assert!(json["sanitizer"].get("location").is_none());
        assert!(json["sanitizer"]["stack"][4].get("file").is_none());
    }

    #[test]
    fn helpers() {
        let l = parse_location(r"C:\src\main.rs:5:7").unwrap();
        assert_eq!((l.file, l.line, l.column), (r"C:\src\main.rs", 5, Some(7)));
        assert!(parse_location(":5:7").is_none());
        assert!(parse_location("main.rs:99999999999:1").is_none());
        assert_eq!(
            normalize_function(
                "<&dyn core[c1f1a4ba060b9bfa]::ops::Fn<()> as core[c1f1a4ba060b9bfa]::ops::FnOnce<()>>::call_once"
            ),
            "<&dyn core::ops::Fn<()> as core::ops::FnOnce<()>>::call_once"
        );
        assert_eq!(normalize_function("f::<[u8; 16]>"), "f::<[u8; 16]>");
        assert_eq!(normalize_function("a[deadbeef"), "a[deadbeef");
        assert_eq!(normalize_function("x::hnothex0000000"), "x::hnothex0000000");
        assert_eq!(strip_ansi("\x1b[1m\x1b[31mred\x1b[0m\x1b"), "red");
        assert_eq!(parse_hex("0x10:"), Some(16));
        assert_eq!(parse_hex("0x11112222333344445"), None);
    }

    /// Pathological input stays linear: many unterminated old-format headers,
    /// frame lines and huge lines.
    #[test]
    fn large_pathological_input() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str("thread 'x' panicked at 'never closed\n");
            text.push_str(&format!("#{i} 0x1 in f a.c:1:2 (m+0x1) (BuildId: 1)\n"));
        }
        text.push_str(&"x".repeat(1 << 20));
        text.push('\n');
        let evidence = StderrEvidence::parse(&text);
        assert!(evidence.is_empty());

        let mut text = String::from("thread 'main' panicked at a.rs:1:1:\n");
        text.push_str(&"y".repeat(1 << 20));
        let p = panic_of(&text);
        assert_eq!(p.message.len(), MAX_MESSAGE_BYTES);
    }

    fn lines_pool() -> Vec<String> {
        FIXTURES
            .iter()
            .flat_map(|(_, text)| text.lines())
            .map(str::to_owned)
            .collect()
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let evidence = StderrEvidence::parse(&text);
            prop_assert!(evidence.errno_messages.len() <= MAX_ERRNO_MESSAGES);
        }

        #[test]
        fn never_panics_on_shuffled_report_lines(
            picks in proptest::collection::vec((any::<prop::sample::Index>(), 0..4usize, "[ -~]{0,12}"), 0..200),
        ) {
            let pool = lines_pool();
            let mut text = String::new();
            for (index, mode, noise) in picks {
                let line = &pool[index.index(pool.len())];
                match mode {
                    0 => text.push_str(line),
                    1 => text.push_str(&noise),
                    2 => {
                        let cut = index.index(line.len() + 1);
                        text.push_str(line.get(..cut).unwrap_or(line));
                    }
                    _ => {
                        text.push_str(line);
                        text.push_str(&noise);
                    }
                }
                text.push_str(if mode == 3 { "\r\n" } else { "\n" });
            }
            let evidence = StderrEvidence::parse(&text);
            for stack in evidence.sanitizer.iter().flat_map(|s| [&s.stack, &s.allocated, &s.freed]) {
                prop_assert!(stack.len() <= MAX_FRAMES);
            }
            if let Some(p) = &evidence.rust_panic {
                prop_assert!(p.backtrace.len() <= MAX_FRAMES);
                prop_assert!(p.message.len() <= MAX_MESSAGE_BYTES + MAX_MESSAGE_LINES);
            }
        }

        #[test]
        fn never_panics_on_any_prefix(which in 0..FIXTURES.len(), cut in any::<prop::sample::Index>()) {
            let text = FIXTURES[which].1;
            let mut end = cut.index(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            StderrEvidence::parse(&text[..end]);
            StderrEvidence::parse(&text[end..]);
        }
    }
}
