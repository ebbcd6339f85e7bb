//! Audit records (one JSON line per message, schema in [`record`]) and the
//! commands that read them: `report` (compliance figures by agency, mailbox,
//! article, rule or day) and `trace` (every message that carried a file or id).

pub mod agency;
pub mod record;
pub mod report;
pub mod trace;
