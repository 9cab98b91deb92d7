"""GSM8K answer extraction (the YAML's own regex filters) and numeric comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lm_eval.filters.extraction import RegexFilter

from sah_tasks import TASKS_DIR
from sah_tasks.gsm8k.utils import gold_answer, numbers_equal, parse_number, process_results


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _filters() -> dict[str, RegexFilter]:
    """Build the filters exactly as configured in the task template."""
    cfg = yaml.load((Path(TASKS_DIR) / "gsm8k" / "_gsm8k_template_yaml").read_text(), _Loader)
    out = {}
    for entry in cfg["filter_list"]:
        regex = entry["filter"][0]
        out[entry["name"]] = RegexFilter(regex["regex_pattern"], regex["group_select"])
    return out


def extract(name: str, response: str) -> str:
    return list(_filters()[name].apply([[response]], [{}]))[0][0]


@pytest.mark.parametrize("text", ["1,000", "$1000", "1000.00", "1000.", " 1000 ", "$1,000.0"])
def test_numeric_equivalences(text):
    assert numbers_equal(text, "1000")


@pytest.mark.parametrize("text", ["10000", "100", "1000.5", "-1000", "1 000 1", "", "[invalid]"])
def test_numeric_mismatches(text):
    assert not numbers_equal(text, "1000")


def test_negative_and_decimal_numbers():
    assert parse_number("-5") == parse_number("-5.0")
    assert numbers_equal("\u22125", "-5")  # a typographic minus sign
    assert numbers_equal("0.25", ".25")  # a leading-dot decimal is the same number
    assert numbers_equal("\u2012" + "7", "-7") and numbers_equal("\u20137", "-7")  # figure/en dash
    assert parse_number("abc") is None
    assert parse_number(None) is None


def test_strict_filter_takes_the_hash_answer():
    resp = "She has 3 + 4 = 7 apples.\n#### 7\nThen 99 more"
    assert extract("strict-match", resp) == "7"
    assert extract("strict-match", "#### $1,000.") == "$1,000"
    assert extract("strict-match", "####-12") == "-12"


def test_strict_filter_without_hash_is_invalid():
    assert extract("strict-match", "The answer is 42.") == "[invalid]"
    assert extract("strict-match", "") == "[invalid]"


def test_flexible_filter_takes_the_last_number():
    assert extract("flexible-extract", "3 + 4 = 7, so the answer is 1,000.") == "1,000"
    assert extract("flexible-extract", "It went down to -5 degrees") == "-5"
    assert extract("flexible-extract", "no digits at all") == "[invalid]"


# U+2212 minus, en dash, figure dash: each written directly before a number is its minus sign.
TYPOGRAPHIC_MINUS = ["\u2212", "\u2013", "\u2012"]


@pytest.mark.parametrize("dash", TYPOGRAPHIC_MINUS)
def test_typographic_minus_is_a_minus_sign_end_to_end(dash):
    """Filter + scorer: `The change is −5.` is -5, so it is wrong for gold 5 and right for -5."""
    flexible = extract("flexible-extract", f"The change is {dash}5.")
    strict = extract("strict-match", f"The change is {dash}5.\n#### {dash}5")
    for answer in (flexible, strict):
        assert process_results({"answer": "#### 5"}, [answer]) == {"exact_match": 0.0}
        assert process_results({"answer": "#### -5"}, [answer]) == {"exact_match": 1.0}


@pytest.mark.parametrize("name", ["flexible-extract", "strict-match"])
def test_leading_dot_decimal_is_read_as_a_fraction(name):
    """`.5` is 0.5: it must not be read as 5 (the old flexible regex dropped the dot)."""
    answer = extract(name, "Each slice is 1/2, so the answer is .5\n#### .5")
    assert process_results({"answer": "#### 5"}, [answer]) == {"exact_match": 0.0}
    assert process_results({"answer": "#### 0.5"}, [answer]) == {"exact_match": 1.0}


def test_dots_that_are_not_a_leading_decimal_point():
    assert extract("flexible-extract", "so... 5") == "5"
    assert extract("flexible-extract", "It is...5") == "5"  # an ellipsis is not a decimal point
    assert extract("flexible-extract", "Total: 1,000.") == "1,000"


def test_process_results_scores_against_the_final_line():
    doc = {"question": "q", "answer": "Work: 600+400=<<600+400=1000>>1000\n#### 1,000"}
    assert gold_answer(doc["answer"]) == "1,000"
    assert process_results(doc, ["1000"]) == {"exact_match": 1.0}
    assert process_results(doc, ["10000"]) == {"exact_match": 0.0}
    assert process_results(doc, ["[invalid]"]) == {"exact_match": 0.0}
    assert process_results(doc, []) == {"exact_match": 0.0}
