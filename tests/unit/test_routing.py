"""Routing tables: bucket, folder boundary, filters, event patterns, shared buckets, explanations."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.events import ObjectEvent
from dispatcher.domain.routing import NoRoute, NoRouteReason, Route, Router, route

PUT = "s3:ObjectCreated:Put"
DELETE = "s3:ObjectRemoved:Delete"
CREATED_ANY = "s3:ObjectCreated:*"


@dataclass(frozen=True)
class Input:
    bucket: str
    folder: str = ""
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    events: tuple[str, ...] = (CREATED_ANY,)
    provider: str = "minio.default"


@dataclass(frozen=True)
class Service:
    name: str
    inputs: tuple[Input, ...]
    image: str = "ghcr.io/example/tool:1"  # something routing does not know about


def svc(name: str, *inputs: Input) -> Service:
    return Service(name, inputs)


def event(key: str, *, bucket: str = "media", name: str = PUT) -> ObjectEvent:
    return ObjectEvent(event_name=name, bucket=bucket, key=key, etag="e", sequencer="1")


def names(routes: tuple[Route[Service], ...]) -> list[str]:
    return [found.service.name for found in routes]


@pytest.mark.parametrize(
    ("folder", "key", "routes"),
    [
        ("in", "in/x.jpg", True),
        ("in", "in/sub/x.jpg", True),
        ("in", "input/x.jpg", False),
        ("in", "in", False),  # an object named like the folder is not inside it
        ("in", "x/in/y.jpg", False),
        ("in", "In/x.jpg", False),
        ("", "x.jpg", True),
        ("", "a/b/x.jpg", True),
        ("a/b", "a/b/c.jpg", True),
        ("a/b", "a/bc/d.jpg", False),
        ("a/b", "a/c.jpg", False),
        ("/in/", "in/x.jpg", True),  # stray slashes around a folder are tolerated
    ],
)
def test_folder_matches_at_path_boundary(folder, key, routes):
    services = [svc("s", Input("media", folder))]
    assert bool(route(event(key), services)) is routes
    if not routes:
        explained = Router(services).explain(event(key))
        assert explained is not None
        assert explained.reason is NoRouteReason.FOLDER_MISMATCH


@pytest.mark.parametrize(
    ("prefix", "suffix", "key", "routes"),
    [
        ((), (".jpg", ".png"), "in/a.jpg", True),
        ((), (".jpg", ".png"), "in/a.png", True),
        ((), (".jpg", ".png"), "in/a.JPG", False),  # case-sensitive, as MinIO's filters
        ((), (".jpg",), "in/a.jpg.txt", False),
        (("raw",), (), "in/raw-1.tif", True),
        (("raw",), (), "in/sub/raw-1.tif", False),  # prefix applies to the key relative to the folder
        (("raw", "scan"), (), "in/scan-2.tif", True),
        (("raw",), (".tif",), "in/raw-1.tif", True),
        (("raw",), (".tif",), "in/raw-1.jpg", False),  # both filters must accept
        (("raw",), (".tif",), "in/cooked.tif", False),
        (("in/",), (), "in/in/x", True),  # relative key "in/x"
        (("in/",), (), "in/x", False),
        (("",), (), "in/anything", True),
    ],
)
def test_prefix_and_suffix_filters(prefix, suffix, key, routes):
    services = [svc("s", Input("media", "in", prefix, suffix))]
    assert bool(route(event(key), services)) is routes
    if not routes:
        explained = Router(services).explain(event(key))
        assert explained is not None
        assert explained.reason is NoRouteReason.FILTERED


@pytest.mark.parametrize(
    ("patterns", "name", "routes"),
    [
        ((CREATED_ANY,), "s3:ObjectCreated:Put", True),
        ((CREATED_ANY,), "s3:ObjectCreated:Post", True),
        ((CREATED_ANY,), "s3:ObjectCreated:Copy", True),
        ((CREATED_ANY,), "s3:ObjectCreated:CompleteMultipartUpload", True),
        # MinIO's own expansion includes tag/retention changes, but the content is unchanged: a
        # wildcard must not start a second Job for the same object version.
        ((CREATED_ANY,), "s3:ObjectCreated:PutTagging", False),
        (("s3:ObjectCreated:PutTagging",), "s3:ObjectCreated:PutTagging", True),  # asked for by name
        ((CREATED_ANY,), DELETE, False),  # deletes are ignored unless asked for
        ((CREATED_ANY,), "s3:ObjectRemoved:DeleteMarkerCreated", False),
        ((CREATED_ANY,), "s3:ObjectAccessed:Get", False),
        ((PUT,), "s3:ObjectCreated:Put", True),
        ((PUT,), "s3:ObjectCreated:PutTagging", False),  # exact patterns are exact
        ((DELETE,), DELETE, True),
        ((DELETE,), "s3:ObjectRemoved:DeleteMarkerCreated", False),
        (("s3:ObjectRemoved:*",), "s3:ObjectRemoved:DeleteMarkerCreated", True),
        ((PUT, DELETE), DELETE, True),
        ((), PUT, False),  # an input with no patterns takes nothing
    ],
)
def test_event_patterns(patterns, name, routes):
    services = [svc("s", Input("media", "in", events=patterns))]
    assert bool(route(event("in/a.jpg", name=name), services)) is routes
    if not routes:
        explained = Router(services).explain(event("in/a.jpg", name=name))
        assert explained is not None
        assert explained.reason is NoRouteReason.EVENT_NOT_HANDLED


def test_services_sharing_a_bucket_all_route_in_service_order():
    services = [
        svc("zeta", Input("media", "in", suffix=(".jpg",))),
        svc("other-bucket", Input("docs", "in")),
        svc("alpha", Input("media", "")),
        svc("png-only", Input("media", "in", suffix=(".png",))),
        svc("mid", Input("media", "in")),
    ]
    assert names(route(event("in/a.jpg"), services)) == ["zeta", "alpha", "mid"]
    assert names(route(event("in/a.png"), services)) == ["alpha", "png-only", "mid"]
    assert names(route(event("elsewhere/a.jpg"), services)) == ["alpha"]


def test_a_service_matched_by_two_inputs_routes_once_with_its_first_matching_input():
    first, second = Input("media", "in"), Input("media", "")
    services = [svc("both", Input("media", "out"), first, second)]
    routes = route(event("in/a.jpg"), services)
    assert len(routes) == 1
    assert routes[0].input is first


def test_routes_carry_the_callers_own_objects():
    service = svc("s", Input("media", "in"))
    (found,) = Router([service]).route(event("in/a.jpg"))
    assert found.service is service
    assert found.service.image == "ghcr.io/example/tool:1"  # typed as Service, not as the protocol
    assert found.input is service.inputs[0]


@pytest.mark.parametrize("key", ["in/", "in/sub/", "", "/"])
def test_folder_markers_never_route(key):
    services = [svc("everything", Input("media", "", events=(CREATED_ANY, "s3:ObjectRemoved:*")))]
    assert route(event(key), services) == ()
    explained = Router(services).explain(event(key))
    assert explained is not None
    assert explained.reason is NoRouteReason.FOLDER_MARKER
    assert "folder marker" in explained.message


def test_provider_restricts_inputs_when_given():
    services = [
        svc("on-default", Input("media", "in")),
        svc("on-other", Input("media", "in", provider="minio.other")),
    ]
    router = Router(services)
    assert names(router.route(event("in/a.jpg"))) == ["on-default", "on-other"]
    assert names(router.route(event("in/a.jpg"), provider="minio.other")) == ["on-other"]
    assert router.route(event("in/a.jpg"), provider="minio.third") == ()
    explained = router.explain(event("in/a.jpg"), provider="minio.third")
    assert explained == NoRoute(
        NoRouteReason.UNKNOWN_BUCKET,
        "s3:ObjectCreated:Put 'media/in/a.jpg': no service watches bucket 'media' on provider 'minio.third'"
        " (watched buckets: ['media'])",
    )


def test_no_services_routes_nothing():
    assert route(event("in/a.jpg"), []) == ()
    explained = Router([]).explain(event("in/a.jpg"))
    assert explained is not None
    assert "no service watches bucket 'media'" in explained.message


# -- explanations ------------------------------------------------------------------------------------------

SERVICES = [
    svc("thumbnails", Input("media", "in", suffix=(".jpg", ".png"))),
    svc("archiver", Input("media", "raw", events=(DELETE,))),
    svc("docs", Input("docs", "")),
]


def test_explain_unknown_bucket_lists_watched_buckets():
    explained = Router(SERVICES).explain(event("a.jpg", bucket="photos"))
    assert explained is not None
    assert explained.message == (
        "s3:ObjectCreated:Put 'photos/a.jpg': no service watches bucket 'photos'"
        " (watched buckets: ['docs', 'media'])"
    )


def test_explain_folder_mismatch_names_each_input():
    explained = Router(SERVICES).explain(event("elsewhere/a.jpg"))
    assert explained == NoRoute(
        NoRouteReason.FOLDER_MISMATCH,
        "s3:ObjectCreated:Put 'media/elsewhere/a.jpg' matches no input (folder-mismatch):"
        " thumbnails (media/in/): key is not under folder 'in';"
        " archiver (media/raw/): key is not under folder 'raw'",
    )


def test_explain_filtered_by_suffix():
    explained = Router(SERVICES).explain(event("in/a.gif"))
    assert explained is not None
    assert explained.reason is NoRouteReason.FILTERED
    assert "thumbnails (media/in/): 'a.gif' has none of the suffixes ('.jpg', '.png')" in explained.message


def test_explain_filtered_by_prefix():
    explained = Router([svc("s", Input("media", "in", prefix=("raw-",)))]).explain(event("in/a.gif"))
    assert explained is not None
    assert explained.message.endswith("s (media/in/): 'a.gif' has none of the prefixes ('raw-',)")


def test_explain_event_not_handled_reports_the_furthest_miss():
    # archiver's folder matches but it only takes deletes; thumbnails misses on the folder already.
    explained = Router(SERVICES).explain(event("raw/a.jpg"))
    assert explained is not None
    assert explained.reason is NoRouteReason.EVENT_NOT_HANDLED
    assert "archiver (media/raw/): handles s3:ObjectRemoved:Delete" in explained.message
    assert "thumbnails (media/in/): key is not under folder 'in'" in explained.message


def test_explain_delete_not_handled():
    explained = Router(SERVICES).explain(event("in/a.jpg", name=DELETE))
    assert explained is not None
    assert explained.reason is NoRouteReason.EVENT_NOT_HANDLED
    assert explained.message.startswith("s3:ObjectRemoved:Delete 'media/in/a.jpg'")
    assert "thumbnails (media/in/): handles s3:ObjectCreated:*" in explained.message


def test_explain_input_without_event_types():
    explained = Router([svc("idle", Input("media", events=()))]).explain(event("a.jpg"))
    assert explained is not None
    assert "idle (media/): handles no event types" in explained.message


def test_explain_bounds_the_number_of_inputs_listed():
    services = [svc(f"s{i}", Input("media", f"f{i}")) for i in range(12)]
    explained = Router(services).explain(event("elsewhere/a.jpg"))
    assert explained is not None
    assert explained.message.count("key is not under folder") == 5
    assert explained.message.endswith("; and 7 more inputs")


def test_explain_truncates_hostile_keys():
    explained = Router(SERVICES).explain(event("in/" + "x" * 5000))
    assert explained is not None
    assert len(explained.message) < 600


def test_explain_for_an_event_that_routes():
    assert Router(SERVICES).explain(event("in/a.jpg")) is None


# -- the index agrees with a brute-force reading of the rules -----------------------------------------------


def reference_route(ev: ObjectEvent, services: list[Service]) -> list[str]:
    """The matching rules applied literally to every input of every service, no index."""

    def takes(item: Input) -> bool:
        if item.bucket != ev.bucket:
            return False
        folder = item.folder.strip("/")
        if folder and not ev.key.startswith(folder + "/"):
            return False
        relative = ev.key[len(folder) + 1 :] if folder else ev.key
        patterns_ok = any(
            (ev.event_name.startswith(p[:-1]) and "Tagging" not in ev.event_name)
            if p.endswith("*")
            else ev.event_name == p
            for p in item.events
        )
        prefix_ok = not item.prefix or any(relative.startswith(p) for p in item.prefix)
        suffix_ok = not item.suffix or any(relative.endswith(s) for s in item.suffix)
        return patterns_ok and prefix_ok and suffix_ok

    if ev.key.endswith("/") or not ev.key:
        return []
    return [service.name for service in services if any(takes(item) for item in service.inputs)]


segments = st.sampled_from(["in", "input", "a", "b", "raw"])
inputs = st.builds(
    Input,
    bucket=st.sampled_from(["media", "docs"]),
    folder=st.lists(segments, max_size=2).map("/".join),
    prefix=st.lists(st.sampled_from(["raw", "a", "in/"]), max_size=2).map(tuple),
    suffix=st.lists(st.sampled_from([".jpg", ".png", "b"]), max_size=2).map(tuple),
    events=st.lists(st.sampled_from([CREATED_ANY, PUT, DELETE, "s3:ObjectRemoved:*"]), max_size=2).map(tuple),
)
service_lists = st.lists(st.lists(inputs, min_size=1, max_size=3), max_size=8).map(
    lambda groups: [Service(f"s{i}", tuple(group)) for i, group in enumerate(groups)]
)
events = st.builds(
    event,
    st.lists(
        st.sampled_from(["in", "input", "a", "b", "raw", "x.jpg", "rawb.png", ""]), min_size=1, max_size=4
    ).map("/".join),
    bucket=st.sampled_from(["media", "docs"]),
    name=st.sampled_from([PUT, DELETE, "s3:ObjectCreated:PutTagging"]),
)


@settings(deadline=None, max_examples=300)
@given(service_lists, events)
def test_router_agrees_with_brute_force(services, ev):
    router = Router(services)
    routed = names(router.route(ev))
    assert routed == reference_route(ev, services)
    assert (router.explain(ev) is None) is bool(routed)
