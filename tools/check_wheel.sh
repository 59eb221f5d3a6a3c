#!/usr/bin/env bash
# The wheel works where no compiler is: `pip wheel .` builds it, a fresh
# virtual environment installs it (dependencies from the index, binary only),
# and then, with a PATH that holds no C compiler, the demo and a train/save/
# load round trip run from outside the source tree.
#
#   tools/check_wheel.sh [PYTHON]      (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== pip wheel . --no-deps"
"$python" -m pip wheel . --no-deps -w "$tmp/dist" -q
wheel=("$tmp"/dist/fastbp-*.whl)
[ ${#wheel[@]} -eq 1 ] || { echo "expected one wheel, got: ${wheel[*]}"; exit 1; }
echo "built $(basename "${wheel[0]}") in $((SECONDS - start)) s"

echo "== its files"
"$python" - "${wheel[0]}" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for name in names:
    print("   ", name)
needed = ["fastbp/__init__.py", "fastbp/py.typed", "fastbp/_kernels.pyi"]
missing = [name for name in needed if name not in names]
if not any(n.startswith("fastbp/_kernels.") and n.endswith((".so", ".pyd")) for n in names):
    missing.append("fastbp/_kernels extension")
if missing:
    sys.exit(f"the wheel lacks {missing}")
PY

echo "== a fresh venv, the wheel and its dependencies (binary only)"
"$python" -m venv "$tmp/venv"
# the demo's digits come with scikit-learn (fastbp's `demo` extra)
"$tmp/venv/bin/python" -m pip install --only-binary=:all: "${wheel[0]}" "scikit-learn>=1.3" \
    > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
grep -E "^Processing .*fastbp-.*\.whl" "$tmp/install.log"
# (as words, outside the lines naming files: a temporary folder's random name
# once held "gCc" and read as a compiler run)
if grep -v "^Processing " "$tmp/install.log" \
        | grep -Ei "building wheel|running setup.py|Preparing metadata \(pyproject|\bcmake\b|\bgcc\b"; then
    echo "the install built something from source"; exit 1
fi
grep -E "^Successfully installed" "$tmp/install.log"

echo "== no compiler on PATH"
mkdir "$tmp/bin" "$tmp/run"
bash_path="$(command -v bash)"
clean_path="$tmp/venv/bin:$tmp/bin"
cd "$tmp/run"
env -i HOME="$tmp/run" PATH="$clean_path" OPENBLAS_NUM_THREADS=1 "$bash_path" -euo pipefail -c '
    for compiler in cc gcc clang c++ g++ clang++ x86_64-linux-gnu-gcc cl; do
        if command -v "$compiler"; then echo "a compiler is on PATH: $compiler"; exit 1; fi
    done
    echo "PATH=$PATH: no cc, gcc, clang, c++, g++ or cl"
    python -c "import fastbp, sys; assert \"site-packages\" in fastbp.__file__, fastbp.__file__; print(\"fastbp from\", fastbp.__file__)"
    python -m fastbp --epochs 2
    python -c "
import numpy as np, fastbp
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 4)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
net = fastbp.Network([4, 8, 2], output=\"softmax\", seed=0)
trainer = fastbp.Trainer(net, loss=\"cross_entropy\", learning_rate=0.5, seed=0)
trainer.fit(X, y, epochs=5)
net.save(\"net.npz\")
again = fastbp.Network.load(\"net.npz\")
assert np.array_equal(again.forward(X), net.forward(X))
print(\"trained, saved and loaded: accuracy\", (again.predict(X) == y).mean())
"
'
echo "== wheel check passed in $((SECONDS - start)) s"
