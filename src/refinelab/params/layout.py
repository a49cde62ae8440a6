"""Which file holds which params, and which params each stage reads (copies of dvc.yaml's lists that a
test keeps in step)."""

from pathlib import Path

DEFAULT_PARAMS_FILE = Path("params.yaml")

# The top-level keys the train stage lists under `params:` in dvc.yaml (a test keeps them in step).
TRAIN_STAGE_PARAMS = (
    "model", "dropout", "l2", "l1", "learning_rate", "epochs", "batch_size", "seed", "backend", "arch", "train",
    "augment",
)
# The params each stage lists in dvc.yaml (a test keeps them in step): the values a stage checks are
# unchanged when it finishes, since DVC records them only then.
STAGE_PARAMS = {
    "prepare": ("dataset", "seed", "data"),
    "augment": ("augment", "seed", "backend"),
    "train": TRAIN_STAGE_PARAMS,
}

# Settings that are file dependencies rather than params, so that `dvc exp show` lists the knobs and
# not every preset: the architecture presets `model:` names, and where each dataset's files are and
# how they are decoded. Each sits beside params.yaml; its keys join the params read from there.
PRESETS_FILE = "architectures.yaml"
DATASETS_FILE = "datasets.yaml"
# The keys each file may hold (`data:` keys may sit in either file, never in both).
DATASETS_FILE_KEYS = ("h5", "image_folder", "filename_labels", "data")
STAGE_FILES = {"prepare": (DATASETS_FILE,), "train": (PRESETS_FILE,)}
