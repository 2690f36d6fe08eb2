#!/usr/bin/env bash
# Debian packages that the demo and the test suites need beyond Node and npm.
#
#   scripts/prereqs.sh WHO PKG...
#
# Installs the missing ones with apt-get when it can (as root, or with sudo that needs no
# password). When it cannot, it prints which packages are missing and the command that installs
# them, framed so that it is not lost in the output, and exits 1. WHO names the caller in that
# message ("npm test", "npm run demo").
set -euo pipefail
who="${1:?usage: prereqs.sh WHO PKG...}"
shift
# Not Debian: the packages have other names there; the README lists what they provide.
command -v dpkg >/dev/null || exit 0
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
sudo=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo -n); fi
if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
  echo "[$who] installing ${missing[*]} with apt-get" >&2
  if "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" $cmd -qq >/dev/null; then exit 0; fi
fi
{
  echo
  echo "################################################################################"
  echo "# $who: missing Debian packages: ${missing[*]}"
  echo "# Install them, then rerun:"
  echo "#   sudo apt-get update && sudo $cmd"
  echo "################################################################################"
  echo
} >&2
exit 1
