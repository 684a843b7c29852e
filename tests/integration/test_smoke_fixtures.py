import handlers
from schemas import GetVideo


def test_fixture_video_is_readable_through_the_service(deps, catalog):
    mall = catalog.mall()
    pin = catalog.pin(mall, "Entrance A")
    row = catalog.video(mall, pin)

    video = handlers.get_video(GetVideo(video_id=str(row["id"])), deps)

    assert video.pin_name == "Entrance A"
    assert all(catalog.object_exists(key) for key in catalog.keys(row))
