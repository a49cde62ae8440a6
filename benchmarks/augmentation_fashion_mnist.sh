#!/usr/bin/env bash
# Fashion-MNIST test accuracy of the default model with and without online augmentation (same epochs),
# as two DVC experiments: augment-online, then augment-none (so the workspace ends on the default).
#
#   benchmarks/augmentation_fashion_mnist.sh                                  # the full comparison
#   benchmarks/augmentation_fashion_mnist.sh -S data.limit=300 -S epochs=1    # a quick check
#
# Extra arguments go to both `dvc exp run`s. Compare afterwards with
#   dvc exp show --only-changed    or    dvc plots diff augment-none augment-online
set -euo pipefail
cd "$(dirname "$0")/.."

for mode in online none; do
    dvc exp run --force --name "augment-$mode" -S "augment.mode=$mode" "$@"
    python - "$mode" <<'PY'
import json, sys
evaluation = json.load(open("metrics/test_details.json"))
timing = json.load(open("metrics/timing.json"))
augment = json.load(open("metrics/augment.json"))
print(f"RESULT augment.mode={sys.argv[1]:<7} test accuracy {evaluation['test']['accuracy']:.4f}  "
      f"train accuracy {evaluation['train_accuracy']:.4f}  train {timing['train_time']:.0f} s  "
      f"online ops: {augment['online'] or '-'}")
PY
done
