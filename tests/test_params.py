import copy
import subprocess
import sys

import pytest

from refinelab.core.errors import ParamsError
from refinelab.params.files import load_params, read_config, write_config
from refinelab.params.schema import parse_params

from helpers import ROOT


def test_the_real_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.model == "auto" and params.preset == "cnn_bn"  # Fashion-MNIST's.
    for name in ("smaller", "baseline", "bigger", "cnn"):
        assert name in params.architectures
    assert params.architectures["bigger"].hidden == [512, 128, 16]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"dropout": 1.5}, "dropout: Input should be less than 1"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"dropuot": 0.1}, "dropuot: unknown key; did you mean 'dropout'?"),
        ({"model": "huge"}, "unknown architecture 'huge'; valid names (architectures.yaml): auto, baseline, bigger"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'; valid names: digits, fashion_mnist, filename_labels, h5, image_folder, mnist"),
        ({"batch_size": "64"}, 'batch_size: expected auto or a whole number from 1 to 65536 (got "64")'),
        ({"batch_size": 0}, "batch_size: expected auto or a whole number from 1 to 65536 (got 0)"),
        ({"batch_size": True}, "batch_size: expected auto or a whole number from 1 to 65536 (got true)"),
        ({"learning_rate": True}, "learning_rate: Input should be a valid number"),
    ],
)
def test_bad_values_name_the_key(raw_params, change, message):
    with pytest.raises(ParamsError) as caught:
        parse_params({**raw_params, **change})
    assert message in str(caught.value)


def test_nested_typos_name_the_nested_key(raw_params):
    params = copy.deepcopy(raw_params)
    params["data"]["validaton_split"] = 0.2
    params["architectures"]["mine"] = {"type": "mlp", "hiden": [32]}
    with pytest.raises(ParamsError) as caught:
        parse_params(params)
    text = str(caught.value)
    assert "data.validaton_split: unknown key; did you mean 'validation_split'?" in text
    assert "architectures.yaml: mine.hiden: unknown key; did you mean 'hidden'?" in text


def test_resolved_params_hold_the_selected_architecture(raw_params):
    resolved = parse_params({**raw_params, "model": "bigger", "dropout": 0.25}).resolved()
    assert resolved["architecture"] == {
        "type": "mlp", "hidden": [512, 128, 16], "batch_norm": True, "input_dropout": 0.0
    }
    assert resolved["dropout"] == 0.25
    assert "architectures" not in resolved


@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_a_stage_with_bad_params_exits_with_a_message_not_a_traceback(tmp_path, raw_params, stage):
    bad = write_config(tmp_path, {**raw_params, "dropout": 1.5})
    args = {"prepare": ["out", "data.json", "data"], "train": ["a", "b", "c", "d", "e", "f"]}[stage]
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{stage}.py"), *args, "--params", str(bad)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "dropout: Input should be less than 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_params_validation_does_not_import_tensorflow():
    """Params errors must come before TensorFlow's multi-second import."""
    code = (
        "import sys; from refinelab.params.files import load_params; import refinelab.core.runner, refinelab.params.guard; "
        f"load_params({str(ROOT / 'params.yaml')!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def with_train(raw_params, **train):
    params = copy.deepcopy(raw_params)
    params["train"].update(train)
    return params


def with_architecture(raw_params, spec, **top):
    params = copy.deepcopy(raw_params)
    params["architectures"]["mine"] = spec
    return {**params, "model": "mine", **top}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda raw: with_train(raw, optimizer="adamw"), "train: optimizer adamw needs weight_decay > 0"),
        (lambda raw: with_train(raw, lr_schedule="step"), "train.lr_schedule: Input should be 'constant', 'cosine'"),
        (lambda raw: with_train(raw, class_weight="auto"), "train.class_weight: Input should be 'none' or 'balanced'"),
        (lambda raw: with_train(raw, early_stopping=-1), "train.early_stopping: Input should"),
        (lambda raw: with_train(raw, until_epoch=0), "train.until_epoch: Input should be greater than or equal to 1"),
        (lambda raw: with_train(raw, until_epoch=99), "train.until_epoch: 99 is past the last epoch (epochs=8)"),
        (lambda raw: with_train(raw, plateau_patience=2), "train.plateau_patience: unknown key"),
        (
            lambda raw: with_architecture(raw, {"type": "transfer", "weights": "imagenet"}),
            "architectures.yaml: mine: base: required",
        ),
        (
            lambda raw: with_architecture(raw, {"type": "transfer", "base": "vgg16", "weights": "m.keras"}),
            "architectures.yaml: mine: base: leave it out when weights is a model file",
        ),
        (
            lambda raw: with_architecture(raw, {"type": "transfer", "weights": "imagenett"}),
            "architectures.yaml: mine: weights: expected imagenet",
        ),
        (lambda raw: with_architecture(raw, {"type": "transfer", "base": "vgg19"}), "architectures.yaml: mine.base: Input should be"),
        (
            lambda raw: with_architecture(raw, {"type": "transfer", "base": "vgg16", "head_epochs": 1}),
            "freeze: all leaves no base layer to fine-tune",
        ),
        (
            lambda raw: with_architecture(
                raw, {"type": "transfer", "base": "vgg16", "freeze": 5, "head_epochs": 3}, epochs=3
            ),
            "mine.head_epochs (architectures.yaml): 3 leaves no fine-tuning epoch of epochs=3",
        ),
        (lambda raw: with_architecture(raw, {"type": "transfer", "base": "vgg16", "input_size": 16}), "input_size"),
        (lambda raw: with_architecture(raw, {"type": "residual_cnn", "filters": [8], "stride": 2}), "mine.stride"),
        (lambda raw: {**raw, "l1": -0.1}, "l1: Input should be greater than or equal to 0"),
    ],
)
def test_training_and_transfer_params_are_checked(raw_params, make, message):
    with pytest.raises(ParamsError) as caught:
        parse_params(make(raw_params))
    assert message in str(caught.value)


def test_transfer_freeze_takes_all_none_or_a_layer_count(raw_params):
    for freeze in ("all", "none", 40):
        spec = {"type": "transfer", "base": "resnet50", "freeze": freeze, "weights": "none"}
        assert parse_params(with_architecture(raw_params, spec)).architecture.freeze == freeze
    spec = {"type": "transfer", "weights": "pretrained/cnn.keras", "freeze": "none", "head_epochs": 2,
            "base_learning_rate": 1e-4}
    architecture = parse_params(with_architecture(raw_params, spec)).architecture
    assert architecture.pretrained_path == "pretrained/cnn.keras" and architecture.base is None


def test_exponent_floats_written_by_dvc_are_numbers(tmp_path, raw_params):
    """`dvc exp run -S l2=0.00001` writes `l2: 1e-05` (YAML 1.2), which YAML 1.1 readers take for a string."""
    from dvc.utils.serialize import modify_yaml

    for name in ("params.yaml", "architectures.yaml", "datasets.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    path = tmp_path / "params.yaml"
    with modify_yaml(path) as data:
        data["l2"] = 0.00001
        data["learning_rate"] = 5e-5
    assert "1e-05" in path.read_text()
    params = load_params(path)
    assert params.l2 == 0.00001 and params.learning_rate == 5e-5


def test_every_stage_checks_exactly_the_params_dvc_yaml_lists():
    import yaml

    from refinelab.params.layout import STAGE_FILES, STAGE_PARAMS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = {name: sorted(stage.get("params", [])) for name, stage in stages.items()
              if name not in ("check_params", "features", "evaluate", "plot")}
    assert listed == {name: sorted(keys) for name, keys in STAGE_PARAMS.items()}
    assert stages["check_params"]["params"] == [{"params.yaml": None}]  # Every param.
    assert "params" not in stages["evaluate"]  # It reads the model's own params.json.
    assert "params" not in stages["features"]  # It reads check_params' data/features_spec.json.
    assert "params" not in stages["plot"]  # Presentation only: options of its command.
    for stage, files in STAGE_FILES.items():  # Presets and dataset settings: file dependencies.
        assert set(files) <= set(stages[stage]["deps"]) and set(files) <= set(stages["check_params"]["deps"])


def test_resolved_params_are_exactly_the_train_stage_params():
    import yaml

    from refinelab.params.layout import TRAIN_STAGE_PARAMS

    train_stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    assert sorted(TRAIN_STAGE_PARAMS) == sorted(train_stage["params"])
    resolved = load_params(ROOT / "params.yaml").resolved()
    assert set(resolved) == set(TRAIN_STAGE_PARAMS) | {"preset", "architecture"}


def test_input_size_is_rejected_for_a_pretrained_model_file(raw_params):
    architecture = {"type": "transfer", "weights": "pretrained/cnn.keras", "input_size": 64}
    with pytest.raises(ParamsError, match="input_size: leave it out when weights is a model file"):
        parse_params({**raw_params, "model": "mine", "architectures": {"mine": architecture}})


@pytest.mark.parametrize(
    "tweak, expected",
    [
        ({"filters": [16, 32]}, {"filters": [16, 32], "batch_norm": True}),
        ({"batch_norm": False, "filters": None}, {"filters": [32, 64, 128], "batch_norm": False}),
        ({"kernel_size": 5}, {"kernel_size": 5}),  # A key params.yaml does not list: -S +arch.kernel_size=5
    ],
)
def test_arch_tweaks_one_key_of_the_selected_preset(raw_params, tweak, expected):
    params = parse_params({**raw_params, "model": "cnn_bn", "arch": {**raw_params["arch"], **tweak}})
    assert params.architecture.model_dump(include=set(expected)) == expected
    assert params.resolved()["architecture"]["filters"] == expected.get("filters", [32, 64, 128])
    assert params.architectures["cnn_bn"].filters == [32, 64, 128]  # The preset itself is untouched.


@pytest.mark.parametrize(
    "model, tweak, message",
    [
        ("baseline", {"filters": [8]}, "arch.filters: the mlp preset 'baseline' has no such key (its keys: batch_norm,"),
        ("cnn_bn", {"filters": [0]}, "arch.filters.0: Input should be greater than or equal to 1 (tweaking preset 'cnn_bn')"),
        ("cnn_bn", {"padding": "full"}, "arch.padding: Input should be 'same' or 'valid'"),
    ],
)
def test_a_bad_arch_tweak_names_the_key_and_the_preset(raw_params, model, tweak, message):
    with pytest.raises(ParamsError) as caught:
        parse_params({**raw_params, "model": model, "arch": tweak})
    assert message in str(caught.value)


def test_the_three_files_read_as_one_and_a_key_in_two_of_them_is_an_error(tmp_path, raw_params):
    params_file = write_config(tmp_path, raw_params)
    assert read_config(params_file) == raw_params
    assert {path.name for path in tmp_path.iterdir()} == {"params.yaml", "architectures.yaml", "datasets.yaml"}
    # A dataset setting may move to params.yaml (to vary it with -S), but not sit in both files.
    text = params_file.read_text().replace("data:\n", "data:\n  resize: pad\n", 1)
    params_file.write_text(text)
    with pytest.raises(ParamsError, match="data.resize: set in both"):
        read_config(params_file)
    (tmp_path / "datasets.yaml").write_text("data: 5\n")
    with pytest.raises(ParamsError, match="datasets.yaml: data: expected a mapping of keys to values, got 5"):
        read_config(params_file)
    (tmp_path / "datasets.yaml").write_text("data: {}\n")
    assert load_params(params_file).data.resize == "pad"
    (tmp_path / "architectures.yaml").unlink()
    with pytest.raises(ParamsError, match="architectures.yaml: file not found"):
        load_params(params_file)


def test_the_experiment_table_budget_of_params():
    """`dvc exp show` lists every leaf of params.yaml: at most 40 (presets and dataset locations live
    in their own files)."""
    from dvc.utils.flatten import flatten

    from refinelab.params.files import read_params_file

    assert len(flatten(read_params_file(ROOT / "params.yaml"))) <= 40


@pytest.mark.parametrize(
    "section, key, value, hint",
    [
        (None, "distribute", "mirrored", "distribute: unknown key; did you mean 'train.distribute'?"),
        ("train", "epochs", 3, "train.epochs: unknown key; did you mean 'epochs'?"),
        ("data", "label_smoothing", 0.1, "data.label_smoothing: unknown key; did you mean 'train.label_smoothing'?"),
    ],
)
def test_a_key_in_the_wrong_section_is_pointed_to_its_own(raw_params, section, key, value, hint):
    params = copy.deepcopy(raw_params)
    (params[section] if section else params)[key] = value
    with pytest.raises(ParamsError) as caught:
        parse_params(params)
    assert hint in str(caught.value)
