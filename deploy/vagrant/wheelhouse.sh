#!/usr/bin/env bash
# Fill the wheelhouse the VMs install from: every file of requirements.lock as a wheel for the guests' Python
# (Debian 12: CPython 3.11, x86_64, glibc 2.36), hash-checked, into <repo>/.wheelhouse (git-ignored, carried to
# the VMs by the synced folder). The guests then run `pip install --no-index --find-links /vagrant/.wheelhouse
# --require-hashes -r requirements.lock` (deploy/lib/install.sh, KYB_WHEELHOUSE) and need no network.
#
#   wheelhouse.sh [--check]     fill it (nothing to do when it was filled from the same lock); --check: only
#                               say whether it is current (exit 1 if not)
#
# Settings (environment): KYB_WHEELHOUSE (<repo>/.wheelhouse), KYB_WHEEL_PYTHON (3.11),
# KYB_WHEEL_ARCH (x86_64), KYB_WHEEL_GLIBC (2.36: manylinux tags up to that glibc are accepted).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
OUT=${KYB_WHEELHOUSE:-$REPO/.wheelhouse}
PYVER=${KYB_WHEEL_PYTHON:-3.11}
ARCH=${KYB_WHEEL_ARCH:-x86_64}
GLIBC=${KYB_WHEEL_GLIBC:-2.36}
LOCK=$REPO/requirements.lock

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'wheelhouse: %s\n' "$*" >&2; exit 1; }

want=$(cat "$LOCK" <(echo "$PYVER $ARCH $GLIBC") | sha256sum | cut -d' ' -f1)
current() { [[ -f $OUT/.lock-sha256 && $(cat "$OUT/.lock-sha256") == "$want" ]]; }
if [[ ${1:-} == --check ]]; then
    if current; then say "wheelhouse $OUT is current"; exit 0; fi
    say "wheelhouse $OUT is missing or was filled from another lock"; exit 1
fi
if current; then say "wheelhouse $OUT is current ($(find "$OUT" -name '*.whl' | wc -l) wheels)"; exit 0; fi

python=""
for candidate in "$REPO/.venv/bin/python" python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
        python=$candidate; break
    fi
done
[[ -n $python ]] || die "no python with pip (run ./deploy/test.sh --fast, or apt-get install python3-pip)"

# Every manylinux tag the guests' glibc accepts (pip takes the tags literally).
platforms=(--platform linux_"$ARCH" --platform manylinux2014_"$ARCH" --platform manylinux2010_"$ARCH"
           --platform manylinux1_"$ARCH")
minor=${GLIBC#2.}
for ((m = 5; m <= minor; m++)); do platforms+=(--platform "manylinux_2_${m}_$ARCH"); done
abi=cp${PYVER/./}

started=$SECONDS
tmp=$OUT.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
say "downloading the wheels of ${LOCK#"$REPO"/} for CPython $PYVER on $ARCH (glibc $GLIBC) into $OUT"
"$python" -m pip download -q --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
    --python-version "$PYVER" --implementation cp --abi "$abi" --abi abi3 --abi none "${platforms[@]}" \
    -r "$LOCK" -d "$tmp"
echo "$want" > "$tmp/.lock-sha256"
rm -rf "$OUT"
mv "$tmp" "$OUT"
say "wheelhouse filled in $((SECONDS - started))s: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
