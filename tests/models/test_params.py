import pytest

from edgeclip.errors import ConfigError
from edgeclip.models import create_model, get_model_config, list_models
from edgeclip.models.params import Budget, config_params, count_params, parse_budget, student_config


@pytest.mark.slow
def test_tinyclip_8m_counts_match_the_paper():
    c = count_params(create_model("TinyCLIP-ViT-8M-16-Text-3M"))
    assert (c.vision, c.text, c.token_embedding) == (8_276_992, 2_520_577, 12_648_448)


@pytest.mark.slow
def test_vit_b_32_vision_count():
    c = count_params(create_model("ViT-B-32"))
    assert abs(c.vision - 87.8e6) < 0.1e6
    assert c.total == c.vision + c.text + c.token_embedding


@pytest.mark.parametrize("name", list_models())
def test_analytic_count_equals_built_model(name):
    cfg = get_model_config(name)
    c = count_params(create_model(cfg))
    assert config_params(cfg) == (c.vision, c.text)


@pytest.mark.parametrize("text,expected", [("8M", 8_000_000), ("500k", 500_000), (8_000_000, 8_000_000),
                                           ("1.5m", 1_500_000), ({"image": "8M", "text": "3M"}, None)])
def test_parse_budget(text, expected):
    b = parse_budget(text)
    if expected is None:
        assert b == Budget(8_000_000, 3_000_000)
    else:
        assert b.image == expected and b.text is None


@pytest.mark.parametrize("bad", ["eight", "-3M", 0, {"txt": "1M"}, True])
def test_parse_budget_rejects_garbage(bad):
    with pytest.raises(ConfigError):
        parse_budget(bad)


def test_vit_b_16_to_8m_is_tinyclip_8m_class():
    cfg = student_config(get_model_config("ViT-B-16"), "8M", shape="deep")  # TinyCLIP keeps depth, cuts width
    v = cfg["vision_cfg"]
    assert (v["layers"], v["width"]) == (10, 256)
    vision, _ = config_params(cfg)
    assert abs(vision - 8e6) <= 0.05 * 8e6


def test_text_budget_is_met_when_given():
    cfg = student_config(get_model_config("ViT-B-32"), {"image": "8M", "text": "2.8M"})
    v, t = config_params(cfg)
    assert abs(v - 8e6) <= 0.4e6 and abs(t - 2.8e6) <= 0.14e6
    with pytest.raises(ConfigError, match=r"nearest feasible: 2.78M .* 3.23M"):  # whole heads of 64 only
        student_config(get_model_config("ViT-B-32"), {"image": "8M", "text": "3M"})


def test_infeasible_budget_names_nearest_sizes():
    with pytest.raises(ConfigError, match="nearest feasible"):
        student_config(get_model_config("ShapesCLIP-ViT-12L-192"), "10k")


def test_target_at_or_above_teacher_is_an_error():
    with pytest.raises(ConfigError, match="not below"):
        student_config(get_model_config("ViT-B-32"), "100M")


TEACHER = (1_000_000, 400_000)  # (vision, text excl. token embedding) of a made-up teacher


@pytest.mark.parametrize("target,expected", [
    ("25%", Budget(250_000)), ({"image": "25%", "text": "50k"}, Budget(250_000, 50_000)),
    ({"image": "25%", "text": "10%"}, Budget(250_000, 40_000)), ('{"image": "8M", "text": "3M"}', None),
    ('{"image": "25%"}', Budget(250_000)), (" 12.5 % ", Budget(125_000)), (500_000.0, Budget(500_000)),
])
def test_parse_budget_relative_and_json(target, expected):
    if expected is None:  # a JSON string as the CLI passes it, without the teacher
        assert parse_budget(target) == Budget(8_000_000, 3_000_000)
    else:
        assert parse_budget(target, TEACHER) == expected


@pytest.mark.parametrize("bad,why", [
    ('{"image": 2M}', "not valid JSON"), ('{"image": NaN}', "NaN is not a size"), ("nan%", "bad parameter budget"),
    ("inf%", "bad parameter budget"), ("%", "bad parameter budget"), ("25%%", "bad parameter budget"),
    ("0", "positive"), ("-5M", "positive"), (float("nan"), "positive"), ("1e400", "positive"),
    ("150%", "below 100%"), ("1M", "not below the teacher"), ({"image": "1k", "text": "500k"}, "exceeds"),
    ({"image": "1k", "vision": "1k"}, "needs 'image'"), ([1], "bad parameter budget"),
])
def test_parse_budget_refuses_in_one_line(bad, why):
    with pytest.raises(ConfigError, match=why) as e:
        parse_budget(bad, TEACHER)
    assert "\n" not in str(e.value)


def test_relative_budget_needs_the_teacher():
    with pytest.raises(ConfigError, match="relative to the teacher"):
        parse_budget("25%")


def test_student_config_takes_a_percentage():
    cfg = get_model_config("ShapesCLIP-ViT-12L-192")
    tv, _ = config_params(cfg)
    v, _ = config_params(student_config(cfg, "25%"))
    assert abs(v - 0.25 * tv) <= 0.05 * 0.25 * tv


@pytest.mark.parametrize("target, shape, layers, width", [
    ("25%", "deep", 12, 96), ("25%", "wide", 3, 192), ("25%", "auto", 3, 192),  # auto: wide while >= 1/4 depth
    ("10%", "deep", 10, 64), ("10%", "wide", 1, 192), ("10%", "auto", 10, 64),  # ... else deep
    ("25%", "balanced", 12, 96)])  # the only towers within 5% of 25% are 12 x 96 and 3 x 192
def test_shape_picks_depth_or_width_among_the_towers_that_fit(target, shape, layers, width):
    cfg = student_config(get_model_config("ShapesCLIP-ViT-12L-192"), target, shape=shape)
    assert (cfg["vision_cfg"]["layers"], cfg["vision_cfg"]["width"]) == (layers, width)
    assert abs(config_params(cfg)[0] / config_params(get_model_config("ShapesCLIP-ViT-12L-192"))[0]
               - float(target[:-1]) / 100) <= 0.05 * float(target[:-1]) / 100


def test_unknown_shape_is_one_error_line():
    with pytest.raises(ConfigError, match="unknown student shape 'tall'"):
        student_config(get_model_config("ViT-B-32"), "8M", shape="tall")
