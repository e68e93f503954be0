//! The Coq proofs in `proofs/` (the perfect-elimination-ordering check and
//! projected dual ascent, see `proofs/README.md`) are checked on every test
//! run by `proofs/check.sh`: it compiles them with `coqc` and fails on
//! `Admitted`, on axioms, and on any assumption beyond the standard library's
//! reals. A missing `coqc` is a failure that says how to install it, never a
//! skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn proofs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proofs")
}

/// Runs `bash proofs/check.sh [dir]`.
fn check(dir: Option<&Path>) -> Output {
    let script = proofs_dir().join("check.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("failed to run bash {}: {e}", script.display()))
}

fn transcript(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A temporary directory holding one file `bad.v` with the given text.
fn dir_with(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    std::fs::write(dir.path().join("bad.v"), text).expect("failed to write bad.v");
    dir
}

#[test]
fn coq_proofs_check() {
    let out = check(None);
    assert!(
        out.status.success(),
        "proofs/check.sh failed (Coq 8.16: `apt-get install coq`, or `bash scripts/install-deps.sh`)\n{}",
        transcript(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("results checked"), "{}", transcript(&out));
}

#[test]
fn check_rejects_unfinished_proofs_and_axioms() {
    let cases = [
        ("Admitted", "Lemma x : 1 = 2.\nProof. Admitted.\n"),
        ("admit", "Lemma x : 1 = 2.\nProof. admit. Qed.\n"),
        ("Axiom", "Axiom x : 1 = 2.\n"),
        ("Parameter", "Parameter x : 1 = 2.\n"),
        ("Conjecture", "Conjecture x : 1 = 2.\n"),
        (
            "Hypothesis",
            "Section S.\nHypothesis h : 1 = 2.\nLemma x : 1 = 2.\nProof. exact h. Qed.\nEnd S.\n",
        ),
    ];
    for (word, text) in cases {
        let dir = dir_with(text);
        let out = check(Some(dir.path()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(word) && stderr.contains("forbidden"),
            "check.sh accepted or misreported a proof using {word}\n{}",
            transcript(&out)
        );
    }
}

#[test]
fn check_rejects_an_axiom_outside_the_reals() {
    // No forbidden word: only `Print Assumptions` sees the excluded middle.
    let dir = dir_with(
        "Require Import Classical.\n\
         Lemma em (P : Prop) : P \\/ ~ P.\n\
         Proof. apply classic. Qed.\n",
    );
    let out = check(Some(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Classical_Prop.classic"),
        "check.sh accepted or misreported a proof using Classical_Prop.classic \
         (Coq 8.16: `apt-get install coq`)\n{}",
        transcript(&out)
    );
}

#[test]
fn check_rejects_a_proof_that_does_not_compile() {
    let dir = dir_with("Lemma x : 1 = 2.\nProof. reflexivity. Qed.\n");
    let out = check(Some(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not compile"),
        "check.sh accepted or misreported a wrong proof (Coq 8.16: `apt-get install coq`)\n{}",
        transcript(&out)
    );
}

#[test]
fn check_rejects_a_directory_without_proofs() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let out = check(Some(dir.path()));
    assert!(!out.status.success(), "{}", transcript(&out));
}
