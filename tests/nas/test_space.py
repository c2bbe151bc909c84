import json
from pathlib import Path

import pytest

from lightning_ssd.models.components.fusion import build_fusion
from lightning_ssd.models.components.imitation import ImitationNetwork
from lightning_ssd.nas.space import PARAMETERS, architecture_from_params, load_search_space, network_defaults

SHIPPED = Path(__file__).resolve().parents[2] / "nas" / "search_space.json"


def one_at_a_time(space: dict) -> list[dict]:
    """Every option of every parameter (nested options expanded), the other parameters left at their defaults."""
    samples = []
    for name, spec in space.items():
        for option in spec["_value"]:
            if not isinstance(option, dict):
                samples.append({name: option})
                continue
            nested = {k: v["_value"] for k, v in option.items() if k != "_name"}
            base = {"_name": option["_name"], **{k: values[0] for k, values in nested.items()}}
            samples.append({name: base})
            samples += [{name: {**base, k: v}} for k, values in nested.items() for v in values[1:]]
    return samples


def test_shipped_space_covers_appendix_b_and_every_option_builds():
    space = load_search_space(SHIPPED)
    assert set(space) == set(PARAMETERS)
    samples = one_at_a_time(space)
    # num_linear 0/1/2 + 3 more widths + 3 more activations, attention off/on + 1 more head count, norm, dropout, fusion
    assert len(samples) == 9 + 3 + 3 + 4 + 3
    for params in samples:
        arch = architecture_from_params(params)
        ImitationNetwork(64, **arch.imitation)
        build_fusion(arch.fusion, 64, 4)


def test_nested_choices_map_to_network_arguments():
    arch = architecture_from_params({
        "num_linear": {"_name": 2, "width_multiplier": 0.5, "activation": "silu"},
        "attention": {"_name": True, "num_heads": 2},
        "norm": "post",
        "dropout": 0.1,
        "fusion": "average",
    })
    assert arch.fusion == "average"
    assert arch.imitation == {**network_defaults(), "num_linear": 2, "width_multiplier": 0.5, "activation": "silu",
                              "attention": True, "num_heads": 2, "norm": "post", "dropout": 0.1}
    net = ImitationNetwork(64, **arch.imitation)
    assert net.mlp[0].out_features == 32 and net.attention.num_heads == 2


def test_left_out_parameters_take_the_defaults():
    arch = architecture_from_params({"num_linear": {"_name": 0}})
    assert arch.imitation == {**network_defaults(), "num_linear": 0}
    assert arch.fusion == "concat"
    assert "hidden_size" not in arch.imitation


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"depth": 3}, "unknown search-space parameter"),
        ({"num_linear": {"_name": 1, "heads": 2}}, "unknown key"),
        ({"num_linear": {"width_multiplier": 2.0}}, "needs '_name'"),
        ({"norm": {"_name": "pre"}}, "takes plain values"),
    ],
)
def test_bad_samples_are_rejected_with_the_parameter_named(params, message):
    with pytest.raises(ValueError, match=message):
        architecture_from_params(params)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it as JSON"),
        ("{}", "non-empty JSON object"),
        ('{"width": {"_type": "choice", "_value": [1]}}', r"unknown parameter\(s\) \['width'\]"),
        ('{"norm": ["pre"]}', "'norm' needs '_type' and '_value'"),
        ('{"attention": {"_type": "choice", "_value": [{"_name": true, "heads": [2]}]}}', "unknown key"),
    ],
)
def test_bad_search_space_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "space.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_search_space(path)
    assert str(path) in str(err.value)


def test_a_bad_value_is_left_to_the_network_which_names_it():
    space = {"norm": {"_type": "choice", "_value": ["sideways"]}}
    arch = architecture_from_params({"norm": space["norm"]["_value"][0]})
    with pytest.raises(ValueError, match="imitation norm"):
        ImitationNetwork(64, **arch.imitation)
    assert json.loads(json.dumps(arch.imitation)) == arch.imitation  # records and fragments are plain JSON/YAML
