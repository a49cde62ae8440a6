"""Every registry holds exactly the names params.yaml can choose (declared once, in refinelab.params.names
or the schema's spec classes), and refuses any other."""

import typing

import pytest

from refinelab.core.registry import Registry
from refinelab.params import names
from refinelab.params.schema import ARCHITECTURE_TYPES, AugmentOp, Params, TrainParams, TransferSpec


def test_a_registry_refuses_an_undeclared_name_and_reports_a_missing_builder():
    registry = Registry("widget", ["round", "square"])
    with pytest.raises(ValueError, match="'oval' is not declared: add it to refinelab.params.names"):
        registry.register("oval")
    registry.register("round")(lambda: "round")
    with pytest.raises(ValueError, match="widget square declared in refinelab.params.names without a builder"):
        registry.check_complete()
    registry.register("square")(lambda: "square")
    registry.check_complete()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("square")(lambda: "again")
    with pytest.raises(ValueError, match="unknown widget 'oval'; valid names: round, square"):
        registry.get("oval")


def test_the_schema_and_the_builders_read_the_same_names():
    from refinelab.augment.ops import AUGMENTATIONS
    from refinelab.models.builders import ARCHITECTURES, TRANSFER_BASES
    from refinelab.models.optimizers import OPTIMIZERS
    from refinelab.prepare.sources import DATASETS

    assert AUGMENTATIONS.names() == sorted(typing.get_args(AugmentOp)) == sorted(names.AUGMENTATION_OPS)
    assert OPTIMIZERS.names() == sorted(typing.get_args(TrainParams.model_fields["optimizer"].annotation))
    assert OPTIMIZERS.names() == sorted(names.OPTIMIZERS)
    base = typing.get_args(TransferSpec.model_fields["base"].annotation)[0]
    assert TRANSFER_BASES.names() == sorted(typing.get_args(base)) == sorted(names.TRANSFER_BASES)
    assert ARCHITECTURES.names() == sorted(ARCHITECTURE_TYPES)
    assert DATASETS.names() == sorted(names.DATASETS)
    assert "dataset" in Params.model_fields


def test_the_params_schema_imports_no_builder():
    """The schema is Keras-free and imports no dataset loader (check_params runs in a second)."""
    import subprocess
    import sys

    code = ("import sys, refinelab.params.files, refinelab.params.guard; "
            "loaded = [m for m in ('keras', 'tensorflow', 'refinelab.prepare.sources', 'refinelab.models.builders') "
            "if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
