#!/usr/bin/env bash
# Installs what the tests drive for real, when missing, then builds ctrnet.
# Debian packages: the reference CNI plugins (the oracle), iptables, nftables
# (nft: bridge's macspoofchk and the tests' ruleset snapshots), iproute2 (ip,
# bridge), util-linux (flock, nsenter, unshare, setpriv), containerd + runc
# (started by the tests on a private socket), etcd-server (the overlay tests'
# etcd, on a private data dir), openssl (their TLS certificates), busybox-static (the
# containers' rootfs), procps (sysctl), kmod; for `npm run bench` only:
# dnsmasq-base (the DNS baseline) and dnsperf (the DNS load client).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in containernetworking-plugins iptables nftables iproute2 util-linux containerd runc busybox-static procps kmod etcd-server openssl dnsmasq-base dnsperf; do
  have "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-setup: missing packages ${need[*]} and not root: run as root (the e2e tests need root anyway)" >&2
    exit 1
  fi
  echo "test-setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Every program the product or the tests run must now be there: a package
# that installed without it is a failure here, not a skipped test later.
missing=()
for prog in ip bridge nft iptables iptables-save iptables-restore ip6tables-save ip6tables-restore \
  nsenter flock unshare setpriv sysctl containerd ctr runc busybox sh cat etcd openssl dnsmasq dnsperf; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
[ -x /usr/lib/cni/bridge ] || missing+=(/usr/lib/cni/bridge)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-setup: still missing after install: ${missing[*]}" >&2
  exit 1
fi
# A distro containerd service must not be what the tests talk to: they start
# their own on a private socket. Nothing here starts or stops the host's.

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent
