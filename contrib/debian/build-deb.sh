#!/bin/sh
# Build the Debian package of congvu-milter: a release binary, its manual pages and
# the .deb (target/debian/congvu-milter_<version>-1_<arch>.deb), with cargo-deb.
#
# Usage: contrib/debian/build-deb.sh [extra cargo-deb options]
# Prints the path of the .deb on its last line of output.
#
# The packaged binary is stripped; its debug information goes to a separate file
# in the package, /usr/lib/debug/.build-id/XX/YYYY.debug (compressed), which gdb
# and backtraces find by the binary's build id.
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

cargo build --release --locked

# congvu-milter(8), one page per subcommand, congvu-milter.toml(5): generated from
# the command line and the shipped policy, gzipped as Debian installs man pages.
rm -rf target/man
target/release/congvu-milter man target/man >/dev/null
gzip -9n target/man/*

# Packs the assets of [package.metadata.deb] in Cargo.toml and the maintainer
# scripts in debian/.
cargo deb --locked --no-build --strip --separate-debug-symbols --compress-debug-symbols=zlib "$@"
