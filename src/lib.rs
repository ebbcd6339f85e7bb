//! congvu-milter: a Postfix milter that enforces the official-duty e-mail
//! regulation of Bac Giang province.
//!
//! The flow of one message: [`milter`] speaks the protocol and assembles a
//! [`message::Message`]; [`inspect`] and [`scan`] turn it into facts; the
//! detectors in [`rules`] report violations of a [`rule::Rule`]; the [`policy`]'s
//! judge turns each into a finding, folded into one [`verdict::Verdict`].
//! [`pipeline`] runs that chain, the same way for the daemon and for the offline
//! `scan` command, and returns the verdict with its facts; the daemon ([`server`])
//! then writes the log line and the metrics.

pub mod address;
pub mod audit;
pub mod heap;
pub mod inspect;
pub mod manpages;
pub mod message;
pub mod metrics;
pub mod milter;
pub mod notices;
pub mod offline;
pub mod pipeline;
pub mod policy;
pub mod quarantine;
pub mod rule;
pub mod rules;
pub mod scan;
pub mod server;
pub mod verdict;
