#!/usr/bin/env bash
# run.sh TARGET SEEDS SCRATCH [MORE_SEEDS...] - one libFuzzer target for
# ORDERQ_FUZZ_SECONDS (default 30). New inputs go to SCRATCH (under the
# build dir; libFuzzer writes to its first corpus only), so the seeds (SEEDS,
# and folders of the tree used as they are, such as templates/) stay as
# written; a crash or a broken invariant is saved as
# SCRATCH/../artifacts/<target>/crash-* and fails the test.
set -euo pipefail
bin=$1 seeds=$2 scratch=$3
shift 3 # the rest: more seed folders
name=$(basename "$bin")
artifacts="$(dirname "$scratch")/artifacts/$name"
mkdir -p "$scratch" "$artifacts"
secs=${ORDERQ_FUZZ_SECONDS:-30}
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$scratch" "$seeds" "$@"
