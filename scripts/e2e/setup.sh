#!/usr/bin/env bash
# Installs what the end-to-end tests need: Debian's Chromium (driven by
# playwright-core, which never downloads a browser) and code-server, a real
# VS Code served to that browser. code-server comes from the npm registry and
# is cached in .cache/e2e/; its native modules are built here from source
# (nothing downloads a prebuilt binary, a browser or a VS Code build).
#
# Idempotent: a second run checks the marker and the apt packages and exits.
# Usage: bash scripts/e2e/setup.sh        (E2E_FORCE=1 to rebuild the cache)
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
APT_PACKAGES=(chromium ripgrep pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LAYER_LENS_E2E_CACHE:-$ROOT/.cache/e2e}"
DEST="$CACHE/code-server-$CODE_SERVER_VERSION"
MARKER="$DEST/.layer-lens-ready"
# Native modules are tied to Node's ABI: a new Node major means a rebuild.
STAMP="code-server=$CODE_SERVER_VERSION node-abi=$(node -p process.versions.modules) arch=$(node -p process.arch)"

log() { printf '[e2e-setup] %s\n' "$*"; }
die() { printf '[e2e-setup] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ---------------------------------------------------------
install_apt_packages() {
  local missing=()
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  # The compilers node-gyp needs are usually there already (not necessarily from apt).
  local tool
  for tool in make g++ python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages present"
    return
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  log "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends --no-upgrade "${missing[@]}"
}

# --- code-server ---------------------------------------------------------------
free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Loads every native module code-server needs on Linux, and spawns a pty.
check_native_modules() {
  local dir="$1"
  (cd "$dir" && node -e "require('argon2')") || return 1
  (cd "$dir/lib/vscode" && node -e "
    for (const m of ['kerberos', '@vscode/spdlog', 'native-watchdog', '@parcel/watcher']) require(m);
    const pty = require('node-pty');
    const p = pty.spawn('/bin/sh', ['-c', 'echo pty-ok'], {});
    let out = '';
    p.onData((d) => { out += d; });
    p.onExit(() => { if (!out.includes('pty-ok')) { console.error('pty output: ' + JSON.stringify(out)); process.exit(1); } process.exit(0); });
    setTimeout(() => { console.error('pty did not exit'); process.exit(1); }, 10000).unref();
  ") || return 1
  [ -x "$dir/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" ] || return 1
}

# Starts code-server on a free port and checks it serves the workbench page
# and the workbench script; kills its whole process group afterwards.
check_serves_workbench() {
  local dir="$1" tmp port pid ok=1 page commit
  tmp="$(mktemp -d)"
  port="$(free_port)"
  mkdir -p "$tmp/ws" "$tmp/data" "$tmp/ext"
  : >"$tmp/config.yaml"
  setsid node "$dir/out/node/entry.js" --config "$tmp/config.yaml" \
    --bind-addr "127.0.0.1:$port" --auth none --disable-telemetry --disable-update-check \
    --disable-workspace-trust --user-data-dir "$tmp/data" --extensions-dir "$tmp/ext" \
    "$tmp/ws" >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    if page="$(curl -fsS "http://127.0.0.1:$port/?folder=$tmp/ws" 2>/dev/null)"; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  commit="$(node -p "require('$dir/package.json').commit")"
  if [[ "${page:-}" == *vscode-workbench-web-configuration* ]] &&
    curl -fsS -o /dev/null "http://127.0.0.1:$port/stable-$commit/static/out/vs/code/browser/workbench/workbench.js"; then
    ok=0
  else
    log "code-server did not serve the workbench; its log:"
    cat "$tmp/server.log" >&2
  fi
  kill -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
  return "$ok"
}

# The node-gyp bundled with npm: node-pty's postinstall runs `npx node-gyp`,
# which npm 11 would otherwise try to fetch (and refuse, without --yes).
npm_node_gyp() {
  local npm_cli candidate
  npm_cli="$(readlink -f "$(command -v npm)")"
  for candidate in \
    "$(dirname "$npm_cli")/../node_modules/node-gyp/bin/node-gyp.js" \
    "$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"; do
    if [ -f "$candidate" ]; then
      readlink -f "$candidate"
      return
    fi
  done
  die "node-gyp bundled with npm not found"
}

install_code_server() {
  local work="$DEST.partial" vscode node_gyp nodedir
  rm -rf "$work"
  mkdir -p "$work"
  log "npm pack code-server@$CODE_SERVER_VERSION"
  (cd "$work" && npm pack --silent "code-server@$CODE_SERVER_VERSION" >/dev/null)
  tar xzf "$work/code-server-$CODE_SERVER_VERSION.tgz" -C "$work" --strip-components=1
  rm "$work/code-server-$CODE_SERVER_VERSION.tgz"
  vscode="$work/lib/vscode"

  log "npm install (no scripts): code-server, lib/vscode, lib/vscode/extensions"
  local d
  for d in "$work" "$vscode" "$vscode/extensions"; do
    (cd "$d" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  done

  # ripgrep: Debian's binary where @vscode/ripgrep's postinstall would download one.
  mkdir -p "$vscode/node_modules/@vscode/ripgrep/bin"
  cp "$(command -v rg)" "$vscode/node_modules/@vscode/ripgrep/bin/rg"

  node_gyp="$(npm_node_gyp)"
  mkdir -p "$vscode/node_modules/.bin"
  ln -sfn "$node_gyp" "$vscode/node_modules/.bin/node-gyp"

  # Build the native modules from source against the installed Node headers.
  # build_from_source stops prebuild-install / node-pre-gyp from trying GitHub.
  # Without a nodedir, node-gyp would download Node's headers: use the installed ones.
  nodedir="$(npm config get nodedir)"
  if [ -z "$nodedir" ] || [ "$nodedir" = undefined ] || [ "$nodedir" = null ]; then
    nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    [ -f "$nodedir/include/node/node.h" ] ||
      die "no Node headers in $nodedir/include/node (set npm's nodedir); node-gyp would download them"
    export npm_config_nodedir="$nodedir"
  fi
  export npm_config_build_from_source=true
  export JOBS=max
  log "npm rebuild argon2 (code-server)"
  (cd "$work" && npm rebuild --foreground-scripts --loglevel=error argon2 >"$work/rebuild.log" 2>&1) ||
    { cat "$work/rebuild.log" >&2; die "npm rebuild failed in code-server"; }
  # @parcel/watcher ships prebuilt in its npm package (watcher-linux-x64-glibc);
  # the @vscode/windows-* modules are Windows-only; @vscode/deviceid is JS on Linux.
  log "npm rebuild kerberos @vscode/spdlog native-watchdog node-pty (lib/vscode)"
  (cd "$vscode" && npm rebuild --foreground-scripts --loglevel=error \
    kerberos @vscode/spdlog native-watchdog node-pty >"$work/rebuild-vscode.log" 2>&1) ||
    { cat "$work/rebuild-vscode.log" >&2; die "npm rebuild failed in lib/vscode"; }

  # What code-server's own postinstall.sh does besides installing.
  ln -sfn node_modules "$vscode/node_modules.asar"
  ln -sfn code-linux.sh "$vscode/bin/remote-cli/code-server"
  ln -sfn browser-linux.sh "$vscode/bin/helpers/browser.sh"

  # npm 11 may skip install scripts it was not told to allow: check the result.
  check_native_modules "$work" ||
    { cat "$work/rebuild.log" "$work/rebuild-vscode.log" >&2
      die "native modules missing or broken (did npm skip their install scripts? see allowScripts)"; }
  check_serves_workbench "$work" || die "code-server does not serve the workbench"

  rm -rf "$DEST"
  mv "$work" "$DEST"
  printf '%s\n' "$STAMP" >"$MARKER"
}

main() {
  local start=$SECONDS
  install_apt_packages
  command -v chromium >/dev/null || die "chromium missing after apt-get install"
  if [ -z "${E2E_FORCE:-}" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$STAMP" ]; then
    log "code-server $CODE_SERVER_VERSION cached in $DEST"
  else
    mkdir -p "$CACHE"
    install_code_server
    log "code-server $CODE_SERVER_VERSION installed in $DEST"
  fi
  log "ready in $((SECONDS - start)) s ($(chromium --version 2>/dev/null))"
}

main "$@"
