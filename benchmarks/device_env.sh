# Sourced by the device-machine scripts (gpu_check.sh, gpu_sweep.sh, ablation_sweep.sh), from the
# repository root: installs the wheels carried in .whl/ (packages the GPU image lacks; pure-python
# trees in .whl/py) into /tmp/site and sets PYTHONPATH. NO_WHEELS=1 skips the wheels.
if [ "${NO_WHEELS:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site:$PWD/.whl/py:$PWD
else
  export PYTHONPATH=$PWD
fi
