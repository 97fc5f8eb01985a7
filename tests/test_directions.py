"""Direction names and the views they join, defined once in omama_core.directions."""

from __future__ import annotations

import pytest

from omama_core import config, data
from omama_core.directions import DIRECTIONS, VIEWS, source_and_target, source_view, target_view, views
from omama_core.errors import ConfigError


def test_each_direction_joins_the_two_views_one_way():
    assert {views(d) for d in DIRECTIONS} == {("ego", "exo"), ("exo", "ego")}
    for direction in DIRECTIONS:
        assert f"{source_view(direction)}2{target_view(direction)}" == direction
        assert {source_view(direction), target_view(direction)} == set(VIEWS)


def test_source_and_target_orders_a_per_view_pair():
    assert source_and_target("ego2exo", "ego camera", "exo camera") == ("ego camera", "exo camera")
    assert source_and_target("exo2ego", "ego camera", "exo camera") == ("exo camera", "ego camera")


@pytest.mark.parametrize("bad", ["ego2ego", "exo-ego", "", "2"])
def test_an_unknown_direction_is_named(bad):
    with pytest.raises(ConfigError, match=repr(bad)):
        views(bad)


def test_the_other_modules_use_the_one_definition():
    assert config.DIRECTIONS is DIRECTIONS and data.DIRECTIONS is DIRECTIONS
