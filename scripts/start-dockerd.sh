#!/usr/bin/env bash
# Makes sure a Docker engine answers `docker info`, for docker-mode (tests/docker, the runtime image).
# Starts dockerd in the background when root and it is installed but not running (log in
# DOCKERD_LOG, default /var/log/deployer-dockerd.log), waits up to DOCKERD_WAIT_S (60) seconds.
# Never fails: without root or an engine it prints one line saying docker-mode will be skipped.
set -uo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: no engine running and cannot start one (needs root and dockerd); docker-mode will be skipped"
  exit 0
fi
log=${DOCKERD_LOG:-/var/log/deployer-dockerd.log}
wait_s=${DOCKERD_WAIT_S:-60}
# setsid + closed std streams: the engine outlives set-up and holds none of its pipes
setsid nohup dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq "$((wait_s * 5))"); do
  if docker info >/dev/null 2>&1; then
    echo "docker: started dockerd (log: $log)"
    exit 0
  fi
  sleep 0.2
done
echo "docker: dockerd did not answer within ${wait_s} s (see $log); docker-mode will be skipped"
exit 0
