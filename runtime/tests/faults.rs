//! Fault injection in the runtime: a fault table written through
//! `panic_runtime::faults::Table` (cargo-panic's side) makes the runtime
//! fail exactly the calls its rules select, at the sites they name, and
//! count them; everything else passes through to the C library.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Harness, describe, run};
use panic_runtime::faults::{Mode, Rule, Table, What};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const EINTR: i32 = 4;
const ENOMEM: i32 = 12;

fn sites_of(exe: &Path) -> u64 {
    let out = run(Command::new(exe).arg("sites"));
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn rule(what: What, mode: Mode) -> Rule {
    Rule {
        what,
        mode,
        limit: None,
        seed: 7,
    }
}

fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "{}", describe(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn armed_rules_fail_the_selected_calls_and_count_them() {
    let h = Harness::new();
    let exe = h.build("faults", 8, 5);
    let table = Table::create(&h.path("table"), sites_of(&exe)).unwrap();
    table.arm(0, &rule(What::Alloc, Mode::Every(3)));
    table.set_site(2, Some(0));
    table.arm(1, &rule(What::Errno(ENOSPC), Mode::Nth(2)));
    table.set_site(3, Some(1));
    table.arm(
        2,
        &Rule {
            limit: Some(2),
            ..rule(What::Errno(EIO), Mode::Fraction(1.0))
        },
    );
    table.set_site(4, Some(2));
    table.arm(3, &rule(What::Errno(EINTR), Mode::Every(1)));
    table.set_site(5, Some(3));
    table.set_site(7, Some(3));
    table.arm(4, &rule(What::Errno(ENOSPC), Mode::Every(1)));
    table.set_site(6, Some(4));

    let out = run(Command::new(&exe).env("CARGO_PANIC_FAULTS", table.path()));
    let l = lines(&out);
    assert!(table.attached(), "the runtime mapped the table");
    // Every third ask fails; the allocator refuses the huge size the code
    // then passes, the way it refuses any request it cannot satisfy.
    assert_eq!(
        l[0],
        format!(
            "alloc 001001001001 malloc:null:{ENOMEM} calloc:null:{ENOMEM} realloc:null posix_memalign:{ENOMEM}"
        )
    );
    // The second write in the region fails; outside the region none does.
    assert_eq!(l[1], format!("write ok {ENOSPC} ok ok ok ok ok ok"));
    // Every read is chosen, but the limit stops after two.
    assert_eq!(l[2], format!("read {EIO} {EIO} ok ok"));
    // nanosleep leaves the whole request to sleep; clock_nanosleep returns
    // the error number.
    assert_eq!(l[3], format!("sleep {EINTR} rem:1000000 {EINTR}"));
    // A failed stdio write marks the stream.
    assert_eq!(l[4], format!("stdio {ENOSPC} ferror:1 {ENOSPC}"));
    // fsync cannot be interrupted: the EINTR rule does not apply to it.
    assert_eq!(l[5], "fsync ok");

    let s = |slot| table.stats(slot);
    assert_eq!((s(0).calls, s(0).injected), (12, 4));
    assert_eq!((s(1).calls, s(1).injected), (6, 1));
    assert_eq!((s(2).calls, s(2).injected), (4, 2));
    assert_eq!((s(3).calls, s(3).injected), (2, 2), "fsync is not counted");
    assert_eq!((s(4).calls, s(4).injected), (2, 2));
    assert_eq!(
        [2, 3, 4, 5, 6, 7].map(|site| table.site_injected(site)),
        [4, 1, 2, 2, 2, 0]
    );
}

#[test]
fn without_armed_rules_every_call_goes_through() {
    let h = Harness::new();
    let exe = h.build("faults", 8, 5);
    let expect = [
        format!(
            "alloc 000000000000 malloc:null:{ENOMEM} calloc:null:{ENOMEM} realloc:null posix_memalign:{ENOMEM}"
        ),
        "write ok ok ok ok ok ok ok ok".to_string(),
        "read ok ok ok ok".to_string(),
        "sleep ok rem:0 ok".to_string(),
        "stdio ok ferror:0 ok".to_string(),
        "fsync ok".to_string(),
    ];
    // No table at all.
    assert_eq!(lines(&run(&mut Command::new(&exe))), expect);
    // A table whose rules were armed and disarmed again.
    let table = Table::create(&h.path("table"), sites_of(&exe)).unwrap();
    table.arm(0, &rule(What::Errno(ENOSPC), Mode::Every(1)));
    table.set_site(3, Some(0));
    table.set_site(3, None);
    table.disarm(0);
    let out = run(Command::new(&exe).env("CARGO_PANIC_FAULTS", table.path()));
    assert_eq!(lines(&out), expect);
    assert_eq!(table.stats(0).calls, 0);
}

#[test]
fn a_table_for_another_program_is_refused_in_one_line() {
    let h = Harness::new();
    let exe = h.build("faults", 8, 5);
    let table = Table::create(&h.path("table"), sites_of(&exe) + 1).unwrap();
    table.arm(0, &rule(What::Errno(ENOSPC), Mode::Every(1)));
    let out = run(Command::new(&exe).env("CARGO_PANIC_FAULTS", table.path()));
    assert!(
        lines(&out)[1].starts_with("write ok ok"),
        "{}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| l.contains("fault table")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("made for another build?"), "{err}");
    assert!(!table.attached());
}
