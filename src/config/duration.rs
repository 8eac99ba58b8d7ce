//! Durations as users write them: Go duration strings (`30s`, `1m30s`, `500ms`, `1.5h`)
//! or a bare integer of milliseconds. Parsing only; no defaults live here.
//!
//! One key counts whole seconds when it is a bare number: the Go router's
//! `rate_limit.window_size` (an `int` of seconds there), read as [`ConfigSeconds`] so an
//! existing file's `window_size: 60` keeps meaning a minute.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configuration duration (serde: string or integer milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// Parses a Go duration string (`"300ms"`, `"1h2m3.5s"`); a bare number is milliseconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "'{text}' is not a duration (use e.g. 500ms, 30s, 5m, 1h)"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("'{text}' is not a duration (use e.g. 500ms, 30s, 5m, 1h)"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "'{text}' needs a unit (ms, s, m, h), or give plain milliseconds"
                ))
            }
            u => {
                return Err(format!(
                    "'{text}' has an unknown unit '{u}' (use ns, us, ms, s, m, h)"
                ))
            }
        };
        total += value * secs;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("'{text}' is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats like Go does for the common cases (`30s`, `1m30s`, `500ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Ms(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Ms(ms) => Ok(ConfigDuration(Duration::from_millis(ms))),
            Either::Text(t) => parse(&t)
                .map(ConfigDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

/// A duration whose bare number counts seconds (`60`, `"60"`); a string with a unit is a
/// Go duration (`1m`, `500ms`) as everywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSeconds(pub Duration);

/// Like [`parse`], but a bare number is seconds.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse(text),
    }
}

impl<'de> Deserialize<'de> for ConfigSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Secs(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Secs(secs) => Ok(ConfigSeconds(Duration::from_secs(secs))),
            Either::Text(t) => parse_seconds(&t)
                .map(ConfigSeconds)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ConfigSeconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations_and_milliseconds() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250"), Ok(Duration::from_millis(250)));
        assert!(parse("10").is_ok());
        assert!(parse("5 minutes").unwrap_err().contains("unknown unit"));
        assert!(parse("1.5").unwrap_err().contains("needs a unit"));
        assert!(parse("s").is_err());
    }

    #[test]
    fn a_bare_number_of_seconds_is_seconds() {
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("soon").is_err());
        let read = |y: &str| serde_yaml_ng::from_str::<ConfigSeconds>(y).map(|s| s.0);
        assert_eq!(read("60").ok(), Some(Duration::from_secs(60)));
        assert_eq!(read("\"2s\"").ok(), Some(Duration::from_secs(2)));
        assert!(read("-1").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["30s", "5m", "1h30m", "500ms", "1m5s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
