//! `congvu-milter quarantine`: the operator's view of the mail this filter put
//! on hold (the `quarantine` action) — list, show, release, delete and expire it
//! on every Postfix instance, through Postfix's own tools ([`postfix`]), each
//! release and delete written to the quarantine log ([`journal`]). The held
//! message's tag header ([`tag`]) says which rule held it, under which article,
//! for which file.

pub mod journal;
pub mod postfix;
pub mod tag;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::policy::{LoadedPolicy, Seconds};
use postfix::{Instance, Outcome, QueueEntry};
use tag::PolicyTag;

/// `[quarantine]`: what `congvu-milter quarantine` keeps and where it writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineSection {
    /// `quarantine expire` deletes held mail older than this.
    pub retention: Seconds,
    /// Every release and delete is appended here.
    pub log: PathBuf,
}

impl Default for QuarantineSection {
    fn default() -> Self {
        QuarantineSection {
            retention: Seconds::secs(30 * 86400),
            log: PathBuf::from("/var/log/congvu-milter/quarantine.log"),
        }
    }
}

/// Options every `quarantine` subcommand takes.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    #[arg(long, short, global = true, default_value = crate::manpages::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// A Postfix configuration directory; repeat for several instances. Without
    /// it, every instance `postmulti -l` lists.
    #[arg(long = "postfix-config", global = true, value_name = "DIR")]
    pub postfix_config: Vec<PathBuf>,
    /// One JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: QuarantineCommand,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Held messages: instance, queue id, arrival, sender, recipients, rule,
    /// article and file.
    List {
        #[command(flatten)]
        filter: Filter,
    },
    /// One held message: its violation and its headers.
    Show {
        /// `QUEUE_ID` or `INSTANCE:QUEUE_ID`.
        id: String,
    },
    /// Release held messages (`postsuper -H`; `-r` when held longer than half
    /// of `maximal_queue_lifetime`).
    Release(Change),
    /// Delete held messages (`postsuper -d`).
    Delete(Change),
    /// Delete held messages older than `[quarantine] retention`.
    Expire,
}

/// Which held messages: every one given matches.
#[derive(Debug, Args, Default)]
pub struct Filter {
    /// Held by this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Arrived longer ago than this (`2h`, `7d`).
    #[arg(long, value_parser = Seconds::parse)]
    pub older_than: Option<Seconds>,
    /// From this envelope sender (`user@domain` or `domain`).
    #[arg(long)]
    pub sender: Option<String>,
}

#[derive(Debug, Args)]
pub struct Change {
    /// `QUEUE_ID` or `INSTANCE:QUEUE_ID`; or none, with a filter.
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: Filter,
    /// Why, for the quarantine log.
    #[arg(long, required = true)]
    pub reason: String,
}

/// A message this filter held.
#[derive(Debug, Clone)]
struct Held {
    instance: Instance,
    entry: QueueEntry,
    tags: Vec<PolicyTag>,
}

impl Held {
    fn id(&self) -> String {
        format!("{}:{}", self.instance.name, self.entry.queue_id)
    }

    fn joined(&self, field: impl Fn(&PolicyTag) -> &str) -> String {
        let mut values: Vec<&str> = self.tags.iter().map(field).collect();
        values.dedup();
        values.join(", ")
    }

    fn age(&self, now: SystemTime) -> Duration {
        let arrived = UNIX_EPOCH + Duration::from_secs(self.entry.arrival_time);
        now.duration_since(arrived).unwrap_or_default()
    }

    fn arrival(&self) -> String {
        journal::utc(UNIX_EPOCH + Duration::from_secs(self.entry.arrival_time))
    }

    fn recipients(&self) -> String {
        let all: Vec<&str> = self
            .entry
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        all.join(",")
    }

    fn sender(&self) -> &str {
        if self.entry.sender.is_empty() {
            "<>"
        } else {
            &self.entry.sender
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "instance": self.instance.name,
            "queue_id": self.entry.queue_id,
            "arrival_time": self.entry.arrival_time,
            "arrival": self.arrival(),
            "sender": self.entry.sender,
            "recipients": self.entry.recipients.iter().map(|r| &r.address).collect::<Vec<_>>(),
            "rule": self.joined(|t| &t.rule),
            "article": self.joined(|t| &t.article),
            "file": self.joined(|t| &t.file),
            "detail": self.joined(|t| &t.detail),
        })
    }
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.rule.is_none() && self.older_than.is_none() && self.sender.is_none()
    }

    fn matches(&self, held: &Held, now: SystemTime) -> bool {
        self.rule
            .as_ref()
            .is_none_or(|r| held.tags.iter().any(|t| &t.rule == r))
            && self.older_than.is_none_or(|o| held.age(now) > o.get())
            && self.sender.as_ref().is_none_or(|s| {
                !held.entry.sender.is_empty()
                    && crate::address::matches_entry(&held.entry.sender, s)
            })
    }
}

/// Runs one `quarantine` subcommand. Exit codes: 0 done; 1 some message was
/// not (or no longer) on hold; 2 bad usage or an unreadable policy; 3 a Postfix
/// tool failed.
pub fn run(args: &QuarantineArgs) -> ExitCode {
    let loaded = match LoadedPolicy::load(&args.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let section = &loaded.policy.quarantine;
    let tag_header = &loaded.policy.headers.tag_header;
    let result = (|| -> Result<bool> {
        if let QuarantineCommand::Release(change) | QuarantineCommand::Delete(change) =
            &args.command
        {
            check_change(change)?;
        }
        let instances = instances(&args.postfix_config)?;
        let held = || all_held(&instances, tag_header);
        let now = SystemTime::now();
        match &args.command {
            QuarantineCommand::List { filter } => {
                let held: Vec<Held> = held()?
                    .into_iter()
                    .filter(|h| filter.matches(h, now))
                    .collect();
                print_list(&held, args.json);
                Ok(true)
            }
            QuarantineCommand::Show { id } => {
                let held = held()?;
                let Some(found) = resolve(&held, id)? else {
                    eprintln!("{}", not_on_hold(id));
                    return Ok(false);
                };
                show(found, args.json)?;
                Ok(true)
            }
            QuarantineCommand::Release(change) | QuarantineCommand::Delete(change) => {
                let release = matches!(args.command, QuarantineCommand::Release(_));
                let held = held()?;
                let (chosen, mut all_found) = choose(&held, change, now)?;
                for h in chosen {
                    let done = if release {
                        release_one(h, section, &change.reason, now, args.json)?
                    } else {
                        delete_one(h, section, "delete", &change.reason, args.json)?
                    };
                    all_found &= done;
                }
                Ok(all_found)
            }
            QuarantineCommand::Expire => {
                let retention = section.retention.get();
                let reason = format!(
                    "expired: held longer than [quarantine] retention ({})",
                    human(retention)
                );
                let mut all_found = true;
                for h in held()?.iter().filter(|h| h.age(now) > retention) {
                    all_found &= delete_one(h, section, "expire", &reason, args.json)?;
                }
                Ok(all_found)
            }
        }
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if e.is::<UsageError>() => {
            eprintln!("congvu-milter quarantine: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("congvu-milter quarantine: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// A release or delete must name its messages and say why.
fn check_change(change: &Change) -> Result<()> {
    if change.ids.is_empty() && change.filter.is_empty() {
        bail!(UsageError(
            "name the messages: queue ids, or --rule, --older-than or --sender".into()
        ));
    }
    if change.reason.trim().is_empty() {
        bail!(UsageError("--reason must say why".into()));
    }
    Ok(())
}

#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn instances(dirs: &[PathBuf]) -> Result<Vec<Instance>> {
    if dirs.is_empty() {
        return Instance::all();
    }
    dirs.iter().map(|d| Instance::at(d)).collect()
}

/// The held messages of every instance that carry this filter's tag header.
fn all_held(instances: &[Instance], tag_header: &str) -> Result<Vec<Held>> {
    let mut held = Vec::new();
    for instance in instances {
        for entry in instance
            .held()
            .with_context(|| format!("instance {}", instance.name))?
        {
            // Gone between the listing and postcat: no longer held.
            let Some(headers) = instance.headers(&entry.queue_id)? else {
                continue;
            };
            let tags: Vec<PolicyTag> = header_values(&headers, tag_header)
                .iter()
                .filter_map(|v| PolicyTag::parse(v))
                .collect();
            if !tags.is_empty() {
                held.push(Held {
                    instance: instance.clone(),
                    entry,
                    tags,
                });
            }
        }
    }
    held.sort_by_key(|h| (h.entry.arrival_time, h.id()));
    Ok(held)
}

/// The (unfolded) values of every `name` header in a header section.
fn header_values(headers: &str, name: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    let mut in_match = false;
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if in_match && let Some(last) = values.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
            continue;
        }
        in_match = false;
        if let Some((field, value)) = line.split_once(':')
            && field.trim().eq_ignore_ascii_case(name)
        {
            values.push(value.trim().to_owned());
            in_match = true;
        }
    }
    values
}

/// The held message an id names (`QUEUE_ID` or `INSTANCE:QUEUE_ID`).
fn resolve<'a>(held: &'a [Held], id: &str) -> Result<Option<&'a Held>> {
    let (instance, queue_id) = match id.rsplit_once(':') {
        Some((i, q)) => (Some(i), q),
        None => (None, id),
    };
    let found: Vec<&Held> = held
        .iter()
        .filter(|h| h.entry.queue_id == queue_id)
        .filter(|h| instance.is_none_or(|i| h.instance.is_named(i)))
        .collect();
    match found[..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => bail!(UsageError(format!(
            "queue id {queue_id} is held on several instances ({}); write INSTANCE:{queue_id}",
            found
                .iter()
                .map(|h| h.instance.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn not_on_hold(id: &str) -> String {
    format!(
        "{id}: not on hold (already released or deleted by someone else, or never held by \
         this filter); nothing done"
    )
}

/// The messages a release or delete names: by id, and by filter. The flag is
/// false when an id named a message that is not on hold.
fn choose<'a>(held: &'a [Held], change: &Change, now: SystemTime) -> Result<(Vec<&'a Held>, bool)> {
    let mut chosen: Vec<&Held> = Vec::new();
    let mut all_found = true;
    if change.ids.is_empty() {
        chosen.extend(held.iter().filter(|h| change.filter.matches(h, now)));
    } else {
        for id in &change.ids {
            match resolve(held, id)? {
                Some(h) if change.filter.matches(h, now) => chosen.push(h),
                Some(h) => eprintln!("{}: does not match the filter; left on hold", h.id()),
                None => {
                    eprintln!("{}", not_on_hold(id));
                    all_found = false;
                }
            }
        }
    }
    chosen.dedup_by_key(|h| h.id());
    Ok((chosen, all_found))
}

fn fields(h: &Held) -> Vec<(&'static str, String)> {
    vec![
        ("instance", h.instance.name.clone()),
        ("queue_id", h.entry.queue_id.clone()),
        ("rule", h.joined(|t| &t.rule)),
        ("sender", h.sender().to_owned()),
        ("recipients", h.recipients()),
    ]
}

fn log_change(
    section: &QuarantineSection,
    action: &str,
    fields: &[(&'static str, String)],
    reason: &str,
) -> Result<()> {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    journal::append(&section.log, action, &borrowed, reason)
}

fn report(json: bool, action: &str, fields: &[(&'static str, String)], text: String) {
    if json {
        let mut object = serde_json::Map::new();
        object.insert("action".into(), action.into());
        for (k, v) in fields {
            object.insert((*k).into(), v.clone().into());
        }
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!("{text}");
    }
}

/// Releases one message: `postsuper -H`, or `-r` when it has been held longer
/// than half of `maximal_queue_lifetime` (else one failed delivery try would
/// bounce it).
fn release_one(
    h: &Held,
    section: &QuarantineSection,
    reason: &str,
    now: SystemTime,
    json: bool,
) -> Result<bool> {
    let lifetime = h.instance.maximal_queue_lifetime()?;
    let requeue = h.age(now) > lifetime / 2;
    let outcome = if requeue {
        h.instance.requeue(&h.entry.queue_id)?
    } else {
        h.instance.release(&h.entry.queue_id)?
    };
    if outcome == Outcome::Gone {
        eprintln!("{}", not_on_hold(&h.id()));
        return Ok(false);
    }
    let mut fields = fields(h);
    let action = if requeue {
        let new_id = requeued_as(&h.instance, &h.entry.queue_id);
        fields.push((
            "new_queue_id",
            new_id.unwrap_or_else(|| "unknown".to_owned()),
        ));
        "release-requeue"
    } else {
        "release"
    };
    log_change(section, action, &fields, reason)?;
    let text = if requeue {
        format!(
            "{}: released and requeued (held {}, over half of maximal_queue_lifetime {}); new queue id {}",
            h.id(),
            human(h.age(now)),
            human(lifetime),
            fields.last().map(|f| f.1.as_str()).unwrap_or("unknown")
        )
    } else {
        format!("{}: released", h.id())
    };
    report(json, action, &fields, text);
    Ok(true)
}

fn delete_one(
    h: &Held,
    section: &QuarantineSection,
    action: &str,
    reason: &str,
    json: bool,
) -> Result<bool> {
    if h.instance.delete(&h.entry.queue_id)? == Outcome::Gone {
        eprintln!("{}", not_on_hold(&h.id()));
        return Ok(false);
    }
    let fields = fields(h);
    log_change(section, action, &fields, reason)?;
    report(json, action, &fields, format!("{}: deleted", h.id()));
    Ok(true)
}

/// The queue id pickup gave a requeued message: pickup logs
/// `NEWID: uid=0 from=<...> orig_id=OLDID`. Read from the instance's
/// `maillog_file`, else /var/log/mail.log; waits up to 10 s for pickup.
fn requeued_as(instance: &Instance, old_id: &str) -> Option<String> {
    let log = instance
        .maillog_file()
        .unwrap_or_else(|| PathBuf::from("/var/log/mail.log"));
    let needle = format!(" orig_id={old_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(bytes) = std::fs::read(&log) {
            let text = String::from_utf8_lossy(&bytes);
            let found = text.lines().rev().find_map(|line| {
                let at = line.find(&needle)?;
                let end = line[..at].find(": uid=")?;
                let start = line[..end].rfind(' ')? + 1;
                Some(line[start..end].to_owned())
            });
            if found.is_some() {
                return found;
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `2d 3h`, `45m`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn print_list(held: &[Held], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        for h in held {
            let _ = writeln!(out, "{}", h.json());
        }
        return;
    }
    let mut rows = vec![[
        "INSTANCE".to_owned(),
        "QUEUE_ID".into(),
        "ARRIVAL".into(),
        "SENDER".into(),
        "RECIPIENTS".into(),
        "RULE".into(),
        "ARTICLE".into(),
        "FILE".into(),
    ]];
    for h in held {
        rows.push([
            h.instance.name.clone(),
            h.entry.queue_id.clone(),
            h.arrival(),
            h.sender().to_owned(),
            h.recipients(),
            h.joined(|t| &t.rule),
            h.joined(|t| &t.article),
            h.joined(|t| &t.file),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out, "{} held message(s)", held.len());
}

fn show(h: &Held, json: bool) -> Result<()> {
    let headers = h
        .instance
        .headers(&h.entry.queue_id)?
        .unwrap_or_else(|| "(the queue file is gone)".into());
    if json {
        let mut object = h.json();
        object["headers"] = headers.into();
        println!("{object}");
        return Ok(());
    }
    println!("instance:   {}", h.instance.name);
    println!("queue id:   {}", h.entry.queue_id);
    println!("arrival:    {}", h.arrival());
    println!("sender:     {}", h.sender());
    println!("recipients: {}", h.recipients());
    for t in &h.tags {
        println!("violation:  {} ({})", t.rule, t.article);
        println!("  file:     {}", t.file);
        println!("  detail:   {}", t.detail);
    }
    println!();
    println!("{headers}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_unfold_and_ignore_case() {
        let h = "Subject: x\nx-congvu-policy: executable (a);\n\tfile=\"a\"\nX-Other: y\n";
        assert_eq!(
            header_values(h, "X-Congvu-Policy"),
            vec!["executable (a); file=\"a\"".to_owned()]
        );
    }

    #[test]
    fn durations_read_for_people() {
        assert_eq!(human(Duration::from_secs(90)), "1m");
        assert_eq!(human(Duration::from_secs(2 * 86400 + 7200)), "2d 2h");
    }
}
