#!/usr/bin/env bash
# The README's first command: install what is missing, build Wharf, start the server with
# its embedded defaults (SQLite and a data folder), deploy examples/summary-job, run it
# with live logs, and show where the result is.
#
# The server keeps running in the background afterwards (its log: $DATA/server.log);
# stop it with: kill $(cat $DATA/server.pid)
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${WHARF_DATA_DIR:-$PWD/wharf-data}"
LISTEN="${WHARF_LISTEN:-127.0.0.1:8080}"
URL="http://$LISTEN"

scripts/install-deps.sh
echo "Building Wharf (release)…"
cargo build --release --locked -q -p wharf
WHARF="$PWD/target/release/wharf"

mkdir -p "$DATA"
if [ -f "$DATA/server.pid" ] && kill -0 "$(cat "$DATA/server.pid")" 2>/dev/null; then
  echo "Restarting the Wharf server (pid $(cat "$DATA/server.pid"))…"
  kill "$(cat "$DATA/server.pid")"
  while kill -0 "$(cat "$DATA/server.pid")" 2>/dev/null; do sleep 0.1; done
fi
nohup "$WHARF" server --listen "$LISTEN" --data-dir "$DATA" >>"$DATA/server.log" 2>&1 &
echo $! >"$DATA/server.pid"
for _ in $(seq 1 100); do
  curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$URL/readyz" >/dev/null || { echo "The server did not start; see $DATA/server.log" >&2; exit 1; }
echo "Wharf is running at $URL (data in $DATA, log in $DATA/server.log)."

"$WHARF" login "$URL" --token-file "$DATA/admin-token"
"$WHARF" deploy examples/summary-job
"$WHARF" run summary-job
"$WHARF" output summary-job -o results/summary-job
echo
echo "The result (results/summary-job/summary.csv):"
cat results/summary-job/summary.csv
echo
echo "Next: $WHARF runs, $WHARF logs summary-job, $WHARF --help"
