"""Scenario files: loading, `--set` overrides, errors that name the field, durations, schema."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from integration import ConfigurationError
from sim.scenario.document import (
    Pattern,
    Reporting,
    Scenario,
    format_duration,
    load_scenario,
    parse_duration,
    scenario_schema,
)

MINIMAL = """\
name: minimal
seed: 11
horizon: 2d
plants:
  - id: LYON
    work_centres:
      - id: WC-10
        capacity: 2
      - id: WC-20
  - id: BRNO
    currency: CZK
    work_centres:
      - id: WC-10
faults:
  network_delay: {kind: lognormal, mean: 80ms, sd: 40ms}
assert:
  - duplicates.posted == 0
  - latency.confirmation.p99 < 15m
"""


@pytest.fixture
def path(tmp_path):
    file = tmp_path / "minimal.yaml"
    file.write_text(MINIMAL, encoding="utf-8")
    return file


def test_a_minimal_file_loads_with_defaults(path):
    scenario = load_scenario(path)
    assert isinstance(scenario, Scenario)
    assert (scenario.name, scenario.seed, scenario.horizon) == ("minimal", 11, timedelta(days=2))
    assert [plant.id for plant in scenario.plants] == ["LYON", "BRNO"]
    assert scenario.plants[0].work_centres[0].capacity == 2
    assert scenario.plants[0].work_centres[1].capacity == 1
    assert scenario.plants[1].currency == "CZK"
    assert scenario.plants[0].clock_skew == timedelta(0)
    delay = scenario.faults.network_delay
    assert (delay.kind, delay.mean, delay.sd) == (
        "lognormal",
        timedelta(milliseconds=80),
        timedelta(milliseconds=40),
    )
    assert scenario.assertions == ("duplicates.posted == 0", "latency.confirmation.p99 < 15m")
    assert scenario.integration.pattern is Pattern.QUEUE
    assert scenario.faults.duplicate_rate == 0.0


def test_a_dict_loads_like_the_file(path):
    document = yaml.safe_load(MINIMAL)
    assert load_scenario(document) == load_scenario(path)


def test_overrides_nested_values_with_yaml_types(path):
    scenario = load_scenario(
        path,
        [
            "faults.duplicate_rate=0.02",
            "integration.pattern=sync",
            "integration.idempotency=false",
            "integration.consumers=8",
            "integration.rate_limit=12.5",
            "mes.reporting=batched",
            "edge_cases.period_close=no",  # YAML 1.1: a boolean
            "seed=99",
            "horizon=36h",
            "faults.outages=[{at: 1h, duration: 10m}]",
        ],
    )
    assert scenario.faults.duplicate_rate == 0.02
    assert scenario.integration.pattern is Pattern.SYNC
    assert scenario.integration.idempotency is False
    assert scenario.integration.consumers == 8
    assert scenario.integration.rate_limit == 12.5
    assert scenario.mes.reporting is Reporting.BATCHED
    assert scenario.edge_cases.period_close is False
    assert (scenario.seed, scenario.horizon) == (99, timedelta(hours=36))
    (outage,) = scenario.faults.outages
    assert (outage.at, outage.duration) == (timedelta(hours=1), timedelta(minutes=10))


def test_overrides_reach_into_lists_and_create_missing_sections(path):
    scenario = load_scenario(
        path,
        [
            "plants.0.clock_skew=5m",
            "plants.1.work_centres.0.mtbf=8h",
            "integration.service_time.kind=constant",
            "integration.service_time.mean=15ms",
            "assert.1=latency.confirmation.p99 < 10m",
        ],
    )
    assert scenario.plants[0].clock_skew == timedelta(minutes=5)
    assert scenario.plants[1].clock_skew == timedelta(0)
    assert scenario.plants[1].work_centres[0].mtbf == timedelta(hours=8)
    assert scenario.integration.service_time.kind == "constant"
    assert scenario.integration.service_time.mean == timedelta(milliseconds=15)
    assert scenario.assertions[1] == "latency.confirmation.p99 < 10m"
    # the file itself is untouched
    assert load_scenario(path).plants[0].clock_skew == timedelta(0)


def test_overriding_a_dict_does_not_change_the_callers_dict(path):
    document = yaml.safe_load(MINIMAL)
    load_scenario(document, ["seed=5", "plants.0.clock_skew=1m"])
    assert document["seed"] == 11 and "clock_skew" not in document["plants"][0]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("faults.duplicate_rate=1.5", "faults.duplicate_rate"),
        ("faults.duplicate_rate=lots", "faults.duplicate_rate"),
        ("plants.1.clock_skew=5 minutes", "plants.1.clock_skew"),
        ("integration.pattern=carrier-pigeon", "integration.pattern"),
        ("integration.consumers=0", "integration.consumers"),
        ("faults.network_delay.kind=pareto", "faults.network_delay.kind"),
    ],
)
def test_a_bad_override_names_the_field(path, override, field):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, [override])
    assert f"{field}:" in str(caught.value)


@pytest.mark.parametrize(
    "override", ["no-equals-sign", "=5", "plants.7.clock_skew=5m", "plants.x.clock_skew=5m"]
)
def test_malformed_overrides_are_configuration_errors(path, override):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, [override])
    assert override in str(caught.value)


def test_an_override_cannot_descend_into_a_value(path):
    with pytest.raises(ConfigurationError, match="name is not a section"):
        load_scenario(path, ["name.first=x"])


def test_an_override_cannot_descend_into_a_list_item_that_is_a_value(path):
    with pytest.raises(ConfigurationError):
        load_scenario(path, ["calendar.working_days=[0, 1]", "calendar.working_days.0.a.b=1"])


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("colour: blue\n", "colour: unknown key\n"),
        ("fault:\n  loss_rate: 0.1\n", "fault: unknown key; did you mean faults?"),
        (
            "faults:\n  duplicate_rat: 0.1\n",
            "faults.duplicate_rat: unknown key; did you mean faults.duplicate_rate?",
        ),
        (
            "plants:\n  - id: A\n    work_centres: [{id: W, capacty: 2}]\n",
            (
                "plants.0.work_centres.0.capacty: unknown key; "
                "did you mean plants.0.work_centres.0.capacity?"
            ),
        ),
    ],
)
def test_unknown_keys_in_the_file_are_named_with_the_nearest_key(tmp_path, extra, expected):
    faults = "faults:\n  network_delay: {kind: lognormal, mean: 80ms, sd: 40ms}\n"
    text = MINIMAL.replace(faults, "")
    if extra.startswith("plants:"):
        text = text[: text.index("plants:")]
    file = tmp_path / "typo.yaml"
    file.write_text(text + extra, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(file)
    message = str(caught.value) + "\n"
    assert message.startswith(f"{file} is not a valid scenario:\n")
    assert f"  {expected}" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("nosuch=1", "--set nosuch=1: nosuch: unknown key"),
        ("faults.nosuch=1", "--set faults.nosuch=1: faults.nosuch: unknown key"),
        (
            "duplicate_rate=0.1",
            (
                "--set duplicate_rate=0.1: duplicate_rate: unknown key; "
                "did you mean faults.duplicate_rate?"
            ),
        ),
        (
            "integration.duplicate_rate=0.1",
            (
                "--set integration.duplicate_rate=0.1: integration.duplicate_rate: unknown key; "
                "did you mean faults.duplicate_rate?"
            ),
        ),
        (
            "plants.1.work_centres.0.capacty=3",
            (
                "--set plants.1.work_centres.0.capacty=3: plants.1.work_centres.0.capacty: "
                "unknown key; did you mean plants.1.work_centres.0.capacity?"
            ),
        ),
        (
            "faults.duplicate_rate=2",
            (
                "--set faults.duplicate_rate=2: faults.duplicate_rate: "
                "Input should be less than or equal to 1"
            ),
        ),
    ],
)
def test_a_bad_override_is_blamed_not_the_file(path, override, expected):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, ["seed=4", override])
    assert str(caught.value) == expected  # one line, nothing said against the file


def test_a_problem_of_the_file_and_one_of_an_override_are_told_apart(path):
    path.write_text(path.read_text() + "colour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, ["integration.consumers=0"])
    assert str(caught.value).splitlines() == [
        (
            "--set integration.consumers=0: integration.consumers: "
            "Input should be greater than or equal to 1"
        ),
        f"{path} with its --set overrides is not a valid scenario:",
        "  colour: unknown key",
    ]


def test_a_bad_list_item_is_not_echoed_as_an_empty_list(path):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, ["plants=[{id: lyon, work_centres: [{id: W}]}]"])
    (line,) = str(caught.value).splitlines()  # not also "plants: Tuple should have at least 1"
    assert line.startswith("--set plants=[{id: lyon, work_centres: [{id: W}]}]: plants.0.id: ")


def test_duplicate_plant_ids_are_rejected(path):
    with pytest.raises(ConfigurationError, match=r"plant ids repeat: \['LYON', 'LYON'\]"):
        load_scenario(path, ["plants.1.id=LYON"])


def test_an_unknown_plant_time_zone_is_refused_when_the_scenario_loads(path):
    with pytest.raises(ConfigurationError, match=r"plants.0.timezone.*unknown IANA time zone"):
        load_scenario(path, ["plants.0.timezone=Europe/Pari"])
    assert load_scenario(path, ["plants.0.timezone=Europe/Paris"]).plants[0].timezone


def test_files_that_are_not_scenarios(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a YAML mapping"):
        load_scenario(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nplants: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(broken)
    assert str(caught.value) == (
        f"{broken}:3:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2, column 9)"
    )


def test_an_override_that_is_not_yaml_names_the_override_not_a_unicode_string(path):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, ["faults.network_delay={kind: constant, mean: 1s"])
    message = str(caught.value)
    assert message.startswith("--set faults.network_delay={kind: constant, mean: 1s: ")
    assert "is not YAML" in message and "<unicode string>" not in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{kind: lognormal, mean: 30s}", "lognormal needs mean and sd; sd is missing"),
        ("{kind: lognormal, mean: 30s, sd: 0s}", "lognormal needs sd > 0"),
        ("{kind: lognormal, mean: 0s, sd: 5s}", "lognormal needs a positive mean"),
        ("{kind: exponential}", "exponential needs mean; mean is missing"),
        ("{kind: constant}", "constant needs mean; mean is missing"),
        ("{kind: uniform, low: 1s}", "uniform needs high; high is missing"),
        ("{kind: uniform, low: 5s, high: 1s}", "uniform needs low <= high"),
        ("{kind: exponential, mean: 30s, sd: 10s}", "exponential takes mean, not sd"),
        ("{kind: constant, mean: 1s, high: 2s}", "constant takes mean, not high"),
        ("{kind: uniform, mean: 3s, high: 5s}", "uniform takes low and high, not mean"),
    ],
)
def test_a_distribution_must_have_its_own_parameters_and_no_others(path, value, problem):
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path, [f"integration.service_time={value}"])
    assert f"integration.service_time: {problem}" in str(caught.value)


def test_setting_only_the_kind_of_a_default_distribution_is_an_error(path):
    # the override makes a fresh section: the default mean is not kept, so nothing is meant
    with pytest.raises(ConfigurationError, match="lognormal needs mean and sd; mean is missing"):
        load_scenario(path, ["integration.service_time.kind=lognormal"])


@pytest.mark.parametrize(
    "value",
    [
        "{kind: uniform, high: 5s}",  # low 0
        "{kind: constant, mean: 0s}",
        "{kind: exponential, mean: 0s}",  # no delay at all, as a sweep's first value may be
        "{mean: 30s}",  # exponential
        "{kind: lognormal, mean: 30s, sd: 60s}",
    ],
)
def test_complete_distributions_load(path, value):
    load_scenario(path, [f"integration.service_time={value}"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        (" 8 h ", timedelta(hours=8)),
        (45, timedelta(seconds=45)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=3), timedelta(minutes=3)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["15", "15min", "m", "1,5h", "-5m", "", True])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0ms"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=15), "15m"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=36), "36h"),
        (timedelta(days=2), "2d"),
        (timedelta(weeks=3), "3w"),
        (timedelta(seconds=1, milliseconds=500), "1500ms"),
    ],
)
def test_format_duration_round_trips(value, text):
    assert format_duration(value) == text
    assert parse_duration(format_duration(value)) == value


def test_format_duration_keeps_sub_millisecond_values():
    value = timedelta(microseconds=1500)
    assert parse_duration(format_duration(value)) == value


def test_a_scenario_survives_a_dump_and_reload(path):
    scenario = load_scenario(path, ["plants.0.clock_skew=90s", "integration.timeout=1500ms"])
    document = json.loads(json.dumps(scenario.model_dump(mode="json", by_alias=True)))
    assert document["horizon"] == "2d" and document["plants"][0]["clock_skew"] == "90s"
    assert "assert" in document
    assert load_scenario(document) == scenario


def test_schema_is_json_and_has_the_assert_property():
    schema = scenario_schema()
    text = json.dumps(schema)
    assert json.loads(text) == schema
    assert schema["properties"]["assert"]["type"] == "array"
    assert "assertions" not in schema["properties"]
    assert set(schema["required"]) == {"name", "plants"}
    assert schema["additionalProperties"] is False
    assert "string" in schema["properties"]["horizon"]["type"]


def test_schema_duration_defaults_are_valid_durations():
    schema = scenario_schema()
    for default in (
        schema["properties"]["horizon"]["default"],
        schema["$defs"]["Mes"]["properties"]["burst_spread"]["default"],
    ):
        parse_duration(default)
