#!/bin/sh
# The image's entrypoint: the official Go action proxy where the base has one (openwhisk/action-*),
# else the project's own proxy, which speaks the same contract (/init, /run on port 8080).
if [ -x /bin/proxy ]; then
  exec /bin/proxy "$@"
fi
cd /opt/deployer-proxy || exit 1
exec python3 -u -m runtimes.proxy --host 0.0.0.0 --port "${__OW_PROXY_PORT:-8080}" --quiet "$@"
