//! Postfix's hold queue through Postfix's own tools only: `postmulti -l` for the
//! instances, `postqueue -j` to list, `postcat -hq` for headers, `postsuper
//! -H/-d/-r` to release, delete and requeue, `postconf -h` for parameters. Queue
//! files are never read or moved by hand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One Postfix instance: its name (`multi_instance_name`, or the configuration
/// directory when it has none) and its configuration directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub config_dir: PathBuf,
}

/// A message in the hold queue, as `postqueue -j` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueEntry {
    pub queue_name: String,
    pub queue_id: String,
    pub arrival_time: u64,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub recipients: Vec<QueueRecipient>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueRecipient {
    pub address: String,
}

/// What a `postsuper` run did to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Not in the hold queue any more (released or deleted meanwhile).
    Gone,
}

fn tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

fn run<A: AsRef<std::ffi::OsStr>>(name: &str, args: &[A]) -> Result<std::process::Output> {
    Command::new(tool(name))
        .args(args)
        .output()
        .with_context(|| format!("cannot run {name}"))
}

fn ok_stdout(name: &str, out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Instance {
    /// The instance configured in `config_dir`.
    pub fn at(config_dir: &Path) -> Result<Instance> {
        let named = postconf(config_dir, "multi_instance_name")?;
        let name = if named.is_empty() || named == "-" {
            config_dir.display().to_string()
        } else {
            named
        };
        Ok(Instance {
            name,
            config_dir: config_dir.to_path_buf(),
        })
    }

    /// Every instance `postmulti -l` lists. Where postmulti lists nothing (no
    /// multi-instance set-up), the default instance alone.
    pub fn all() -> Result<Vec<Instance>> {
        let listed = run("postmulti", &["-l"])?;
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        let mut instances = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, _group, _enabled, dir, ..] = fields[..] {
                instances.push(Instance {
                    name: name.to_owned(),
                    config_dir: PathBuf::from(dir),
                });
            }
        }
        if instances.is_empty() {
            let out = run("postconf", &["-h", "config_directory"])?;
            let dir = ok_stdout("postconf", out)
                .context("no Postfix instance found; name one with --postfix-config DIR")?;
            instances.push(Instance {
                name: "-".into(),
                config_dir: PathBuf::from(dir.trim()),
            });
        }
        Ok(instances)
    }

    /// True when `spec` (a name given on the command line) names this instance.
    pub fn is_named(&self, spec: &str) -> bool {
        spec == self.name || Path::new(spec) == self.config_dir
    }

    /// `-c DIR` followed by `rest`.
    fn args(&self, rest: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args = vec!["-c".into(), self.config_dir.clone().into_os_string()];
        args.extend(rest.iter().map(|a| a.into()));
        args
    }

    /// The messages in the hold queue.
    pub fn held(&self) -> Result<Vec<QueueEntry>> {
        let text = ok_stdout("postqueue", run("postqueue", &self.args(&["-j"]))?)?;
        let mut held = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: QueueEntry = serde_json::from_str(line)
                .with_context(|| format!("postqueue -j gave an unreadable line: {line}"))?;
            if entry.queue_name == "hold" {
                held.push(entry);
            }
        }
        Ok(held)
    }

    /// The message's header section as `postcat -hq` prints it; `None` when the
    /// queue file is gone.
    pub fn headers(&self, queue_id: &str) -> Result<Option<String>> {
        let out = run("postcat", &self.args(&["-hq", queue_id]))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file") || err.contains("not found") {
                return Ok(None);
            }
            bail!("postcat -q {queue_id} failed: {}", err.trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(Some(
            text.lines()
                .filter(|l| !l.starts_with("*** "))
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    }

    /// `postsuper -H ID hold`: back to the active queue, as it is.
    pub fn release(&self, queue_id: &str) -> Result<Outcome> {
        self.postsuper("-H", queue_id)
    }

    /// `postsuper -d ID hold`.
    pub fn delete(&self, queue_id: &str) -> Result<Outcome> {
        self.postsuper("-d", queue_id)
    }

    /// `postsuper -r ID hold`: through pickup and cleanup again, with a new
    /// queue file, a new arrival time and a new queue id. postsuper leaves the
    /// message in the maildrop queue, where pickup finds it only at its next
    /// wake-up (60 s by default): `postkick public pickup W` wakes it now.
    pub fn requeue(&self, queue_id: &str) -> Result<Outcome> {
        let outcome = self.postsuper("-r", queue_id)?;
        if outcome == Outcome::Done {
            let out = run("postkick", &self.args(&["public", "pickup", "W"]))?;
            ok_stdout("postkick", out)?;
        }
        Ok(outcome)
    }

    /// Runs postsuper on one id, in the hold queue only, so that a message
    /// someone else released meanwhile is neither deleted nor requeued.
    fn postsuper(&self, op: &str, queue_id: &str) -> Result<Outcome> {
        let out = run("postsuper", &self.args(&[op, queue_id, "hold"]))?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("postsuper {op} {queue_id} failed: {}", err.trim());
        }
        // postsuper reports "Released from hold: 1 message", "Deleted: 1
        // message", "Requeued: 1 message"; nothing when the id was not there.
        let done = err
            .lines()
            .any(|l| l.contains(": 1 message") || l.contains(&format!("{queue_id}: ")));
        Ok(if done { Outcome::Done } else { Outcome::Gone })
    }

    /// `maximal_queue_lifetime` of the instance.
    pub fn maximal_queue_lifetime(&self) -> Result<Duration> {
        let value = postconf(&self.config_dir, "maximal_queue_lifetime")?;
        postfix_time(&value).with_context(|| format!("unreadable maximal_queue_lifetime {value:?}"))
    }

    /// The file Postfix logs to when `maillog_file` is set.
    pub fn maillog_file(&self) -> Option<PathBuf> {
        postconf(&self.config_dir, "maillog_file")
            .ok()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    }
}

fn postconf(config_dir: &Path, parameter: &str) -> Result<String> {
    let out = run(
        "postconf",
        &[
            "-c".as_ref(),
            config_dir.as_os_str(),
            "-h".as_ref(),
            std::ffi::OsStr::new(parameter),
        ],
    )?;
    Ok(ok_stdout("postconf", out)?.trim().to_owned())
}

/// A Postfix time value: a number with an optional unit s, m, h, d or w
/// (seconds without one... except for the `_lifetime` parameters, whose default
/// unit is days).
pub fn postfix_time(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let number: u64 = value[..split].parse().ok()?;
    let unit = match &value[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" | "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_times_read_like_postconf_prints_them() {
        assert_eq!(postfix_time("5d"), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(postfix_time("5"), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(postfix_time("90s"), Some(Duration::from_secs(90)));
        assert_eq!(postfix_time("1w"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(postfix_time("soon"), None);
    }
}
