#!/bin/sh
# bucketrun's wrapper around the service script, run by the user's image (needs only /bin/sh).
# It records the script's PID and exit code on the shared work volume, so the stage-out container
# knows when to upload and can tell a finished script from one that was killed outright.
state="$BUCKETRUN_STATE_DIR"
mkdir -p "$TMP_OUTPUT_DIR" "$state"
echo $$ > "$state/run.pid"
/bin/sh "$BUCKETRUN_SCRIPT" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
code=$?
# A trapped signal interrupts the first wait; wait again for the real exit status.
while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    code=$?
done
echo "$code" > "$state/exit-code.tmp" && mv "$state/exit-code.tmp" "$state/exit-code"
exit "$code"
