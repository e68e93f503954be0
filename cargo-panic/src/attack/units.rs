//! Quantities with units, as timelines and conditions write them: `250ms`,
//! `1.5 cores`, `300MiB`, `1MiB/s`, `2%`, `100/s`. Pure.
//!
//! Every quantity is kept in one base unit per dimension: nanoseconds,
//! bytes, bytes per second, cores, a fraction (`2%` is 0.02), a count, or a
//! rate of events per second. A bare number has no dimension: the place that
//! reads it says which one it means (and says so in its error if it cannot).

use std::fmt;

/// What a quantity measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// Nanoseconds.
    Duration,
    /// Bytes.
    Bytes,
    /// Bytes per second.
    ByteRate,
    /// CPU cores (1.0 = one core busy all the time).
    Cores,
    /// A fraction: 1.0 is 100%.
    Fraction,
    /// A plain number of things (threads, pids, connections, crashes).
    Count,
    /// Events per second (`100/s`).
    EventRate,
}

impl Dim {
    /// How a user writes a value of this dimension, for hints.
    pub fn example(self) -> &'static str {
        match self {
            Dim::Duration => "a duration such as 250ms, 2s or 1m",
            Dim::Bytes => "a size such as 300MiB or 1GiB",
            Dim::ByteRate => "a rate such as 10MiB/s",
            Dim::Cores => "a number of cores such as 1.5 cores",
            Dim::Fraction => "a fraction such as 0.8 or 80%",
            Dim::Count => "a plain number such as 3",
            Dim::EventRate => "a rate such as 100/s",
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dim::Duration => "duration",
            Dim::Bytes => "size",
            Dim::ByteRate => "byte rate",
            Dim::Cores => "number of cores",
            Dim::Fraction => "fraction",
            Dim::Count => "count",
            Dim::EventRate => "event rate",
        })
    }
}

/// A number and, when it was written with a unit, its dimension.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantity {
    pub value: f64,
    /// None for a bare number.
    pub dim: Option<Dim>,
}

impl Quantity {
    /// This quantity as a value of `want`: its own dimension must be `want`,
    /// or it is a bare number, which counts in `want`'s base unit, except
    /// that a bare number is not a duration, size or byte rate (too easy to
    /// get wrong: is `20` milliseconds or seconds?). The error has no
    /// subject: the caller names the value ("'20' has no unit; ...").
    pub fn as_dim(self, want: Dim) -> Result<f64, String> {
        match self.dim {
            Some(d) if d == want => Ok(self.value),
            None if matches!(
                want,
                Dim::Cores | Dim::Fraction | Dim::Count | Dim::EventRate
            ) =>
            {
                Ok(self.value)
            }
            None => Err(format!("has no unit; write {}", want.example())),
            Some(d) => Err(format!("is a {d}, not a {want}; write {}", want.example())),
        }
    }
}

/// Parses a quantity: a decimal number, optional spaces, an optional unit.
pub fn parse(text: &str) -> Result<Quantity, String> {
    let s = text.trim();
    let end = number_end(s);
    let (num, unit) = s.split_at(end);
    if num.is_empty() {
        return Err(format!("'{text}' is not a number"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a number"))?;
    if !value.is_finite() {
        return Err(format!("'{text}' is not a finite number"));
    }
    let unit = unit.trim();
    let (scale, dim) = match unit {
        "" => return Ok(Quantity { value, dim: None }),
        "ns" => (1.0, Dim::Duration),
        "us" | "µs" => (1e3, Dim::Duration),
        "ms" => (1e6, Dim::Duration),
        "s" | "sec" => (1e9, Dim::Duration),
        "m" | "min" => (60e9, Dim::Duration),
        "h" => (3600e9, Dim::Duration),
        "%" => (0.01, Dim::Fraction),
        "core" | "cores" | "cpu" | "cpus" => (1.0, Dim::Cores),
        "/s" => (1.0, Dim::EventRate),
        "/m" | "/min" => (1.0 / 60.0, Dim::EventRate),
        u => {
            if let Some(per) = u.strip_suffix("/s") {
                (
                    bytes_scale(per).ok_or_else(|| bad_unit(text, u))?,
                    Dim::ByteRate,
                )
            } else if let Some(b) = bytes_scale(u) {
                (b, Dim::Bytes)
            } else {
                return Err(bad_unit(text, u));
            }
        }
    };
    Ok(Quantity {
        value: value * scale,
        dim: Some(dim),
    })
}

/// The length of the number at the start of `s`: `[+-]digits[.digits][e[+-]digits]`.
fn number_end(s: &str) -> usize {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    i = digits(i);
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let j = i + 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(j);
        }
    }
    i
}

fn bad_unit(text: &str, unit: &str) -> String {
    format!(
        "'{text}': unknown unit '{unit}' (units: ns us ms s m h, B KiB MiB GiB KB MB GB, \
         <size>/s, cores, %, /s)"
    )
}

fn bytes_scale(u: &str) -> Option<f64> {
    Some(match u {
        "B" | "b" => 1.0,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    })
}

/// A quantity of `dim` from text, with the error saying what was expected.
pub fn parse_as(text: &str, dim: Dim) -> Result<f64, String> {
    parse(text)?
        .as_dim(dim)
        .map_err(|e| format!("'{}' {e}", text.trim()))
}

/// A duration in whole nanoseconds.
pub fn parse_duration_ns(text: &str) -> Result<u64, String> {
    let v = parse_as(text, Dim::Duration)?;
    if v < 0.0 || v >= u64::MAX as f64 {
        return Err(format!("'{text}' is not a duration of zero or more"));
    }
    Ok(v.round() as u64)
}

/// A number without trailing zeros (for messages and schedules).
pub fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A value of `dim` the way a user would write it.
pub fn fmt(v: f64, dim: Dim) -> String {
    match dim {
        Dim::Duration => fmt_duration(v),
        Dim::Bytes => fmt_bytes(v),
        Dim::ByteRate => format!("{}/s", fmt_bytes(v)),
        Dim::Cores => format!("{} cores", fmt_num(v)),
        Dim::Fraction => format!("{}%", fmt_num(v * 100.0)),
        Dim::Count => fmt_num(v),
        Dim::EventRate => format!("{}/s", fmt_num(v)),
    }
}

/// Nanoseconds in the largest unit that keeps it readable.
pub fn fmt_duration(ns: f64) -> String {
    if ns == 0.0 {
        return "0s".into();
    }
    let (scale, unit) = match ns.abs() {
        a if a >= 60e9 && (ns / 60e9).fract() == 0.0 => (60e9, "m"),
        a if a >= 1e9 => (1e9, "s"),
        a if a >= 1e6 => (1e6, "ms"),
        a if a >= 1e3 => (1e3, "us"),
        _ => (1.0, "ns"),
    };
    format!("{}{unit}", fmt_num(ns / scale))
}

/// A time on the timeline, in seconds with millisecond precision (`3.001s`):
/// for progress lines and summaries, where `381ns` would be noise.
pub fn fmt_secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// Bytes in binary units.
pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [(&str, f64); 3] = [
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("KiB", 1024.0),
    ];
    for (u, s) in UNITS {
        if b.abs() >= s {
            return format!("{}{u}", fmt_num(b / s));
        }
    }
    format!("{}B", fmt_num(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases: &[(&str, f64, Option<Dim>)] = &[
            ("250ms", 250e6, Some(Dim::Duration)),
            ("1.5 cores", 1.5, Some(Dim::Cores)),
            ("2 cpus", 2.0, Some(Dim::Cores)),
            ("300MiB", 300.0 * 1048576.0, Some(Dim::Bytes)),
            ("1MiB/s", 1048576.0, Some(Dim::ByteRate)),
            ("10 MB/s", 1e7, Some(Dim::ByteRate)),
            ("2%", 0.02, Some(Dim::Fraction)),
            ("100/s", 100.0, Some(Dim::EventRate)),
            ("1m", 60e9, Some(Dim::Duration)),
            ("3", 3.0, None),
            ("-1.5", -1.5, None),
            ("1e3", 1000.0, None),
            ("2.5e-3 s", 2.5e6, Some(Dim::Duration)),
        ];
        for &(text, v, dim) in cases {
            let q = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                (q.value - v).abs() < 1e-6 * v.abs().max(1.0),
                "{text}: {q:?}"
            );
            assert_eq!(q.dim, dim, "{text}");
        }
    }

    #[test]
    fn rejects_with_hints() {
        assert!(parse("fast").unwrap_err().contains("not a number"));
        assert!(
            parse("3 parsecs")
                .unwrap_err()
                .contains("unknown unit 'parsecs'")
        );
        let e = parse_as("20", Dim::Duration).unwrap_err();
        assert!(e.contains("no unit") && e.contains("250ms"), "{e}");
        let e = parse_as("20MiB", Dim::Duration).unwrap_err();
        assert!(e.contains("'20MiB' is a size, not a duration"), "{e}");
        assert_eq!(parse_as("0.8", Dim::Fraction), Ok(0.8));
        assert!(parse_duration_ns("-1s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for (v, dim) in [
            (250e6, Dim::Duration),
            (60e9, Dim::Duration),
            (300.0 * 1048576.0, Dim::Bytes),
            (1.5, Dim::Cores),
            (0.02, Dim::Fraction),
            (1048576.0, Dim::ByteRate),
        ] {
            let text = fmt(v, dim);
            let back = parse(&text).unwrap();
            assert!((back.value - v).abs() < 1e-9 * v, "{text}");
            assert_eq!(back.dim, Some(dim), "{text}");
        }
    }
}
