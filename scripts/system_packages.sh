#!/usr/bin/env bash
# The Debian packages a make target needs from the machine, checked before anything else runs; the one
# place that knows them (Makefile and .ci/run call it).
#
#   scripts/system_packages.sh install|report|luigid|test
#
#   install  python3, and python3-venv where the Python is Debian's (no ensurepip without it); g++ is wanted
#            for the fused M-SVAG/SVAG kernel (without it training takes the pure-TF path: same weights).
#   report   install's, and the dataset dataset-fashion-mnist is wanted (without it FetchFile downloads
#            the four files from the upstream URL).
#   luigid   install's, and curl (scripts/luigid.sh asks the started luigid whether it answers).
#   test     everything the suite runs: the dataset, chromium and chromium-driver (headless browser tests),
#            iproute2 and util-linux (two hosts as network namespaces), g++ (the kernel's tests), curl
#            (luigid's readiness check), make (.ci/run on a bare machine).
#
# Nothing missing: silent, exit 0, no apt-get update. Missing, as root with apt-get: one quiet
# `apt-get update` and `apt-get install --no-install-recommends` of exactly what is missing (the log is
# shown only if it fails). Missing what is needed, as non-root or without apt-get: one message naming the
# packages, exit 1, before any install or test starts. Missing what is only wanted: a note, exit 0.
set -euo pipefail

PYTHON=${PYTHON:-python3}
VENV_PYTHON=${VENV:-.venv}/bin/python
# SYSTEM_PACKAGES_SYSROOT prefixes the absolute paths looked at (tests/test_system_packages.py; else empty).
sysroot=${SYSTEM_PACKAGES_SYSROOT:-}
DATASET_DIR=$sysroot/usr/share/datasets/fashion-mnist

die() { echo "error: $*" >&2; exit 1; }

venv_works() { "$VENV_PYTHON" -m pip --version >/dev/null 2>&1; }

# present PACKAGE: whether what the suite uses from PACKAGE is here (a file or a command, not dpkg's
# records, so it also answers on machines without dpkg).
present() {
  case $1 in
    dataset-fashion-mnist)
      for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$DATASET_DIR/$name.gz" ] || return 1
      done ;;
    chromium) [ -x "$sysroot/usr/bin/chromium" ] ;;
    chromium-driver) [ -x "$sysroot/usr/bin/chromedriver" ] ;;
    iproute2) command -v ip >/dev/null ;;
    util-linux) command -v unshare >/dev/null ;;
    g++) command -v g++ >/dev/null ;;
    curl) command -v curl >/dev/null ;;
    make) command -v make >/dev/null ;;
    python3) command -v "$PYTHON" >/dev/null ;;
    # A working venv needs nothing more; else Debian's Python (also one about to be installed) makes
    # one only with ensurepip, which Debian ships in python3-venv.
    python3-venv) venv_works || { command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import ensurepip' 2>/dev/null; } ;;
    *) die "scripts/system_packages.sh knows no check for package $1" ;;
  esac
}

case "${1:-}" in
  install) needed=(python3 python3-venv); wanted=(g++) ;;
  report) needed=(python3 python3-venv); wanted=(g++ dataset-fashion-mnist) ;;
  luigid) needed=(python3 python3-venv curl); wanted=(g++) ;;
  test) needed=(python3 python3-venv dataset-fashion-mnist chromium chromium-driver iproute2 util-linux g++ curl make)
        wanted=() ;;
  *) echo "usage: $0 install|report|luigid|test" >&2; exit 2 ;;
esac
target=$1

missing_needed=() missing_wanted=()
for package in "${needed[@]}"; do present "$package" || missing_needed+=("$package"); done
for package in "${wanted[@]}"; do present "$package" || missing_wanted+=("$package"); done
missing=("${missing_needed[@]}" "${missing_wanted[@]}")
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "make $target: installing the Debian packages ${missing[*]} (apt-get, once) ..."
  log=$(mktemp "${TMPDIR:-/tmp}/system-packages.XXXXXX.log")
  started=$SECONDS
  if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         "${missing[@]}"; } >"$log" 2>&1; then
    rm -f "$log"
    still=()
    for package in "${missing[@]}"; do present "$package" || still+=("$package"); done
    [ ${#still[@]} -eq 0 ] || die "apt-get installed ${still[*]}, yet what make $target uses from them is not there"
    echo "make $target: installed ${missing[*]} in $((SECONDS - started)) s"
    exit 0
  fi
  tail -n 15 "$log" >&2
  [ ${#missing_needed[@]} -eq 0 ] || die "apt-get could not install ${missing[*]} (log above, in full in $log)"
  echo "warning: apt-get could not install ${missing[*]} (log in $log); make $target goes on without them" >&2
  exit 0
fi

if command -v apt-get >/dev/null; then
  why="this is uid $(id -u), not root"
  how="as root: apt-get install --no-install-recommends ${missing[*]}; or run make $target as root, which installs them"
else
  why="this machine has no apt-get"
  how="their equivalents, with this system's package manager"
fi
if [ ${#missing_needed[@]} -gt 0 ]; then
  die "make $target needs the Debian packages ${missing_needed[*]}, which are missing, and $why." \
      "Install them ($how), then run make $target again."
fi
for package in "${missing_wanted[@]}"; do
  case $package in
    g++) help="g++ builds the fused M-SVAG/SVAG kernel (without it: the pure-TF path, same weights, slower)" ;;
    dataset-fashion-mnist) help="dataset-fashion-mnist spares the download from the upstream URL ([pipeline] sources)" ;;
  esac
  echo "note: $help; it is missing and $why: install $package when you can" >&2
done
exit 0
