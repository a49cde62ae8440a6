"""Stage check_params: validate the whole params.yaml before any other stage runs.

It depends on every param, so an unknown top-level key, a rejected value or an absolute dataset path
that does not exist stops `dvc repro` and `dvc exp run` here, before DVC deletes any other stage's outputs; its
output only says the check passed, so a passing check re-runs nothing downstream."""

import argparse

from refinelab.core.fileio import write_json
from refinelab.core.runner import run_stage
from refinelab.params.files import load_params
from refinelab.prepare.sources import check_locations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("params_file", help="the params file to validate (params.yaml)")
    parser.add_argument("checked_file", help="written when the params are valid (data/params_checked.json)")
    args = parser.parse_args()
    check_locations(load_params(args.params_file))
    write_json(args.checked_file, {"params": "valid"})


if __name__ == "__main__":
    run_stage(main)
