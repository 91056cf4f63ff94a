"""`JobBodies` gives each recipient the same queue body as serialising its `SendJob`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from smsgw_api.services.ingest import JobBodies
from smsgw_shared.messages import SendJob

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "common",
    [
        {"text": "hello", "encoding": "gsm7", "parts": 1},
        {
            "text": 'quotes " and \\ backslash, \n newline, \x01 control, Привет 😀',
            "encoding": "ucs2",
            "parts": 2,
            "sender": "MyShop",
            "flash": True,
            "validity": 3600,
            "dlr": False,
            "reference": 'order "42"',
        },
        # A text that contains a marker: every job is serialised on its own.
        {"text": 'x \x00smsgw:to\x00 y", "to": "+1', "encoding": "ucs2", "parts": 1},
        {"text": "\x00smsgw:job_id\x00", "encoding": "ucs2", "parts": 1},
    ],
)
@pytest.mark.parametrize(
    ("to", "route"),
    [("+79160001234", "smpp:b1"), ("+15555550123", 'modem:"odd\\id'), ("79160001234", "модем:1")],
)
def test_same_job_as_serialising_it(common, to, route):
    common = {"batch_id": str(uuid.uuid4()), "created_at": NOW} | common
    bodies = JobBodies(**common)
    for _ in range(3):  # the first is serialised on its own, the others from the template
        job_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
        body = bodies.body(job_id, message_id, to, route)
        direct = SendJob(job_id=job_id, message_id=message_id, to=to, route=route, **common)
        assert SendJob.from_bytes(body) == direct


def test_each_recipient_gets_its_own_fields():
    bodies = JobBodies(batch_id="b", text="t", encoding="gsm7", parts=1, created_at=NOW)
    a = SendJob.from_bytes(bodies.body("j1", "m1", "+79160000001", "modem:*"))
    b = SendJob.from_bytes(bodies.body("j2", "m2", "+79160000002", "smpp:*"))
    assert bodies._chunks is not None  # the template is in use, not the fallback
    assert (a.job_id, a.message_id, a.to, a.route) == ("j1", "m1", "+79160000001", "modem:*")
    assert (b.job_id, b.message_id, b.to, b.route) == ("j2", "m2", "+79160000002", "smpp:*")


def test_a_non_numeric_recipient_is_still_escaped():
    bodies = JobBodies(batch_id="b", text="t", encoding="gsm7", parts=1, created_at=NOW)
    bodies.body("j0", "m0", "+79160000001", "r")
    job = SendJob.from_bytes(bodies.body("j", "m", '+7"916', "r"))
    assert job.to == '+7"916'
