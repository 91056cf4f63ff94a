"""A message's states (DESIGN "Message states"): every one, and the final ones."""

from __future__ import annotations

# A part's final states; a message also ends canceled or partially delivered.
PART_FINAL = frozenset({"delivered", "undelivered", "expired", "failed", "rejected"})
MESSAGE_FINAL = PART_FINAL | {"canceled", "partially_delivered"}
# Progress of the states that are not final (higher = further along).
MESSAGE_PROGRESS = {"scheduled": 0, "queued": 1, "sending": 2, "sent": 3}
MESSAGE_STATES = MESSAGE_FINAL | MESSAGE_PROGRESS.keys()
