"""Bucket notification rules as bucketrun reads and writes them, independent of any S3 SDK.

A bucket has one notification configuration holding every subscriber's rules, so bucketrun must edit
it without disturbing the others: its own rules carry an Id ``bucketrun-<service>-<n>`` and anything
else is someone else's. The storage adapter converts these rules to and from the SDK's types; the
planner (``bucketrun.admin.plan``) decides what to write.

MinIO matches a rule on ``prefix*suffix`` and refuses filter values with ``.``/``..`` segments or a
backslash, or longer than 1024 bytes (``ValidateFilterRuleValue``); ``check_filter_value`` refuses them
first, naming the value, instead of letting the server answer a bare InvalidArgument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from dispatcher.fdl.errors import shown
from dispatcher.fdl.names import check_service_name

RuleKind = Literal["queue", "topic", "cloud-function"]
"""The three kinds of S3 notification configuration (MinIO implements ``queue`` and ``topic``)."""

ID_PREFIX: Final = "bucketrun-"
_ID: Final = re.compile(r"bucketrun-(?P<service>[a-z0-9-]+)-(?P<index>0|[1-9][0-9]{0,5})")
_MAX_FILTER_BYTES: Final = 1024
_ARN_PARTS: Final = 6


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """One entry of a bucket's notification configuration."""

    kind: RuleKind
    arn: str
    """Destination: ``arn:minio:sqs::<ID>:amqp`` for MinIO's AMQP target."""
    events: tuple[str, ...]
    """Event-name patterns, e.g. ``s3:ObjectCreated:*`` (compared as a set)."""
    prefix: str = ""
    """Key prefix filter; empty = none."""
    suffix: str = ""
    """Key suffix filter; empty = none."""
    rule_id: str | None = None
    """The entry's Id; bucketrun's are ``bucketrun-<service>-<n>``."""

    @property
    def owner(self) -> str | None:
        """The bucketrun service this entry belongs to, or None when it is someone else's."""
        return rule_owner(self.rule_id)

    def same_wiring(self, other: NotificationRule) -> bool:
        """Same Id, kind, destination, events and filters (the server may add its region to the ARN)."""
        return (
            self.rule_id == other.rule_id
            and self.kind == other.kind
            and arns_match(self.arn, other.arn)
            and set(self.events) == set(other.events)
            and self.prefix == other.prefix
            and self.suffix == other.suffix
        )

    def describe(self) -> str:
        """``events s3:ObjectCreated:*, prefix 'in/', suffix '.jpg'`` for a change line."""
        text = f"events {','.join(self.events)}"
        if self.prefix:
            text += f", prefix {shown(self.prefix)}"
        if self.suffix:
            text += f", suffix {shown(self.suffix)}"
        return text


def rule_id(service: str, index: int) -> str:
    """The Id of ``service``'s ``index``-th notification entry."""
    return f"{ID_PREFIX}{service}-{index}"


def rule_owner(identifier: str | None) -> str | None:
    """The service named by a ``bucketrun-<service>-<n>`` Id; None for any other Id (not ours)."""
    if identifier is None:
        return None
    match = _ID.fullmatch(identifier)
    if match is None:
        return None
    try:
        return check_service_name(match["service"])
    except ValueError:
        return None


def arns_match(left: str, right: str) -> bool:
    """Whether two ARNs name the same target. MinIO stores the ARN with its own region filled in
    (``arn:minio:sqs:us-east-1:_:amqp``) when it was given without one, so an empty region matches any."""
    a, b = left.split(":"), right.split(":")
    if len(a) != _ARN_PARTS or len(b) != _ARN_PARTS:
        return left == right
    regions_match = a[3] == b[3] or not a[3] or not b[3]
    return regions_match and a[:3] == b[:3] and a[4:] == b[4:]


def check_filter_value(value: str) -> str:
    """A key filter value MinIO accepts; ``ValueError`` quoting it otherwise."""
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_FILTER_BYTES:
        raise ValueError(f"notification filter {shown(value)} is longer than {_MAX_FILTER_BYTES} bytes")
    if "\\" in value or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"notification filter {shown(value)} contains a backslash or control characters")
    if any(segment in {".", ".."} for segment in value.split("/")):
        raise ValueError(f"notification filter {shown(value)} has a '.' or '..' segment")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"notification filter {shown(value)} is not valid UTF-8") from None
    return value
