"""Rough throughput of the SMS text engine: encode, split and PDU build, per second.

Run: .venv/bin/python bench/bench_sms.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from smsgw_shared.sms import build_smpp_parts, build_submit_pdus, choose_encoding, split_text

TEXTS = {
    "gsm7 short (25 chars)": "Your code is 123456. Bye!",
    "gsm7 long (3 parts)": ("Hello world, this is a long message with a € sign. " * 8)[:400],
    "ucs2 long (3 parts)": ("Привет, это длинное сообщение 😀 " * 6)[:190],
}


def rate(func: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second of `func`, measured for about `seconds`."""
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            func()
        calls += 100
    return calls / elapsed


def main() -> None:
    print(f"{'text':<24}{'parts':>6}{'encode/s':>12}{'split/s':>12}{'PDUs/s':>12}{'SMPP/s':>12}")
    for name, text in TEXTS.items():
        parts = split_text(text).parts
        encode = rate(lambda t=text: choose_encoding(t))
        split = rate(lambda t=text: split_text(t))
        pdu = rate(lambda t=text: build_submit_pdus(t, "+79203048606", concat_ref=1))
        smpp = rate(lambda t=text: build_smpp_parts(t, ref=1))
        print(f"{name:<24}{parts:>6}{encode:>12,.0f}{split:>12,.0f}{pdu:>12,.0f}{smpp:>12,.0f}")
    print("PDUs/s and SMPP/s are whole messages (all parts) per second.")


if __name__ == "__main__":
    main()
