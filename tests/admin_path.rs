//! The README's "Install and attach to Postfix" section, and the contrib/postfix
//! snippets it stands for, applied to a real Postfix configuration: the test bed's
//! private instance (tests/common/postfix.rs). The Postfix lines are taken from the
//! README exactly as printed, run with `postconf -e` as an admin pasting them would,
//! and `postconf -n` / `postfix check` must show that every setting took, with its
//! value and nothing else, and that Postfix has no warning. So the documentation
//! cannot drift from the snippets, and a `# comment` at the end of a setting (which
//! Postfix would keep as part of the value) fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::postfix::{Postfix, PostfixOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's install section, up to the next top-level heading.
fn install_section() -> String {
    let readme = read("README.md");
    readme
        .split("\n## Install and attach to Postfix\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README section \"Install and attach to Postfix\"")
        .to_owned()
}

/// The lines of the section's ```sh blocks, as an admin pastes them.
fn shell_lines(section: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        if in_sh {
            if line.starts_with("```") {
                in_sh = false;
            } else {
                lines.push(line.to_owned());
            }
        } else if line == "```sh" {
            in_sh = true;
        }
    }
    lines
}

/// The argument of a `postconf -e 'NAME = VALUE'` line, as the shell passes it.
fn postconf_e_argument(line: &str) -> Option<&str> {
    line.strip_prefix("postconf -e '")?.strip_suffix('\'')
}

/// `postconf -c DIR ARGS...` (or `postfix -c DIR ...`): the output, which must
/// be a success without a warning.
fn in_config(program: &str, dir: &Path, args: &[&str]) -> String {
    let out: Output = Command::new(program)
        .arg("-c")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install the Debian package postfix)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{program} -c {} {args:?}: {}\n{stdout}{stderr}",
        dir.display(),
        out.status
    );
    assert!(
        !stderr.contains("warning") && !stdout.contains("warning"),
        "{program} -c {} {args:?} warns:\n{stdout}{stderr}",
        dir.display()
    );
    stdout
}

/// `postconf -n` as `name = value` lines.
fn set_parameters(dir: &Path) -> Vec<(String, String)> {
    in_config("postconf", dir, &["-n"])
        .lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .or_else(|| l.strip_suffix(" =").map(|n| (n, "")))
        })
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// A Postfix setting written `NAME = VALUE` must not carry an end-of-line
/// comment: Postfix keeps `# ...` as part of the value.
fn assert_no_trailing_comment(setting: &str, source: &str) {
    let value = setting.split_once('=').map_or("", |(_, v)| v);
    assert!(
        !value.contains('#'),
        "{source}: `{setting}` has a `#` in its value: Postfix has no end-of-line \
         comments and would store it as part of the value"
    );
}

/// The parameters a main.cf snippet sets, as `NAME = VALUE` setting lines
/// (continuation lines joined), comments and blank lines left out.
fn snippet_settings(text: &str) -> Vec<String> {
    let mut settings: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let last = settings.last_mut().expect("continuation of a setting");
            last.push(' ');
            last.push_str(line.trim());
        } else {
            settings.push(line.trim().to_owned());
        }
    }
    settings
}

fn name_of(setting: &str) -> String {
    setting.split('=').next().expect("name").trim().to_owned()
}

/// A private Postfix of the test bed, with the settings applied one by one with
/// `postconf -e`; `postfix check` on the result must pass without a warning.
/// Returns the instance (its directory holds main.cf).
fn apply_to_test_bed(settings: &[String], source: &str) -> Postfix {
    let postfix = Postfix::start(PostfixOptions::default());
    for setting in settings {
        assert_no_trailing_comment(setting, source);
        in_config("postconf", postfix.dir(), &["-e", setting]);
    }
    let check = in_config("postfix", postfix.dir(), &["check"]);
    assert!(
        check.trim().is_empty(),
        "postfix check on {source}:\n{check}"
    );
    postfix
}

/// Every setting is in `postconf -n` exactly as written (it took, whole).
fn assert_settings_took(dir: &Path, settings: &[String], source: &str) {
    let set = set_parameters(dir);
    for setting in settings {
        let (name, value) = setting.split_once('=').expect("NAME = VALUE");
        let (name, value) = (name.trim(), value.trim());
        let stored = set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(
            stored,
            Some(value),
            "{source}: `{setting}` did not take; postconf -n has {name} = {stored:?}"
        );
    }
}

/// The README's Postfix lines, as printed, on the test bed's Postfix: each one
/// takes, `postfix check` is silent, the milter lines are exactly the settings
/// of contrib/postfix/main.cf.single (the one source of truth), and the undo line
/// takes every one of them out again.
#[test]
fn readme_postfix_lines_take_on_a_real_postfix_and_match_the_snippet() {
    let section = install_section();
    let lines = shell_lines(&section);
    let mut settings = Vec::new();
    for line in lines.iter().filter(|l| l.starts_with("postconf")) {
        if let Some(arg) = postconf_e_argument(line) {
            settings.push(arg.to_owned());
        } else {
            assert!(
                line.starts_with("postconf -X "),
                "a postconf line the test does not know: {line}"
            );
        }
    }
    let single = snippet_settings(&read("contrib/postfix/main.cf.single"));
    let single_names: Vec<String> = single.iter().map(|s| name_of(s)).collect();
    let milter_lines: Vec<String> = settings
        .iter()
        .filter(|s| single_names.contains(&name_of(s)))
        .cloned()
        .collect();
    let mut readme_names: Vec<String> = milter_lines.iter().map(|s| name_of(s)).collect();
    let mut snippet_names = single_names.clone();
    readme_names.sort();
    snippet_names.sort();
    assert_eq!(
        readme_names, snippet_names,
        "the README sets other parameters than contrib/postfix/main.cf.single"
    );
    for setting in &milter_lines {
        let name = name_of(setting);
        let in_snippet = single
            .iter()
            .find(|s| name_of(s) == name)
            .expect("in snippet");
        let value = |s: &str| s.split_once('=').expect("=").1.trim().to_owned();
        assert_eq!(
            value(setting),
            value(in_snippet),
            "README and contrib/postfix/main.cf.single disagree on {name}"
        );
    }
    assert!(
        lines.iter().any(|l| l == "postfix check"),
        "the README does not say to run postfix check"
    );

    let postfix = apply_to_test_bed(&settings, "README.md");
    assert_settings_took(postfix.dir(), &settings, "README.md");

    // Undo: the README's `postconf -X` removes every milter setting.
    let undo = lines
        .iter()
        .find_map(|l| l.strip_prefix("postconf -X "))
        .expect("the README's undo line, postconf -X");
    let names: Vec<&str> = undo.split_whitespace().collect();
    let mut args = vec!["-X"];
    args.extend(&names);
    in_config("postconf", postfix.dir(), &args);
    let left = set_parameters(postfix.dir());
    for name in &snippet_names {
        assert!(
            !left.iter().any(|(n, _)| n == name),
            "the README's undo leaves {name} set"
        );
    }
    in_config("postfix", postfix.dir(), &["check"]);
}

/// The contrib/postfix main.cf snippets, applied the same way: every setting
/// takes whole (none has an end-of-line comment) and `postfix check` is silent.
#[test]
fn contrib_postfix_snippets_take_on_a_real_postfix() {
    let mut files: Vec<PathBuf> = vec![root().join("contrib/postfix/main.cf.single")];
    for entry in std::fs::read_dir(root().join("contrib/postfix/outbound-instance")).expect("dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("main.cf."))
        {
            files.push(path);
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let rel = file
            .strip_prefix(root())
            .expect("in the tree")
            .display()
            .to_string();
        let settings = snippet_settings(&read(&rel));
        assert!(!settings.is_empty(), "{rel} sets nothing");
        let postfix = apply_to_test_bed(&settings, &rel);
        assert_settings_took(postfix.dir(), &settings, &rel);
    }
}

/// The check above would catch a README line with an end-of-line comment:
/// Postfix stores the comment, and `postconf -n` shows it in the value.
#[test]
fn an_end_of_line_comment_is_caught() {
    let setting = "milter_default_action = tempfail # newer releases default to shutdown";
    let caught = std::panic::catch_unwind(|| assert_no_trailing_comment(setting, "example"));
    assert!(caught.is_err(), "a trailing comment passed the check");
    // What Postfix makes of it, for the record: the comment is in the value.
    let postfix = Postfix::start(PostfixOptions::default());
    in_config("postconf", postfix.dir(), &["-e", setting]);
    let stored = in_config("postconf", postfix.dir(), &["-h", "milter_default_action"]);
    assert_eq!(
        stored.trim(),
        "tempfail # newer releases default to shutdown"
    );
    let caught = std::panic::catch_unwind(|| {
        assert_settings_took(
            postfix.dir(),
            &["milter_default_action = tempfail".to_owned()],
            "example",
        )
    });
    assert!(caught.is_err(), "a stored comment passed as the value");
}
