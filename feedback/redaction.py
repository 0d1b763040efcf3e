"""Find personal data in customer text and replace it with typed placeholders.

Types: ``EMAIL``, ``PHONE``, ``CARD``, ``IBAN``, ``IP``, plus custom patterns (e.g. ``ORDER``). Each value
found is replaced by ``<TYPE>``; a second *different* value of the same type in the same example becomes
``<TYPE_2>`` and so on, and the same value (normalised: an email in any case, a phone number in any
format, a card with or without spaces) always gets the same placeholder within one example
(``Redaction``), so "write to <EMAIL>" in the answer still refers to the customer's <EMAIL>.

Detection leans on maintained libraries where a checksum or a numbering plan decides:

- phone numbers: Google's libphonenumber (``phonenumbers.PhoneNumberMatcher``, leniency VALID), numbers
  written with a ``+`` country code in any country's format, and national numbers of ``phone_region``;
- card numbers: 13–19 digits (spaces or dashes between groups allowed) that pass the Luhn check
  (``stdnum.luhn``) *and* start like a card scheme (Visa, Mastercard, Amex, Discover, JCB, Diners,
  UnionPay): Luhn alone accepts one random 16-digit order number in ten;
- IBANs: ``stdnum.iban`` (country length and format, mod-97 check digits; not the national check
  digits or bank registries, so an account at a bank stdnum does not know is still redacted);
- IP addresses: the standard library's ``ipaddress`` decides what a candidate is (IPv4 and IPv6);
- email addresses: a regular expression (no checksum to lean on; the TLD must be letters, so
  ``pkg@1.2.3`` is not an address).

Custom patterns run first, so an order number like ``ORD-2024-118832`` is an ``<ORDER>`` and not read as
a phone number; where detections overlap, the earlier and then the longer one wins.

This module sits in ``feedback`` (the lowest app that holds customer text) so ingestion can redact before
storing; the training pipeline builds on it (``training/pipeline/redact.py``).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

EMAIL, PHONE, CARD, IBAN, IP = "EMAIL", "PHONE", "CARD", "IBAN", "IP"
BUILTIN_TYPES = (EMAIL, PHONE, CARD, IBAN, IP)
DEFAULT_PHONE_REGION = "US"

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# 13–19 digits, single spaces or dashes allowed between digits.
_CARD_RE = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"
)
# A phone number has at least 7 digits: texts with fewer skip libphonenumber (≈ 0.2 ms a text) entirely.
_SEVEN_DIGITS = re.compile(r"\d(?:\D{0,4}\d){6}")
# "v1.2.3.4", "version 10.0.0.1": a version, not an address.
_VERSION_BEFORE = re.compile(
    r"(?:\bv|\bver\.?|version|release|build|firmware|windows|chapter|section)\s*$", re.IGNORECASE
)

_CUSTOM_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,30}$")


@dataclass(frozen=True)
class Found:
    start: int
    end: int
    type: str
    key: str  # the normalised value: equal keys get the same placeholder


class PatternError(ValueError):
    """A custom pattern line that cannot be used; the message names the line and what to fix."""


def parse_patterns(text: str) -> list[tuple[str, str]]:
    """``NAME: regex`` per line (blank lines and ``#`` comments skipped) → [(NAME, regex)].

    Raises PatternError naming the line for a bad name or a regex that does not compile.
    """
    out: list[tuple[str, str]] = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, pattern = line.partition(":")
        name, pattern = name.strip(), pattern.strip()
        if not sep or not pattern:
            raise PatternError(f"Line {number}: write NAME: regex, e.g. ORDER: ORD-\\d{{6}}.")
        if not _CUSTOM_NAME.match(name):
            raise PatternError(f"Line {number}: the name '{name}' must be upper case letters, digits or _.")
        if name in BUILTIN_TYPES:
            raise PatternError(f"Line {number}: {name} is a built-in type; choose another name.")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise PatternError(f"Line {number}: the pattern does not compile ({exc}).") from None
        if compiled.search(""):
            raise PatternError(f"Line {number}: the pattern matches the empty string.")
        out.append((name, pattern))
    return out


def _iban_ok(compact: str) -> bool:
    # The country's length and format and the mod-97 check digits. Not the national checks
    # (check_country): an IBAN with an unknown bank code is still someone's account number.
    try:
        stdnum_iban.validate(compact, check_country=False)
    except ValueError:  # stdnum's ValidationError subclasses ValueError
        return False
    return True


def _card_scheme_ok(digits: str) -> bool:
    n = len(digits)
    two, three, four, six = int(digits[:2]), int(digits[:3]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 222100 <= six <= 272099:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # American Express
    if four == 6011 or two == 65 or 644 <= three <= 649 or 622126 <= six <= 622925:
        return 16 <= n <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    if 300 <= three <= 305 or two in (36, 38, 39) or four == 3095:
        return 14 <= n <= 19  # Diners Club
    if two == 62:
        return 16 <= n <= 19  # UnionPay
    return False


class Redactor:
    """Finds and replaces personal data; build one per configuration and reuse it (it is stateless)."""

    def __init__(
        self,
        *,
        custom: Iterable[tuple[str, str]] = (),
        phone_region: str | None = DEFAULT_PHONE_REGION,
    ) -> None:
        self.custom = [(name, re.compile(pattern)) for name, pattern in custom]
        self.phone_region = (phone_region or "").upper() or None
        self.types = (*[name for name, _ in self.custom], *BUILTIN_TYPES)

    # -- detection -------------------------------------------------------------------------------------

    def find(self, text: str) -> list[Found]:
        """Non-overlapping detections in text order."""
        found: list[Found] = []
        for name, pattern in self.custom:
            found += [Found(m.start(), m.end(), name, m.group()) for m in pattern.finditer(text)]
        if "@" in text:
            found += [Found(m.start(), m.end(), EMAIL, m.group().lower()) for m in _EMAIL_RE.finditer(text)]
        if any(c.isdigit() for c in text):
            ibans, iban_shaped = self._ibans(text)
            numbers = self._cards(text)
            if _SEVEN_DIGITS.search(text):
                numbers += self._phones(text)
            # Digits inside an IBAN-shaped string whose checksum fails ("NL87 MUTZ 3059 5226 05") are a
            # mistyped account number, not a phone or card number.
            found += ibans + [
                n for n in numbers if not any(s <= n.start and n.end <= e for s, e in iban_shaped)
            ]
            found += self._ips(text)
        return _resolve(found, priority={name: 0 for name, _ in self.custom})

    def _cards(self, text: str) -> list[Found]:
        out = []
        for m in _CARD_RE.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if 13 <= len(digits) <= 19 and _card_scheme_ok(digits) and luhn.is_valid(digits):
                out.append(Found(m.start(), m.end(), CARD, digits))
        return out

    def _ibans(self, text: str) -> tuple[list[Found], list[tuple[int, int]]]:
        """(valid IBANs, spans of every IBAN-shaped candidate)."""
        out = []
        shaped = []
        for m in _IBAN_RE.finditer(text):
            shaped.append((m.start(), m.end()))
            raw = m.group()
            # The candidate may run into the next word ("DE89 3704 … 00 please"): shrink from the right
            # until the checksum holds.
            compact = raw.replace(" ", "").upper()
            end = m.end()
            while len(compact) >= 15:
                if _iban_ok(compact):
                    out.append(Found(m.start(), end, IBAN, compact))
                    break
                cut = raw.rstrip()[:-1].rstrip()
                if not cut:
                    break
                end -= len(raw) - len(cut)
                raw = cut
                compact = raw.replace(" ", "").upper()
        return out, shaped

    def _ips(self, text: str) -> list[Found]:
        out = []
        for m in _IPV4_RE.finditer(text):
            if _VERSION_BEFORE.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            try:
                address = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            out.append(Found(m.start(), m.end(), IP, str(address)))
        if ":" in text:
            for m in _IPV6_RE.finditer(text):
                candidate = m.group()
                if candidate.count(":") < 2:
                    continue
                try:
                    address6 = ipaddress.IPv6Address(candidate)
                except ValueError:
                    continue
                if "::" not in candidate and candidate.count(":") < 7:
                    continue  # a time like 10:30:00 never parses, but be sure
                out.append(Found(m.start(), m.end(), IP, str(address6)))
        return out

    def _phones(self, text: str) -> list[Found]:
        out = []
        matcher = phonenumbers.PhoneNumberMatcher(text, self.phone_region, phonenumbers.Leniency.VALID)
        for match in matcher:
            start, end = match.start, match.end
            before = text[max(0, start - 2) : start]
            # Part of an identifier ("ORD-2024-118832", "#123-456-7890"): not a phone number.
            if before.endswith("#") or (len(before) == 2 and before[1] in "-/_" and before[0].isalnum()):
                continue
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            out.append(Found(start, end, PHONE, e164))
        return out

    # -- replacement -----------------------------------------------------------------------------------

    def redact(self, text: str, redaction: Redaction | None = None) -> str:
        """``text`` with each detection replaced by its placeholder (``redaction`` keeps them consistent)."""
        if not text:
            return text
        found = self.find(text)
        if not found:
            return text
        redaction = redaction if redaction is not None else Redaction()
        parts: list[str] = []
        at = 0
        for f in found:
            parts.append(text[at : f.start])
            parts.append(redaction.placeholder(f.type, f.key))
            at = f.end
        parts.append(text[at:])
        return "".join(parts)

    def redact_value(self, value: Any, redaction: Redaction) -> Any:
        """Every string inside ``value`` (nested lists and dicts, keys left alone) redacted."""
        if isinstance(value, str):
            return self.redact(value, redaction)
        if isinstance(value, list):
            return [self.redact_value(v, redaction) for v in value]
        if isinstance(value, dict):
            return {k: self.redact_value(v, redaction) for k, v in value.items()}
        return value


@dataclass
class Redaction:
    """Placeholders of one example: the same value, the same placeholder; counts per type."""

    placeholders: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def placeholder(self, type_: str, key: str) -> str:
        self.counts[type_] += 1
        existing = self.placeholders.get((type_, key))
        if existing is not None:
            return existing
        n = sum(1 for t, _ in self.placeholders if t == type_) + 1
        value = f"<{type_}>" if n == 1 else f"<{type_}_{n}>"
        self.placeholders[(type_, key)] = value
        return value


def _resolve(found: list[Found], *, priority: dict[str, int]) -> list[Found]:
    """Drop overlaps: custom patterns first, then the earliest, then the longest detection."""
    if len(found) < 2:
        return found
    ranked = sorted(found, key=lambda f: (priority.get(f.type, 1), f.start, -(f.end - f.start)))
    taken: list[Found] = []
    for f in ranked:
        if all(f.end <= t.start or f.start >= t.end for t in taken):
            taken.append(f)
    return sorted(taken, key=lambda f: f.start)


_default: Redactor | None = None


def default_redactor() -> Redactor:
    """The built-in types with the default phone region (ingestion-time redaction uses it)."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default


# -- at ingestion (per assistant: Assistant.redact_at_ingestion) -------------------------------------------

FEEDBACK_TEXT_FIELDS = ("comment", "suggestion", "corrected_answer")


def interaction_redact(messages: list[dict], response: str) -> tuple[list[dict], str]:
    """The messages and response with personal data replaced, consistently across the conversation."""
    redactor, redaction = default_redactor(), Redaction()
    out = [
        {**m, "content": redactor.redact(m["content"], redaction)}
        if isinstance(m, dict) and isinstance(m.get("content"), str)
        else m
        for m in messages
    ]
    return out, redactor.redact(response, redaction)


def feedback_items_redact(items: list[tuple[Any, dict, Any]]) -> list[tuple[Any, dict, Any]]:
    """(interaction ref, item, key) triples with the free-text fields redacted for the assistants that
    redact at ingestion. Items without text (thumbs, ratings: the hot path) cost no query, nor do refs
    that carry their assistant's setting (``feedback.selectors.InteractionRef.redacts``)."""
    with_text: dict[int, bool | None] = {}  # assistant id -> whether it redacts (None: not known yet)
    for ref, data, _ in items:
        if ref.assistant_id not in with_text and any(data.get(f) for f in FEEDBACK_TEXT_FIELDS):
            with_text[ref.assistant_id] = getattr(ref, "redacts", None)
    unknown = {assistant_id for assistant_id, redacts in with_text.items() if redacts is None}
    redacting = {assistant_id for assistant_id, redacts in with_text.items() if redacts}
    if unknown:
        redacting |= _redacting_assistants(unknown)
    if not redacting:
        return items
    redactor = default_redactor()
    out = []
    for ref, data, key in items:
        if ref.assistant_id in redacting:
            redaction = Redaction()
            data = {
                **data,
                **{f: redactor.redact(data[f], redaction) for f in FEEDBACK_TEXT_FIELDS if data.get(f)},
            }
        out.append((ref, data, key))
    return out


def _redacting_assistants(ids: set[int]) -> set[int]:
    """Which of these assistants redact at ingestion, read for every request (a setting turned on applies
    at once). Plain SQL: the ORM spent 0.3 ms building this one-line query, as much as validating a
    batch of 100 items."""
    from django.db import connections, router

    from assistants.models import Assistant

    connection = connections[router.db_for_read(Assistant)]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {qn('id')} FROM {qn(Assistant._meta.db_table)} WHERE {qn('redact_at_ingestion')}"
            f" AND {qn('id')} IN ({', '.join(['%s'] * len(ids))})",
            list(ids),
        )
        return {pk for (pk,) in cursor.fetchall()}
