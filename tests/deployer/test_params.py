"""CommaList: comma-separated list options convert each item and refuse bad input in one line naming the option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from deployer.commands.params import CommaList, choices, floats, ints, parse


def command(kind):
    @click.command()
    @click.option("--values", type=kind, default=None)
    def show(values):
        click.echo(repr(values))

    return show


@pytest.mark.parametrize(
    "kind, text, values",
    [
        (ints(), "1, 2,4", (1, 2, 4)),
        (floats(0.0, 1.0), "0.1,1", (0.1, 1.0)),
        (choices(("iid", "shards")), "shards,iid", ("shards", "iid")),
        (CommaList(click.IntRange(1), "inf,10", keywords={"inf": None}), "inf,10", (None, 10)),
    ],
)
def test_each_item_is_converted_in_the_order_given(kind, text, values):
    result = CliRunner().invoke(command(kind), ["--values", text])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(values)


@pytest.mark.parametrize(
    "kind, text, says",
    [
        (ints(), "1,two", "must be comma-separated integers (>= 1, <= 10000) like 1,2,4; got '1,two'"),
        (ints(1, 8), "1,9", "integers (>= 1, <= 8)"),
        (floats(0.0, 10.0, low_open=True), "0.1,0", "numbers in (0, 10]"),
        (floats(0.0, 1.0), "0.5,nan", "numbers in [0, 1]"),
        (choices(("iid", "shards")), "iid,dirichlet", "unknown dirichlet; choose from iid, shards"),
        (ints(), " , ", "give at least one value"),
    ],
)
def test_bad_input_is_one_usage_line_naming_the_option(kind, text, says):
    result = CliRunner().invoke(command(kind), ["--values", text])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith("Error: Invalid value for '--values': ") and says in error[0]
    assert "Traceback" not in result.output


def test_a_default_is_converted_like_a_given_value():
    @click.command()
    @click.option("--values", type=ints(), default="3,4")
    def show(values):
        click.echo(repr(values))

    assert CliRunner().invoke(show, []).output.strip() == "(3, 4)"


def test_parse_checks_a_list_whose_kind_another_option_chose():
    assert parse(floats(0.0, 1.0), "0.5", "--rows") == (0.5,)
    with pytest.raises(click.BadParameter, match="unknown x") as info:
        parse(choices(("a", "b")), "x", "--rows")
    assert "--rows" in info.value.format_message()
