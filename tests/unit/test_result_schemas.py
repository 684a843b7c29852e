"""Result models as other services' rows fill them: finite floats, UTC datetimes in range."""

from __future__ import annotations

import inspect
import json
import math
import typing
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

import schemas.responses as responses
from schemas import VideoListItem, VideoStats, success
from schemas.responses import FiniteFloat, Result
from tests.unit.fakes import T0, make_video

NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def result_models() -> list[type[Result]]:
    return [
        model
        for _, model in inspect.getmembers(responses, inspect.isclass)
        if issubclass(model, Result) and model is not Result
    ]


def holds_float(annotation: object) -> bool:
    return annotation is float or any(holds_float(arg) for arg in typing.get_args(annotation))


def float_fields() -> list[tuple[str, str, object]]:
    return [
        (model.__name__, name, field.rebuild_annotation())
        for model in result_models()
        for name, field in model.model_fields.items()
        if holds_float(field.annotation)
    ]


def test_the_result_models_have_float_fields_to_check():
    names = {(model, name) for model, name, _ in float_fields()}
    assert {("VideoDetailResponse", "fps"), ("VideoStats", "total_duration_seconds")} <= names


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(("model", "name", "annotation"), float_fields())
def test_every_float_field_of_every_result_nulls_or_refuses_non_finite_values(
    model, name, annotation, value
):
    adapter = TypeAdapter(annotation)
    try:
        validated = adapter.validate_python(value)
    except ValidationError:
        return
    assert validated is None, f"{model}.{name} kept {value}"


@pytest.mark.parametrize("value", NON_FINITE)
def test_finite_float_turns_non_finite_values_into_null(value):
    adapter = TypeAdapter(FiniteFloat | None)

    assert adapter.validate_python(value) is None
    assert adapter.validate_python(1.25) == 1.25
    assert adapter.validate_python(None) is None
    assert adapter.validate_json("NaN") is None


@pytest.mark.parametrize("value", NON_FINITE)
def test_a_detail_with_non_finite_measures_dumps_to_strict_json(value):
    video = make_video(fps=value, duration_seconds=value)

    envelope = json.dumps(success(video), allow_nan=False)

    assert (video.fps, video.duration_seconds) == (None, None)
    assert json.loads(envelope)["data"]["fps"] is None


def test_a_list_item_with_a_nan_duration_carries_null():
    item = VideoListItem(
        id=uuid.uuid4(),
        mall_id=uuid.uuid4(),
        pin_id=uuid.uuid4(),
        pin_name=None,
        original_filename="a.mp4",
        file_size_bytes=1,
        duration_seconds=math.nan,
        processing_status="completed",
        has_proxy=True,
        has_thumbnail=True,
        uploaded_at=T0,
        recorded_at=None,
    )

    assert item.duration_seconds is None


def stats_json(**overrides: object) -> str:
    body = {
        "mall_id": None,
        "total_videos": 1,
        "by_status": {"completed": 1},
        "total_storage_bytes": 10,
        "total_duration_seconds": 2.5,
        "refreshed_at": "2025-10-31T10:00:00Z",
    }
    body.update(overrides)
    return json.dumps(body)


@pytest.mark.parametrize("total", ["NaN", "Infinity", "-Infinity"])
def test_a_statistics_total_has_no_null_to_give_and_refuses_non_finite_values(total):
    raw = stats_json().replace("2.5", total)

    with pytest.raises(ValidationError) as raised:
        VideoStats.model_validate_json(raw)

    assert [e["loc"] for e in raised.value.errors()] == [("total_duration_seconds",)]
    assert VideoStats.model_validate_json(stats_json()).total_duration_seconds == 2.5


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_result_datetime_that_leaves_the_calendar_in_utc_is_a_validation_error(moment):
    with pytest.raises(ValidationError) as raised:
        VideoStats.model_validate_json(stats_json(refreshed_at=moment))

    [error] = raised.value.errors()
    assert (error["loc"], error["type"]) == (("refreshed_at",), "datetime_range")


def test_result_datetimes_at_the_calendar_edges_read_as_utc():
    earliest = make_video(uploaded_at=datetime(1, 1, 1))
    latest = make_video(uploaded_at="9999-12-31T23:59:59.999999Z")

    assert earliest.uploaded_at == datetime(1, 1, 1, tzinfo=UTC)
    assert success(latest)["data"]["uploaded_at"] == "9999-12-31T23:59:59.999999Z"
