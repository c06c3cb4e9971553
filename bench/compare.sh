#!/usr/bin/env bash
# compare.sh OLD NEW [COUNT]: run the benchmarks of bench/ at two git refs
# and compare them with benchstat.
#
# Each ref is checked out in a temporary git worktree; its benchmarks are
# compiled once and run COUNT times (default 6) in one process, so that the
# replay fixtures are built once per ref. Set BENCH to a -bench regexp to
# run fewer benchmarks (the whole suite takes a few minutes per count), and
# BENCHTIME to change -benchtime (default 1s), and INTERLEAVE=1 to run the
# two refs in turn, one count per process, so that a machine whose load
# drifts during the runs does not favour one side (the fixtures are then
# rebuilt for every count):
#
#	make bench-compare OLD=main~3 NEW=main COUNT=10 BENCH='Replay/bolt'
#	BENCH='Append/(bolt|rawbolt)/batch=1$' bash bench/compare.sh HEAD~1 HEAD 8
#
# The raw outputs stay in a directory under $TMPDIR, named at the end.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 OLD NEW [COUNT]" >&2
	exit 2
fi
old=$1
new=$2
count=${3:-6}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-1s}
benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)

root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
worktrees=()
cleanup() {
	for w in "${worktrees[@]}"; do
		git -C "$root" worktree remove --force "$w" >/dev/null 2>&1 || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# Fetch benchstat first, so that a missing module fails before the long runs.
"${benchstat[@]}" -h >/dev/null 2>&1 || { echo "compare: cannot run benchstat" >&2; exit 1; }

outdir=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare-out.XXXXXX")

build() { # build NAME REF: a worktree of REF and its compiled benchmarks
	local name=$1 ref=$2 dir="$tmp/$1"
	git -C "$root" worktree add --quiet --detach "$dir" "$ref"
	worktrees+=("$dir")
	if [ ! -d "$dir/bench" ]; then
		echo "compare: $ref has no bench/ directory" >&2
		exit 1
	fi
	# bench/ is a module of its own since it gained SQLite and plotting;
	# older refs built it from the root module.
	if [ -f "$dir/bench/go.mod" ]; then
		(cd "$dir/bench" && go test -c -o "$tmp/$name.test" .)
	else
		(cd "$dir" && go test -c -o "$tmp/$name.test" ./bench)
	fi
}

run() { # run NAME REF COUNT: append COUNT runs of REF's benchmarks to NAME.txt
	local name=$1 ref=$2 n=$3
	echo "compare: $ref ($(git -C "$root" rev-parse --short "$ref")): -bench '$bench' -count $n -benchtime $benchtime" >&2
	(cd "$tmp/$name/bench" && "$tmp/$name.test" -test.run '^$' -test.bench "$bench" -test.benchmem \
		-test.count "$n" -test.benchtime "$benchtime" -test.timeout 120m) | tee -a "$outdir/$name.txt" >&2
}

build old "$old"
build new "$new"
if [ "${INTERLEAVE:-0}" = 1 ]; then
	for _ in $(seq "$count"); do
		run old "$old" 1
		run new "$new" 1
	done
else
	run old "$old" "$count"
	run new "$new" "$count"
fi

echo >&2
cd "$outdir"
"${benchstat[@]}" old.txt new.txt | tee benchstat.txt
echo >&2
echo "compare: outputs in $outdir" >&2
