//! Fuzz regressions: every input in `fuzz/regressions/TARGET/` (crashes, hangs and
//! memory blow-ups the fuzzers found, kept after the fix) runs through the same
//! harness function as the fuzz target `TARGET` (`fuzz/harness/mod.rs`). Each must
//! return in time without a panic, counting panics the production code would
//! have caught in its own code (see the harness's panic policy).
//!
//! Also home of the milter-session seed writer used by `fuzz/seed.sh`
//! (`FUZZ_SEED_DIR=... cargo test --test tests fuzz_regressions::write_milter_seeds -- --ignored`).

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use congvu_milter::milter::client::split_message;
use congvu_milter::milter::codec::{Command, Family, actions, encode_command, protocol};

/// Generous: the test profile is unoptimised, the fuzz build's `-timeout` is 10 s.
const PATIENCE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Runs `target` on `data` on its own thread; Err says what went wrong.
fn replay(name: &'static str, target: fn(&[u8]), data: Vec<u8>) -> Result<(), String> {
    harness::install_panic_hook(false);
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            target(&data);
            let _ = tx.send(harness::bad_panics());
        })
        .expect("spawn");
    match rx.recv_timeout(PATIENCE) {
        Ok(0) => {
            let _ = handle.join();
            Ok(())
        }
        Ok(n) => Err(format!(
            "{n} panic(s) in the crate's own code (caught by catch_unwind)"
        )),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {PATIENCE:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".to_string()),
    }
}

#[test]
fn every_fuzz_regression_input_returns_cleanly() {
    let mut failures = Vec::new();
    let mut count = 0;
    for &(name, target) in harness::TARGETS {
        let dir = root().join("fuzz/regressions").join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files.into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&file).unwrap();
            count += 1;
            if let Err(why) = replay(name, target, data) {
                failures.push(format!("{}: {why}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz regressions failed:\n{}",
        failures.join("\n")
    );
    eprintln!("{count} fuzz regression inputs replayed");
}

/// Every regression directory belongs to a target (a typo would skip its inputs).
#[test]
fn regression_dirs_name_targets() {
    let Ok(entries) = std::fs::read_dir(root().join("fuzz/regressions")) else {
        return;
    };
    for e in entries {
        let e = e.unwrap();
        if e.path().is_dir() {
            let name = e.file_name().into_string().unwrap();
            assert!(
                harness::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/regressions/{name} is not a fuzz target"
            );
        }
    }
}

/// The harness itself works: every target on empty input and on a fixture.
#[test]
fn harness_runs_every_target_on_fixtures() {
    let eml = std::fs::read(root().join("fixtures/messages/fail-exe-in-zip.eml")).unwrap();
    let zip = std::fs::read(root().join("fixtures/archives/exe-in.zip")).unwrap();
    let policy = std::fs::read(root().join("config/congvu-milter.toml")).unwrap();
    let carrier = |name: &str| std::fs::read(root().join("fixtures/carriers").join(name)).unwrap();
    let session = session_stream(&eml);
    for &(name, target) in harness::TARGETS {
        let input = match name {
            "mime_walk" | "forwarding" | "uuencode" | "names" => eml.clone(),
            "milter_session" | "milter_codec" => session.clone(),
            "policy_toml" => policy.clone(),
            "carrier_pdf" => carrier("exe-in-objstm.pdf"),
            "carrier_rtf" => carrier("exe-in.rtf"),
            "carrier_html" => carrier("exe-in-smuggling.html"),
            "carrier_binhex" => carrier("exe-in.hqx"),
            _ => zip.clone(),
        };
        replay(name, target, Vec::new()).unwrap_or_else(|e| panic!("{name} on empty input: {e}"));
        replay(name, target, input).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// What Postfix sends for one message: OPTNEG, macros, CONNECT .. EOB, QUIT.
fn session_stream(eml: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut put = |cmd: Command| encode_command(&cmd, &mut out, 1 << 20).unwrap();
    put(Command::OptNeg {
        version: 6,
        actions: actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE | actions::SETSYMLIST,
        protocol: protocol::SKIP | protocol::HDR_LEADSPC | protocol::NR_HDR,
    });
    put(Command::Macro {
        stage: b'C',
        pairs: vec![
            ("j".into(), "mx.bacgiang.gov.vn".into()),
            ("{daemon_name}".into(), "smtpd".into()),
        ],
    });
    put(Command::Connect {
        hostname: "mail.example.net".into(),
        family: Family::Inet("203.0.113.9".parse().unwrap(), 40000),
    });
    put(Command::Helo("mail.example.net".into()));
    put(Command::Macro {
        stage: b'M',
        pairs: vec![("i".into(), "4ABC123".into())],
    });
    put(Command::Mail {
        args: vec!["<a@example.net>".into(), "SIZE=1000".into()],
    });
    put(Command::Rcpt {
        args: vec!["<can.bo@bacgiang.gov.vn>".into()],
    });
    put(Command::Data);
    let (headers, body) = split_message(eml, true);
    for (name, value) in headers {
        put(Command::Header { name, value });
    }
    put(Command::Eoh);
    for chunk in body.chunks(4096) {
        put(Command::Body(bytes::Bytes::copy_from_slice(chunk)));
    }
    put(Command::Eob);
    put(Command::Abort);
    put(Command::Quit);
    out.to_vec()
}

/// Writes seed inputs for `milter_session` and `milter_codec` (one stream per
/// fixture message) into `$FUZZ_SEED_DIR`. Run by `fuzz/seed.sh`.
#[test]
#[ignore = "writes fuzz seeds; run by fuzz/seed.sh"]
fn write_milter_seeds() {
    let Some(dir) = std::env::var_os("FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sources: Vec<PathBuf> = Vec::new();
    for sub in ["fixtures/messages", "fixtures/forwarding"] {
        for e in std::fs::read_dir(root().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "eml") {
                sources.push(p);
            }
        }
    }
    sources.sort();
    for p in sources {
        let eml = std::fs::read(&p).unwrap();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        std::fs::write(dir.join(format!("{name}.milter")), session_stream(&eml)).unwrap();
    }
}
