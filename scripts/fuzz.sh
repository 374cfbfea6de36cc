#!/usr/bin/env bash
# make fuzz: the replicas' TCP protocol (frames, messages, both handshakes) under libFuzzer for
# FUZZ_SECONDS. The fuzz build has its own scratch path, so it never disturbs the normal build.
# A crash stops the run with the input saved under .build/fuzz-artifacts/: replay it with
# `convoy-wire-fuzz FILE`, fix the bug, and add the file to Fuzz/crashes/wire/, where
# WireFuzzRegressionTests (make test) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
SECONDS_TO_FUZZ=${FUZZ_SECONDS:-300}
SCRATCH=${FUZZ_SCRATCH:-.build/fuzz}
CORPUS=.build/fuzz-corpus/wire
ARTIFACTS=.build/fuzz-artifacts

"$SWIFT" build --scratch-path "$SCRATCH" --sanitize=fuzzer -Xswiftc -DCONVOY_FUZZER --product convoy-wire-fuzz
"$SWIFT" build ${SWIFT_FLAGS:-} --product convoy-wire-fuzz
replay="$("$SWIFT" build ${SWIFT_FLAGS:-} --show-bin-path)/convoy-wire-fuzz"
fuzzer="$("$SWIFT" build --scratch-path "$SCRATCH" --show-bin-path)/convoy-wire-fuzz"

mkdir -p "$CORPUS" "$ARTIFACTS"
"$replay" --write-seeds "$CORPUS"
find Fuzz/corpus/wire Fuzz/crashes/wire -type f ! -name "*.md" -exec cp {} "$CORPUS"/ \;

echo "fuzzing the wire protocol for ${SECONDS_TO_FUZZ} s (corpus $CORPUS, crashes to $ARTIFACTS/)"
status=0
"$fuzzer" -max_total_time="$SECONDS_TO_FUZZ" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -dict=Fuzz/wire.dict -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 "$CORPUS" || status=$?
if [ "$status" -ne 0 ]; then
  echo "convoy-wire-fuzz found a failing input (exit $status):" >&2
  ls -l "$ARTIFACTS"/ >&2
  echo "replay: $replay $ARTIFACTS/<file>; once fixed, keep it in Fuzz/crashes/wire/" >&2
  exit "$status"
fi
echo "no failing input in ${SECONDS_TO_FUZZ} s; corpus: $(ls "$CORPUS" | wc -l) inputs"
# FUZZ_KEEP=1: merge what this run found into the kept corpus (only inputs with new coverage are added).
if [ "${FUZZ_KEEP:-0}" = 1 ]; then
  "$fuzzer" -merge=1 -dict=Fuzz/wire.dict Fuzz/corpus/wire "$CORPUS"
  echo "kept corpus: $(ls Fuzz/corpus/wire | wc -l) inputs in Fuzz/corpus/wire"
fi
