#!/bin/sh
# As the official redis image's entrypoint: options alone run redis-server, and redis-server
# runs without protected mode (the compose network's other containers are its clients).
set -e
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
