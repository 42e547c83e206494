#!/usr/bin/env bash
# Builds the libFuzzer harnesses in Fuzz/ (address sanitizer + coverage, one build reused by every
# target) and runs each target from its committed seed corpus. docs/fuzzing.md explains the targets.
#
#   scripts/fuzz.sh [--seconds N] [--runs N] [--build-only] [--no-build] [target...]
#
# Targets: wire safetensors image tar manifest toml (default: all). Each run starts from
# Fuzz/Corpus/<target> (never written to; crash inputs that were fixed live there too, so every run
# replays them) and keeps what it discovers in Fuzz/.build/corpus/<target>; a crashing input is
# saved as Fuzz/.build/artifacts/<target>/crash-<sha1> and the script exits non-zero.
# Budget per target: --seconds and/or --runs (whichever ends first), default --seconds 30. The last
# lines report each target's executions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH

all_targets=(wire safetensors image tar manifest toml)
budget=()
build=1
run=1
targets=()
while (($#)); do
    case "$1" in
        --seconds) budget+=(-max_total_time="$2"); shift 2 ;;
        --runs) budget+=(-runs="$2"); shift 2 ;;
        --build-only) run=0; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *)
            [[ " ${all_targets[*]} " == *" $1 "* ]] || { echo "fuzz.sh: unknown target '$1' (known: ${all_targets[*]})" >&2; exit 2; }
            targets+=("$1"); shift ;;
    esac
done
((${#targets[@]})) || targets=("${all_targets[@]}")
((${#budget[@]})) || budget=(-max_total_time=30)

work=Fuzz/.build
bin=$work/release
mkdir -p "$work"

if ((build)); then
    started=$SECONDS
    for target in "${targets[@]}"; do
        # SwiftPM hands swiftc `-sanitize=fuzzer -sanitize=address` as two flags, of which swiftc keeps
        # only the last, so Swift code would get no coverage instrumentation; the combined flag fixes
        # that. C targets (the image shims) get -fsanitize=fuzzer,address from --sanitize.
        # One product at a time: a plain `swift build` would also build every target of the main package.
        if ! swift build --package-path Fuzz -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
                --product "fuzz-$target" >"$work/build-$target.log" 2>&1; then
            grep -v "Cannot export local symbol '__asan" "$work/build-$target.log" | tail -40 >&2
            echo "fuzz.sh: building fuzz-$target failed (log: $work/build-$target.log)" >&2
            exit 1
        fi
    done
    echo "fuzz.sh: built ${targets[*]} in $((SECONDS - started)) s"
fi
((run)) || exit 0

# Allocations past 512 MiB are findings: every parser checks sizes before it allocates, and the image
# harness's pixel limit keeps a legitimate image far below that. The Swift runtime keeps caches for
# the life of the process, which LeakSanitizer would report after every input.
options=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -detect_leaks=0 -print_final_stats=1)
# Swift's own crash backtracer would run inside the crashed, sanitized process and trip ASan itself;
# libFuzzer's handler reports the trap and saves the input.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:handle_abort=1}
status=0
summary=()
for target in "${targets[@]}"; do
    seeds=Fuzz/Corpus/$target
    corpus=$work/corpus/$target
    artifacts=$work/artifacts/$target
    log=$work/fuzz-$target.log
    mkdir -p "$corpus" "$artifacts"
    dict=()
    [[ -f Fuzz/Dictionaries/$target.dict ]] && dict=(-dict="Fuzz/Dictionaries/$target.dict")
    started=$SECONDS
    set +e
    "$bin/fuzz-$target" "${options[@]}" "${dict[@]}" "${budget[@]}" -artifact_prefix="$artifacts/" \
        "$corpus" "$seeds" >"$log" 2>&1
    code=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    size=$(find "$corpus" -type f | wc -l)
    if ((code != 0)); then
        status=1
        grep -E "ERROR: |invariant violated|Fatal error|SUMMARY|Test unit written to" "$log" | head -20 >&2
        summary+=("fuzz-$target: FAILED (exit $code) after ${runs:-?} executions in $((SECONDS - started)) s; log $log")
    else
        summary+=("fuzz-$target: ${runs:-?} executions in $((SECONDS - started)) s, 0 crashes, $size new corpus inputs")
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
