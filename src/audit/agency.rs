//! Agencies (Điều 6): an address's agency is the local part after its first `_`
//! (`ngocnt_stttt@…` → `stttt`); an `--agencies FILE` TOML map names agencies and
//! gives the agency of addresses outside the convention. The rest are "(khong ro)".

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::record::{AuditRecord, Direction};

/// The group of addresses whose agency is known neither by convention nor by map.
pub const UNKNOWN: &str = "(khong ro)";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgencyFile {
    #[serde(default)]
    agencies: BTreeMap<String, String>,
    #[serde(default)]
    addresses: BTreeMap<String, String>,
}

/// Agency codes, their display names, and per-address overrides.
#[derive(Debug, Default)]
pub struct Agencies {
    names: BTreeMap<String, String>,
    /// Lower-case address → agency code.
    addresses: HashMap<String, String>,
}

impl Agencies {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: AgencyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(Agencies {
            names: file.agencies,
            addresses: file
                .addresses
                .into_iter()
                .map(|(a, code)| (a.to_ascii_lowercase(), code))
                .collect(),
        })
    }

    /// The agency code of an address.
    pub fn of<'a>(&'a self, address: &'a str) -> Cow<'a> {
        if !self.addresses.is_empty()
            && let Some(code) = self.addresses.get(&address.to_ascii_lowercase())
        {
            return Cow::Borrowed(code);
        }
        let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
        match local.split_once('_') {
            Some((_, code)) if !code.is_empty() => {
                if code.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(code.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(code)
                }
            }
            _ => Cow::Borrowed(UNKNOWN),
        }
    }

    /// The display name of an agency code, when the map gives one.
    pub fn name(&self, code: &str) -> Option<&str> {
        self.names.get(code).map(String::as_str)
    }

    /// The agencies a message counts under: the sender's for outgoing mail, each
    /// local recipient's (once each) for incoming mail.
    pub fn of_message<'a>(&'a self, record: &'a AuditRecord) -> Vec<Cow<'a>> {
        let mut out: Vec<Cow<'a>> = Vec::with_capacity(1);
        for mailbox in accountable_mailboxes(record) {
            let code = self.of(mailbox);
            if !out.contains(&code) {
                out.push(code);
            }
        }
        if out.is_empty() {
            out.push(Cow::Borrowed(UNKNOWN));
        }
        out
    }
}

type Cow<'a> = std::borrow::Cow<'a, str>;

/// The mailboxes a message is counted for: the sender of outgoing mail, each local
/// recipient of incoming mail.
pub fn accountable_mailboxes<'a>(record: &'a AuditRecord) -> Vec<&'a str> {
    match record.direction {
        Direction::Outgoing => vec![record.sender.as_ref()],
        Direction::Incoming => {
            let mut out: Vec<&str> = Vec::new();
            for r in record.recipients.iter().filter(|r| r.local) {
                if !out.iter().any(|m| m.eq_ignore_ascii_case(&r.address)) {
                    out.push(&r.address);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::sample;
    use crate::audit::record::{Action, Recipient};

    const MAP: &str = r#"
[agencies]
stttt = "Sở Thông tin và Truyền thông"
baodai_lucnam = "Báo Đài huyện Lục Nam"

[addresses]
"VanThu@bacgiang.gov.vn" = "stttt"
"#;

    #[test]
    fn convention_map_and_unknown() {
        let a = Agencies::parse(MAP).unwrap();
        assert_eq!(a.of("ngocnt_stttt@bacgiang.gov.vn"), "stttt");
        assert_eq!(
            a.of("hongnt_baodai_lucnam@bacgiang.gov.vn"),
            "baodai_lucnam"
        );
        assert_eq!(
            a.of("HongNT_BaoDai_LucNam@bacgiang.gov.vn"),
            "baodai_lucnam"
        );
        assert_eq!(a.of("vanthu@bacgiang.gov.vn"), "stttt");
        assert_eq!(a.of("admin@bacgiang.gov.vn"), UNKNOWN);
        assert_eq!(a.of("trailing_@bacgiang.gov.vn"), UNKNOWN);
        assert_eq!(a.name("stttt"), Some("Sở Thông tin và Truyền thông"));
        assert_eq!(a.name("xyz"), None);
        assert!(Agencies::parse("[agency]\nx = 1\n").is_err());
    }

    #[test]
    fn outgoing_counts_the_sender_incoming_each_local_recipient_once() {
        let a = Agencies::default();
        let mut r = sample(None, Action::Accept);
        assert_eq!(a.of_message(&r), vec!["stttt"]);
        r.direction = Direction::Incoming;
        r.sender = "x@gmail.com".into();
        r.recipients.push(Recipient {
            address: "lan_stttt@bacgiang.gov.vn".into(),
            local: true,
        });
        r.recipients.push(Recipient {
            address: "mai_baodai_lucnam@bacgiang.gov.vn".into(),
            local: true,
        });
        assert_eq!(a.of_message(&r), vec!["baodai_lucnam", "stttt"]);
        r.recipients.retain(|r| !r.local);
        assert_eq!(a.of_message(&r), vec![UNKNOWN]);
    }
}
