#!/usr/bin/env bash
# Installs the system components the test suite runs for real (Debian packages).
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
# CJK glyphs, so the console's screenshots of 查询北京天气 show text, not boxes (1.6 MB)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need+=(fonts-wqy-microhei)
# The image and the compose stack, built and run for real (tests/deploy): Debian's Docker Engine
# (a `docker` client alone is not enough: dockerd), Compose 1.29, and mmdebstrap, which makes the
# base images since no registry is reachable. The tests start dockerd when it is not running.
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
# callgrind, for bench.cache_sim and its smoke test: instructions and cache misses per turn
command -v valgrind >/dev/null || need+=(valgrind)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
