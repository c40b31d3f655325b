"""Scenario `assert:` lines: the grammar, the aliases, the failures, the JUnit file."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from integration import ConfigurationError
from sim.scenario.assertions import (
    AssertionResult,
    check_syntax,
    evaluate,
    failure_lines,
    write_junit,
)

SUMMARY = {
    "scenario": "baseline",
    "seed": 7,
    "latency_ms": {
        "confirmation": {"count": 120, "p50": 180.0, "p99": 900_000, "max": 1_200_000.5}
    },
    "duplicates": {"delivered": 4, "detected": 4, "posted": 0},
    "drift": {
        "max_value": "1250.40",
        "final_value": "12.50",
        "final_unexplained_value": "0.00",
        "final_exceptions": 1,
    },
    "dead_letters": {"total": 3, "by_code": {"LOT_REQUIRED": 2, "UNKNOWN_ITEM": 1}},
    "ledger": {"balanced": True, "entries": 812},
    "coverage": {"partial_completion": 0.3},
    "assertions": [{"expr": "seed == 7", "passed": True, "value": 7}],
    "run": {"wall_s": 95.5},
}


def one(expr: str, summary=SUMMARY) -> AssertionResult:
    (result,) = evaluate([expr], summary)
    return result


@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("duplicates.delivered == 4", True),
        ("duplicates.delivered == 5", False),
        ("duplicates.delivered != 5", True),
        ("duplicates.delivered != 4", False),
        ("duplicates.delivered < 5", True),
        ("duplicates.delivered < 4", False),
        ("duplicates.delivered <= 4", True),
        ("duplicates.delivered <= 3", False),
        ("duplicates.delivered > 3", True),
        ("duplicates.delivered > 4", False),
        ("duplicates.delivered >= 4", True),
        ("duplicates.delivered >= 4.001", False),
    ],
)
def test_every_operator(expr, passed):
    result = one(expr)
    assert result.passed is passed
    assert result.value == 4 and result.error is None


def test_spacing_is_free_and_the_expression_is_kept_as_written():
    result = one("  duplicates.posted==0 ")
    assert result == AssertionResult("duplicates.posted==0", True, 0)


def test_floats_and_decimal_strings_compare_as_numbers():
    assert one("coverage.partial_completion == 0.3").passed  # no binary-float surprise
    assert one("coverage.partial_completion > 0.29").passed
    assert one("drift.final_value == 12.5").passed  # "12.50" in the summary
    assert not one("drift.final_value < 12.5").passed
    assert one("drift.max_value >= 1e3").passed
    assert one("run.wall_s > -1").passed


@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("latency_ms.confirmation.p99 <= 15m", True),  # 900 000 ms
        ("latency_ms.confirmation.p99 < 15m", False),
        ("latency_ms.confirmation.p50 < 250ms", True),
        ("latency_ms.confirmation.p50 < 180ms", False),
        ("latency_ms.confirmation.p50 == 0.18s", True),
        ("latency_ms.confirmation.max > 20m", True),  # 1 200 000.5 ms
        ("latency_ms.confirmation.max < 1h", True),
        ("latency_ms.confirmation.max > 1d", False),
        ("latency_ms.confirmation.p99 == 0.25h", True),
    ],
)
def test_durations_are_milliseconds_under_latency(expr, passed):
    assert one(expr).passed is passed


def test_durations_are_seconds_elsewhere():
    assert one("run.wall_s < 2m").passed  # 95.5 s < 120 s
    assert not one("run.wall_s < 90s").passed
    assert one("run.wall_s > 1500ms").passed
    assert not one("run.wall_s > 2h").passed


def test_latency_alias():
    result = one("latency.confirmation.p99 < 16m")
    assert result.passed and result.value == 900_000
    assert one("latency.confirmation.count == 120").passed
    assert not one("latency.confirmation.p99 < 15m").passed  # still milliseconds


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("drift.final_unexplained == 0", "0.00"),
        ("drift.final == 12.5", "12.50"),
        ("drift.max == 1250.4", "1250.40"),
    ],
)
def test_drift_aliases(expr, value):
    result = one(expr)
    assert result.passed and result.value == value


def test_dead_letters_by_code_and_list_index():
    assert one("dead_letters.by_code.LOT_REQUIRED == 2").passed
    assert not one("dead_letters.by_code.UNKNOWN_ITEM == 0").passed
    assert one("assertions.0.passed == true").passed


def test_booleans():
    assert one("ledger.balanced == true").passed
    assert one("ledger.balanced != false").passed
    assert not one("ledger.balanced == FALSE").passed
    unbalanced = {"ledger": {"balanced": False}}
    assert one("ledger.balanced == false", unbalanced).passed


def test_a_code_that_never_happened_counts_zero_but_an_unknown_edge_case_fails():
    assert one("dead_letters.by_code.SCHEMA_INVALID == 0").passed
    assert one("outcomes.HELD == 0").passed
    # coverage lists every edge case the twin counts, so a name it lacks is a typo
    assert one("coverage.reordr == 0").error == "no such key coverage.reordr"


def test_a_missing_key_is_a_failure_not_an_exception():
    result = one("latency.backflush.p99 < 1s")
    assert result == AssertionResult(
        "latency.backflush.p99 < 1s", False, None, "no such key latency_ms.backflush.p99"
    )
    assert result.to_dict() == {
        "expr": "latency.backflush.p99 < 1s",
        "passed": False,
        "value": None,
        "error": "no such key latency_ms.backflush.p99",
    }
    assert one("assertions.3.passed == true").error == "no such key assertions.3.passed"
    assert one("duplicates.posted.count == 0").error == "no such key duplicates.posted.count"


def test_values_that_are_not_comparable_fail_with_a_reason():
    mixed = {"section": {"a": 1}, "none": None, "text": "abc", "flag": True, "nan": float("nan")}
    for expr in ("section == 1", "none < 1", "text > 0", "flag == 1", "nan != 0"):
        result = one(expr, mixed)
        assert not result.passed and result.error.endswith("is not a number"), expr
    result = one("section.a == true", mixed)
    assert not result.passed and result.error == "section.a is not a boolean"


def test_to_dict_without_error():
    assert one("seed == 7").to_dict() == {"expr": "seed == 7", "passed": True, "value": 7}


def test_evaluate_keeps_order_and_reports_malformed_lines_instead_of_raising():
    results = evaluate(["seed == 7", "seed = 7", "seed > 8"], SUMMARY)
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].error is not None and results[2].error is None


def test_good_lines_pass_the_syntax_check():
    check_syntax(
        [
            "duplicates.posted == 0",
            "latency.confirmation.p99 < 15m",
            "drift.final_unexplained == 0",
            "ledger.balanced == true",
            "dead_letters.by_code.LOT_REQUIRED <= 5",
            "coverage.partial_completion >= 0.25",
            "run.wall_s != -1.5e2",
        ]
    )
    check_syntax([])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("duplicates.posted = 0", "unexpected '='"),
        ("duplicates.posted =< 0", "unexpected '='"),
        ("duplicates.posted => 0", "unexpected '='"),
        ("duplicates.posted 0", "unexpected '0': expected VALUE OP VALUE"),
        ("duplicates.posted", "no comparison"),
        ("== 0", "expected a number, a duration or a key, not '=='"),
        ("duplicates.posted ==", "expected a number, a duration or a key, not the end"),
        ("duplicates..posted == 0", "unexpected '.'"),
        ("duplicates.posted == zero", "no summary key zero: the summary has scenario, seed"),
        ("latency.confirmation.p99 < 15 minutes", "unexpected 'minutes'"),
        ("latency.confirmation.p99 < 15min", "'15min' is not a number or a duration"),
        ("ledger.balanced < true", "< cannot compare with a boolean"),
        ("ledger.balanced == 1 + true", "true/false cannot take part in arithmetic"),
        ("true != 1 * ledger.balanced", "true/false can only be compared with a key"),
        ("1 < 2", "names no summary key"),
        ("duplicates.posted * 2 <", "not the end"),
        ("duplicates.posted ( 2", "unexpected '('"),
    ],
)
def test_syntax_errors_name_the_line(line, reason):
    with pytest.raises(ConfigurationError) as caught:
        check_syntax(["duplicates.posted == 0", line])
    text = str(caught.value)
    assert f"assert line 2 {line!r}" in text and reason in text
    assert "line 1" not in text


def test_every_bad_line_is_named():
    with pytest.raises(ConfigurationError) as caught:
        check_syntax(["a = 1", "seed == 1", "c ~ 2"])
    text = str(caught.value)
    assert "line 1 'a = 1'" in text and "line 3 'c ~ 2'" in text and "line 2" not in text


def test_junit_xml(tmp_path):
    results = evaluate(
        ["duplicates.posted == 0", "latency.confirmation.p99 < 15m", "latency.nope.p99 < 1s"],
        SUMMARY,
    )
    path = tmp_path / "junit.xml"
    write_junit(path, "baseline", results)

    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "baseline"
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [result.expr for result in results]
    assert cases[0].find("failure") is None
    assert cases[1].find("failure").get("message") == "value was 900000"
    message = cases[2].find("failure").get("message")
    assert message.startswith("value was null") and "no such key latency_ms.nope.p99" in message


def test_junit_xml_is_deterministic_and_handles_an_empty_list(tmp_path):
    results = evaluate(["seed == 8", "ledger.balanced == true"], SUMMARY)
    write_junit(tmp_path / "a.xml", "s", results)
    write_junit(tmp_path / "b.xml", "s", list(results))
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()
    assert b"value was 7" in (tmp_path / "a.xml").read_bytes()

    write_junit(tmp_path / "empty.xml", "s", [])
    suite = ET.parse(tmp_path / "empty.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("0", "0")


# --- relational lines: keys on both sides, arithmetic, chains ----------------------------------
@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("duplicates.detected == duplicates.delivered", True),
        ("duplicates.detected != duplicates.delivered", False),
        ("duplicates.posted < duplicates.delivered", True),
        ("duplicates.delivered <= 1.05 * duplicates.detected", True),
        ("duplicates.delivered <= 0.95 * duplicates.detected", False),
        ("duplicates.delivered == duplicates.detected + 0", True),
        ("duplicates.delivered - 1 == duplicates.detected - 1", True),
        ("duplicates.delivered > duplicates.detected - 1", True),
        ("duplicates.delivered + 2 * duplicates.detected == 12", True),  # * before +
        ("duplicates.delivered / dead_letters.total > 1.3", True),  # 4 / 3
        ("duplicates.delivered / dead_letters.total > 1.34", False),
        ("0.25 <= coverage.partial_completion <= 0.35", True),
        ("0.25 <= coverage.partial_completion <= 0.29", False),
        ("0.31 <= coverage.partial_completion <= 0.35", False),
        ("0 <= duplicates.posted < duplicates.detected <= duplicates.delivered", True),
        ("-duplicates.delivered == -4", True),
        ("drift.final * 100 == 1250", True),  # "12.50" read exactly
        ("ledger.balanced == ledger.balanced", True),
        ("ledger.balanced != ledger.balanced", False),
    ],
)
def test_relational_lines(expr, passed):
    result = one(expr)
    assert result.error is None, result.error
    assert result.passed is passed


def test_a_line_on_several_keys_reports_each_value():
    result = one("duplicates.detected >= 0.9 * duplicates.delivered")
    assert result.value == 4  # the first key's value, as for a line on one key
    assert result.values == {"duplicates.detected": 4, "duplicates.delivered": 4}
    assert result.to_dict()["values"] == result.values
    assert "values" not in one("duplicates.posted == 0").to_dict()
    assert one("duplicates.posted <= duplicates.posted * 2").values is None  # one key, twice


def test_durations_follow_the_keys_of_the_line():
    assert one("latency.confirmation.p99 == latency.confirmation.p50 * 5000").passed
    assert one("latency.confirmation.p99 <= 2 * latency.confirmation.p50 + 15m").passed
    assert not one("latency.confirmation.p99 <= latency.confirmation.p50 + 14m").passed
    assert one("run.wall_s < duplicates.delivered * 30s").passed  # seconds: 95.5 < 120
    mixed = one("latency.confirmation.p99 < run.wall_s + 1s")
    assert not mixed.passed and "ambiguous" in mixed.error


def test_relational_lines_that_cannot_be_decided_fail_with_a_reason():
    zero = one("duplicates.delivered / duplicates.posted < 1")
    assert not zero.passed and zero.error == "division by zero (duplicates.posted is 0)"
    text = one("scenario == duplicates.delivered")
    assert not text.passed and text.error == "scenario is not a number"
    flag = one("ledger.balanced < duplicates.delivered")
    assert not flag.passed and flag.error == "ledger.balanced is not a number"
    missing = one("duplicates.delivered == duplicates.lost")
    assert missing.error == "no such key duplicates.lost" and missing.value == 4
    assert missing.values == {"duplicates.delivered": 4}


def test_message_types_count_zero_when_absent():
    summary = {"events": {"messages": 3, "by_type": {"OperationCompleted": 3}}}
    assert one("events.by_type.OperationCompleted == events.messages", summary).passed
    assert one("events.by_type.ScrapDeclared == 0", summary).passed


def test_first_codes_count_zero_when_absent():
    assert one("dead_letters.by_first_code.LOT_REQUIRED == 0").passed
    summary = {"dead_letters": {"by_first_code": {"REVISION_MISMATCH": 2}, "total": 2}}
    assert one("dead_letters.by_first_code.REVISION_MISMATCH == dead_letters.total", summary).passed


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("drift.final_unexplaned == 0", "no summary key drift.final_unexplaned: drift has"),
        ("duplicates == 0", "duplicates is a section, not a figure: it has delivered"),
        ("seed.value == 0", "no summary key seed.value: seed is a figure"),
        ("coverage.reordr == 0", "no summary key coverage.reordr: coverage has"),
        ("dead_letters.by_code.LOT_MISSING > 0", "no summary key dead_letters.by_code.LOT_MISSING"),
        ("dead_letters.by_first_code.NOPE > 0", "dead_letters.by_first_code has"),
        ("events.by_type.OperationComplete > 0", "no summary key events.by_type.OperationComplete"),
        ("outcomes.PARKED == 0", "outcomes has POSTED, DUPLICATE, HELD, REJECTED"),
        ("latency.confirmation.p98 < 1s", "no summary key latency_ms.confirmation.p98"),
        ("duplicates.detected == duplicates.delivered-1", "duplicates.delivered-1"),
        ("assertions.x.passed == true", "no summary key assertions.x.passed"),
    ],
)
def test_keys_no_summary_has_are_refused_when_the_scenario_loads(line, reason):
    with pytest.raises(ConfigurationError) as caught:
        check_syntax([line])
    assert reason in str(caught.value)


def test_keys_a_summary_has_pass_the_syntax_check():
    check_syntax(
        [
            "events.held_at_end == 0",
            "events.by_type.ScrapDeclared <= events.messages",
            "drift.final_undelivered == drift.final_undelivered_value",
            "drift.final_undelivered_messages <= heal.unsent + heal.in_flight",
            "drift.final_explained <= drift.final",
            "dead_letters.by_first_code.REVISION_MISMATCH >= dead_letters.by_code.REVISION_MISMATCH",
            "latency.any_workflow.parts.hold.p99_9 < 1h",
            "load.sends.late_share < 0.01",  # the load driver's own figures
            "assertions.0.passed == true",
            "outcomes.HELD == 0",
            "0 <= first_pass_rate <= 1",
        ]
    )


def test_failure_lines_and_junit_show_each_key_of_a_relational_line(tmp_path):
    results = evaluate(["duplicates.posted >= duplicates.delivered", "seed == 8"], SUMMARY)
    lines = failure_lines([result.to_dict() for result in results])
    assert lines == [
        "duplicates.posted >= duplicates.delivered (duplicates.posted 0, duplicates.delivered 4)",
        "seed == 8 (value 7)",
    ]
    write_junit(tmp_path / "junit.xml", "s", results)
    failures = ET.parse(tmp_path / "junit.xml").getroot().iter("failure")
    messages = [failure.get("message") for failure in failures]
    assert messages == [
        "values were duplicates.posted 0, duplicates.delivered 4",
        "value was 7",
    ]
    assert AssertionResult(**results[0].to_dict()) == results[0]  # summary.json round trip
