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
WHARF="${CARGO_TARGET_DIR:-$PWD/target}/release/wharf"

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
# Deploying the job also creates the buckets its manifest names (input, output).
"$WHARF" deploy examples/summary-job

latest_event_run() {
  "$WHARF" runs summary-job --json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["trigger"] == "event"]
print(runs[0]["id"] if runs else "")'
}
before="$(latest_event_run)"

echo
echo "Uploading examples/summary-job/data/sample.rds to bucket input starts the R job…"
"$WHARF" cp examples/summary-job/data/sample.rds s3://input/sample.rds
# The upload's event starts a run within milliseconds; find it and follow its logs.
run=""
for _ in $(seq 1 100); do
  run="$(latest_event_run)"
  [ -n "$run" ] && [ "$run" != "$before" ] && break
  run=""
  sleep 0.1
done
[ -n "$run" ] || { echo "No run started for the upload; see $DATA/server.log" >&2; exit 1; }
"$WHARF" logs "$run" -f
state="$("$WHARF" status "$run" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')"
[ "$state" = succeeded ] || { echo "The run $run $state; see: $WHARF logs $run" >&2; exit 1; }

mkdir -p results/summary-job
"$WHARF" cp s3://output/summary.csv results/summary-job/summary.csv
echo
echo "The result, from bucket output (results/summary-job/summary.csv):"
cat results/summary-job/summary.csv
echo
echo "The input was renamed once processed:"
"$WHARF" ls s3://input
echo
echo "Deploying examples/btc-api, a Plumber API, as a service behind the proxy…"
"$WHARF" deploy examples/btc-api
echo "GET $URL/apps/btc-api/price:"
curl -fsS "$URL/apps/btc-api/price"
echo
echo "Also: $URL/apps/btc-api/chart.png and $URL/apps/btc-api/report in a browser; \`$WHARF ps btc-api\`."
echo
echo "Next: $WHARF runs, $WHARF events, $WHARF s3 keys create (for aws-cli, boto3, rclone), $WHARF --help"
