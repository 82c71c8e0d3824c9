"""`analysis/positive_control.py` (the demo's positive control): the two shipped checkpoints read back as the README
says, LLV-FSR showing the colour its description states and the model without it at chance; bad flags exit 2."""

import pytest

from analysis.positive_control import ASSETS, main, read_back


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    priors = tmp_path_factory.mktemp("priors")
    return {name: read_back(ASSETS / f"{name}.pt", 12, priors) for name in ("llvfsr", "llvfsr-wo-description")}


def test_the_description_sets_the_iris_colour(results):
    # measured on these 12 faces: 1.00 and 1.00 with the description; 0.25 without (chance 0.20)
    assert results["llvfsr"]["matched_acc"] >= 0.75
    assert results["llvfsr"]["shows_edited_colour"] >= 0.75
    assert results["llvfsr-wo-description"]["matched_acc"] <= 0.6
    assert "shows_edited_colour" not in results["llvfsr-wo-description"]


def test_bad_flags_exit_2(tmp_path, capsys):
    assert main(["--checkpoints", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--n", "0"])
    assert exit_.value.code == 2
