#!/usr/bin/env bash
# Checks for the Debian packages that `make test` needs besides Go, and
# installs the missing ones with apt-get when run as root. Not as root, it
# names them in one line and fails. It calls apt-get only when something is
# missing, so it is quick on a machine that has everything.
#
#   gcc, libc6-dev  go test -race needs cgo
#   libturbojpeg0-dev, libwebp-dev
#                   the accelerated encoders (-tags turbo, make test-encoders;
#                   make build links their static archives, mk/encode.mk)
#   python3-numpy   the ComfyUI node and its tests (/usr/bin/python3)
#   python3-pil     the ComfyUI node's encoder (the seed's), its tests, and PIL's figures in make bench-encode
#   chromium        the browser tests (/usr/bin/chromium, or FRAMECAST_CHROMIUM);
#                   not needed with FRAMECAST_SKIP_BROWSER=1
set -euo pipefail

need=()
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/include/stdlib.h ] || need+=(libc6-dev)
[ -e /usr/include/turbojpeg.h ] || need+=(libturbojpeg0-dev)
[ -e /usr/include/webp/encode.h ] || need+=(libwebp-dev)
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
  /usr/bin/python3 -c 'import PIL' 2>/dev/null || need+=(python3-pil)
else
  need+=(python3 python3-numpy python3-pil)
fi
if [ "${FRAMECAST_SKIP_BROWSER:-}" != 1 ]; then
  if [ -n "${FRAMECAST_CHROMIUM:-}" ]; then
    [ -x "$FRAMECAST_CHROMIUM" ] || {
      echo "deps: FRAMECAST_CHROMIUM=$FRAMECAST_CHROMIUM is not an executable; unset it to use Debian's chromium" >&2
      exit 1
    }
  else
    [ -x /usr/bin/chromium ] || need+=(chromium)
  fi
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "deps: missing Debian packages; install them with: sudo apt-get install --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
