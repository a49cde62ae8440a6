"""Stage check_params: validate the whole params.yaml before any other stage runs.

It depends on every param, so an unknown top-level key, a rejected value, an absolute dataset path that
does not exist, a missing pretrained model file or an architecture the images are too small (or too large)
for stops `dvc repro` and `dvc exp run` here, before DVC deletes any other stage's outputs; its
output only says the check passed, so a passing check re-runs nothing downstream. It also writes what
decides a frozen base's features (the features stage's only param-like dependency)."""

import argparse

from refinelab.core.fileio import write_json
from refinelab.core.runner import run_stage
from refinelab.features.spec import frozen_features
from refinelab.params.files import load_params
from refinelab.params.guard import record_checked
from refinelab.params.preflight import check_before_running
from refinelab.prepare.sources import check_locations, expected_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("params_file", help="the params file to validate (params.yaml)")
    parser.add_argument("checked_file", help="written when the params are valid (data/params_checked.json)")
    parser.add_argument("features_spec", help="what decides the frozen features (data/features_spec.json)")
    args = parser.parse_args()
    params = load_params(args.params_file)
    check_locations(params)
    check_before_running(params, *expected_input(params))
    record_checked(args.params_file)
    write_json(args.checked_file, {"params": "valid"})
    write_json(args.features_spec, frozen_features(params))


if __name__ == "__main__":
    run_stage(main)
