#!/usr/bin/env bash
# Installs what tessera's guard integration tests drive, on Debian 12: node and npm, this
# folder's npm packages (exact versions, from package-lock.json) into DIR/node_modules, and with
# --browser Debian's Chromium. Quiet when all is there already, so every test can call it.
#
#   setup.sh [--browser] DIR
#
# Then: NODE_PATH=DIR/node_modules node tests/integration/guard_js/interop.mjs ...
# Exit status 77 (skip) when a missing package cannot be fetched: no Debian archive or npm
# registry in reach. Calls for the same DIR wait for each other.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
browser=0
dir=
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    -*) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
    *) dir=$arg ;;
  esac
done
if [ -z "$dir" ]; then
  echo "usage: setup.sh [--browser] DIR" >&2
  exit 2
fi

# apt_install PACKAGE...: as root, or through sudo when it needs no password.
apt_install() {
  local sudo=() log offline
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "setup.sh: $* missing; run as root: apt-get install -y $*" >&2
      exit 1
    fi
  fi
  log=$(mktemp)
  # A lock held by another test's install is waited for, not failed on.
  if "${sudo[@]}" apt-get -qq -o DPkg::Lock::Timeout=300 update >"$log" 2>&1 &&
     "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o DPkg::Lock::Timeout=300 \
       install --no-install-recommends "$@" >>"$log" 2>&1; then
    rm -f "$log"
    return
  fi
  offline='Could not resolve|Failed to fetch|Unable to fetch|Temporary failure|Unable to connect'
  offline+='|Unable to locate package|has no installation candidate'
  if grep -qE "$offline" "$log"; then
    echo "skipping: cannot reach the Debian archive to install $*" >&2
    rm -f "$log"
    exit 77
  fi
  cat "$log" >&2
  rm -f "$log"
  echo "setup.sh: apt-get install $* failed" >&2
  exit 1
}

mkdir -p "$dir"
exec 9>"$dir/.setup.lock"
flock 9

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "$browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
      echo "setup.sh: no $tool on PATH after apt-get install ${missing[*]}" >&2
      exit 1
    fi
  done
  if [ "$browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
    echo "setup.sh: no /usr/bin/chromium after apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "setup.sh: node $(node --version) is too old; the guard tests need node 18 or later" >&2
  exit 1
fi

want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
stamp="$dir/.package-lock.sha256"
if [ -d "$dir/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
rm -f "$stamp"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
log="$dir/npm-ci.log"
if ! npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >"$log" 2>&1
then
  if grep -qE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|ENETDOWN' "$log"
  then
    echo "skipping: cannot reach the npm registry to install the guard test packages" >&2
    exit 77
  fi
  cat "$log" >&2
  echo "setup.sh: npm ci failed" >&2
  exit 1
fi
rm -f "$log"
echo "$want" >"$stamp"
