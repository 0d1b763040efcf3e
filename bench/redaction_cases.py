"""Generate the labelled redaction set: ``python -m bench.redaction_cases [--seed 16] [--out FILE]``.

Writes ``tests/feedback/data/redaction_cases.jsonl``: one ``{"text", "entities": [[TYPE, surface]], "kind"}``
a line. Labels come from how each string was made (a valid card number is made valid with the Luhn check
digit, an IBAN with mod-97 check digits, a phone number is a real numbering-plan example written in one of
several styles), never from the detector. Negatives are the look-alikes customer-service text is full of:
dates, times, prices, order ids, version numbers, tracking numbers, card-like numbers that fail Luhn,
IBAN-like strings with wrong check digits, quantities, postcodes, SKUs, hashes, MAC addresses.
"""

from __future__ import annotations

import argparse
import json
import random
import string
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "feedback" / "data" / "redaction_cases.jsonl"

FIRST = ["anna", "bob", "chen", "dmitri", "eva", "fatima", "george", "hana", "ivan", "julia", "kofi", "lena"]
LAST = ["smith", "nguyen", "garcia", "mueller", "rossi", "kowalski", "tanaka", "okafor", "dubois", "silva"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "example.de", "shop.example.io"]

# Real numbering-plan examples (libphonenumber's example numbers and public test ranges), as
# (written with +country code, national format of the US where it applies).
INTERNATIONAL = [
    "+44 20 7946 0958",
    "+44 7400 123456",
    "+49 30 901820",
    "+49 1512 3456789",
    "+33 1 42 68 53 00",
    "+33 6 12 34 56 78",
    "+34 912 34 56 78",
    "+39 06 1234 5678",
    "+31 20 123 4567",
    "+41 44 668 18 00",
    "+46 8 123 456 78",
    "+48 12 345 67 89",
    "+91 98765 43210",
    "+81 3-1234-5678",
    "+61 2 9374 4000",
    "+86 10 6552 9988",
    "+55 11 96123-4567",
    "+52 55 1234 5678",
    "+1 212-555-0147",
    "+1 (415) 555-0132",
    "+14155550132",
    "+442079460958",
    "+353 1 234 5678",
    "+27 21 123 4567",
]
US_NATIONAL = [
    "(415) 555-0132",
    "415-555-0132",
    "415.555.0132",
    "212 555 0147",
    "1-800-555-0199",
    "(646) 555-0102",
    "312-555-0175",
    "(206) 555-0188",
]

CARD_PREFIXES = [
    ("4", 16),
    ("4", 13),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3530", 16),
    ("36", 14),
    ("62", 16),
]

IBAN_COUNTRIES = {  # country: (BBAN length, alphabet of the BBAN: digits or alphanumeric prefix length)
    "DE": ("n", 18),
    "FR": ("fr", 23),
    "GB": ("gb", 18),
    "ES": ("n", 20),
    "IT": ("it", 23),
    "NL": ("nl", 14),
    "BE": ("n", 12),
    "AT": ("n", 16),
    "CH": ("n", 17),
    "PL": ("n", 24),
}


def luhn_complete(rng: random.Random, prefix: str, length: int, valid: bool = True) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    check = (10 - total % 10) % 10
    if not valid:
        check = (check + rng.randint(1, 9)) % 10
    return body + str(check)


def group_card(number: str, style: str) -> str:
    if style == "plain":
        return number
    sep = " " if style == "space" else "-"
    if len(number) == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def _bban(rng: random.Random, country: str) -> str:
    kind, length = IBAN_COUNTRIES[country]
    if kind == "gb":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)
    if kind == "nl":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)
    if kind == "it":
        return rng.choice(string.ascii_uppercase) + _digits(rng, 22)
    if kind == "fr":
        return _digits(rng, 21) + _digits(rng, 2)
    if country == "BE":  # national check: the first ten digits mod 97 (97 for 0)
        first = _digits(rng, 10)
        return first + f"{int(first) % 97 or 97:02d}"
    if country == "ES":  # national check digits (CCC) over bank + branch, and over the account
        bank_branch, account = _digits(rng, 8), _digits(rng, 10)
        return bank_branch + _es_check("00" + bank_branch) + _es_check(account) + account
    return _digits(rng, length)


def _es_check(digits: str) -> str:
    weights = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
    value = 11 - sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 11
    return str({11: 0, 10: 1}.get(value, value))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def iban(rng: random.Random, country: str, valid: bool = True) -> str:
    bban = _bban(rng, country)
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    check = 98 - number % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
        if check == 98 - number % 97:
            check = (check % 97) + 2
    return f"{country}{check:02d}{bban}"


def group_iban(value: str, spaced: bool) -> str:
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if spaced else value


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{rng.randint(1, 99)}",
            f"{first}+orders",
            f"{first[0]}{last}",
            f"{first}_{last}",
            f"{first.upper()}.{last.capitalize()}",
        ]
    )
    return f"{local}@{rng.choice(DOMAINS)}"


def ipv4(rng: random.Random) -> str:
    return rng.choice(
        [
            f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"203.0.113.{rng.randint(1, 254)}",
            f"198.51.100.{rng.randint(1, 254)}",
            f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ]
    )


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(4)]
    return rng.choice(
        [
            f"2001:db8::{groups[0]}",
            f"2001:db8:{groups[0]}:{groups[1]}::{groups[2]}",
            f"fe80::{groups[0]}:{groups[1]}:{groups[2]}:{groups[3]}",
            "2001:0db8:85a3:0000:0000:8a2e:0370:" + f"{rng.randint(0, 0xFFFF):04x}",
            "::1",
        ]
    )


POSITIVE_TEMPLATES = {
    "EMAIL": [
        "Please send the invoice to {v}.",
        "my email is {v}",
        "Contact: {v}",
        "I wrote from {v} yesterday",
        "Can you update my address to {v}? Thanks",
        "({v})",
        "reply to <{v}> please",
        "{v} is my login",
    ],
    "PHONE": [
        "Call me on {v}",
        "my number is {v}.",
        "Phone: {v}",
        "reach me at {v} after 5pm",
        "You can text {v} anytime",
        "tel {v}",
        "Mobile {v}, ask for Sam",
    ],
    "CARD": [
        "My card {v} was charged twice",
        "card number: {v}",
        "I paid with {v} expiring 04/27",
        "Refund to {v} please",
        "The charge on {v} is wrong",
    ],
    "IBAN": [
        "Please refund to IBAN {v}",
        "my bank account is {v}",
        "IBAN: {v}.",
        "send it to {v} thanks",
        "Account {v} (Sparkasse)",
    ],
    "IP": [
        "I get blocked from {v}",
        "my IP is {v}",
        "login attempts from {v} were not me",
        "The router at {v} drops",
        "Access denied for {v}.",
    ],
}

NEGATIVES = [
    # dates and times
    "My order from 2024-01-15 has not arrived",
    "It was delivered on 15/01/2024 at 10:30",
    "on 01.02.2024 I called",
    "Between 2023-12-24 and 2024-01-02 the shop was closed",
    "Timestamp 2024-03-05T14:22:31Z in the log",
    "the meeting is at 14:30:00",
    "Order placed 03/04/2024 11:45 AM",
    "Expires 12/26",
    "since 20240115",
    "We open 09:00–17:30 Monday to Friday",
    # prices and quantities
    "The price was $1,234.56 and I paid $1,299.00",
    "It costs €2.499,00 now",
    "Total: 12,345,678.90 USD",
    "I was charged 4,999.99 twice",
    "Shipping 1 234 567 units",
    "Order 3 items at 19.99 each",
    "weighs 1.250 kg",
    "Discount of 15% on 2,000 orders",
    # order ids, invoices, tickets
    "Order ORD-2024-118832 is late",
    "Invoice INV-2024-000123 is wrong",
    "ticket #123-456-7890",
    "Order #100234567 was cancelled",
    "my order number is 4521-8890-1234",
    "Ref: A12B-34CD-56EF",
    "Case 00012345 still open",
    "Return RMA-88231-77 approved",
    "PO 2024/11/0042",
    "booking ref XK7Q2P",
    # version numbers
    "Updated to version 10.2.3.4 and it crashes",
    "Running v1.2.3.4 build",
    "the app 3.14.159 is slow",
    "Firmware 2.0.0.1 broke wifi",
    "Python 3.11.4",
    "release 2024.1.0.17",
    # tracking numbers
    "Tracking 1Z999AA10123456784",
    "USPS tracking 9400 1000 0000 0000 0000 00",
    "FedEx 7749 8261 2234",
    "DHL 1234567890",
    "tracking number 420941109361289697090176390088",
    "Royal Mail AB123456789GB",
    # card and IBAN look-alikes
    "The reference 4111 1111 1111 1112 failed",
    "code 1234 5678 9012 3456",
    "serial 0000-0000-0000-0000",
    "gift card 6000 1234 5678 9012",
    "member 9999888877776666",
    "DE89 3704 0044 0532 0130 01 is wrong",
    "GB00 WEST 1234 5698 7654 32",
    "XX12 3456 7890 1234 5678",
    # other look-alikes
    "ZIP 94103-1234",
    "postcode SW1A 1AA",
    "SKU 884-2231-009",
    "sha 3f786850e387550fdab836ed7e6dc881de23001b",
    "MAC 00:1A:2B:3C:4D:5E",
    "ISBN 978-3-16-148410-0",
    "EAN 4006381333931",
    "Order qty 12 x 3",
    "the score was 3-2",
    "room 12.34.56",
    "Windows 10.0.19045.3693",
    "error code 0x80070005",
    "coordinates 48.8584, 2.2945",
    "call us between 9 and 5",
    "@bob on twitter",
    "user@localhost said hi",
    "email me at my usual address",
    "10.5 out of 10",
    "v1.2.3",
    "Chapter 1.2.3.4",
    "about 555 people",
    "In 2024 we had 12000 customers",
    "+5 points",
    "call 911",
]


# Personal data written the way people do but detectors struggle with, added after the detector was tuned
# on the rest (so they show its limits rather than fit it): national numbers of other countries than the
# default region, spelled-out emails, unusual separators, addresses with ports.
HARD = [
    ("Call 020 7946 0958 (London office)", [["PHONE", "020 7946 0958"]]),
    ("my mobile is 07400 123456", [["PHONE", "07400 123456"]]),
    ("ruf mich an: 030 901820", [["PHONE", "030 901820"]]),
    ("appelez le 01 42 68 53 00", [["PHONE", "01 42 68 53 00"]]),
    ("whatsapp 0044 20 7946 0958", [["PHONE", "0044 20 7946 0958"]]),
    ("phone 415 555 0132 ext 4", [["PHONE", "415 555 0132"]]),
    ("my number is +1 415 555 0132", [["PHONE", "+1 415 555 0132"]]),
    ("call 4155550132 tonight", [["PHONE", "4155550132"]]),
    ("email is bob at example dot com", [["EMAIL", "bob at example dot com"]]),
    ("mail: anna.smith(at)example.com", [["EMAIL", "anna.smith(at)example.com"]]),
    ("write to ANNA.SMITH@EXAMPLE.COM now", [["EMAIL", "ANNA.SMITH@EXAMPLE.COM"]]),
    ("email j.o'neil@example.ie", [["EMAIL", "j.o'neil@example.ie"]]),
    ("card 4111.1111.1111.1111 declined", [["CARD", "4111.1111.1111.1111"]]),
    ("card 4111 1111 1111 1111, exp 12/27", [["CARD", "4111 1111 1111 1111"]]),
    ("amex 3782 822463 10005", [["CARD", "3782 822463 10005"]]),
    ("card ending 4242424242424242", [["CARD", "4242424242424242"]]),
    ("iban de89370400440532013000", [["IBAN", "de89370400440532013000"]]),
    ("IBAN GB29 NWBK 6016 1331 9268 19.", [["IBAN", "GB29 NWBK 6016 1331 9268 19"]]),
    ("server 192.168.1.20:8080 refuses", [["IP", "192.168.1.20"]]),
    ("from [2001:db8::1]:443", [["IP", "2001:db8::1"]]),
    ("ip=10.0.0.7, port=22", [["IP", "10.0.0.7"]]),
]


def build(seed: int) -> list[dict]:
    rng = random.Random(seed)
    cases: list[dict] = []

    def add(text: str, entities: list[list[str]], kind: str) -> None:
        cases.append({"text": text, "entities": entities, "kind": kind})

    for _ in range(70):
        v = email(rng)
        add(rng.choice(POSITIVE_TEMPLATES["EMAIL"]).format(v=v), [["EMAIL", v]], "positive")
    for v in INTERNATIONAL * 2:
        add(rng.choice(POSITIVE_TEMPLATES["PHONE"]).format(v=v), [["PHONE", v]], "positive")
    for v in US_NATIONAL * 3:
        add(rng.choice(POSITIVE_TEMPLATES["PHONE"]).format(v=v), [["PHONE", v]], "positive")
    for _ in range(70):
        prefix, length = rng.choice(CARD_PREFIXES)
        v = group_card(luhn_complete(rng, prefix, length), rng.choice(["plain", "space", "dash"]))
        add(rng.choice(POSITIVE_TEMPLATES["CARD"]).format(v=v), [["CARD", v]], "positive")
    for _ in range(60):
        v = group_iban(iban(rng, rng.choice(list(IBAN_COUNTRIES))), rng.random() < 0.6)
        add(rng.choice(POSITIVE_TEMPLATES["IBAN"]).format(v=v), [["IBAN", v]], "positive")
    for _ in range(50):
        v = ipv4(rng) if rng.random() < 0.7 else ipv6(rng)
        add(rng.choice(POSITIVE_TEMPLATES["IP"]).format(v=v), [["IP", v]], "positive")

    # Several types in one message, with look-alikes around them.
    for _ in range(60):
        e, c = email(rng), group_card(luhn_complete(rng, "4", 16), "space")
        p = rng.choice(INTERNATIONAL + US_NATIONAL)
        text = (
            f"Hi, order ORD-{rng.randint(2020, 2025)}-{rng.randint(100000, 999999)} from "
            f"{rng.randint(2020, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} cost "
            f"${rng.randint(10, 999)}.{rng.randint(0, 99):02d}. Card {c}, email {e}, phone {p}."
        )
        add(text, [["CARD", c], ["EMAIL", e], ["PHONE", p]], "mixed")

    for text, entities in HARD:
        add(text, entities, "hard")
    for text in NEGATIVES:
        add(text, [], "negative")
    # Generated negatives: card-shaped numbers that fail Luhn, IBANs with wrong check digits, order
    # numbers, versions, prices, dates, tracking numbers.
    for _ in range(40):
        prefix, length = rng.choice(CARD_PREFIXES)
        v = group_card(
            luhn_complete(rng, prefix, length, valid=False), rng.choice(["plain", "space", "dash"])
        )
        add(f"Reference {v} on the statement", [], "negative")
    for _ in range(30):
        v = group_iban(iban(rng, rng.choice(list(IBAN_COUNTRIES)), valid=False), rng.random() < 0.6)
        add(f"the account {v} bounced", [], "negative")
    for _ in range(30):
        add(
            f"Order #{rng.randint(10**5, 10**7)} shipped on {rng.randint(1, 28)}/{rng.randint(1, 12)}/2024",
            [],
            "negative",
        )
    for _ in range(20):
        add(
            f"After updating to {rng.randint(1, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 99)} it crashes",
            [],
            "negative",
        )
    for _ in range(20):
        add(
            f"I paid ${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d} on "
            f"{rng.randint(2020, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            [],
            "negative",
        )
    for _ in range(20):
        add(
            f"Tracking 1Z{_digits(rng, 3)}{rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}{_digits(rng, 10)}",
            [],
            "negative",
        )
    rng.shuffle(cases)
    return cases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redaction_cases", description=__doc__)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    cases = build(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases -> {out}")


if __name__ == "__main__":
    main()
