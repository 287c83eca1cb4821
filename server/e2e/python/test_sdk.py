"""The official Python server SDK (PyPI `pusher`) against the real server.

Deliveries are observed on raw Pusher protocol WebSockets. To show that
something did not arrive, a test publishes a later marker and checks that
it is the next frame (per-publisher order is kept on a connection).
"""

import json

import pusher
import pytest
from pusher.errors import PusherBadAuth

from conftest import Server, uid


def event_data(frame):
    """`data` of a delivered event, decoded from its JSON string."""
    data = frame["data"]
    return json.loads(data) if isinstance(data, str) else data


def test_the_development_app_id_is_numeric_and_the_sdk_publishes_with_it():
    # No app configured: the server runs its development app and prints
    # its credentials. The SDK raises ValueError("Invalid app id") for a
    # non-numeric id before sending anything.
    srv = Server(dev_app=True)
    try:
        assert srv.app_id.isdigit(), srv.app_id
        sdk = srv.sdk_with()
        s = srv.socket()
        channel = uid("dev-")
        assert s.subscribe(channel)["event"] == "pusher_internal:subscription_succeeded"
        assert sdk.trigger(channel, "hello", {"n": 1}) == {}
        frame = s.recv()
        assert (frame["event"], frame["channel"]) == ("hello", channel)
        assert event_data(frame) == {"n": 1}
    finally:
        srv.stop()


def test_a_non_numeric_app_id_is_refused_by_the_sdk_itself():
    # The reason the development app id changed (issue #12).
    with pytest.raises(ValueError):
        pusher.Pusher(app_id="app-id", key="k", secret="s", host="127.0.0.1", ssl=False)


def test_trigger_reaches_a_public_subscriber_with_the_exact_data(server):
    s = server.socket()
    channel = uid("pub-")
    assert s.subscribe(channel)["event"] == "pusher_internal:subscription_succeeded"
    server.sdk.trigger(channel, "obj", {"text": "héllo", "n": [1, 2]})
    server.sdk.trigger(channel, "str", "plain string")
    first, second = s.recv(), s.recv()
    assert first["event"] == "obj" and event_data(first) == {"text": "héllo", "n": [1, 2]}
    assert second == {"event": "str", "channel": channel, "data": "plain string"}


def test_trigger_to_several_channels_reaches_each_once(server):
    a, b = server.socket(), server.socket()
    ca, cb = uid("multi-a-"), uid("multi-b-")
    a.subscribe(ca)
    b.subscribe(cb)
    server.sdk.trigger([ca, cb], "both", {"k": 1})
    assert a.recv()["channel"] == ca
    assert b.recv()["channel"] == cb
    server.sdk.trigger([ca, cb], "marker", {})
    assert a.recv()["event"] == "marker"
    assert b.recv()["event"] == "marker"


def test_trigger_batch_delivers_every_event_in_order(server):
    s = server.socket()
    channel = uid("batch-")
    s.subscribe(channel)
    batch = [{"channel": channel, "name": f"e{i}", "data": {"i": i}} for i in range(10)]
    assert server.sdk.trigger_batch(batch) == {}
    got = [s.recv() for _ in range(10)]
    assert [f["event"] for f in got] == [f"e{i}" for i in range(10)]
    assert [event_data(f)["i"] for f in got] == list(range(10))


def test_socket_id_excludes_that_connection_only(server):
    a, b = server.socket(), server.socket()
    channel = uid("excl-")
    a.subscribe(channel)
    b.subscribe(channel)
    server.sdk.trigger(channel, "news", {"n": 1}, socket_id=a.socket_id)
    assert b.recv()["event"] == "news"
    server.sdk.trigger(channel, "marker", {})
    assert a.recv()["event"] == "marker", "the excluded connection got the event"
    assert b.recv()["event"] == "marker"


def test_private_subscription_signed_by_the_sdk_succeeds_and_receives(server):
    s = server.socket()
    channel = uid("private-")
    auth = server.sdk.authenticate(channel=channel, socket_id=s.socket_id)
    answer = s.subscribe(channel, auth=auth["auth"])
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer
    server.sdk.trigger(channel, "secret-news", {"ok": True})
    frame = s.recv()
    assert frame["event"] == "secret-news" and event_data(frame) == {"ok": True}


def test_a_subscription_signed_with_a_wrong_secret_is_refused(server):
    s = server.socket()
    channel = uid("private-")
    forged = server.sdk_with(secret="not-the-secret").authenticate(
        channel=channel, socket_id=s.socket_id
    )
    answer = s.subscribe(channel, auth=forged["auth"])
    assert answer["event"] == "pusher:subscription_error", answer
    assert answer["data"]["type"] == "AuthError"
    assert answer["data"]["status"] == 401


def test_presence_signed_by_the_sdk_gives_roster_and_member_events(server):
    channel = uid("presence-")
    a, b = server.socket(), server.socket()
    auth_a = server.sdk.authenticate(
        channel=channel, socket_id=a.socket_id, custom_data={"user_id": "u1", "user_info": {"name": "Ada"}}
    )
    joined = a.subscribe(channel, auth=auth_a["auth"], channel_data=auth_a["channel_data"])
    assert joined["event"] == "pusher_internal:subscription_succeeded", joined
    assert joined["data"]["presence"] == {"ids": ["u1"], "hash": {"u1": {"name": "Ada"}}, "count": 1}

    auth_b = server.sdk.authenticate(
        channel=channel, socket_id=b.socket_id, custom_data={"user_id": "u2", "user_info": {"name": "Bob"}}
    )
    joined = b.subscribe(channel, auth=auth_b["auth"], channel_data=auth_b["channel_data"])
    assert joined["data"]["presence"]["count"] == 2
    assert sorted(joined["data"]["presence"]["ids"]) == ["u1", "u2"]
    added = a.recv_event("pusher_internal:member_added")
    assert added["data"] == {"user_id": "u2", "user_info": {"name": "Bob"}}

    b.close()
    removed = a.recv_event("pusher_internal:member_removed")
    assert removed["data"] == {"user_id": "u2"}


def test_channels_channel_and_users_info(server):
    channel = uid("presence-info-")
    sockets = []
    for user in ("u1", "u2"):
        s = server.socket()
        auth = server.sdk.authenticate(
            channel=channel, socket_id=s.socket_id, custom_data={"user_id": user}
        )
        assert s.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])[
            "event"
        ] == "pusher_internal:subscription_succeeded"
        sockets.append(s)
    assert sockets[0].recv_event("pusher_internal:member_added")["data"]["user_id"] == "u2"
    public = uid("info-pub-")
    assert sockets[0].subscribe(public)["event"] == "pusher_internal:subscription_succeeded"

    listed = server.sdk.channels_info(prefix_filter="presence-info-", attributes=["user_count"])
    assert listed["channels"][channel] == {"user_count": 2}
    assert public not in listed["channels"]
    assert public in server.sdk.channels_info()["channels"]

    info = server.sdk.channel_info(channel, attributes=["user_count", "subscription_count"])
    assert info["occupied"] is True
    assert info["user_count"] == 2
    assert info["subscription_count"] == 2

    users = server.sdk.users_info(channel)
    assert sorted(u["id"] for u in users["users"]) == ["u1", "u2"]

    sockets[1].close()
    sockets[0].recv_event("pusher_internal:member_removed")
    assert [u["id"] for u in server.sdk.users_info(channel)["users"]] == ["u1"]
    assert server.sdk.channel_info(uid("empty-"))["occupied"] is False


def test_user_sign_in_signed_by_the_sdk_and_send_to_user(server):
    a, b = server.socket(), server.socket()
    signed = server.sdk.authenticate_user(a.socket_id, {"id": "ada", "user_info": {"n": 1}})
    a.send("pusher:signin", {"auth": signed["auth"], "user_data": signed["user_data"]})
    a.recv_event("pusher:signin_success")
    assert a.subscribe("#server-to-user-ada")["event"] == "pusher_internal:subscription_succeeded"
    server.sdk.send_to_user("ada", "for-ada", {"x": 1})
    frame = a.recv()
    assert frame["event"] == "for-ada" and event_data(frame) == {"x": 1}
    # Another connection cannot listen in.
    refused = b.subscribe("#server-to-user-ada")
    assert refused["event"] == "pusher:subscription_error", refused


def test_a_presence_member_over_the_limits_is_refused(server):
    # Issue #12: user_id at most 128 characters, user_info at most 2 KB.
    channel = uid("presence-limits-")
    s = server.socket()
    for data, limit in (
        ({"user_id": "u" * 129}, "max_user_id_length"),
        ({"user_id": "u1", "user_info": {"bio": "x" * 2048}}, "max_member_size"),
    ):
        auth = server.sdk.authenticate(channel=channel, socket_id=s.socket_id, custom_data=data)
        answer = s.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])
        assert answer["event"] == "pusher:subscription_error", answer
        assert answer["data"]["type"] == "LimitReached"
        assert limit in answer["data"]["error"]
    auth = server.sdk.authenticate(channel=channel, socket_id=s.socket_id, custom_data={"user_id": "u" * 128})
    answer = s.subscribe(channel, auth=auth["auth"], channel_data=auth["channel_data"])
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer


def test_a_wrong_secret_is_refused_and_nothing_is_published(server):
    s = server.socket()
    channel = uid("wrong-")
    s.subscribe(channel)
    with pytest.raises(PusherBadAuth) as refused:
        server.sdk_with(secret="not-the-secret").trigger(channel, "forged", {})
    assert "signature" in str(refused.value).lower()
    server.sdk.trigger(channel, "marker", {})
    assert s.recv()["event"] == "marker", "a forged event was delivered"
