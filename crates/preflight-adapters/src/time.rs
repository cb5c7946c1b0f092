//! Minimal RFC 3339 timestamp parsing, enough to turn Azure's `createdDateTime` /
//! `lastUpdatedDateTime` into the analyze operation's duration without a date-time crate.

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let int = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (int(0..4)?, int(5..7)?, int(8..10)?);
    let (h, mi, se) = (int(11..13)?, int(14..16)?, int(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = &rest[1..];
            if t.len() != 5 || t.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = t[..2].parse().ok()?;
            let om: i64 = t[3..].parse().ok()?;
            sign * (oh * 60 + om)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3_600 + mi * 60 + se - offset_min * 60;
    Some((secs as f64 + frac) * 1_000.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_azure_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0.0));
        let a = parse_rfc3339_ms("2020-11-17T18:48:48Z").unwrap();
        let b = parse_rfc3339_ms("2020-11-17T18:48:53Z").unwrap();
        assert_eq!(b - a, 5_000.0);
        assert_eq!(a, 1_605_638_928_000.0);
        let c = parse_rfc3339_ms("2020-11-17T19:48:53.250+01:00").unwrap();
        assert_eq!(c - b, 250.0);
        for bad in [
            "",
            "2020-13-01T00:00:00Z",
            "2020-11-17",
            "2020-11-17T18:48:48X",
            "2020-11-17T18:48:48.",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
