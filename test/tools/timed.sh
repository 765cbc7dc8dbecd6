#!/usr/bin/env bash
# Runs a step of make and prints how long it took: `time: NAME Ns`, also when it fails.
# Usage: test/tools/timed.sh NAME command [args...]
name=$1; shift
start=$(date +%s)
"$@"; rc=$?
echo "time: $name $(( $(date +%s) - start ))s$([ $rc = 0 ] || echo " (failed, exit $rc)")"
exit $rc
