"""The topic tree of the MQTT contract (shared/spec/mqtt-contract.md, "Topics").

    {prefix}/{site}/{reader}/status      retained, the agent's state
    {prefix}/{site}/{reader}/readout     one per valid key session
    {prefix}/{site}/{reader}/rejected    one per session that was not accepted
    {prefix}/{site}/vehicles/{vin}       retained, the latest readout of a vehicle

Names are checked here, once, so that no configured value can smuggle a wildcard or a level
separator into a topic: site and reader match ``[A-Za-z0-9_-]{1,64}``. A reader may not be
called ``vehicles``, because ``{prefix}/{site}/vehicles/...`` is the vehicle subtree and an
access-control list could not then tell that reader's topics from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import ConfigError

NAME_PATTERN = "[A-Za-z0-9_-]{1,64}"
DEFAULT_PREFIX = "cbs/v1"
VEHICLES_LEVEL = "vehicles"
REMINDERS_LEVEL = "reminders"

_NAME_RE = re.compile(NAME_PATTERN)
# A VIN is 17 characters of A-HJ-NPR-Z0-9; the payload model enforces the alphabet, the topic
# only has to stay a single, wildcard-free level.
_VIN_RE = re.compile("[A-Za-z0-9]{1,32}")


def validate_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid site or reader name, else raise :class:`ConfigError`
    with one line such as ``site name 'x y' must match [A-Za-z0-9_-]{1,64}``."""
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise ConfigError(f"{kind} name {value!r} must match {NAME_PATTERN}")
    if kind == "reader" and value in (VEHICLES_LEVEL, REMINDERS_LEVEL):
        raise ConfigError(f"reader name {value!r} is reserved for the site's {value} topics; "
                          "choose another")
    return value


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is usable as the root of the topic tree (``cbs/v1``): one or
    more non-empty levels, no wildcards, no leading or trailing ``/``. Raises ConfigError."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError(f"topic prefix {prefix!r} must not be empty")
    if any(ch in prefix for ch in "+#\0") or any(not level for level in prefix.split("/")):
        raise ConfigError(f"topic prefix {prefix!r} must be levels separated by '/', "
                          "without wildcards (+, #) or empty levels")
    return prefix


def subscription_filter(prefix: str = DEFAULT_PREFIX, site: str | None = None,
                        reader: str | None = None) -> str:
    """A topic filter for integrators: every message of one reader, of one site, or of all
    sites (``None`` becomes the ``+`` wildcard). ``subscription_filter()`` is ``cbs/v1/+/+/#``
    and matches the vehicle topics too (their reader level is ``vehicles``)."""
    validate_prefix(prefix)
    site_level = "+" if site is None else validate_name("site", site)
    reader_level = "+" if reader is None else validate_name("reader", reader)
    return f"{prefix}/{site_level}/{reader_level}/#"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one agent (one site, one reader). Construction validates every part."""

    prefix: str
    site: str
    reader: str

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)
        validate_name("site", self.site)
        validate_name("reader", self.reader)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.reader}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def readout(self) -> str:
        return f"{self.base}/readout"

    @property
    def rejected(self) -> str:
        return f"{self.base}/rejected"

    def vehicle(self, vin: str) -> str:
        """``{prefix}/{site}/vehicles/{vin}``; raises ValueError for a VIN that is not one
        plain topic level (the payload model has already checked it is a real VIN)."""
        if _VIN_RE.fullmatch(vin) is None:
            raise ValueError(f"VIN {vin!r} cannot be a topic level")
        return f"{self.prefix}/{self.site}/{VEHICLES_LEVEL}/{vin}"

    @property
    def commands(self) -> str:
        """Where integrators send commands: ``{prefix}/{site}/{reader}/command/+``."""
        return f"{self.base}/command/+"

    def command_name(self, topic: str) -> str | None:
        """The command's name in a topic of :attr:`commands`, else None."""
        head = f"{self.base}/command/"
        if not topic.startswith(head) or "/" in topic[len(head):]:
            return None
        return topic[len(head):]

    @property
    def reader_filter(self) -> str:
        """Everything this reader publishes: ``{prefix}/{site}/{reader}/#``."""
        return f"{self.base}/#"

    @property
    def vehicles_filter(self) -> str:
        """Every vehicle of this site: ``{prefix}/{site}/vehicles/+``."""
        return f"{self.prefix}/{self.site}/{VEHICLES_LEVEL}/+"


def reminders_topic(prefix: str, site: str) -> str:
    """``{prefix}/{site}/reminders`` (validated)."""
    validate_prefix(prefix)
    validate_name("site", site)
    return f"{prefix}/{site}/reminders"


def approval_topic(prefix: str, site: str, reader: str) -> str:
    """``{prefix}/{site}/{reader}/approval``: the desk's ``cbs.approval/1`` for a readout of
    that reader (validated)."""
    return f"{Topics(prefix, site, reader).base}/approval"
