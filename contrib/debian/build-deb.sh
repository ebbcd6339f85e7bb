#!/bin/sh
# Build the Debian package of congvu-milter: a release binary and the .deb
# (target/debian/congvu-milter_<version>-1_<arch>.deb), with cargo-deb.
#
# Usage: contrib/debian/build-deb.sh [extra cargo-deb options]
# Prints the path of the .deb on its last line of output.
#
# cargo-deb is installed from crates.io if missing (pinned, --locked, so the build
# does not depend on whatever the newest release needs).
set -eu

CARGO_DEB_VERSION=3.8.0

cd "$(dirname "$0")/../.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# cargo deb runs `cargo build --release`, then packs the assets of
# [package.metadata.deb] in Cargo.toml and the maintainer scripts in debian/.
cargo deb --locked "$@"
