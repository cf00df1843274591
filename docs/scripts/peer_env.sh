#!/usr/bin/env bash
# An environment of its own for `relssl bench --peers` with both peer libraries:
#   bash docs/scripts/peer_env.sh /tmp/peer && /tmp/peer/bin/relssl bench --peers --repeats 3
# pytorch-tabular pins pandas < 3 and pytorch-widedeep numpy < 2, so neither goes into relssl's own
# environment; the benchmark is written against the versions pinned below (Python 3.11).
# Where the package index serves a CPU torch (as this project's machines do for torch==2.13.0),
# pytorch-widedeep's torchvision is still PyPI's 0.28.0, built for CUDA: beside the CPU torch its C
# operators do not load, and its import then fails registering them. pytorch-widedeep's tabular
# models use none of them, so the two registration imports are skipped when the operators are
# absent (the only change to a peer's code; with a CUDA torch it changes nothing).
set -euo pipefail
venv=${1:?usage: peer_env.sh VENV_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0 torchvision==0.28.0 pytorch-widedeep==1.7.0 pytorch-tabular==1.2.0 \
    "pyarrow<23" -e "$repo"  # pyarrow 26 needs numpy 2, which pytorch-widedeep refuses; 22 runs on 1.26
init=$("$venv/bin/python" -c "import importlib.util as u; print(u.find_spec('torchvision').origin)")
"$venv/bin/python" - "$init" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
packed = "from torchvision import (\n    _autograd_registrations,\n    _meta_registrations,\n"
if packed in text:
    text = text.replace(packed, "if extension._has_ops():  # CPU torch: the CUDA wheel's operators are absent\n"
                        "    from torchvision import _autograd_registrations, _meta_registrations\n"
                        "from torchvision import (\n")
    open(path, "w").write(text)
elif "if extension._has_ops():" not in text:
    print(f"peer_env.sh: {path} is not torchvision 0.28's __init__.py as expected; left unchanged", file=sys.stderr)
EOF
"$venv/bin/python" -c "import sys, pytorch_tabular, pytorch_widedeep, relssl; print('peer environment ready:', sys.prefix)"
