#!/bin/sh
# Stops the example cluster started by run.sh (SIGTERM, then SIGKILL after 10 s); --wipe also deletes the Raft data dirs and logs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
data="$here/data"

for n in n1 n2 n3 n4 backends; do
  pidfile="$data/$n.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    tries=0
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
      sleep 0.2
      tries=$((tries + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "stopped $n (pid $pid)"
  fi
  rm -f "$pidfile"
done

if [ "${1:-}" = "--wipe" ]; then
  rm -rf "$data"
  echo "deleted examples/cluster/data (Raft logs, snapshots, node logs)"
fi
