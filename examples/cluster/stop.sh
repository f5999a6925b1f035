#!/bin/sh
# Stops the example cluster started by run.sh (SIGTERM, then SIGKILL after 10 s); --wipe also deletes its Raft data dirs and logs.
#
# usage: examples/cluster/stop.sh [--port-base N] [--wipe]   (N: the base given to run.sh; default 7000)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
base=${BALANCER_EXAMPLE_PORT_BASE:-7000}
wipe=false
while [ $# -gt 0 ]; do
  case "$1" in
    --port-base)
      if [ $# -lt 2 ]; then echo "stop.sh: --port-base needs a number" >&2; exit 2; fi
      base=$2
      shift 2
      ;;
    --port-base=*) base=${1#--port-base=}; shift ;;
    --wipe) wipe=true; shift ;;
    *) echo "stop.sh: unknown argument '$1' (usage: stop.sh [--port-base N] [--wipe])" >&2; exit 2 ;;
  esac
done
if [ "$base" = 7000 ]; then data="$here/data"; else data="$here/data/base-$base"; fi

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

if [ "$wipe" = true ]; then
  if [ "$base" = 7000 ]; then
    # The other bases' clusters live under data/ too: only this one's files go.
    rm -rf "$data"/n1 "$data"/n2 "$data"/n3 "$data"/n4 "$data"/*.log
    echo "deleted the Raft data and logs in examples/cluster/data"
  else
    rm -rf "$data"
    echo "deleted examples/cluster/data/base-$base (its node files, Raft data and logs)"
  fi
fi
