# Sourced on the device machine, in the repository root (see benchmarks/device_carry.sh): the carried
# wheels on PYTHONPATH, Fashion-MNIST where the prepare stage looks, git, and a git repository for DVC.
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# Compiled to bytecode as a user's install is: without it, every stage's process compiled Keras' sources
# again (~3 s each, measured on the H100 machine).
python3 -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
python3 -m compileall -q src || return 1
export PYTHONPATH=/tmp/site:$PWD/src
export PATH=/tmp/site/bin:$PATH  # python: the image's venv (JAX, PyTorch)
mkdir -p /usr/share/datasets/fashion-mnist && cp .fmnist/* /usr/share/datasets/fashion-mnist/ || return 1
if ! command -v git >/dev/null; then
  dpkg -x .gitdeb/git.deb /tmp/gitroot && export PATH=/tmp/gitroot/usr/bin:$PATH GIT_EXEC_PATH=/tmp/gitroot/usr/lib/git-core
fi
if [ ! -d .git ]; then
  # A git unpacked by dpkg -x has no templates: .git/info is not made for us.
  git init -q && mkdir -p .git/info && printf '/.whl/\n/.fmnist/\n/.gitdeb/\n' >> .git/info/exclude
  git -c user.name=d -c user.email=d@localhost add -A && git -c user.name=d -c user.email=d@localhost commit -qm tree
fi
git --version; nvidia-smi -L; nproc
KERAS_BACKEND=jax python -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
