#!/usr/bin/env bash
# Builds relaywatch_VERSION_ARCH.deb with dpkg-deb: a virtualenv under /opt/relaywatch on Debian's own
# python3 (Debian 12's python3-cryptography is too old for x509.verification, so the Python dependencies
# travel in the package, as dh-virtualenv would do), the systemd unit and a default config (a conffile).
# Usage: packaging/deb/build.sh [OUTDIR]   (needs network access to PyPI, or a pip cache)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-dist}
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
prefix=/opt/relaywatch
mkdir -p "$stage$prefix" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/relaywatch" "$stage/DEBIAN" \
         "$stage/usr/share/doc/relaywatch"
/usr/bin/python3 -m venv "$stage$prefix"
"$stage$prefix/bin/pip" install -q --disable-pip-version-check --no-compile .
# Bytecode in the package, compiled for where it will live (-s/-p: tracebacks name /opt/relaywatch, not the
# staging folder): the service cannot write beside its code (DynamicUser, ProtectSystem=strict), so without
# it every start, every restarted probe worker and every path worker would compile its modules again.
# Shipped files, so dpkg removes them with the package.
"$stage$prefix/bin/python" -m compileall -q -j 0 -s "$stage" -p / "$stage$prefix/lib"
# the venv was built in the staging directory: point its scripts at where it will live
grep -rlI "$stage$prefix" "$stage$prefix/bin" | xargs sed -i "s#$stage$prefix#$prefix#g"
sed -i "s#$stage$prefix#$prefix#g" "$stage$prefix/pyvenv.cfg"
ln -s "$prefix/bin/relaywatch" "$stage/usr/bin/relaywatch"
install -m 644 packaging/systemd/relaywatch.service "$stage/lib/systemd/system/relaywatch.service"
install -m 644 packaging/config/relaywatch.yml "$stage/etc/relaywatch/relaywatch.yml"
install -m 644 packaging/config/web-config.yml "$stage/usr/share/doc/relaywatch/web-config.yml.example"
install -m 644 README.md "$stage/usr/share/doc/relaywatch/README.md"
echo "/etc/relaywatch/relaywatch.yml" > "$stage/DEBIAN/conffiles"
size=$(du -sk "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: relaywatch
Version: $version
Architecture: $arch
Maintainer: relaywatch maintainers <relaywatch@example.org>
Installed-Size: $size
Depends: python3 (>= 3.11), python3-venv, libc6
Recommends: ca-certificates
Section: net
Priority: optional
Homepage: https://github.com/relaywatch/relaywatch
Description: TLS interception and STARTTLS stripping monitor for mail relays
 relaywatch probes mail relays (Microsoft 365 / Exchange Online) over SMTP, IMAP and POP3, captures the
 certificate chain the network path presents and tells TLS interception, STARTTLS stripping and
 downgrades apart, with Prometheus metrics, a status page and alert rules.
CONTROL
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = "configure" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable relaywatch.service >/dev/null || true
    systemctl restart relaywatch.service >/dev/null || true
fi
POSTINST
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl stop relaywatch.service >/dev/null || true
fi
PRERM
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"
mkdir -p "$out"
dpkg-deb --root-owner-group --build "$stage" "$out/relaywatch_${version}_${arch}.deb" >/dev/null
echo "$out/relaywatch_${version}_${arch}.deb"
