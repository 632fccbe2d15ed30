#!/usr/bin/env bash
# Makes `promtool` (Prometheus's rule and config checker) available for tests/test_alert_rules.py,
# from Debian's `prometheus` package. Only the tool is wanted: if installing the package started a
# Prometheus server (its postinst does where systemd or sysvinit runs services), it is stopped and
# kept from starting at boot, so nothing is left listening on :9090.
# Never fails: if promtool cannot be installed it says so, and the test then fails saying how to.
set -uo pipefail

command -v promtool >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool not found and this is not a Debian-like system: install Prometheus's promtool for tests/test_alert_rules.py" >&2
    exit 0
fi
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
running() { command -v pgrep >/dev/null 2>&1 && pgrep -x prometheus >/dev/null 2>&1; }

echo "promtool not found: installing Debian's prometheus package for it (apt-get install -y --no-install-recommends prometheus) ..." >&2
was_running=no
running && was_running=yes
log="$(mktemp)"
install_prometheus() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >>"$log" 2>&1; }
if ! install_prometheus; then
    # A fresh container has no package lists yet: fetch them, once, and try again.
    if grep -q -E "Unable to locate package|has no installation candidate" "$log"; then
        as_root apt-get update >>"$log" 2>&1 && install_prometheus
    fi
fi
if ! command -v promtool >/dev/null 2>&1; then
    echo "could not install promtool (apt-get output in $log): tests/test_alert_rules.py will fail until it is installed" >&2
    exit 0
fi
if [ "$was_running" = no ] && running; then
    echo "stopping the Prometheus server the package started (only promtool is needed)" >&2
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus >>"$log" 2>&1 || true
    else
        as_root /etc/init.d/prometheus stop >>"$log" 2>&1 || true
    fi
fi
rm -f "$log"
exit 0
