"""Reference profiles built from a table or from captured records: the bins, shares and moments
numpy computes on the raw values, the prediction always profiled, and every refusal named."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truthloop.core import profile, table
from truthloop.core.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileError,
)
from truthloop.core.spec import FeatureSpec, MonitorSpec, parse_spec

BASE: dict[str, Any] = {
    "selector": {"matchLabels": {"app": "m"}},
    "model": {"name": "m"},
    "capture": {"prediction": {"pointer": "/p"}, "features": {"pointer": "/f"}},
}


def spec(*features: tuple[str, str] | tuple[str, str, str], **fields: Any) -> MonitorSpec:
    """A spec with `fields`, declaring `features` as (name, kind[, pointer])."""
    declared = tuple(
        FeatureSpec(f[0], f[2] if len(f) == 3 else f"/{f[0]}", f[1])  # type: ignore[misc]
        for f in features
    )
    return dataclasses.replace(parse_spec({**BASE, **fields}), features=declared)


def csv(text: str) -> table.Table:
    return table.read([text.encode()], "csv")


def column(p: Profile, name: str) -> Any:
    (found,) = [c for c in p.columns if c.name == name]
    return found


def test_a_numeric_feature_matches_numpy_on_the_raw_values() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(10.0, 3.0, size=5000)
    x[::50] = np.nan
    rows = "\n".join(f"{'' if np.isnan(v) else repr(float(v))},{i % 2}" for i, v in enumerate(x))
    p, warnings = profile.build(csv("x,prediction\n" + rows + "\n"), spec())
    assert warnings == []
    assert p.rows == 5000
    got = column(p, "x")
    assert isinstance(got, NumericProfile)
    raw = x[~np.isnan(x)]
    assert got.count == len(raw) == 4900
    assert got.missing == 100
    assert got.edges == tuple(np.quantile(raw, np.linspace(0, 1, profile.BINS + 1)))
    assert got.edges[0] == got.min == raw.min()
    assert got.edges[-1] == got.max == raw.max()
    assert got.mean == pytest.approx(raw.mean(), rel=1e-12)
    assert got.std == pytest.approx(raw.std(), rel=1e-12)
    assert len(got.proportions) == len(got.edges) + 1
    assert got.proportions[0] == got.proportions[-1] == 0.0
    assert sum(got.proportions) == pytest.approx(1.0)
    # numpy's histogram on the same edges: the last bin closed, as the profile's
    counts, _ = np.histogram(raw, bins=np.array(got.edges))
    assert np.allclose(got.proportions[1:-1], counts / len(raw))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=200,
    )
)
def test_edges_are_increasing_quantiles_and_cells_cover_the_reference(values: list[float]) -> None:
    rows = "".join(f"{float(v)!r},1\n" for v in values)
    p, warnings = profile.build(csv("x,prediction\n" + rows), spec())
    got = column(p, "x")
    edges = np.array(got.edges)
    if len(set(values)) == 1:
        assert got.edges == (float(values[0]), float(values[0]))
        assert got.proportions == (0.0, 1.0, 0.0)
        assert warnings
        assert "constant" in warnings[0]
    else:
        assert np.all(np.diff(edges) > 0)
        assert warnings == []
    assert got.proportions[0] == got.proportions[-1] == 0.0
    assert sum(got.proportions) == pytest.approx(1.0)
    at = profile.cells(edges, np.array(values, dtype=float))
    assert at.min() >= 1
    assert at.max() <= len(edges) - 1
    assert profile.cells(edges, np.array([edges[0] - 1, edges[-1] + 1])).tolist() == [
        0,
        len(edges),
    ]


def test_categorical_values_are_text_by_the_multiclass_label_rule() -> None:
    data = b"".join(
        b'{"color": %s, "prediction": 1}\n' % v
        for v in [b'"red"'] * 5 + [b"1", b"1.0", b'"1"', b"true", b'"true"', b"null", b"2.5"]
    )
    p, _ = profile.build(table.read([data], "ndjson"), spec())
    got = column(p, "color")
    assert isinstance(got, CategoricalProfile)
    assert got.categories == ("red", "1", "true", "2.5")
    assert got.shares == (5 / 11, 3 / 11, 2 / 11, 1 / 11, 0.0)
    assert (got.count, got.missing) == (11, 1)
    assert got.seen == ()


def test_categorical_top_other_and_seen_are_bounded() -> None:
    names = [f"v{i:04d}" for i in range(1200)]
    rows = "".join(f"{n},0\n" * (3 if i < 10 else 1) for i, n in enumerate(names))
    p, warnings = profile.build(csv("c,prediction\n" + rows), spec())
    assert warnings == [
        'column "c" has 1200 distinct values, more than a profile keeps (1050): its rarest '
        "values will count as new categories (an identifier is no feature)"
    ]
    got = column(p, "c")
    assert len(got.categories) == profile.MAX_CATEGORIES
    assert got.categories[:10] == tuple(names[:10])  # the most frequent, then by text
    assert len(got.seen) == profile.MAX_SEEN
    total = 1200 + 20
    assert got.shares[-1] == pytest.approx((total - 30 - 40) / total)
    assert sum(got.shares) == pytest.approx(1.0)


def test_discovery_numbers_are_numeric_anything_else_categorical() -> None:
    p, _ = profile.build(
        csv("a,b,c,prediction,score,actual,ts\n1,x,true,1,0.5,1,2026\n2,3,false,0,0.1,0,2026\n"),
        spec(),
    )
    kinds = [(c.name, type(c).__name__) for c in p.columns]
    assert kinds == [
        ("a", "NumericProfile"),
        ("b", "CategoricalProfile"),
        ("c", "CategoricalProfile"),
        ("prediction", "CategoricalProfile"),
        ("score", "NumericProfile"),
    ]


def test_declared_features_keep_their_kind_and_order() -> None:
    s = spec(("zip", "categorical"), ("age", "numeric"))
    p, _ = profile.build(csv("age,zip,prediction\n31,75001,1\n40,75001,0\n"), s)
    assert [(c.name, type(c).__name__) for c in p.columns] == [
        ("zip", "CategoricalProfile"),
        ("age", "NumericProfile"),
        ("prediction", "CategoricalProfile"),
    ]
    assert column(p, "zip").categories == ("75001",)


def refused(t: table.Table, s: MonitorSpec) -> ProfileError:
    with pytest.raises(ProfileError) as e:
        profile.build(t, s)
    return e.value


def test_unknown_and_absent_columns_are_named() -> None:
    s = spec(("age", "numeric"), ("zip", "numeric"))
    e = refused(csv("age,city,prediction\n1,x,0\n"), s)
    assert e.details == (
        'column "city": not a feature of spec.features (age, zip) nor one of prediction, score, '
        "actual, ts",
        'no column "zip": spec.features declares it',
    )


def test_text_in_a_numeric_feature_is_named_by_line_and_column() -> None:
    s = spec(("age", "numeric"))
    rows = "".join(("oops" if i % 2 else str(i)) + ",1\n" for i in range(100))
    e = refused(csv("age,prediction\n" + rows), s)
    assert e.details[0] == 'line 3, column "age": expected a number, got "oops"'
    assert len(e.details) == table.MAX_DETAILS
    assert e.count == 50


def test_more_than_the_most_features_is_refused_with_a_message() -> None:
    header = ",".join(f"f{i}" for i in range(profile.MAX_FEATURES + 1)) + ",prediction\n"
    row = ",".join("1" for _ in range(profile.MAX_FEATURES + 2)) + "\n"
    e = refused(csv(header + row), spec())
    assert e.details == (
        "101 feature columns, at most 100: declare the features to watch in spec.features",
    )


def test_no_rows_no_prediction_and_empty_columns_are_refused() -> None:
    assert refused(csv("a,prediction\n"), spec()).details == (
        "no rows: a reference needs at least one",
    )
    assert refused(csv("a\n1\n"), spec()).details == (
        'no "prediction" column: the model\'s prediction is profiled too',
    )
    e = refused(csv("a,b,prediction\n,x,1\n,,\n"), spec())
    assert e.details == (
        'column "a": no numbers in any row',
        'line 3, column "prediction": missing',
    )


def test_a_feature_name_must_be_one_a_sketch_can_key() -> None:
    e = refused(csv("a:b,prediction\n1,1\n"), spec())
    assert e.details[0].startswith('column "a:b": a feature\'s name is at most 63')


def test_the_prediction_follows_the_task() -> None:
    data = "x,prediction\n1,0.2\n2,0.7\n3,1\n4,true\n5,0\n"
    p, _ = profile.build(csv(data), spec(threshold=0.5))
    got = column(p, "prediction")
    assert (got.categories, got.shares) == (("1", "0"), (0.6, 0.4, 0.0))
    p, _ = profile.build(csv(data), spec(task="multiclass"))
    assert column(p, "prediction").categories == ("0", "0.2", "0.7", "1", "true")
    p, _ = profile.build(csv("x,prediction\n1,0.2\n2,3.5\n"), spec(task="regression"))
    assert column(p, "prediction").edges[0] == 0.2


def test_a_binary_prediction_with_a_score_must_be_a_class() -> None:
    e = refused(csv("x,prediction,score\n1,0.7,0.7\n2,maybe,0.1\n3,1,0.9\n"), spec())
    assert e.details == (
        'line 2, column "prediction": 0.7 is not a binary class (0/1, true/false)',
        'line 3, column "prediction": "maybe" is not a binary class (0/1, true/false)',
    )


def test_records_give_the_profile_the_same_rows_give() -> None:
    s = spec(("age", "numeric"), ("plan", "categorical", "/account/plan"))
    records: list[tuple[object, object, object]] = [
        (1, 0.9, {"age": 31, "account": {"plan": "pro"}}),
        (0, 0.2, {"age": "n/a", "account": {"plan": "free"}}),  # wrong type: missing
        (True, 0.8, {"account": []}),
        (0, 0.1, None),
    ]
    got, _ = profile.build_from_records(records, s)
    same, _ = profile.build(
        csv("age,plan,prediction,score\n31,pro,1,0.9\n,free,0,0.2\n,,1,0.8\n,,0,0.1\n"), s
    )
    assert got == same
    assert column(got, "age").missing == 3


def test_records_without_declared_features_discover_the_features_keys() -> None:
    records: list[tuple[object, object, object]] = [
        ("setosa", None, {"petal": 1.5, "kind": "a"}),
        ("virginica", None, {"petal": 4.0, "extra": True}),
    ]
    got, _ = profile.build_from_records(records, spec(task="multiclass"))
    assert [(c.name, type(c).__name__, c.count) for c in got.columns] == [
        ("petal", "NumericProfile", 2),
        ("kind", "CategoricalProfile", 1),
        ("extra", "CategoricalProfile", 1),
        ("prediction", "CategoricalProfile", 2),
    ]


def test_a_profile_round_trips_as_json() -> None:
    import msgspec

    p, _ = profile.build(csv("x,c,prediction,score\n1,a,1,0.5\n2,b,0,0.25\n"), spec())
    assert msgspec.json.decode(msgspec.json.encode(p), type=Profile) == p


def test_a_large_csv_profiles_through_the_fast_reader() -> None:
    """Ten columns of numbers and text (the benchmark's shape, smaller), so the block reader's
    result is what the profile sees."""
    rng = np.random.default_rng(3)
    n = 50_000
    out = io.StringIO()
    out.write(",".join([f"n{i}" for i in range(8)] + ["c", "prediction"]) + "\n")
    data = rng.normal(size=(n, 8)).round(4)
    colors = rng.choice(["red", "green", "blue"], size=n)
    for i in range(n):
        out.write(",".join(map(repr, data[i].tolist())) + f",{colors[i]},{i % 2}\n")
    p, _ = profile.build(table.read([out.getvalue().encode()], "csv"), spec())
    for i in range(8):
        got = column(p, f"n{i}")
        assert got.count == n
        assert got.edges == tuple(np.quantile(data[:, i], np.linspace(0, 1, profile.BINS + 1)))
    assert sorted(column(p, "c").categories) == ["blue", "green", "red"]


def test_a_binary_prediction_is_a_probability_only_in_rows_without_a_score() -> None:
    p, _ = profile.build(csv("x,prediction,score\n1,0.7,\n2,1,0.9\n3,0,0.1\n4,0.2,\n"), spec())
    got = column(p, "prediction")
    assert (got.categories, got.shares) == (("0", "1"), (0.5, 0.5, 0.0))


def test_captured_binary_predictions_map_to_the_profiles_classes() -> None:
    """What the ingest sketch compares with the profile: the same class rule, record by record."""
    predictions: list[object] = [1, True, " False", 0.7, 0.7, "maybe", 2, [1]]
    scores: list[object] = [None, None, 0.1, None, 0.7, None, None, None]
    assert profile.binary_predictions(predictions, scores, 0.5) == [
        "1",
        "1",
        "0",
        "1",
        0.7,
        "maybe",
        2,
        [1],
    ]


def test_long_values_are_never_named() -> None:
    long = "x" * (profile.MAX_TEXT + 1)
    p, warnings = profile.build(csv(f"c,prediction\n{long},1\n{long},1\nshort,0\n"), spec())
    got = column(p, "c")
    assert (got.categories, got.shares, got.seen) == (("short",), (1 / 3, 2 / 3), ())
    assert warnings == [
        f"column \"c\": 1 values longer than {profile.MAX_TEXT} characters are kept only as 'other'"
    ]


def test_records_profile_the_same_in_any_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys first seen late, a score only in later records, a reserved key in the features and
    a number beyond float64: batches of 2 give what one batch gives."""
    records: list[tuple[object, object, object]] = [
        (0, None, {"a": 1, "prediction": 5}),
        (1, None, {"a": 2}),
        (1, None, None),
        (0, 0.25, {"a": 10**400, "b": "x"}),
        (1, 0.75, {"b": "y", "c": [1]}),
    ]
    whole, warnings = profile.build_from_records(iter(records), spec())
    monkeypatch.setattr(profile, "BATCH", 2)
    batched, _ = profile.build_from_records(iter(records), spec())
    assert batched == whole
    assert [c.name for c in whole.columns] == ["a", "b", "prediction", "score"]
    assert warnings == [
        'features key "c" has no number, string or boolean in the period: not profiled'
    ]
    assert (column(whole, "a").count, column(whole, "b").count) == (2, 2)


def test_a_discovered_column_of_numbers_with_a_typo_is_categorical_with_a_warning() -> None:
    p, warnings = profile.build(csv("x,prediction\n1,1\n2,1\n2..5,0\n3,1\n"), spec())
    assert isinstance(column(p, "x"), CategoricalProfile)
    assert warnings == [
        'column "x" is mostly numbers but not only (line 4: "2..5"), so it is profiled as '
        "categorical; declare it numeric in spec.features to have such cells refused"
    ]
    _, fewer = profile.build(csv("x,prediction\n1,1\na,1\nb,0\n"), spec())
    assert fewer == []
