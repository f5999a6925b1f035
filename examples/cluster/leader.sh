#!/bin/sh
# Prints the id of the example cluster's current leader, as the nodes themselves report it (the one whose role is leader).
#
# usage: examples/cluster/leader.sh [--port-base N]   (the same base as run.sh; default 7000)
# Exits 1, saying so on stderr, when no running node says it leads (an election under way, or no quorum).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
base=${BALANCER_EXAMPLE_PORT_BASE:-7000}
case "${1:-}" in
  --port-base) base=${2:?leader.sh: --port-base needs a number} ;;
  --port-base=*) base=${1#--port-base=} ;;
  '') ;;
  *) echo "leader.sh: unknown argument '$1'" >&2; exit 2 ;;
esac
if [ "$base" = 7000 ]; then conf="$here"; else conf="$here/data/base-$base"; fi

for n in n1 n2 n3 n4; do
  [ -f "$conf/$n.yaml" ] || continue
  # A stopped node does not answer; a follower's idea of the leader may be stale, so only a node's word about itself counts.
  role=$(node "$repo/bin/balancer.js" -c "$conf/$n.yaml" cluster status --json 2>/dev/null |
    node -e 'let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => { try { console.log(JSON.parse(s).role); } catch { console.log("unknown"); } });') || continue
  if [ "$role" = leader ]; then
    echo "$n"
    exit 0
  fi
done
echo "leader.sh: no running node of the example cluster says it is the leader (an election may be under way, or there is no quorum)" >&2
exit 1
