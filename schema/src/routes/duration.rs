//! Gateway API's duration format (GEP-2257): one to four `<number><unit>`
//! parts, numbers of at most five digits, units `h`, `m`, `s`, `ms`
//! (`1h`, `1m30s`, `500ms`). Written by hand: it is a dozen lines, and the
//! general-purpose duration crates accept forms Gateway API does not.

use std::time::Duration;

/// Parses a duration; `None` when it is not in Gateway API's format.
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            let unit = match rest.as_bytes().first()? {
                b'h' => Duration::from_secs(3600),
                b'm' => Duration::from_secs(60),
                b's' => Duration::from_secs(1),
                _ => return None,
            };
            (unit, 1)
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
    }
    (1..=4).contains(&parts).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_examples() {
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1h2m3s4ms"), Some(Duration::from_millis(3_723_004)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 seconds",
            "-1s",
            "123456s",
            "1h1h1h1h1h",
            "1d",
            "1S",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
