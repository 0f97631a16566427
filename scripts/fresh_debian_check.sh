#!/usr/bin/env bash
# `make test` on a fresh Debian, the way a new user meets it: debootstrap a minimal Debian (bookworm by
# default) into a folder, put a fresh `git clone` of this checkout's branch in it, and run the command there
# as root. Needs root on the host and the package `debootstrap`; the chroot reaches only the Debian mirror
# and PyPI, and shares the host's kernel (network namespaces, tmpfs mounts and Chromium work in it).
#
#   sudo scripts/fresh_debian_check.sh [FOLDER]          (default: a new folder under /var/tmp)
#
#   CHECK_COMMAND  what to run in the clone (default: `make test`; `.ci/run` for the CI path)
#   CHECK_PREINSTALL  Debian packages put in first, as a user would to type the command (default: make)
#   CHECK_SUITE, CHECK_MIRROR  the Debian release and mirror (bookworm, http://deb.debian.org/debian)
#   CHECK_CA_BUNDLE  a CA bundle for pip in the chroot, where HTTPS goes through a proxy that signs with its
#                    own CA (the host trusts it, a bare Debian does not); default none: pip's own bundle
#
# Only committed work travels (it is a clone). The chroot stays in FOLDER for a look afterwards; its
# mounts (/proc, /sys, /dev, /run) are always undone. Exit status: the command's.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "this needs root on the host (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"

repo=$(cd "$(dirname "$0")/.." && pwd)
branch=$(git -C "$repo" rev-parse --abbrev-ref HEAD)
[ -z "$(git -C "$repo" status --porcelain)" ] || echo "note: uncommitted changes in $repo stay behind (a clone)"
folder=${1:-$(mktemp -d /var/tmp/fmnist-fresh.XXXXXX)}
root=$folder/root
suite=${CHECK_SUITE:-bookworm}
mirror=${CHECK_MIRROR:-http://deb.debian.org/debian}
[ ! -e "$root" ] || die "$root exists already; give a new folder"
mkdir -p "$folder"

unmount() {
  for point in run dev sys proc; do
    if mountpoint -q "$root/$point"; then umount -R "$root/$point" || umount -R -l "$root/$point"; fi
  done
}
trap unmount EXIT

started=$SECONDS
echo "debootstrap --variant=minbase $suite into $root ..."
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$folder/debootstrap.log" 2>&1 ||
  die "debootstrap failed; see $folder/debootstrap.log"
# The sources a Debian installation has: the release, its updates and its security updates.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"
trust=()
if [ -n "${CHECK_CA_BUNDLE:-}" ]; then
  cp "$CHECK_CA_BUNDLE" "$root/etc/host-ca-bundle.crt"
  trust=(PIP_CERT=/etc/host-ca-bundle.crt)
fi
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
git clone -q --branch "$branch" "$repo" "$root/root/fmnist-pipeline"
echo "fresh $suite ready in $((SECONDS - started)) s; $(chroot "$root" dpkg-query -W | wc -l) packages;" \
  "clone of $branch at $(git -C "$root/root/fmnist-pipeline" rev-parse --short HEAD)"

in_chroot() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "${trust[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$1"
}
preinstall=${CHECK_PREINSTALL-make}
if [ -n "$preinstall" ]; then
  echo "preinstalling $preinstall ..."
  in_chroot "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $preinstall >/dev/null"
fi
command=${CHECK_COMMAND:-make test}
echo "running \`$command\` as root in the clone ..."
started=$SECONDS
status=0
in_chroot "cd /root/fmnist-pipeline && $command" || status=$?
echo "\`$command\` exited $status after $((SECONDS - started)) s"
exit "$status"
