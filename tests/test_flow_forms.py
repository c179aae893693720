"""The Prefect UI's run form for every flow: each parameter explained (Prefect reads the
`Args:` section of the flow's docstring into the parameter schema, as the UI shows it)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema

import flows


def all_flows() -> list[Flow]:
    found = []
    for info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{info.name}")
        found += [v for v in vars(module).values()
                  if isinstance(v, Flow) and v.fn.__module__ == module.__name__]
    return found


FLOWS = {f.name: f for f in all_flows()}


def test_every_flow_of_the_deployments_is_found():
    assert {"deploy", "cloudtrail_archive", "preflight", "schema_init", "monitoring",
            "repair", "rollback", "insert_check"} <= set(FLOWS)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_parameter_is_explained_in_the_form(name):
    props = parameter_schema(FLOWS[name].fn).model_dump()["properties"]
    missing = [p for p, spec in props.items() if not spec.get("description")]
    assert missing == [], f"{name}: no description for {missing} (add them under Args:)"


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_env_is_a_choice_of_the_environment_folders(name):
    from ground.settings import available_envs

    props = parameter_schema(FLOWS[name].fn).model_dump()["properties"]
    assert props["env"]["enum"] == available_envs() == ["local", "prd"]


def test_the_deploy_form_has_no_default_image():
    """The operator says what ships: no `latest` by default, in the form or the deployment."""
    schema = parameter_schema(FLOWS["deploy"].fn).model_dump()
    assert "image" in schema["required"] and "default" not in schema["properties"]["image"]
