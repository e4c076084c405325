#!/usr/bin/env bash
# A SoftHSM2 token for keyward's HSM keys in development and tests (docs/hsm.md).
#
#   hack/softhsm.sh init DIR [LABEL]
#       creates DIR/softhsm2.conf and DIR/tokens/, initialises a token labelled LABEL (default
#       keyward) with a fresh random user PIN in DIR/pin and SO PIN in DIR/so-pin (mode 0600),
#       and writes DIR/env, to be sourced: KEYWARD_PKCS11_MODULE, KEYWARD_PKCS11_TOKEN_LABEL,
#       KEYWARD_PKCS11_PIN_FILE and SOFTHSM2_CONF. Prints DIR/env's path last.
#
# SoftHSM2 is a software token: its "HSM" keys are files in DIR/tokens, encrypted under the
# PIN. It speaks real PKCS#11, which is what the tests need; it protects nothing in production.
set -euo pipefail

MODULE=/usr/lib/softhsm/libsofthsm2.so

log() { printf '[softhsm] %s\n' "$*" >&2; }

need_packages() {
  [ -e "$MODULE" ] && command -v pkcs11-tool >/dev/null && return 0
  log "installing Debian packages softhsm2 opensc"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    softhsm2 opensc >/dev/null
}

random_pin() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }

init() {
  local dir=$1 label=${2:-keyward}
  need_packages
  mkdir -p "$dir/tokens"
  dir=$(cd "$dir" && pwd)
  cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  (umask 077 && random_pin >"$dir/pin" && random_pin >"$dir/so-pin")
  SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label "$label" \
    --pin "$(cat "$dir/pin")" --so-pin "$(cat "$dir/so-pin")" >/dev/null
  cat >"$dir/env" <<ENV
export SOFTHSM2_CONF=$dir/softhsm2.conf
export KEYWARD_PKCS11_MODULE=$MODULE
export KEYWARD_PKCS11_TOKEN_LABEL=$label
export KEYWARD_PKCS11_PIN_FILE=$dir/pin
ENV
  log "token $label initialised in $dir/tokens"
  echo "$dir/env"
}

case "${1:-}" in
  init) shift; [ $# -ge 1 ] || { echo "usage: $0 init DIR [LABEL]" >&2; exit 2; }; init "$@" ;;
  *) echo "usage: $0 init DIR [LABEL]" >&2; exit 2 ;;
esac
