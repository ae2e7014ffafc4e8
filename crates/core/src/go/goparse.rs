//! Value syntaxes of the Go world, parsed exactly as vault-k8s parses its
//! annotations: `strconv.ParseBool`, `strconv.ParseInt`, `time.ParseDuration`
//! and Kubernetes `resource.ParseQuantity`.

use std::time::Duration;

/// `strconv.ParseBool`: exactly these spellings, nothing else (no "yes",
/// no surrounding spaces).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean (accepted: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)"
        )),
    }
}

/// `parseutil.ParseBool` (go-secure-stdlib), which vault-k8s uses for its
/// boolean annotations: [`parse_bool`] plus the empty string, which is false.
pub fn parse_bool_or_empty(s: &str) -> Result<bool, String> {
    if s.is_empty() {
        Ok(false)
    } else {
        parse_bool(s)
    }
}

/// `strconv.ParseUint(s, 10, 64)`: decimal digits only (no sign, no spaces).
pub fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a non-negative decimal integer"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("{s:?} is out of range for a 64-bit integer"))
}

/// `strconv.ParseFloat(s, 64)` for plain decimal notation (`0.75`, `1`,
/// `1e-1`); no hex floats, no `Inf`/`NaN`.
pub fn parse_float(s: &str) -> Result<f64, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    match s.parse::<f64>() {
        Ok(f) if ok && f.is_finite() => Ok(f),
        _ => Err(format!("{s:?} is not a number")),
    }
}

/// `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, no spaces.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a decimal integer"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("{s:?} is out of range for a 64-bit integer"))
}

/// `time.ParseDuration`, restricted to non-negative durations: `300ms`,
/// `1.5h`, `2h45m`, `0`. Units: ns, us, µs, μs, ms, s, m, h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration (examples: 30s, 5m, 1h30m, 250ms)");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(format!("{s:?} is a negative duration"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "{s:?}: missing unit in duration (ns, us, ms, s, m, h)"
                ))
            }
            other => return Err(format!("{s:?}: unknown unit {other:?} in duration")),
        };
        total_nanos += value * scale;
        rest = &rest[unit_len..];
    }
    if total_nanos > (i64::MAX as f64) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Kubernetes `resource.ParseQuantity` syntax: a signed decimal number with an
/// optional binary (Ki..Ei), decimal (n, u, m, k, M, G, T, P, E) or exponent
/// suffix. Returns the canonical input for use in a container spec.
pub fn parse_quantity(s: &str) -> Result<String, String> {
    let err = || format!("{s:?} is not a Kubernetes quantity (examples: 250m, 0.5, 64Mi, 1Gi)");
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(num_len);
    let dots = num.matches('.').count();
    if num.is_empty() || num == "." || dots > 1 {
        return Err(err());
    }
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exp => {
            let e = exp.strip_prefix(['e', 'E']);
            match e {
                Some(e) => {
                    let d = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
                }
                None => false,
            }
        }
    };
    if !suffix_ok {
        return Err(err());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["yes", "no", "tRUE", "", " true", "on", "2", "y"] {
            assert!(parse_bool(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn durations_follow_go() {
        let ok = [
            ("0", 0),
            ("1s", 1_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            ("300ms", 300_000_000),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("10ns", 10),
            ("+5m", 300_000_000_000),
            (".5s", 500_000_000),
        ];
        for (s, nanos) in ok {
            assert_eq!(parse_duration(s).unwrap().as_nanos(), nanos, "{s}");
        }
        for bad in ["", "5", "1d", "-1s", "s", "1.2.3s", "1 s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn parseutil_bools_take_the_empty_string_as_false() {
        assert_eq!(parse_bool_or_empty(""), Ok(false));
        assert_eq!(parse_bool_or_empty("True"), Ok(true));
        for bad in ["tRuE", "fAlSe", "secure", " ", "yes"] {
            assert!(parse_bool_or_empty(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uints_and_floats_follow_go() {
        assert_eq!(parse_uint("5"), Ok(5));
        assert_eq!(parse_uint("01"), Ok(1));
        for bad in ["", "-1", "+1", "foobar", "5s", " 5"] {
            assert!(parse_uint(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_float("0.75"), Ok(0.75));
        assert_eq!(parse_float("1e-1"), Ok(0.1));
        for bad in ["", "one-third", "NaN", "inf", "0x1p-2", " 1"] {
            assert!(parse_float(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ints_follow_go() {
        assert_eq!(parse_int("1000"), Ok(1000));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("+7"), Ok(7));
        for bad in ["", "1.0", "1e3", " 1", "0x10", "99999999999999999999"] {
            assert!(parse_int(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn quantities_follow_kubernetes() {
        for ok in [
            "250m", "0.5", "1", "64Mi", "1Gi", "1e3", "1E-2", "500k", "+1", ".5",
        ] {
            assert!(parse_quantity(ok).is_ok(), "{ok:?} must be accepted");
        }
        for bad in ["", "abc", "1GB", "1 Gi", "Mi", "1.2.3", "1e", "--1", "1mi"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
