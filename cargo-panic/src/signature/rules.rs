//! The rules, as data: a Datalog program (ascent) over the facts of
//! [`super::facts`], and the catalogue that says what each rule concludes
//! (class, confidence, what would confirm it). Pure.
//!
//! Every conclusion is a `fired(rule, subclass, support)` tuple; `support` is
//! the derivation: the facts the rule used, and the derived facts (with their
//! own rules and facts) in between, so a verdict prints as a tree. A rule
//! fires once per way it can be satisfied; [`super::classify`] merges the
//! firings of one rule.

/// A fact's index in the fact list.
pub type FactId = u32;

/// One step of a derivation: a fact, or a derived fact with the rule that
/// derived it and what it used.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Why {
    Fact(FactId),
    Derived(&'static str, Vec<Why>),
}

fn f(id: &FactId) -> Why {
    Why::Fact(*id)
}

/// A rule's support with optional extra support appended.
fn with(mut support: Vec<Why>, extra: &[Why]) -> Vec<Why> {
    support.extend_from_slice(extra);
    support
}

/// What a rule concludes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub name: &'static str,
    /// The failure class (`use_after_free`, `deadlock`, ...).
    pub class: &'static str,
    /// How sure the rule is when it fires, before replay.
    pub confidence: f64,
    /// What the rule says, for the derivation.
    pub says: &'static str,
    /// A sanitizer that would confirm the class (and give stacks) when the
    /// run had none.
    pub confirm_with: Option<&'static str>,
}

const fn rule(
    name: &'static str,
    class: &'static str,
    confidence: f64,
    says: &'static str,
    confirm_with: Option<&'static str>,
) -> Rule {
    Rule {
        name,
        class,
        confidence,
        says,
        confirm_with,
    }
}

/// The catalogue. Confidences rank explanations of the same run: direct
/// reports (a sanitizer, the Rust runtime, glibc) above inferences from
/// signals and counts, and the bare "it crashed" last.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    rule("sanitizer-use-after-free", "use_after_free", 0.98, "the sanitizer saw an access to freed heap memory", None),
    rule("sanitizer-double-free", "double_free", 0.98, "the sanitizer saw the same block freed twice", None),
    rule("sanitizer-heap-overflow", "heap_overflow", 0.98, "the sanitizer saw an access past a heap block", None),
    rule("sanitizer-stack-overflow", "stack_overflow", 0.95, "the sanitizer saw the stack overflow", None),
    rule("sanitizer-null", "null_dereference", 0.92, "the sanitizer saw a SEGV on a near-null address", None),
    rule("sanitizer-leak", "memory_leak", 0.9, "LeakSanitizer found memory never freed", None),
    rule("sanitizer-data-race", "data_race", 0.9, "ThreadSanitizer saw two threads access the same memory without synchronisation", None),
    rule("sanitizer-lock-order", "deadlock", 0.85, "ThreadSanitizer saw locks taken in both orders (a potential deadlock)", None),
    rule("sanitizer-uninitialized", "uninitialized_read", 0.95, "MemorySanitizer saw a use of an uninitialised value", None),
    rule("sanitizer-undefined", "undefined_behavior", 0.95, "UndefinedBehaviorSanitizer saw undefined behaviour", None),
    rule("sanitizer-other", "memory_error", 0.85, "a sanitizer reported a memory error", None),
    rule("glibc-double-free", "double_free", 0.92, "glibc's allocator aborted on a double free", Some("address")),
    rule("glibc-heap-corruption", "heap_overflow", 0.6, "glibc's allocator found its heap metadata corrupted (usually a write past a block)", Some("address")),
    rule("glibc-invalid-free", "invalid_free", 0.85, "glibc's allocator aborted on a pointer it never handed out", Some("address")),
    rule("null-dereference", "null_dereference", 0.9, "a fatal SIGSEGV/SIGBUS on an address in the first page", None),
    rule("rust-stack-overflow", "stack_overflow", 0.95, "the Rust runtime reported a stack overflow", None),
    rule("recursion-overflow", "stack_overflow", 0.85, "a fatal SIGSEGV while a recursive function ran very often", None),
    rule("stack-guard", "stack_overflow", 0.9, "a fatal SIGSEGV just below the stack pointer, in the stack's guard region", None),
    rule("stack-guard-recursion", "stack_overflow", 0.97, "a fatal SIGSEGV in the stack's guard region while a recursive function ran very often", None),
    rule("wild-access", "invalid_memory_access", 0.45, "a fatal SIGSEGV/SIGBUS on an address that is not near null", Some("address")),
    rule("rust-panic", "rust_panic", 0.95, "the Rust runtime reported a panic", None),
    rule("rust-panic-at-site", "rust_panic", 0.99, "a panic message and an instrumented panic call of the same kind that ran", None),
    rule("rust-panic-call", "rust_panic", 0.7, "an instrumented panic call ran and the process died", None),
    rule("assertion", "assertion_failure", 0.95, "a C assertion failed and the process aborted", None),
    rule("deadlock-cycle", "deadlock", 0.95, "the hung threads wait for each other's locks in a cycle", None),
    rule("deadlock-lock-waits", "deadlock", 0.6, "the hung program's threads all sleep, some on locks whose owner is not recorded", Some("thread")),
    rule("hang-lock-held", "hang", 0.8, "the hung program's threads wait for locks that threads outside any cycle hold and never release", None),
    rule("livelock", "hang", 0.7, "the hung program's threads use CPU but reach no new code", None),
    rule("hang-blocked", "hang", 0.6, "the hung program's threads all sleep, none on a lock", None),
    rule("timeout-under-stress", "timeout_under_stress", 0.75, "the program outlived its time limit while stressors ran", None),
    rule("oom-leak", "oom", 0.9, "the OOM killer ended the program after memory grew steadily", None),
    rule("oom-spike", "oom", 0.85, "the OOM killer ended the program after memory jumped", None),
    rule("oom", "oom", 0.7, "the OOM killer ended the program", None),
    rule("allocation-failure", "oom", 0.8, "an allocation failed and the program aborted", None),
    rule("injected-allocation-failure", "resource_exhaustion", 0.95, "an allocation the attack failed on purpose ended the program", None),
    rule("exhausted", "resource_exhaustion", 0.85, "the program reported a resource exhausted and failed", None),
    rule("injected-io-failure", "resource_exhaustion", 0.95, "an I/O error the attack injected ended the program", None),
    rule("budget-overrun", "budget_overrun", 0.95, "a region outlived its dwell budget and the kernel side acted", None),
    rule("crash-signal", "crash", 0.3, "the process died by a signal nothing else explains", None),
    rule("error-exit", "error_exit", 0.2, "the process exited with a non-zero status", None),
];

/// The rule named `name` (every name the program fires is in [`RULES`]; a
/// test checks it).
pub fn rule_named(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name == name)
}

/// Signals that end a process as a crash.
fn is_fault_signal(sig: i32) -> bool {
    matches!(sig, libc::SIGSEGV | libc::SIGBUS)
}

/// The first page: an address there is a null pointer plus a small offset.
pub const NULL_PAGE: u64 = 4096;

/// A fatal signal's name, as the subclass of `crash`.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// The program (in a module of its own: ascent's expansion of nullary
/// relations leaves unused bindings).
#[allow(unused_variables)]
mod program {
    use super::*;
    use ascent::ascent;

    ascent! {
        pub struct Program;

        // ---- facts (the first column is the fact's id) ----
        relation signal(FactId, i32);
        // The first fatal signal the runtime caught, when the process died by another.
        relation fatal_signal(FactId, i32);
        relation exit_code(FactId, i32);
        relation fault_addr(FactId, u64);
        // A Rust panic message, by kind (`unwrap`, `expect`, `index`, ...).
        relation panic_message(FactId, &'static str);
        // An instrumented panic call that ran: site, kind.
        relation panic_call(FactId, u32, &'static str);
        relation stack_overflow_message(FactId);
        // A sanitizer report, by kind (`heap-use-after-free`, ...).
        relation sanitizer(FactId, &'static str);
        // A glibc heap abort: `double_free`, `corruption`, `invalid_pointer`.
        relation heap_error(FactId, &'static str);
        relation alloc_failure(FactId);
        relation assertion(FactId);
        // A resource the program said it ran out of: `fds`, `disk`, `memory`, `threads`.
        relation exhausted(FactId, &'static str);
        // A function on a call-graph cycle that ran very often: its entry site.
        relation recursion(FactId, u32);
        // cargo-panic stopped the program as hung: `quiet` or `timeout`.
        relation hang(FactId, &'static str);
        // A thread asleep in a lock site: tid, site, futex address.
        relation lock_wait(FactId, u32, u32, u64);
        // The owner of the lock at an address: address, tid.
        relation lock_owner(FactId, u64, u32);
        // A thread that used CPU during the hang window.
        relation spinning(FactId, u32);
        relation oom_kill(FactId);
        // Resident memory's trend: `leak` or `spike`.
        relation memory_trend(FactId, &'static str);
        // An allocation site whose count kept growing.
        relation alloc_growing(FactId, u32);
        relation budget_kill(FactId, u32);
        relation stressed(FactId);
        // A fault the attack injected: `alloc` or an errno name.
        relation fault_injected(FactId, &'static str);
        // The region the thread that took the fatal signal was in: its site.
        relation faulting_region(FactId, u32);
        // The fault hit the stack's guard region (just below the stack pointer).
        relation stack_guard(FactId);

        // ---- derived ----
        relation died_by_fault(FactId, i32);
        relation failed(FactId);
        relation waits_for(u32, u32, Why);
        relation reach(u32, u32);
        relation cycle_edge(u32, u32, Why);
        relation owned(u64);
        relation some_spinning();
        relation some_lock_wait();
        relation some_lock_cycle();
        relation some_sanitizer();
        relation some_panic_message();
        relation explained_segv();
        // Where a crash happened, as support to add: the faulting thread's
        // region when it is known, else nothing.
        relation crash_site(Vec<Why>);
        relation some_faulting_region();

        // A conclusion: rule, subclass ("" when the class has none), support.
        relation fired(&'static str, &'static str, Vec<Why>);

        died_by_fault(s, sig) <-- signal(s, sig), if is_fault_signal(*sig);
        died_by_fault(s, sig) <-- fatal_signal(s, sig), if is_fault_signal(*sig);
        failed(s) <-- signal(s, _);
        failed(c) <-- exit_code(c, code), if *code != 0;

        some_faulting_region() <-- faulting_region(_, _);
        crash_site(vec![f(t)]) <-- faulting_region(t, _);
        crash_site(vec![]) <-- !some_faulting_region();

        some_sanitizer() <-- sanitizer(_, _);
        some_panic_message() <-- panic_message(_, _);

        // Sanitizer reports name the class directly.
        fired("sanitizer-use-after-free", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "heap-use-after-free";
        fired("sanitizer-double-free", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "double-free";
        fired("sanitizer-heap-overflow", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "heap-buffer-overflow";
        fired("sanitizer-stack-overflow", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "stack-overflow";
        fired("sanitizer-null", "", vec![f(s), f(a)]) <--
            sanitizer(s, k), if *k == "segv", fault_addr(a, addr), if *addr < NULL_PAGE;
        fired("sanitizer-leak", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "leak";
        fired("sanitizer-null", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "null-pointer-use";
        fired("sanitizer-data-race", "", vec![f(s)]) <-- sanitizer(s, k), if k.starts_with("data-race");
        fired("sanitizer-lock-order", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "lock-order-inversion";
        fired("sanitizer-uninitialized", "", vec![f(s)]) <-- sanitizer(s, k), if *k == "use-of-uninitialized-value";
        fired("sanitizer-undefined", k, vec![f(s)]) <-- sanitizer(s, k), if is_ubsan_check(k);
        fired("sanitizer-other", k, vec![f(s)]) <-- sanitizer(s, k), if !is_classified_sanitizer_kind(k);

        // glibc's allocator checks.
        fired("glibc-double-free", "", with(vec![f(h), f(s)], w)) <--
            crash_site(w), heap_error(h, k), if *k == "double_free", signal(s, sig), if *sig == libc::SIGABRT, !some_sanitizer();
        fired("glibc-heap-corruption", "", with(vec![f(h), f(s)], w)) <--
            crash_site(w), heap_error(h, k), if *k == "corruption", signal(s, sig), if *sig == libc::SIGABRT, !some_sanitizer();
        fired("glibc-invalid-free", "", with(vec![f(h), f(s)], w)) <--
            crash_site(w), heap_error(h, k), if *k == "invalid_pointer", signal(s, sig), if *sig == libc::SIGABRT, !some_sanitizer();

        // Faults on addresses.
        fired("null-dereference", "", with(vec![f(s), f(a)], w)) <--
            crash_site(w), died_by_fault(s, _), fault_addr(a, addr), if *addr < NULL_PAGE, !some_sanitizer();
        fired("rust-stack-overflow", "", vec![f(m)]) <-- stack_overflow_message(m);
        fired("rust-stack-overflow", "", vec![f(m), f(r)]) <-- stack_overflow_message(m), recursion(r, _);
        fired("recursion-overflow", "", vec![f(s), f(r)]) <--
            died_by_fault(s, _), recursion(r, _), !some_sanitizer();
        explained_segv() <-- died_by_fault(_, _), fault_addr(_, addr), if *addr < NULL_PAGE;
        explained_segv() <-- died_by_fault(_, _), recursion(_, _);
        explained_segv() <-- stack_guard(_);
        fired("stack-guard", "", with(vec![f(s), f(g)], w)) <--
            crash_site(w), died_by_fault(s, _), stack_guard(g), !some_sanitizer();
        fired("stack-guard-recursion", "", vec![f(s), f(g), f(r)]) <--
            died_by_fault(s, _), stack_guard(g), recursion(r, _), !some_sanitizer();
        explained_segv() <-- stack_overflow_message(_);
        explained_segv() <-- some_sanitizer();
        fired("wild-access", "", with(vec![f(s), f(a)], w)) <--
            crash_site(w), died_by_fault(s, _), fault_addr(a, _), !explained_segv();

        // Rust panics: the message says which kind; the instrumented call of the
        // same kind that ran names the site.
        fired("rust-panic", k, vec![f(m)]) <-- panic_message(m, k);
        fired("rust-panic-at-site", k, vec![f(m), f(c)]) <--
            panic_message(m, k), panic_call(c, _, kc), if kinds_agree(k, kc);
        fired("rust-panic-call", k, vec![f(c), f(e)]) <--
            panic_call(c, _, k), if is_rust_panic_kind(k), failed(e), !some_panic_message(), !some_sanitizer();
        fired("assertion", "", with(vec![f(a), f(s)], w)) <-- crash_site(w), assertion(a), signal(s, sig), if *sig == libc::SIGABRT;

        // Hangs. A thread waits for another when it sleeps on a lock the other owns.
        waits_for(t, o, Why::Derived("waits-for", vec![f(w), f(ow)])) <--
            hang(_, _), lock_wait(w, t, _, addr), lock_owner(ow, addr2, o), if addr == addr2;
        reach(a, b) <-- waits_for(a, b, _);
        reach(a, c) <-- waits_for(a, b, _), reach(b, c);
        cycle_edge(a, b, w) <-- waits_for(a, b, w), reach(b, a);
        some_lock_cycle() <-- cycle_edge(_, _, _);
        some_spinning() <-- spinning(_, _);
        some_lock_wait() <-- lock_wait(_, _, _, _);

        fired("deadlock-cycle", "", vec![f(h), w.clone()]) <-- hang(h, _), cycle_edge(_, _, w);
        owned(addr) <-- lock_owner(_, addr, _);
        fired("deadlock-lock-waits", "", vec![f(h), f(w)]) <--
            hang(h, _), lock_wait(w, _, _, addr), !owned(addr), !some_lock_cycle(), !some_spinning();
        fired("hang-lock-held", "lock", vec![f(h), w.clone()]) <--
            hang(h, _), waits_for(_, _, w), !some_lock_cycle();
        fired("livelock", "", vec![f(h), f(s)]) <-- hang(h, _), spinning(s, _), !some_lock_cycle();
        fired("hang-blocked", "", vec![f(h)]) <--
            hang(h, _), !some_spinning(), !some_lock_wait(), !some_lock_cycle();
        fired("timeout-under-stress", "", vec![f(h), f(s)]) <--
            hang(h, r), if *r == "timeout", stressed(s), !some_lock_cycle();

        // Memory.
        fired("oom-leak", "leak", vec![f(o), f(t), f(g)]) <--
            oom_kill(o), memory_trend(t, k), if *k == "leak", alloc_growing(g, _);
        fired("oom-leak", "leak", vec![f(o), f(t)]) <-- oom_kill(o), memory_trend(t, k), if *k == "leak";
        fired("oom-spike", "spike", vec![f(o), f(t)]) <-- oom_kill(o), memory_trend(t, k), if *k == "spike";
        fired("oom", "", vec![f(o)]) <-- oom_kill(o);
        fired("allocation-failure", "", with(vec![f(a), f(e)], w)) <--
            crash_site(w), alloc_failure(a), failed(e), !fault_injected(_, "alloc");
        fired("injected-allocation-failure", "memory", vec![f(a), f(i), f(e)]) <--
            alloc_failure(a), fault_injected(i, w), if *w == "alloc", failed(e);
        fired("injected-allocation-failure", "memory", vec![f(i), f(e)]) <--
            fault_injected(i, w), if *w == "alloc", failed(e), !some_sanitizer(), !some_panic_message(), !alloc_failure(_);

        // Other resources.
        fired("exhausted", what, vec![f(x), f(e)]) <-- exhausted(x, what), failed(e);
        fired("injected-io-failure", "disk", vec![f(x), f(i), f(e)]) <--
            exhausted(x, what), if *what == "disk", fault_injected(i, w), if *w != "alloc", failed(e);

        fired("budget-overrun", "", vec![f(b)]) <-- budget_kill(b, _);

        // Fallbacks.
        fired("crash-signal", signal_name(*sig), with(vec![f(s)], w)) <-- crash_site(w), signal(s, sig);
        fired("error-exit", "", vec![f(c)]) <-- exit_code(c, code), if *code != 0;
    }
}
pub use program::Program;

/// UBSan's checks (the null-pointer one is a null dereference).
fn is_ubsan_check(kind: &str) -> bool {
    super::facts::UBSAN_CHECKS.contains(&kind)
}

/// Sanitizer kinds a rule of their own classifies.
fn is_classified_sanitizer_kind(kind: &str) -> bool {
    is_ubsan_check(kind)
        || kind.starts_with("data-race")
        || [
            "heap-use-after-free",
            "double-free",
            "heap-buffer-overflow",
            "stack-overflow",
            "leak",
            "segv",
            "null-pointer-use",
            "lock-order-inversion",
            "use-of-uninitialized-value",
        ]
        .contains(&kind)
}

/// Kinds of Rust panic calls (the others are C's `abort`, `assert`, ...).
pub fn is_rust_panic_kind(kind: &str) -> bool {
    matches!(
        kind,
        "unwrap"
            | "expect"
            | "result_unwrap"
            | "index"
            | "overflow"
            | "divide_by_zero"
            | "explicit"
    )
}

/// Whether a panic message's kind and a panic call's kind tell the same
/// story (`Result::unwrap` and `Result::expect` share one call).
fn kinds_agree(message: &str, call: &str) -> bool {
    message == call || (call == "result_unwrap" && matches!(message, "unwrap" | "expect"))
}
