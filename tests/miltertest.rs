//! A second, independent MTA client: OpenDKIM's `miltertest` (Debian package
//! `miltertest`) runs the Lua scripts in `tests/miltertest/` against the real
//! daemon.

use std::path::Path;
use std::process::Command;

use crate::daemon_support::Daemon;

fn run_script(daemon: &Daemon, script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/miltertest")
        .join(script);
    let out = Command::new("miltertest")
        .arg("-D")
        .arg(format!("port={}", daemon.milter_port))
        .arg("-s")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run miltertest (Debian package miltertest): {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
}

#[test]
fn miltertest_sees_ordinary_mail_accepted() {
    let daemon = Daemon::start("");
    run_script(&daemon, "accept.lua");
    assert!(daemon.log().contains("MT1ACC: accept"), "{}", daemon.log());
    assert!(daemon.log().contains("MT1ACC2: accept"), "{}", daemon.log());
}

#[test]
fn miltertest_sees_size_and_executable_refusals() {
    let daemon = Daemon::start("");
    run_script(&daemon, "reject.lua");
    assert!(daemon.log().contains("MT2EXE: reject"), "{}", daemon.log());
}
