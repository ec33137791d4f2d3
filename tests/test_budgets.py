"""The budget syntax: lists, ranges, continued progressions, validation against a tokenizer's budgets."""

from __future__ import annotations

import pytest

from alit_eval.budgets import BudgetSpace, BudgetSyntaxError, parse_budget_spec, parse_budgets
from alit_eval.errors import AlitEvalError

ALIT = BudgetSpace.of(range(32, 257, 32))  # discrete: 32, 64, ..., 256
PREFIX = BudgetSpace.of(range(1, 257))  # One-D-Piece: any prefix 1..256
KARL = BudgetSpace.of(range(1, 513))
TITOK = BudgetSpace.of([64])


@pytest.mark.parametrize("text, space, want", [
    ("32,64,128,256", ALIT, [32, 64, 128, 256]),
    (" 256, 32 ,64,64", ALIT, [32, 64, 256]),
    ("8-256:8", PREFIX, list(range(8, 257, 8))),
    ("1-4", PREFIX, [1, 2, 3, 4]),
    ("32-256:32", ALIT, list(range(32, 257, 32))),
    ("1,2,4,...", PREFIX, [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    ("1,2,4,...", KARL, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
    ("1,2,4,...,64", KARL, [1, 2, 4, 8, 16, 32, 64]),
    ("32,64,...", ALIT, list(range(32, 257, 32))),  # two terms: arithmetic
    ("32,64,...", PREFIX, list(range(32, 257, 32))),
    ("3,9,27,...", PREFIX, [3, 9, 27, 81, 243]),
    ("10,20,30,...,60", PREFIX, [10, 20, 30, 40, 50, 60]),
    ("1,3-5,16,32,...", PREFIX, [1, 3, 4, 5, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256]),
    ("all", ALIT, list(range(32, 257, 32))),
    ("64", TITOK, [64]),
])
def test_forms(text, space, want):
    assert parse_budgets(text, space) == want


def test_progression_checked_against_a_naive_expansion():
    # independent recomputation: every doubling from 1 and every step of 8 from 8 within 1..N
    for n in (4, 7, 64, 100, 256, 300):  # (the written terms themselves must exist)
        space = BudgetSpace.of(range(1, n + 1))
        assert parse_budgets("1,2,4,...", space) == [2 ** i for i in range(20) if 2 ** i <= n]
        if n >= 16:
            assert parse_budgets("8,16,...", space) == [b for b in range(8, n + 1) if b % 8 == 0]


@pytest.mark.parametrize("text, space, fragment", [
    ("48", ALIT, "budget(s) 48 not available; this tokenizer produces 32, 64, ..., 256"),
    ("8-512:8", PREFIX, "not available; this tokenizer produces 1..256"),
    ("300", KARL, "300"),  # fine for KARL
    ("128", TITOK, "this tokenizer produces 64"),
    ("1,2,4,...,512", PREFIX, "512 not available; this tokenizer produces 1..256"),
])
def test_out_of_range_names_the_valid_budgets(text, space, fragment):
    if text == "300":
        assert parse_budgets(text, space) == [300]
        return
    with pytest.raises(BudgetSyntaxError) as err:
        parse_budgets(text, space)
    assert fragment in str(err.value) and "\n" not in str(err.value) and "--budgets" in str(err.value)
    assert isinstance(err.value, AlitEvalError)


@pytest.mark.parametrize("text, fragment", [
    ("", "give budgets such as"),
    ("32,,64", "give budgets such as"),
    ("32,abc", "'abc' is not a positive whole number"),
    ("0,32", "'0' is not a positive whole number"),
    ("-5", "is not a positive whole number"),
    ("64-32", "range '64-32' must be a-b[:step]"),
    ("8-64:0", "must be a-b[:step]"),
    ("32,...", "needs at least two terms"),
    ("8-64:8,...", "needs at least two terms"),
    ("1,2,5,...", "neither an increasing arithmetic nor a whole-number geometric"),
    ("64,32,...", "neither"),
    ("32,64,...,250", "the end 250 is not a term of 32, 64, ..."),
    ("32,64,...,16", "below 64"),
])
def test_syntax_errors_are_one_line(text, fragment):
    with pytest.raises(BudgetSyntaxError) as err:
        parse_budget_spec(text)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_without_a_tokenizer_open_forms_need_an_end():
    assert parse_budgets("1,2,4,...,16") == [1, 2, 4, 8, 16]
    with pytest.raises(BudgetSyntaxError, match="give the end"):
        parse_budgets("1,2,4,...")
    with pytest.raises(BudgetSyntaxError, match="give the end"):
        parse_budgets("all")


def test_space_description():
    assert ALIT.describe() == "32, 64, ..., 256" and PREFIX.describe() == "1..256" and TITOK.describe() == "64"
    assert BudgetSpace.of([4, 8, 32]).describe() == "4, 8, 32" and PREFIX.is_range and not ALIT.is_range
    assert 64 in ALIT and 65 not in ALIT and ALIT.max == 256


@pytest.mark.parametrize("text, fragment", [
    ("1-1000000000:1", "budget 1000000000 is above 65536"),
    ("8,16,...,8000000000", "budget 8000000000 is above 65536"),
    ("1-3:100000000000", "budget 100000000000 is above 65536"),
    ("1-" + "9" * 5000, "(5000 digits) is above 65536"),  # no int() of 5000 digits (Python's own limit)
    ("1,2,\u0664", "is not a positive whole number"),  # Arabic-Indic digit: str.isdigit() says yes
    ("1," * 6000 + "2", "too long for a budget list"),
])
def test_huge_ranges_are_refused_before_they_are_expanded(text, fragment, monkeypatch):
    # Issue 26: these expanded into lists of up to 1e9 ints (3 GB) before any model was loaded.
    # range() is never reached for them: a spy on the module's range would see no huge call.
    import builtins

    import alit_eval.budgets as budgets_mod

    sizes = []

    def spy_range(*args):
        r = builtins.range(*args)
        sizes.append(len(r))
        return r

    monkeypatch.setattr(budgets_mod, "range", spy_range, raising=False)
    with pytest.raises(BudgetSyntaxError) as err:
        parse_budget_spec(text)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg and len(msg) < 400
    assert all(n <= budgets_mod.MAX_BUDGET for n in sizes)


def test_the_largest_accepted_range_stays_small():
    # the bound itself is accepted (a 256 x 256 grid), and the checked membership stays fast
    assert parse_budgets("65536") == [65536]
    assert parse_budgets("1-65536:4096") == list(range(1, 65537, 4096))
    with pytest.raises(BudgetSyntaxError, match="this tokenizer produces 1..256"):
        parse_budgets("1-65536", PREFIX)
