#!/bin/sh
# Installs the preload libraries, the launcher and the C header:
#   PREFIX/lib/libhakozuna.so, PREFIX/lib/libhakozuna_fast.so, PREFIX/bin/hakozuna,
#   PREFIX/include/hakozuna.h
#
#   cargo build --release && sudo ./scripts/install.sh               # PREFIX=/usr/local
#   PREFIX=$HOME/.local ./scripts/install.sh                          # no root needed
#   DESTDIR=/tmp/pkg PREFIX=/usr ./scripts/install.sh                 # staged, for packaging
#
# Uninstall: remove those four files. Nothing else is written.
set -eu
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
root=$DESTDIR$PREFIX

for f in target/release/libhakozuna.so target/release/libhakozuna_fast.so; do
    if [ ! -f "$f" ]; then
        echo "install.sh: $f is missing: run \`cargo build --release\` first" >&2
        exit 1
    fi
done

mkdir -p "$root/lib" "$root/bin" "$root/include"
# cp to a temporary name, then rename: a process that has the old library mapped keeps it.
for f in libhakozuna.so libhakozuna_fast.so; do
    cp "target/release/$f" "$root/lib/.$f.tmp"
    chmod 755 "$root/lib/.$f.tmp"
    mv -f "$root/lib/.$f.tmp" "$root/lib/$f"
done
cp scripts/hakozuna "$root/bin/.hakozuna.tmp"
chmod 755 "$root/bin/.hakozuna.tmp"
mv -f "$root/bin/.hakozuna.tmp" "$root/bin/hakozuna"
cp include/hakozuna.h "$root/include/hakozuna.h"
chmod 644 "$root/include/hakozuna.h"

echo "installed: $root/lib/libhakozuna.so $root/lib/libhakozuna_fast.so $root/bin/hakozuna $root/include/hakozuna.h"
echo "run a program with: $PREFIX/bin/hakozuna run -- PROGRAM [ARGS...]"
