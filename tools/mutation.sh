#!/usr/bin/env bash
# Mutation testing with mutmut 3 (3.8.1), run in a scratch copy of the tree so that
# the repository's own pyproject.toml / setup.cfg carry no mutmut settings.
#
#   tools/mutation.sh TARGET [mutmut arguments]     (default arguments: run)
#
#   tools/mutation.sh models run --max-children 1
#   ONLY=synthesis tools/mutation.sh models run --max-children 1
#   ONLY=synthesis tools/mutation.sh models results --all true
#   ONLY=synthesis tools/mutation.sh models show 'compressai_psic.models.synthesis.x_...__mutmut_3'
#   ONLY=keyed tools/mutation.sh losses run --max-children 1
#   ONLY=container tools/mutation.sh io run --max-children 1
#   ONLY=symbols TESTS="tests/models/test_symbols.py tests/models/test_rans.py" \
#       tools/mutation.sh models run --max-children 1
#
# TARGET picks the code to mutate and the tests that judge it (add a case below for
# another part of the package). ONLY narrows the target to one or more modules
# (space-separated stems). TESTS narrows the judges to some of the target's test
# paths: a mutant those kill is killed by all of them, so a narrowed run is a
# faster lower bound; re-judge its survivors by name without TESTS. The scratch copy lives in $MUTATION_DIR/TARGET-ONLY
# (default build/mutation/TARGET-all, ignored by git); mutmut keeps its results
# there between runs (mutants/), and the tree is copied over it at every call.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: tools/mutation.sh TARGET [mutmut arguments]}
shift
[ $# -gt 0 ] || set -- run

case $target in
models)
    package=compressai_psic/models
    tests=tests/models
    ;;
losses)
    package=compressai_psic/losses
    tests=tests/losses
    ;;
io)
    package=compressai_psic/io
    tests=tests/io
    ;;
*)
    echo "unknown target: $target" >&2
    exit 2
    ;;
esac

only=()
set -f # ONLY's default "*" is a pattern for mutmut, not for the shell
for stem in ${ONLY:-*}; do
    only+=("$package/$stem.py")
done
set +f

tests=${TESTS:-$tests}

# One scratch copy per selection: mutmut takes a file in mutants/ newer than its
# source for an already mutated one, so selections must not share a copy.
selection=${ONLY:-all}
[ -z "${TESTS:-}" ] || selection+=-narrowed
scratch=${MUTATION_DIR:-build/mutation}/$target-${selection// /-}
mkdir -p "$scratch"
# Tracked files and untracked ones git does not ignore: the tree as it is now.
git ls-files -z --cached --others --exclude-standard |
    tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null |
    tar -xf - -C "$scratch"

# mutmut reads [tool.mutmut] from pyproject.toml first: write ours in the copy only,
# replacing any table of the same name.
python - "$scratch/pyproject.toml" "$tests" "${only[@]}" <<'PY'
import re
import sys

path, tests, *only = sys.argv[1:]
text = open(path, encoding="utf-8").read()
text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
quoted = ", ".join(f'"{p}"' for p in only)
judges = ", ".join(f'"{t}"' for t in tests.split())
# Tests marked slow (seconds each, in tests/models the many-decodes-in-threads one,
# two thirds of the time of tests/models) are left out: every surviving mutant
# runs all the tests that cover it.
marks = '"-m", "not slow"'
# mutmut's trampolines (a call through a dispatcher in every mutated function) are
# graph breaks for torch.compile: this test checks the unmutated code only.
deselect = '"--deselect", "tests/models/test_synthesis.py::test_compile_of_g_s_has_no_graph_break"'

# Fork isolation forks every mutant from the process that ran the stats, whose
# OpenMP pool (tests such as test_portable.py run with two torch threads) does not
# survive a fork: a child that enters a parallel region waits forever on threads
# that do not exist (GNU libgomp is not fork-safe), and the wall-clock limit then
# reports a surviving mutant as a time-out. The fork server has run no test.
isolation = 'process_isolation = "forkserver"'

# tests/models/test_demo_pin.py imports tools/ and reads the shipped weights in
# zoo/: mutmut copies only the package and tests/ into mutants/ unless told.
text += f"""
[tool.mutmut]
source_paths = ["compressai_psic"]
also_copy = ["tools", "zoo"]
only_mutate = [{quoted}]
pytest_add_cli_args = ["-p", "no:xdist", "-p", "no:cacheprovider", {marks}, {deselect}]
pytest_add_cli_args_test_selection = [{judges}]
{isolation}
"""
open(path, "w", encoding="utf-8").write(text)
PY

cd "$scratch"
# The C extension (the bounded rANS decoder) is not tracked: build it in the copy,
# else the tests that need it skip and its callers' mutants look untested.
python setup.py -q build_ext --inplace >/dev/null 2>&1 ||
    echo "mutation.sh: the C extension did not build; its tests will skip" >&2
exec mutmut "$@"
