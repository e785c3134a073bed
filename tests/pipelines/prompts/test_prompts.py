"""Prompts of one image (prompts.py): the style catalog, view-specific words, sampled attributes."""

from __future__ import annotations

import pytest

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.view_bins import COARSE_VIEW_NAMES
from avatar_platform.pipelines.prompts.prompts import (
    PromptConfig,
    attribute_catalog,
    build_prompt,
    resolve_styles,
    sample_attributes,
    style_catalog,
)

FRONT, LEFT, BACK, RIGHT = range(4)
CONFIG = PromptConfig()
FIXED = {"hair style": "bun hair", "headwear": "wearing a top hat"}
BACK_NEGATIVE = "face, eyes, nose, mouth"


def style(name: str = "pixar"):
    return style_catalog()[name]


def categories_by_name():
    return {category.name: category for category in attribute_catalog()}


def face_only_categories() -> set[str]:
    return {c.name for c in attribute_catalog() if "back" not in c.views}


# --- catalogs --------------------------------------------------------------------------------


def test_fifty_styles_with_unique_names_and_prompts():
    catalog = style_catalog()
    assert len(catalog) == 50
    assert len({s.prompt for s in catalog.values()}) == 50
    for name, entry in catalog.items():
        assert entry.name == name and entry.prompt.strip()
    for name in ("pixar", "anime", "voxel", "bronze-statue", "marble-statue", "claymation"):
        assert name in catalog


def test_at_least_twenty_attribute_categories():
    catalog = attribute_catalog()
    assert len(catalog) >= 20
    assert len({c.name for c in catalog}) == len(catalog)
    for category in catalog:
        assert category.values, category.name
        assert set(category.views) <= set(COARSE_VIEW_NAMES), category.name
        # colours, where given, are for exactly the category's values
        if category.colors:
            assert set(category.colors) == set(category.values)
    assert face_only_categories(), "some categories must be face-only"
    assert {"hair color", "expression", "eye shape", "age"} <= {c.name for c in catalog}


# --- resolve_styles --------------------------------------------------------------------------


@pytest.mark.parametrize("names", [None, [], ["all"]])
def test_resolve_all_styles(names):
    styles = resolve_styles(names)
    assert len(styles) == 50
    assert [s.name for s in styles] == list(style_catalog())


def test_resolve_named_styles_in_order_without_duplicates():
    styles = resolve_styles(["anime", "pixar", "anime"])
    assert [s.name for s in styles] == ["anime", "pixar"]


def test_resolve_unknown_style_lists_valid_names():
    with pytest.raises(AvatarPlatformError) as info:
        resolve_styles(["pixar", "picasso-cubism-nope"])
    message = str(info.value)
    assert "unknown style 'picasso-cubism-nope'" in message
    for name in style_catalog():
        assert name in info.value.expected
    assert "--styles" in message


# --- build_prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize("view_bin", range(4))
def test_build_prompt_is_deterministic_per_seed(view_bin):
    a = build_prompt(style(), view_bin, 123, CONFIG, FIXED)
    b = build_prompt(style(), view_bin, 123, CONFIG, FIXED)
    assert a == b


def test_build_prompt_differs_across_seeds():
    specs = {build_prompt(style(), FRONT, seed, CONFIG).prompt for seed in range(20)}
    assert len(specs) > 15
    attrs = {tuple(build_prompt(style(), BACK, seed, CONFIG).attributes.items()) for seed in range(20)}
    assert len(attrs) > 15


def test_prompt_starts_with_the_style_and_ends_with_the_suffix():
    spec = build_prompt(style("voxel"), FRONT, 0, CONFIG, FIXED)
    assert spec.prompt.startswith(style("voxel").prompt + ", ")
    assert spec.prompt.endswith(CONFIG.suffix)
    for value in spec.attributes.values():
        assert value in spec.prompt
    assert spec.negative_prompt.startswith(CONFIG.negative_prompt)


def test_subject_replaces_the_style_text():
    spec = build_prompt(style("voxel"), FRONT, 0, CONFIG, subject="sks character")
    assert spec.prompt.startswith("sks character, ")
    assert style("voxel").prompt not in spec.prompt


@pytest.mark.parametrize("seed", range(10))
def test_back_views_name_the_back_and_forbid_the_face(seed):
    spec = build_prompt(style(), BACK, seed, CONFIG, FIXED)
    assert "back of the head" in spec.prompt
    assert BACK_NEGATIVE in spec.negative_prompt
    assert "side view" not in spec.prompt


@pytest.mark.parametrize("seed", range(10))
def test_front_views_have_no_back_words(seed):
    spec = build_prompt(style(), FRONT, seed, CONFIG, FIXED)
    assert "back of the head" not in spec.prompt
    assert BACK_NEGATIVE not in spec.negative_prompt
    assert "side view" not in spec.prompt
    assert CONFIG.front_words in spec.prompt
    assert spec.negative_prompt == CONFIG.negative_prompt


@pytest.mark.parametrize("view_bin", [LEFT, RIGHT])
@pytest.mark.parametrize("seed", range(5))
def test_side_views_carry_side_words(view_bin, seed):
    spec = build_prompt(style(), view_bin, seed, CONFIG, FIXED)
    assert "side view" in spec.prompt
    assert "back of the head" not in spec.prompt
    assert CONFIG.side_negative in spec.negative_prompt
    assert BACK_NEGATIVE not in spec.negative_prompt


@pytest.mark.parametrize("view_bin", range(4))
@pytest.mark.parametrize("count", [0, 1, 5])
def test_exactly_attributes_per_image_sampled_plus_fixed(view_bin, count):
    config = PromptConfig(attributes_per_image=count)
    catalog = categories_by_name()
    for seed in range(10):
        spec = build_prompt(style(), view_bin, seed, config, FIXED)
        assert len(spec.attributes) == count + len(FIXED)
        for name, value in FIXED.items():
            assert spec.attributes[name] == value
            assert value in spec.prompt
        sampled = {k: v for k, v in spec.attributes.items() if k not in FIXED}
        assert len(sampled) == count
        for name, value in sampled.items():
            assert value in catalog[name].values


def test_attribute_count_is_capped_by_the_visible_categories():
    visible_from_back = [c for c in attribute_catalog() if "back" in c.views]
    config = PromptConfig(attributes_per_image=100)
    spec = build_prompt(style(), BACK, 0, config)
    assert len(spec.attributes) == len(visible_from_back)


@pytest.mark.parametrize("seed", range(50))
def test_back_views_never_sample_face_only_categories(seed):
    spec = build_prompt(style(), BACK, seed, CONFIG, FIXED)
    assert not set(spec.attributes) & face_only_categories()


@pytest.mark.parametrize("view", COARSE_VIEW_NAMES)
def test_sampled_categories_are_visible_from_the_view(view):
    catalog = categories_by_name()
    for seed in range(30):
        attributes = sample_attributes(seed, view, 5)
        assert len(attributes) == 5
        for name in attributes:
            assert view in catalog[name].views
