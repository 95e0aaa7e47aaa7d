#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine: the Debian packages the tests and the
# lab use, then relaywatch itself with its test extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(openssl ca-certificates iproute2 iptables procps sslsplit postfix knot knot-dnsutils unbound
      prometheus prometheus-pushgateway prometheus-blackbox-exporter prometheus-alertmanager chromium
      python3-venv systemd)  # python3-venv: the .deb build; systemd: systemd-analyze; knot, unbound: DANE lab
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # postfix asks questions on install; answer them up front.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string relaywatch.lab" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install; the tests start their own instances.
for svc in postfix knot unbound prometheus prometheus-pushgateway prometheus-blackbox-exporter \
           prometheus-alertmanager prometheus-node-exporter; do
  systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
# pyenv puts console scripts on PATH through shims, made only on rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
