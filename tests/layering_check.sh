#!/usr/bin/env bash
# layering_check.sh OBJDIR SRCDIR - the house's dependency rules (CONVENTIONS.md),
# checked on the library as built:
#   1. no two files depend on each other in a circle, by includes or by calls
#      (a file's unit is its path without .c/.h: foo.c and foo.h are one unit;
#      a call is a symbol one object file uses and another defines, read by nm);
#   2. frontend/ never depends on passes/ (passes build on the builders);
#   3. renderers (codegen/) depend only on ir/ and on each other.
# Prints every offending edge or cycle and exits 1; else "layering: ok".
set -euo pipefail
objdir=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src"
: >"$tmp/defs"
: >"$tmp/uses"
: >"$tmp/edges"
for f in $(git ls-files 'ir/*.[ch]' 'frontend/*.[ch]' 'passes/*.[ch]' 'codegen/*.[ch]' \
    'runtime/*.[ch]' 2>/dev/null || find ir frontend passes codegen runtime -name '*.[ch]'); do
    unit=${f%.[ch]}
    # includes: "dir/x.h" or "x.h" (beside the file)
    sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f" | { grep -v '^kiln$' || true; } | while read -r inc; do
        case $inc in
        */*) to=$inc ;;
        *) to=$(dirname "$f")/$inc ;;
        esac
        if [ "$to" != "$unit" ]; then
            echo "$unit $to" >>"$tmp/edges"
        fi
    done
    case $f in
    *.c)
        o="$objdir/$f.o"
        if [ ! -f "$o" ]; then
            echo "layering: $o is missing: build first"
            exit 1
        fi
        nm -g --defined-only "$o" | awk -v u="$unit" 'NF == 3 {print $3, u}' >>"$tmp/defs"
        nm -u "$o" | awk -v u="$unit" '{print $NF, u}' >>"$tmp/uses"
        ;;
    esac
done
sort -u "$tmp/defs" -o "$tmp/defs"
sort -u "$tmp/uses" -o "$tmp/uses"
join "$tmp/uses" "$tmp/defs" | awk '$2 != $3 {print $2, $3}' >>"$tmp/edges"
sort -u "$tmp/edges" -o "$tmp/edges"

fails=0
# 2 and 3: edges that point the wrong way
while read -r from to; do
    case "$from -> $to" in
    frontend/*" -> passes/"*)
        echo "layering: $from depends on $to: frontend/ must not call into passes/"
        fails=$((fails + 1))
        ;;
    codegen/*" -> "ir/* | codegen/*" -> "codegen/* | codegen/*" -> "gen/*) ;;
    codegen/*)
        echo "layering: $from depends on $to: renderers only print kernel IR (ir/)"
        fails=$((fails + 1))
        ;;
    esac
done <"$tmp/edges"
# 1: tsort names the files of every circle it finds
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/loops"; then
    echo "layering: files that depend on each other in a circle:"
    sed -n 's/^tsort: \([^ :]*\)$/  \1/p' "$tmp/loops"
    fails=$((fails + 1))
fi
if [ "$fails" -ne 0 ]; then
    echo "layering: $fails problem(s); the edges are 'file -> file it includes or calls':"
    cat "$tmp/edges"
    exit 1
fi
echo "layering: ok ($(wc -l <"$tmp/edges") edges between $(tr ' ' '\n' <"$tmp/edges" | sort -u | wc -l) files)"
