//! Sizes and durations as admins write them in the policy file.
//!
//! Sizes: `"15 MiB"` (15 × 1024 × 1024 bytes), `"15 MB"` (15,000,000 bytes), `"512 KiB"`,
//! `"2 GiB"`, `"100 B"`, or a plain byte count (`15728640`). Durations: `"30s"`,
//! `"250ms"`, `"5m"`, `"1h"`, `"30d"`, or a plain number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Splits `"15 MiB"` into `15.0` and `" MiB"` (the unit may be empty).
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    Some((number.parse().ok()?, unit))
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = number_and_unit(text).ok_or_else(|| {
            format!("invalid size {text:?}: expected a number and a unit such as \"15 MiB\"")
        })?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1024,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1024 * 1024,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1024 * 1024 * 1024,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {text:?}: use B, KB, KiB, MB, MiB, GB or GiB"
                ));
            }
        };
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("size {text:?} is out of range"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Human form for replies and logs: `15 MiB`, `1.5 MiB`, `700 KiB`, `12 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, size) in UNITS {
            if self.0 >= size {
                let value = self.0 as f64 / size as f64;
                return if (value - value.round()).abs() < 0.05 {
                    write!(f, "{} {unit}", value.round() as u64)
                } else {
                    write!(f, "{value:.1} {unit}")
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"15 MiB\" or a byte count")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A duration from the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub const fn secs(n: u64) -> Self {
        Seconds(Duration::from_secs(n))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = number_and_unit(text).ok_or_else(|| {
            format!("invalid duration {text:?}: expected e.g. \"30s\" or \"250ms\"")
        })?;
        let seconds = match unit.trim() {
            "ms" => number / 1000.0,
            "" | "s" => number,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {text:?}: use ms, s, m, h or d"
                ));
            }
        };
        if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
            return Err(format!("duration {text:?} is out of range"));
        }
        Ok(Seconds(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds::secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds::secs(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Seconds::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_differ() {
        assert_eq!(ByteSize::parse("15 MiB").unwrap().0, 15 * 1024 * 1024);
        assert_eq!(ByteSize::parse("15 MB").unwrap().0, 15_000_000);
        assert_eq!(ByteSize::parse("15mib").unwrap().0, 15 * 1024 * 1024);
        assert_eq!(ByteSize::parse("1.5 KiB").unwrap().0, 1536);
        assert_eq!(ByteSize::parse("123").unwrap().0, 123);
        assert!(ByteSize::parse("15 MiBs").is_err());
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn sizes_display_compactly() {
        assert_eq!(ByteSize::mib(15).to_string(), "15 MiB");
        assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
        assert_eq!(ByteSize(12).to_string(), "12 B");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(Seconds::parse("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(
            Seconds::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(Seconds::parse("5m").unwrap().0, Duration::from_secs(300));
        assert_eq!(
            Seconds::parse("30d").unwrap().0,
            Duration::from_secs(30 * 86400)
        );
        assert!(Seconds::parse("5 parsecs").is_err());
    }

    #[test]
    fn toml_accepts_strings_and_numbers() {
        #[derive(Deserialize)]
        struct T {
            a: ByteSize,
            b: ByteSize,
            c: Seconds,
        }
        let t: T = toml::from_str("a = \"2 MB\"\nb = 42\nc = \"2s\"").unwrap();
        assert_eq!((t.a.0, t.b.0, t.c.0.as_secs()), (2_000_000, 42, 2));
    }
}
