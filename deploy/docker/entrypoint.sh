#!/bin/sh
# The image's entrypoint. Arguments go to myagent-ws as they are (docker run IMAGE check
# /app/agent.py). With none, it serves /app/agent.py when a file is mounted there, else the
# example agent through the image's config (/app/config/server.yaml names it).
set -eu
CONFIG=/app/config/server.yaml
EXAMPLE=/app/examples/weather_agent.py

fail() {
    echo "myagent-ws: $1" >&2
    echo "mount your agent file at /app/agent.py:" >&2
    echo '  docker run -p 8080:8080 -e MYAGENT_WS_TOKENS=... -v "$PWD/my_agent.py:/app/agent.py" myagent-ws' >&2
    exit 2
}

if [ "$#" -eq 0 ]; then
    if [ -f /app/agent.py ]; then
        set -- server /app/agent.py --config "$CONFIG"
    elif [ -e /app/agent.py ]; then
        fail "/app/agent.py is a directory, not an agent file (Docker makes one when the host path given to -v does not exist)"
    elif [ -f "$EXAMPLE" ]; then
        set -- server --config "$CONFIG"
    else
        fail "no agent to serve: no file at /app/agent.py, and no example at $EXAMPLE"
    fi
fi
exec myagent-ws "$@"
