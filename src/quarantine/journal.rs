//! The quarantine log (`[quarantine] log`): one line appended for every release
//! and delete — who (`$SUDO_USER` when set, else the Unix user running the
//! command), when (UTC), what (instance, queue id, rule, sender) and why (the
//! `--reason`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The person behind the command: the user who ran sudo, else the real user.
pub fn operator() -> String {
    if let Ok(user) = std::env::var("SUDO_USER")
        && !user.is_empty()
    {
        return user;
    }
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// `2026-12-06T03:54:49Z`.
pub fn utc(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends one line: `TIME user=WHO action=WHAT key=value ... reason="WHY"`.
pub fn append(log: &Path, action: &str, fields: &[(&str, &str)], reason: &str) -> Result<()> {
    if let Some(dir) = log.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut line = format!(
        "{} user={} action={action}",
        utc(SystemTime::now()),
        quote(&operator())
    );
    for (key, value) in fields {
        line.push_str(&format!(" {key}={}", quote(value)));
    }
    line.push_str(&format!(" reason={}\n", quote(reason)));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the quarantine log {}", log.display()))?;
    file.write_all(line.as_bytes())
        .with_context(|| format!("cannot write the quarantine log {}", log.display()))
}

/// A value as is when it is one plain word, else in double quotes with `"`,
/// `\` and control characters escaped (one entry stays one line).
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '=');
    if plain {
        return value.to_owned();
    }
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_times() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_529_289);
        assert_eq!(utc(t), "2026-12-06T03:54:49Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn one_entry_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("q/quarantine.log");
        append(&log, "delete", &[("queue_id", "4ABC")], "spam\nreally").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" action=delete queue_id=4ABC reason=\"spam\\nreally\"\n"));
    }
}
