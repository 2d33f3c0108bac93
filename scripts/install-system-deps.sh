#!/usr/bin/env bash
# System packages the tests use: Node.js for the official OpenWhisk JS client, Chromium for the
# browser test, DejaVu and Liberation fonts for the printed-digit score and more font families for
# the printed-digit generator's training and held-out families (mlcore/fonts.py), Docker (docker.io) and
# debootstrap for docker-mode (the runtime image's base is made locally: no image registry
# here), and (via install-hostnet-deps.sh) QEMU, OVS-DPDK, iperf3 and a guest kernel. Then
# starts dockerd when it is not running (start-dockerd.sh).
# Idempotent. Without root or apt it says what is missing and exits 0: those tests then skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# fonts for the printed-digit score of `deployer model train` (mlcore/printed.py)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
ls /usr/share/fonts/truetype/liberation*/LiberationSans-Regular.ttf >/dev/null 2>&1 || missing+=(fonts-liberation)
# font families for the printed-digit generator (mlcore/fonts.py splits them into training and held-out ones)
for pkg in fonts-freefont-ttf fonts-noto-core fonts-urw-base35 fonts-croscore fonts-crosextra-carlito \
  fonts-crosextra-caladea fonts-open-sans fonts-roboto-unhinted fonts-lato fonts-cantarell fonts-texgyre \
  fonts-linuxlibertine fonts-ebgaramond fonts-comic-neue fonts-inconsolata fonts-hack fonts-firacode \
  fonts-quicksand fonts-oxygen fonts-cabin fonts-gfs-artemisia; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "warning: apt-get install ${missing[*]} failed; the tests that need them will skip"
  else
    echo "missing (not root or no apt): ${missing[*]}; the tests that need them will skip"
  fi
fi

if [ -x "$here/start-dockerd.sh" ]; then
  "$here/start-dockerd.sh"
fi

if [ -x "$here/install-hostnet-deps.sh" ]; then
  "$here/install-hostnet-deps.sh"
fi
exit 0
