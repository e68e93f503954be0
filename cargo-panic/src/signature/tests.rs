//! The rules as a pure core: every `tests/signatures/*.yaml` case gives
//! sites and evidence by hand and says what the verdict must be.

use serde::Deserialize;

use super::evidence::Evidence;
use super::facts::SiteInfo;
use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    sites: Vec<SiteInfo>,
    evidence: Evidence,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `null`: no signature at all (nothing failed).
    class: Option<String>,
    #[serde(default)]
    subclass: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    /// The sites the signature names (indices), in any order.
    #[serde(default)]
    sites: Option<Vec<u32>>,
    /// Classes among the alternatives.
    #[serde(default)]
    alternatives: Option<Vec<String>>,
    #[serde(default)]
    confirm: Option<bool>,
    /// Substrings the rendered explanation must contain.
    #[serde(default)]
    says: Vec<String>,
}

fn cases() -> Vec<(String, Case)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/signatures");
    let mut out: Vec<(String, Case)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let mut case: Case =
                serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
            for (i, s) in case.sites.iter_mut().enumerate() {
                s.index = i as u32;
            }
            (name, case)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn data_driven_cases() {
    let cases = cases();
    assert!(cases.len() >= 20, "only {} cases found", cases.len());
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let got = classify(&case.evidence, &case.sites);
        let e = &case.expect;
        let Some(sig) = got else {
            if e.class.is_some() {
                failures.push(format!("{name}: no signature, expected {:?}", e.class));
            }
            continue;
        };
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                failures.push(format!("{name}: {what}: {detail}\n{}", sig.render()));
            }
        };
        check(
            "class",
            e.class.as_deref() == Some(sig.class.as_str()),
            format!("{} != {:?}", sig.class, e.class),
        );
        if let Some(sub) = &e.subclass {
            check(
                "subclass",
                sig.subclass.as_ref() == Some(sub),
                format!("{:?} != {sub}", sig.subclass),
            );
        }
        if let Some(rule) = &e.rule {
            check("rule", &sig.rule == rule, format!("{} != {rule}", sig.rule));
        }
        if let Some(sites) = &e.sites {
            let mut got: Vec<u32> = sig.sites.iter().map(|s| s.index).collect();
            got.sort_unstable();
            let mut want = sites.clone();
            want.sort_unstable();
            check("sites", got == want, format!("{got:?} != {want:?}"));
        }
        if let Some(alts) = &e.alternatives {
            let got: Vec<&str> = sig.alternatives.iter().map(|a| a.class.as_str()).collect();
            check(
                "alternatives",
                got == alts.iter().map(String::as_str).collect::<Vec<_>>(),
                format!("{got:?} != {alts:?}"),
            );
        }
        if let Some(c) = e.confirm {
            check(
                "confirm",
                sig.confirm.is_some() == c,
                format!("{:?}", sig.confirm),
            );
        }
        let text = sig.render();
        for s in &e.says {
            check("says", text.contains(s.as_str()), format!("missing {s:?}"));
        }
        check(
            "confidence",
            (0.0..=1.0).contains(&sig.confidence),
            sig.confidence.to_string(),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every rule the program can fire is in the catalogue, once.
#[test]
fn catalogue_is_consistent() {
    let src = include_str!("rules.rs");
    let program = &src[src.find("ascent! {").unwrap()..];
    let mut fired = 0;
    for part in program.split("fired(\"").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            rules::rule_named(name).is_some(),
            "rule {name} is not in RULES"
        );
        fired += 1;
    }
    assert!(fired > 20);
    for (i, r) in rules::RULES.iter().enumerate() {
        assert!((0.0..=1.0).contains(&r.confidence), "{}", r.name);
        assert!(
            rules::RULES[..i].iter().all(|o| o.name != r.name),
            "{} twice",
            r.name
        );
        assert!(
            program.contains(&format!("fired(\"{}\"", r.name)),
            "{} never fires",
            r.name
        );
    }
}

fn unwrap_case() -> (Evidence, Vec<SiteInfo>) {
    let (_, case) = cases()
        .into_iter()
        .find(|(n, _)| n == "rust-unwrap.yaml")
        .expect("rust-unwrap.yaml");
    (case.evidence, case.sites)
}

/// The hash ignores what differs between runs of one bug and keeps what
/// tells bugs apart.
#[test]
fn hash_is_stable_and_discriminating() {
    let (e, sites) = unwrap_case();
    let a = classify(&e, &sites).unwrap();
    let mut e2 = e.clone();
    e2.exit.signal_tid = Some(4242);
    e2.stressors = vec!["cpu-hog".into()];
    e2.stderr_tail = vec!["other output".into()];
    e2.memory = vec![];
    let b = classify(&e2, &sites).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.class, b.class);
    let mut sites3 = sites.clone();
    for s in &mut sites3 {
        s.line += 10;
    }
    let mut e3 = e.clone();
    if let Some(p) = e3.stderr.rust_panic.as_mut() {
        p.line += 10;
    }
    let c = classify(&e3, &sites3).unwrap();
    assert_ne!(a.hash, c.hash, "another line is another bug");
    assert_eq!(a.hash.len(), 16);
}

#[test]
fn replay_scales_confidence() {
    let (e, sites) = unwrap_case();
    let s = classify(&e, &sites).unwrap();
    let base = s.confidence;
    let r = s.clone().with_replay(4, 2);
    assert!((r.confidence - base * 0.5).abs() < 1e-12);
    assert_eq!(r.replay, Some(Replay { runs: 4, same: 2 }));
    assert!(r.render().contains("2 of 4 runs"));
    assert_eq!(s.with_replay(3, 3).confidence, base);
}

#[test]
fn a_clean_exit_has_no_signature() {
    assert!(classify(&Evidence::default(), &[]).is_none());
}
