#!/usr/bin/env bash
# The project's test command: installs the test bed (Postfix, clamd, ...),
# builds every target and runs every test. Exits non-zero if anything fails.
# Run as root on Debian 12 (the integration tests start a private Postfix
# master, which must be root). CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test bed (tests/testbed/install.sh)"
bash tests/testbed/install.sh

if ! command -v cargo >/dev/null; then
    echo "run.sh: cargo not found; install Rust (rust-version in Cargo.toml) with rustup" >&2
    exit 1
fi

# The Debian package test (tests/ops_kit.rs) needs cargo-deb; a pinned version that
# builds with the project's toolchain.
if ! command -v cargo-deb >/dev/null; then
    step "cargo install cargo-deb"
    cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

step "cargo build --all-targets"
cargo build --all-targets

step "cargo test --all-targets"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?

step "summary"
grep -E '^\s+Running |^test result:|^error|^    [A-Za-z0-9_:]+$' "$log" || true
if ((status != 0)); then
    echo "run.sh: cargo test failed (exit $status)" >&2
fi
exit "$status"
