#!/usr/bin/env bash
# What a run on the borrowed GPU machine (the `device` tool: Python 3.12 with JAX, no TensorFlow, no
# network) needs beside the working tree: the packages its image lacks, as Python 3.12 wheels at the
# versions of requirements.lock (.whl/, ~22 MB), Fashion-MNIST (.fmnist/, 31 MB) and, in case the
# image has no git, Debian's git (.gitdeb/, 7 MB). Run here, in the repository root; then each device
# call carries [".whl", ".fmnist", ".gitdeb"] and starts with `source benchmarks/device_setup.sh`, e.g.
#   source benchmarks/device_setup.sh && python benchmarks/bench.py --backend jax
set -euo pipefail
exclude="$(git rev-parse --git-path info/exclude)"  # A fresh clone may have no info/ folder.
mkdir -p "$(dirname "$exclude")"
for folder in .whl .fmnist .gitdeb; do
  grep -qx "/$folder/" "$exclude" 2>/dev/null || echo "/$folder/" >> "$exclude"
done
mkdir -p .whl .fmnist .gitdeb
# The train/evaluate/plot stages' imports and DVC's, less what the image has (its list: the device
# tool's KINDS.md).
MISSING="aiohttp-retry amqp annotated-types appdirs asyncssh atpublic billiard celery cffi click-didyoumean
  click-plugins click-repl configobj cryptography dictdiffer diskcache distro dpath dulwich dvc
  dvc-data dvc-http dvc-objects dvc-render dvc-studio-client dvc-task dvclive entrypoints flatten-dict
  flufl-lock funcy gitdb gitpython grandalf gto hydra-core iterative-telemetry keras kombu namex
  omegaconf optree orjson platformdirs prompt-toolkit pycparser pydantic pydantic-core
  pydantic-settings pydot pygit2 pygtrie python-dotenv ruamel-yaml scmrepo semver shortuuid shtab
  smmap sqltrie tomlkit typing-inspection tzlocal vine voluptuous wcwidth zc-lockfile"
platforms=()
for tag in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -c requirements.lock -d .whl $MISSING
# Published as a source archive only: a pure-Python wheel built here serves there.
python3 -m pip wheel --quiet --no-deps -c requirements.lock -w .whl antlr4-python3-runtime
cp /usr/share/datasets/fashion-mnist/*.gz .fmnist/
(cd .gitdeb && apt-get download git && mv git_*.deb git.deb)
du -sh .whl .fmnist .gitdeb
